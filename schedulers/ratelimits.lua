-- Token buckets shared by every scheduler and worker process, refilled from Redis's own clock.
-- KEYS: bucket hashes {level, at}. ARGV[1]: op, one of
--   take  : level = level - amount (a negative amount refunds)
--   clamp : level = min(level, amount)  (the provider says only this much remains)
-- then, per key, three values: capacity, refill rate per second, amount.
-- A bucket seen for the first time starts full. Returns every level after the op, as strings.
local op = ARGV[1]
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local out = {}
for i, key in ipairs(KEYS) do
  local base = 2 + (i - 1) * 3
  local capacity = tonumber(ARGV[base])
  local rate = tonumber(ARGV[base + 1])
  local amount = tonumber(ARGV[base + 2])
  local state = redis.call('HMGET', key, 'level', 'at')
  local level = tonumber(state[1]) or capacity
  local at = tonumber(state[2]) or now
  if now > at then
    level = math.min(capacity, level + (now - at) * rate)
  end
  if op == 'take' then
    level = math.min(capacity, level - amount)
  elseif op == 'clamp' then
    level = math.min(level, amount)
  end
  redis.call('HSET', key, 'level', tostring(level), 'at', tostring(now))
  -- Once it would be full again the bucket carries no information: let it go.
  local full_in = (capacity - level) / rate
  redis.call('EXPIRE', key, math.ceil(full_in) + 60)
  out[i] = tostring(level)
end
return out
