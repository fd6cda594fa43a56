-- portcullis: give back charges (src/limit/redis/mod.rs): lease releases when a request ends,
-- and best-effort refunds on Redis Cluster when another slot blocked the request.
-- KEYS[i] with two values per entry in ARGV: kind, value.
--   'c': ZREM the lease member `value` from the concurrency ZSET KEYS[i].
--   'r': move the GCRA TAT at KEYS[i] back by `value` µs (never below now; gone if fresh).
-- Reply: the number of entries that changed something.

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local changed = 0
for i = 1, #KEYS do
  local kind, v = ARGV[2 * i - 1], ARGV[2 * i]
  if kind == 'c' then
    changed = changed + redis.call('ZREM', KEYS[i], v)
  else
    local tat = tonumber(redis.call('GET', KEYS[i]))
    if tat then
      local nt = tat - tonumber(v)
      if nt <= now then
        redis.call('DEL', KEYS[i])
      else
        redis.call('SET', KEYS[i], string.format('%.0f', nt), 'PX',
          string.format('%.0f', math.max(math.ceil((nt - now) / 1000), 1)))
      end
      changed = changed + 1
    end
  end
end
return changed
