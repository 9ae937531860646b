-- Add one entry to a semantic-index scope, drop expired entries, evict the oldest over the cap.
-- KEYS: 1 vectors hash, 2 payloads hash, 3 expiry zset, 4 sequence zset, 5 sequence counter
-- ARGV: 1 id, 2 float32 bytes, 3 payload, 4 expiry ms, 5 now ms, 6 max entries, 7 key ttl ms
local seq = redis.call('INCR', KEYS[5])
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
redis.call('ZADD', KEYS[3], ARGV[4], ARGV[1])
redis.call('ZADD', KEYS[4], seq, ARGV[1])

local function drop(id)
  redis.call('HDEL', KEYS[1], id)
  redis.call('HDEL', KEYS[2], id)
  redis.call('ZREM', KEYS[3], id)
  redis.call('ZREM', KEYS[4], id)
end

local expired = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', ARGV[5], 'LIMIT', 0, 1000)
for _, id in ipairs(expired) do drop(id) end

local excess = redis.call('ZCARD', KEYS[4]) - tonumber(ARGV[6])
if excess > 0 then
  local oldest = redis.call('ZRANGE', KEYS[4], 0, excess - 1)
  for _, id in ipairs(oldest) do drop(id) end
end

local ttl = tonumber(ARGV[7])
for i = 1, 5 do
  if redis.call('PTTL', KEYS[i]) < ttl then redis.call('PEXPIRE', KEYS[i], ttl) end
end
return seq
