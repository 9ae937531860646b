-- Budget reservations, settlements and releases: each one atomic, so concurrent workers and the
-- scheduler can never see (or make) spent + reserved go past a limit between a check and a write.
-- Budget hashes hold {spent, reserved} in integer micro-dollars. A reservation record (in the
-- hash KEYS[1], by request id) is "<amount> <budget key> <budget key> ...".
--
-- reserve: KEYS = reservations, reservation times, budget keys...
--          ARGV = 'reserve', now, then per request: id, amount, n, n × (key index, limit)
--          Each request is all or nothing across its budgets. Returns 1/0 per request.
-- settle:  KEYS = reservations, reservation times, settled flag, budget keys (used if the
--          reservation is already gone)
--          ARGV = 'settle', id, actual, flag ttl. Returns 0 if this attempt already settled.
-- release: KEYS = reservations, reservation times. ARGV = 'release', id.
-- Each settlement bumps a key's 'version', so a reconciliation with the ledger can tell whether
-- anything settled while it was summing.
local op = ARGV[1]

local function undo(record)
  local amount = nil
  for word in string.gmatch(record, '%S+') do
    if amount == nil then
      amount = tonumber(word)
    else
      redis.call('HINCRBY', word, 'reserved', -amount)
    end
  end
end

local function keys_of(record)
  local out, first = {}, true
  for word in string.gmatch(record, '%S+') do
    if first then first = false else out[#out + 1] = word end
  end
  return out
end

if op == 'reserve' then
  local now = ARGV[2]
  local i, out = 3, {}
  while i <= #ARGV do
    local id, amount, n = ARGV[i], tonumber(ARGV[i + 1]), tonumber(ARGV[i + 2])
    local ok = true
    for j = 0, n - 1 do
      local key = KEYS[tonumber(ARGV[i + 3 + 2 * j])]
      local limit = tonumber(ARGV[i + 4 + 2 * j])
      local state = redis.call('HMGET', key, 'spent', 'reserved')
      local used = (tonumber(state[1]) or 0) + (tonumber(state[2]) or 0)
      if used + amount > limit then ok = false end
    end
    if ok and redis.call('HEXISTS', KEYS[1], id) == 0 then
      local record = tostring(amount)
      for j = 0, n - 1 do
        local key = KEYS[tonumber(ARGV[i + 3 + 2 * j])]
        redis.call('HINCRBY', key, 'reserved', amount)
        record = record .. ' ' .. key
      end
      redis.call('HSET', KEYS[1], id, record)
      redis.call('ZADD', KEYS[2], now, id)
      out[#out + 1] = 1
    else
      out[#out + 1] = 0
    end
    i = i + 3 + 2 * n
  end
  return out
elseif op == 'settle' then
  local id, actual = ARGV[2], tonumber(ARGV[3])
  if not redis.call('SET', KEYS[3], '1', 'NX', 'EX', ARGV[4]) then
    return 0
  end
  local record = redis.call('HGET', KEYS[1], id)
  local targets
  if record then
    undo(record)
    targets = keys_of(record)
    redis.call('HDEL', KEYS[1], id)
    redis.call('ZREM', KEYS[2], id)
  else
    targets = {}
    for k = 4, #KEYS do targets[#targets + 1] = KEYS[k] end
  end
  for _, key in ipairs(targets) do
    redis.call('HINCRBY', key, 'spent', actual)
    redis.call('HINCRBY', key, 'version', 1)
  end
  return 1
elseif op == 'release' then
  local id = ARGV[2]
  local record = redis.call('HGET', KEYS[1], id)
  if not record then return 0 end
  undo(record)
  redis.call('HDEL', KEYS[1], id)
  redis.call('ZREM', KEYS[2], id)
  return 1
elseif op == 'reconcile' then
  -- KEYS = budget key; ARGV = 'reconcile', version read before the ledger was summed, sum.
  -- Only while nothing is reserved and nothing settled since: then spent must equal the ledger.
  local state = redis.call('HMGET', KEYS[1], 'version', 'reserved')
  if (state[1] or '0') == ARGV[2] and (tonumber(state[2]) or 0) == 0 then
    redis.call('HSET', KEYS[1], 'spent', ARGV[3], 'loaded', '1')
    return 1
  end
  return 0
elseif op == 'load' then
  -- KEYS = budget key; ARGV = 'load', spent from the ledger. Once per key (after Redis lost it).
  if redis.call('HSETNX', KEYS[1], 'loaded', '1') == 1 then
    redis.call('HINCRBY', KEYS[1], 'spent', ARGV[2])
    return 1
  end
  return 0
end
return redis.error_reply('unknown op ' .. tostring(op))
