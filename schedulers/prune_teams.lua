-- Drop teams whose queues are all empty from the backlogged set, atomically, so a submission
-- racing the check (RPUSH then SADD) can never leave a team with work outside the set.
-- KEYS[1] = backlogged-teams set; ARGV = queue-key prefix, then team ids; queues are
-- <prefix><team>:high|medium|low.
local prefix = ARGV[1]
local removed = 0
for i = 2, #ARGV do
  local team = ARGV[i]
  local n = redis.call('LLEN', prefix .. team .. ':high')
          + redis.call('LLEN', prefix .. team .. ':medium')
          + redis.call('LLEN', prefix .. team .. ':low')
  if n == 0 then
    removed = removed + redis.call('SREM', KEYS[1], team)
  end
end
return removed
