-- Token buckets shared by every scheduler and worker process, refilled from Redis's own clock.
-- KEYS: bucket hashes {level, at}. ARGV[1]: op, one of
--   take  : level = level - amount (a negative amount refunds)
--   clamp : level = min(level, amount)  (the provider says only this much remains)
--   admit : take every amount only if every bucket has it (or is full), else take nothing;
--           returns {1} or {0, seconds until the short bucket would have it}
-- then, per key, three values: capacity, refill rate per second, amount.
-- A bucket seen for the first time starts full. Returns every level after the op, as strings.
local op = ARGV[1]
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
if op == 'admit' then
  local wait, levels = 0, {}
  for i, key in ipairs(KEYS) do
    local base = 2 + (i - 1) * 3
    local capacity, rate = tonumber(ARGV[base]), tonumber(ARGV[base + 1])
    local amount = math.min(tonumber(ARGV[base + 2]), capacity)
    local state = redis.call('HMGET', key, 'level', 'at')
    local level = tonumber(state[1]) or capacity
    local at = tonumber(state[2]) or now
    if now > at then level = math.min(capacity, level + (now - at) * rate) end
    levels[i] = level
    if level < amount then wait = math.max(wait, (amount - level) / rate) end
  end
  if wait > 0 then return {0, tostring(wait)} end
  for i, key in ipairs(KEYS) do
    local base = 2 + (i - 1) * 3
    local capacity, rate = tonumber(ARGV[base]), tonumber(ARGV[base + 1])
    local level = levels[i] - tonumber(ARGV[base + 2])
    redis.call('HSET', key, 'level', tostring(level), 'at', tostring(now))
    redis.call('EXPIRE', key, math.ceil((capacity - level) / rate) + 60)
  end
  return {1}
end
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
