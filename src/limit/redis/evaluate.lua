-- portcullis: give back charges, then check and charge a batch of requests, in one atomic
-- step. Each request is all or nothing on its own; requests see the charges of the requests
-- before them in the batch. The semantics are LocalStore's (src/limit/local/mod.rs, `check`);
-- the encoding is src/limit/redis/script.rs. Time is this server's clock (TIME), in µs.
--
-- ARGV[1] is the lease TTL (µs); ARGV[2] the number U of give-backs. Then, in order:
--   U give-backs, each one key (KEYS, in order) and two values: kind, value.
--     'c': ZREM the lease member `value` from the concurrency ZSET at the key.
--     'r': move the GCRA TAT at the key back by `value` µs (never below now; gone if fresh).
--   requests, each its number of ops n, then per op one key (KEYS, in order) and its values:
--     'r'/'R' rate:        emission (ns), burst (>= 1), cost. Key: the GCRA TAT (µs).
--     'c'/'C' concurrency: max, lease member. Key: ZSET of lease members scored by expiry.
--     'd'/'D' distinct:    max, window (µs), member. The key is a prefix: HyperLogLog buckets
--                          key..':'..epoch, the merge of the live ones key..':m:'..lo (lo: the
--                          oldest live epoch), a scratch copy key..':t' (deleted here).
--     Upper case: the op enforces (its denial blocks the request).
-- Reply: 3 integers per op of every request, in order: 0, remaining, reset (ns)  or
--        1, current, retry_after (ns).
--
-- Every key is read at most once per batch and written at most once, at the end: the batch's
-- charges are kept in tables (`tat`, `held`, `dist`) that the later requests read; a blocked
-- request's charges are taken back from a journal.

local floor, ceil, max, min = math.floor, math.ceil, math.max, math.min
local call = redis.call
-- Numbers above 1e14 print as 1.7e+15 through tostring; every number handed to Redis goes
-- through here so it is an exact integer string.
local function int(x)
  return string.format('%.0f', x)
end

local t = call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local ttl = tonumber(ARGV[1])
local ki, ai = 0, 2 -- the last KEYS and ARGV index read

for _ = 1, tonumber(ARGV[2]) do
  ki = ki + 1
  local key, kind, v = KEYS[ki], ARGV[ai + 1], ARGV[ai + 2]
  ai = ai + 2
  if kind == 'c' then
    call('ZREM', key, v)
  else
    local tat = tonumber(call('GET', key))
    if tat then
      local nt = tat - tonumber(v)
      if nt <= now then
        call('DEL', key)
      else
        call('SET', key, int(nt), 'PX', int(max(ceil((nt - now) / 1000), 1)))
      end
    end
  end
end

