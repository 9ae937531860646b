-- Block a rate-limit scope for ARGV[1] ms after a 429, unless it is already blocked for longer:
-- the longest retry-after asked wins.
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[1]) then
    redis.call('SET', KEYS[1], '429', 'PX', ARGV[1])
end
return 0
