-- Everything the operators' view of fairness shows, in one round trip and one snapshot.
-- A pipeline cannot do this: it must name every key before it runs, and the teams that have a
-- counter (or received service) but are gone from broker.toml are only known once read.
-- KEYS[1] = counters hash, KEYS[2] = service-received hash.
-- ARGV[1] = queue-key prefix, ARGV[2] = parked-list prefix, ARGV[3..] = the config's team ids;
-- queues are <prefix><team>:high|medium|low, parked lists <parked prefix><team>.
-- Returns {counters (HGETALL), service (HGETALL), {team, high, medium, low, parked, team, ...}}.
local prefix, parked = ARGV[1], ARGV[2]
local counters = redis.call('HGETALL', KEYS[1])
local service = redis.call('HGETALL', KEYS[2])
local seen, backlog = {}, {}
local function add(team)
  if not seen[team] then
    seen[team] = true
    backlog[#backlog + 1] = team
    backlog[#backlog + 1] = redis.call('LLEN', prefix .. team .. ':high')
    backlog[#backlog + 1] = redis.call('LLEN', prefix .. team .. ':medium')
    backlog[#backlog + 1] = redis.call('LLEN', prefix .. team .. ':low')
    backlog[#backlog + 1] = redis.call('LLEN', parked .. team)
  end
end
for i = 3, #ARGV do add(ARGV[i]) end
for i = 1, #counters, 2 do add(counters[i]) end
for i = 1, #service, 2 do add(service[i]) end
return {counters, service, backlog}