-- The bucket keys of epochs lo..cur (at most 7).
local function buckets(key, lo, cur)
  local ks = {}
  for e = lo, cur do
    ks[#ks + 1] = key .. ':' .. int(e)
  end
  return ks
end

-- Batch state, per key: what Redis held at the start (`tat0`) plus what this batch charged,
-- the request being evaluated included (its charges are taken back if it is blocked).
local tat, tat0, held, dist = {}, {}, {}, {}
-- Keys in first-read order (written at the end if changed); the lease members taken.
local tat_keys, conc_keys, dist_keys, leases = {}, {}, {}, {}
-- The charges of the request being evaluated, 4 slots each (kind, key or state, value,
-- previous count), so a blocked request can be taken back; reused by every request (no
-- table per request).
local journal, nj = {}, 0

-- A distinct key's state: the window arithmetic of local/distinct.rs `Geometry` (µs), the
-- count over the live buckets, and the members charged by this batch.
local function dstate(key, window)
  local d = dist[key]
  if d then
    return d
  end
  local w = max(ceil(window / 6), 1)
  local cur, lo = floor(now / w), floor(max(now - window, 0) / w)
  d = {
    w = w, cur = cur, lo = lo, window = window,
    mkey = key .. ':m:' .. int(lo), tmp = key .. ':t',
    count = 0, merged = false, scratch = false,
    probed = {}, charged = {}, adds = {},
  }
  -- The merge is kept (key..':m:'..lo, see the end) while the oldest live bucket stays the
  -- same; an existing merge holds at least one member, so a count of 0 means there is none
  -- and the live buckets are merged here into the scratch key.
  local c = call('PFCOUNT', d.mkey)
  if c > 0 then
    d.count, d.merged = c, true
  else
    local ks = buckets(key, lo, cur)
    if call('EXISTS', unpack(ks)) > 0 then
      call('PFMERGE', d.tmp, unpack(ks))
      d.count, d.scratch = call('PFCOUNT', d.tmp), true
    end
  end
  dist[key] = d
  dist_keys[#dist_keys + 1] = key
  return d
end

-- Whether Redis already counts `member`: adding it to a scratch copy of the merge changes no
-- register. Asked once per member and batch (the copy keeps the members asked before).
local function known(d, member)
  local p = d.probed[member]
  if p == nil then
    if d.merged and not d.scratch then
      call('COPY', d.mkey, d.tmp, 'REPLACE')
      d.scratch = true
    end
    p = d.scratch and call('PFADD', d.tmp, member) == 0
    d.probed[member] = p
  end
  return p
end

local out = {}
local nargv = #ARGV
while ai < nargv do
  local n = tonumber(ARGV[ai + 1])
  ai = ai + 1
  nj = 0
  local blocked = false
  for _ = 1, n do
    ki = ki + 1
    local key, kind = KEYS[ki], ARGV[ai + 1]
    local enforce = kind == 'R' or kind == 'C' or kind == 'D'
    local code, x, y
    if kind == 'r' or kind == 'R' then
      -- GCRA (local/gcra.rs): admit iff max(TAT, now) + cost*T - now <= burst*T.
      local T, burst, cost = tonumber(ARGV[ai + 2]), tonumber(ARGV[ai + 3]), tonumber(ARGV[ai + 4])
      ai = ai + 4
      local cur = tat[key]
      if cur == nil then
        cur = tonumber(call('GET', key)) or now
        tat[key], tat0[key] = cur, cur
        tat_keys[#tat_keys + 1] = key
      end
      local backlog = (max(cur, now) - now) * 1000
      local limit = burst * T
      if cost == 0 then
        code, x, y = 0, floor(max(limit - backlog, 0) / T), backlog
      else
        local after = backlog + cost * T
        if after <= limit then
          code, x, y = 0, floor((limit - after) / T), after
          -- Rounded down to whole µs: at most 1 µs per charge in the client's favour, never a
          -- denial that the exact (ns) arithmetic would not give.
          journal[nj + 1], journal[nj + 2], journal[nj + 3] = 'r', key, cur
          nj = nj + 4
          tat[key] = now + floor(after / 1000)
        else
          code, x = 1, min(ceil(backlog / T), burst)
          if cost * T <= limit then y = after - limit else y = backlog end
        end
      end
    elseif kind == 'c' or kind == 'C' then
      local m, member = tonumber(ARGV[ai + 2]), ARGV[ai + 3]
      ai = ai + 3
      local h = held[key]
      if h == nil then
        h = call('ZCOUNT', key, '(' .. int(now), '+inf')
        leases[key] = {}
        conc_keys[#conc_keys + 1] = key
      end
      -- Taken whenever the request goes ahead, denied or not (a shadow op's request is in flight).
      held[key] = h + 1
      local l = leases[key]
      l[#l + 1] = member
      journal[nj + 1], journal[nj + 2] = 'c', key
      nj = nj + 4
      if h < m then
        code, x, y = 0, m - h - 1, 0
      else
        code, x, y = 1, h, 1000000000
      end
    else
      local m, window, member = tonumber(ARGV[ai + 2]), tonumber(ARGV[ai + 3]), ARGV[ai + 4]
      ai = ai + 4
      local d = dstate(key, window)
      local count = d.count
      -- Charged by this batch (this request included), or already counted by Redis.
      local present = d.charged[member] or known(d, member)
      if not d.charged[member] then
        d.charged[member] = true
        d.adds[#d.adds + 1] = member
        if not present then d.count = count + 1 end
        journal[nj + 1], journal[nj + 2], journal[nj + 3], journal[nj + 4] = 'd', d, member, count
        nj = nj + 4
      end
      local reset = ((d.cur + 1) * d.w + window - now) * 1000
      local after = count
      if not present then after = count + 1 end
      local deny = (not enforce and after > m) or (enforce and not present and count >= m)
      if deny then
        -- Retry when the oldest live bucket leaves the window (a bucket only this batch
        -- charged is the current one: `reset`).
        local retry = reset
        for e = d.lo, d.cur do
          if call('EXISTS', key .. ':' .. int(e)) == 1 then
            retry = ((e + 1) * d.w + window - now) * 1000
            break
          end
        end
        if enforce then code, x, y = 1, count, retry else code, x, y = 1, after, retry end
      elseif enforce and present then
        code, x, y = 0, max(m - count, 0), reset
      else
        code, x, y = 0, m - after, reset
      end
    end
    if code == 1 and enforce then blocked = true end
    out[#out + 1] = code
    out[#out + 1] = max(x, 0)
    out[#out + 1] = max(y, 0)
  end
  if blocked then
    -- Take this request's charges back, newest first.
    for j = nj - 3, 1, -4 do
      local kind, k, v = journal[j], journal[j + 1], journal[j + 2]
      if kind == 'r' then
        tat[k] = v
      elseif kind == 'c' then
        held[k] = held[k] - 1
        local l = leases[k]
        l[#l] = nil
      else
        k.charged[v] = nil
        k.adds[#k.adds] = nil
        k.count = journal[j + 3]
      end
    end
  end
end

-- The writes, one per key. A rate key vanishes when it would be fresh again (TAT <= now).
for _, key in ipairs(tat_keys) do
  local v = tat[key]
  if v ~= tat0[key] then
    call('SET', key, int(v), 'PX', int(max(ceil((v - now) / 1000), 1)))
  end
end
local expiry = int(now + ttl)
for _, key in ipairs(conc_keys) do
  local l = leases[key]
  if #l > 0 then
    local args = {}
    for _, member in ipairs(l) do
      args[#args + 1] = expiry
      args[#args + 1] = member
    end
    call('ZREMRANGEBYSCORE', key, '-inf', int(now))
    call('ZADD', key, unpack(args))
    call('PEXPIRE', key, int(max(ceil(ttl / 1000), 1)))
  end
end
for _, key in ipairs(dist_keys) do
  local d = dist[key]
  if #d.adds > 0 then
    local bucket = key .. ':' .. int(d.cur)
    call('PFADD', bucket, unpack(d.adds))
    -- The bucket vanishes when its epoch leaves the window.
    call('PEXPIRE', bucket, int(max(ceil(((d.cur + 1) * d.w + d.window - now) / 1000), 1)))
    -- Keep the merge of the live buckets in step; it vanishes when bucket `lo` leaves the
    -- window, which is when a merge for lo + 1 takes over.
    if d.merged then
      call('PFADD', d.mkey, unpack(d.adds))
    else
      call('PFMERGE', d.mkey, unpack(buckets(key, d.lo, d.cur)))
      call('PEXPIRE', d.mkey, int(max(ceil(((d.lo + 1) * d.w + d.window - now) / 1000), 1)))
    end
  end
  if d.scratch then
    call('DEL', d.tmp)
  end
end
return out
