-- portcullis: check, then charge, every op of one request in one atomic step (all or nothing).
-- The semantics are LocalStore's (src/limit/local/mod.rs, `check`); the encoding is
-- src/limit/redis/script.rs. Time is this server's clock (TIME), in microseconds.
--
-- KEYS[i] is op i's key; ARGV holds 5 values per op: kind, enforce ('1' or '0'), p1, p2, p3.
--   'r' rate:        p1 emission (ns), p2 burst (>= 1), p3 cost. KEYS[i]: the GCRA TAT (µs).
--   'c' concurrency: p1 max, p2 lease member. KEYS[i]: ZSET of lease members scored by expiry.
--   'd' distinct:    p1 max, p2 window (µs), p3 member. KEYS[i] is a prefix: HyperLogLog
--                    buckets KEYS[i]..':'..epoch, the merge of the live ones KEYS[i]..':m:'..lo
--                    (lo: the oldest live epoch), a scratch copy KEYS[i]..':t' (deleted here).
-- ARGV[#ARGV] is the lease TTL in µs.
-- Reply: 3 integers per op: 0, remaining, reset (ns)  or  1, current, retry_after (ns).

local floor, ceil, max, min = math.floor, math.ceil, math.max, math.min
-- Numbers above 1e14 print as 1.7e+15 through tostring; every number handed to Redis goes
-- through here so it is an exact integer string.
local function int(x)
  return string.format('%.0f', x)
end

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local n = #KEYS
local ttl = tonumber(ARGV[#ARGV])
local out, plan = {}, {}
-- Charges planned by earlier ops of this request, per key (ops repeating a key see them).
local tat_p, conc_p, dist_p = {}, {}, {}
local blocked = false

-- The window arithmetic of local/distinct.rs `Geometry`, in µs.
local function geometry(window)
  local w = max(ceil(window / 6), 1)
  return w, floor(now / w), floor(max(now - window, 0) / w)
end

-- The bucket keys of epochs lo..cur (at most 7).
local function buckets(key, lo, cur)
  local ks = {}
  for e = lo, cur do
    ks[#ks + 1] = key .. ':' .. int(e)
  end
  return ks
end

for i = 1, n do
  local a = (i - 1) * 5
  local kind, enforce = ARGV[a + 1], ARGV[a + 2] == '1'
  local key = KEYS[i]
  local code, x, y
  if kind == 'r' then
    -- GCRA (local/gcra.rs): admit iff max(TAT, now) + cost*T - now <= burst*T.
    local T, burst, cost = tonumber(ARGV[a + 3]), tonumber(ARGV[a + 4]), tonumber(ARGV[a + 5])
    local tat = tat_p[key] or tonumber(redis.call('GET', key)) or now
    local backlog = (max(tat, now) - now) * 1000
    local limit = burst * T
    if cost == 0 then
      code, x, y = 0, floor(max(limit - backlog, 0) / T), backlog
    else
      local after = backlog + cost * T
      if after <= limit then
        code, x, y = 0, floor((limit - after) / T), after
        -- Rounded down to whole µs: at most 1 µs per charge in the client's favour, never a
        -- denial that the exact (ns) arithmetic would not give.
        local nt = now + floor(after / 1000)
        tat_p[key] = nt
        plan[i] = nt
      else
        code, x = 1, min(ceil(backlog / T), burst)
        if cost * T <= limit then y = after - limit else y = backlog end
      end
    end
  elseif kind == 'c' then
    local m = tonumber(ARGV[a + 3])
    local held = conc_p[key] or redis.call('ZCOUNT', key, '(' .. int(now), '+inf')
    conc_p[key] = held + 1
    -- Taken whenever the request goes ahead, denied or not (a shadow op's request is in flight).
    plan[i] = ARGV[a + 4]
    if held < m then
      code, x, y = 0, m - held - 1, 0
    else
      code, x, y = 1, held, 1000000000
    end
  else
    local m, window, member = tonumber(ARGV[a + 3]), tonumber(ARGV[a + 4]), ARGV[a + 5]
    local w, cur, lo = geometry(window)
    -- Count over the live buckets; "present" = adding the member to their merge changes no
    -- register. The merge is kept (key..':m:'..lo, see the charge) while the oldest live
    -- bucket stays the same; without it, the live buckets are merged here into a scratch key.
    local mkey = key .. ':m:' .. int(lo)
    local tmp = key .. ':t'
    local count, present = 0, false
    if redis.call('EXISTS', mkey) == 1 then
      count = redis.call('PFCOUNT', mkey)
      redis.call('COPY', mkey, tmp, 'REPLACE')
      present = redis.call('PFADD', tmp, member) == 0
      redis.call('DEL', tmp)
    else
      local ks = buckets(key, lo, cur)
      if redis.call('EXISTS', unpack(ks)) > 0 then
        redis.call('PFMERGE', tmp, unpack(ks))
        count = redis.call('PFCOUNT', tmp)
        present = redis.call('PFADD', tmp, member) == 0
        redis.call('DEL', tmp)
      end
    end
    local p = dist_p[key]
    if p == nil then
      p = { n = 0, seen = {} }
      dist_p[key] = p
    end
    count = count + p.n
    present = present or p.seen[member] == true
    plan[i] = member
    if not present then
      p.n = p.n + 1
      p.seen[member] = true
    end
    local reset = ((cur + 1) * w + window - now) * 1000
    local after = count
    if not present then after = count + 1 end
    local deny = (not enforce and after > m) or (enforce and not present and count >= m)
    if deny then
      -- Retry when the oldest live bucket leaves the window.
      local retry = reset
      for e = lo, cur do
        if redis.call('EXISTS', key .. ':' .. int(e)) == 1 then
          retry = ((e + 1) * w + window - now) * 1000
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
  return out
end

for i = 1, n do
  local p = plan[i]
  if p then
    local a = (i - 1) * 5
    local kind, key = ARGV[a + 1], KEYS[i]
    if kind == 'r' then
      -- The key vanishes when it would be fresh again (TAT <= now).
      redis.call('SET', key, int(p), 'PX', int(max(ceil((p - now) / 1000), 1)))
    elseif kind == 'c' then
      redis.call('ZREMRANGEBYSCORE', key, '-inf', int(now))
      redis.call('ZADD', key, int(now + ttl), p)
      redis.call('PEXPIRE', key, int(max(ceil(ttl / 1000), 1)))
    else
      local window = tonumber(ARGV[a + 4])
      local w, cur, lo = geometry(window)
      local bucket = key .. ':' .. int(cur)
      redis.call('PFADD', bucket, p)
      -- The bucket vanishes when its epoch leaves the window.
      redis.call('PEXPIRE', bucket, int(max(ceil(((cur + 1) * w + window - now) / 1000), 1)))
      -- Keep the merge of the live buckets in step; it vanishes when bucket `lo` leaves the
      -- window, which is when a merge for lo + 1 takes over.
      local mkey = key .. ':m:' .. int(lo)
      if redis.call('EXISTS', mkey) == 1 then
        redis.call('PFADD', mkey, p)
      else
        redis.call('PFMERGE', mkey, unpack(buckets(key, lo, cur)))
        redis.call('PEXPIRE', mkey, int(max(ceil(((lo + 1) * w + window - now) / 1000), 1)))
      end
    end
  end
end
return out
