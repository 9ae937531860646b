-- Circuit breakers shared by every scheduler and worker process, on Redis's own clock.
-- KEYS[1]: the transitions list (JSON, newest first, capped at 1000); KEYS[2..]: breaker hashes.
-- ARGV[1]: op; ARGV[2..8]: window_s, min_calls, failure_rate, consecutive_failures, open_s,
-- probes, unavailable_s; then per breaker key: scope, probe timeout in seconds (a half-open
-- scope with every permit out and no verdict for this long hands them out afresh) and, for
-- record, the outcome (success | failure | unavailable), for take, the permits taken.
-- A hash: state (closed | open | half_open; missing: closed), opened_at, retry_at (open ends),
-- cause (what opened it: failures | unavailable), run (failures in a row), permits (half-open
-- calls left), ok (half-open successes), probe_at (last permit or verdict), n (transitions),
-- and the window: c<i>, f<i>, t<i> = calls, failures and the second of bucket i = second % window.
-- ops and replies (every reply ends with the JSON transitions this call made):
--   allowances : {{a per scope}, made}  a = -1 closed, 0 refusing, k > 0 half-open permits left
--   admit      : {refusing scope or '', made}; only an open scope refuses (a half-open scope's
--                permits are taken by the scheduler when it dispatches the probes)
--   take       : {made}; the scheduler dispatched this many probes to each half-open scope
--   record     : {made}
--   states     : {{{state, calls, failures, run, opened_at, retry_at, n} per scope}, made}
local op = ARGV[1]
local window = tonumber(ARGV[2])
local min_calls = tonumber(ARGV[3])
local failure_rate = tonumber(ARGV[4])
local in_a_row = tonumber(ARGV[5])
local open_s = tonumber(ARGV[6])
local probes = tonumber(ARGV[7])
local unavailable_s = tonumber(ARGV[8])
local per = 2
if op == 'record' or op == 'take' then per = 3 end
local t = redis.call('TIME')
local second = tonumber(t[1])
local now = second + tonumber(t[2]) / 1000000
local made = {}

local function num(v, default)
  return tonumber(v) or default
end

local function load(key)
  local flat = redis.call('HGETALL', key)
  local h = {}
  for i = 1, #flat, 2 do h[flat[i]] = flat[i + 1] end
  return h
end

local function touch(key, h, timeout)
  -- Idle long enough to outlive a window, an open period and a lost probe; never before an
  -- open period ends.
  local left = 0
  if h.state == 'open' then left = math.max(0, num(h.retry_at, now) - now) end
  local idle = 2 * (window + open_s) + timeout
  redis.call('PEXPIRE', key, math.ceil((left + idle) * 1000))
end

local function transition(key, h, scope, to, reason)
  local entry = cjson.encode({
    scope = scope, from = h.state or 'closed', to = to,
    at = math.floor(now * 1000) / 1000, reason = reason,
  })
  redis.call('LPUSH', KEYS[1], entry)
  redis.call('LTRIM', KEYS[1], 0, 999)
  h.n = redis.call('HINCRBY', key, 'n', 1)
  h.state = to
  redis.call('HSET', key, 'state', to)
  made[#made + 1] = entry
end

local function open(key, h, scope, seconds, cause, reason)
  transition(key, h, scope, 'open', reason)
  h.opened_at, h.retry_at, h.cause = now, now + seconds, cause
  h.permits, h.ok, h.probe_at = nil, nil, nil
  redis.call('HSET', key, 'opened_at', tostring(now), 'retry_at', tostring(h.retry_at),
    'cause', cause)
  redis.call('HDEL', key, 'permits', 'ok', 'probe_at')
end

-- Moves that only take time: open → half-open, and renewing the permits of lost probes.
local function refresh(key, h, scope, timeout)
  if h.state == 'open' and now >= num(h.retry_at, 0) then
    local reason = 'open_s passed'
    if h.cause == 'unavailable' then reason = 'unavailable_s passed' end
    transition(key, h, scope, 'half_open', reason)
    h.permits, h.ok, h.probe_at, h.retry_at = probes, 0, now, nil
    redis.call('HSET', key, 'permits', probes, 'ok', 0, 'probe_at', tostring(now))
    redis.call('HDEL', key, 'retry_at')
    touch(key, h, timeout)
  elseif h.state == 'half_open' and num(h.permits, 0) <= 0
      and now - num(h.probe_at, now) >= timeout then
    transition(key, h, scope, 'half_open',
      string.format('no probe verdict in %.1f s: permits renewed', timeout))
    h.permits, h.probe_at = math.max(1, probes - num(h.ok, 0)), now
    redis.call('HSET', key, 'permits', h.permits, 'probe_at', tostring(now))
    touch(key, h, timeout)
  end
end

local function allowance(h)
  if h.state == 'open' then return 0 end
  if h.state == 'half_open' then return num(h.permits, 0) end
  return -1
end

local function counts(h)
  local calls, failures = 0, 0
  for i = 0, window - 1 do
    if num(h['t' .. i], -1) > second - window then
      calls = calls + num(h['c' .. i], 0)
      failures = failures + num(h['f' .. i], 0)
    end
  end
  return calls, failures
end

local function record(key, h, scope, timeout, outcome)
  local failed = outcome ~= 'success'
  local i = second % window
  local c, f = 0, 0
  if num(h['t' .. i], -1) == second then c, f = num(h['c' .. i], 0), num(h['f' .. i], 0) end
  c = c + 1
  if failed then f = f + 1 end
  h['c' .. i], h['f' .. i], h['t' .. i] = c, f, second
  local run = 0
  if failed then run = num(h.run, 0) + 1 end
  redis.call('HSET', key, 'c' .. i, c, 'f' .. i, f, 't' .. i, second, 'run', run)
  local state = h.state or 'closed'
  if outcome == 'unavailable' then
    if state ~= 'open' then
      open(key, h, scope, unavailable_s, 'unavailable', 'unavailable: auth or quota')
    elseif num(h.retry_at, 0) < now + unavailable_s then
      h.retry_at, h.cause = now + unavailable_s, 'unavailable'
      redis.call('HSET', key, 'retry_at', tostring(h.retry_at), 'cause', 'unavailable')
    end
  elseif state == 'half_open' then
    if failed then
      open(key, h, scope, open_s, 'failures', 'probe failed')
    elseif num(h.ok, 0) + 1 >= probes then
      local n = redis.call('HGET', key, 'n')
      redis.call('DEL', key)
      h = {state = 'half_open'}
      redis.call('HSET', key, 'n', n or 0)
      transition(key, h, scope, 'closed', string.format('%d probes succeeded', probes))
    else
      h.ok, h.probe_at = num(h.ok, 0) + 1, now
      redis.call('HSET', key, 'ok', h.ok, 'probe_at', tostring(now))
    end
  elseif state == 'closed' then
    local calls, failures = counts(h)
    if failed and run >= in_a_row then
      open(key, h, scope, open_s, 'failures', string.format('%d failures in a row', run))
    elseif calls >= min_calls and failures / calls >= failure_rate then
      open(key, h, scope, open_s, 'failures', string.format(
        'failure rate %.2f over %d s (%d calls)', failures / calls, window, calls))
    end
  end
  touch(key, h, timeout)
end

local scopes = {}
for k = 2, #KEYS do
  local base = 9 + (k - 2) * per
  local key = KEYS[k]
  local h = load(key)
  local scope, timeout = ARGV[base], tonumber(ARGV[base + 1])
  if next(h) ~= nil then refresh(key, h, scope, timeout) end
  scopes[k - 1] = {key = key, h = h, scope = scope, timeout = timeout, arg = ARGV[base + 2]}
end

if op == 'allowances' then
  local out = {}
  for j, s in ipairs(scopes) do out[j] = allowance(s.h) end
  return {out, made}
elseif op == 'admit' then
  for _, s in ipairs(scopes) do
    if s.h.state == 'open' then return {s.scope, made} end
  end
  return {'', made}
elseif op == 'take' then
  for _, s in ipairs(scopes) do
    if s.h.state == 'half_open' then
      local left = math.max(0, num(s.h.permits, 0) - tonumber(s.arg))
      s.h.permits, s.h.probe_at = left, now
      redis.call('HSET', s.key, 'permits', left, 'probe_at', tostring(now))
      touch(s.key, s.h, s.timeout)
    end
  end
  return {made}
elseif op == 'record' then
  for _, s in ipairs(scopes) do record(s.key, s.h, s.scope, s.timeout, s.arg) end
  return {made}
elseif op == 'states' then
  local out = {}
  for j, s in ipairs(scopes) do
    local calls, failures = counts(s.h)
    out[j] = {
      s.h.state or 'closed', calls, failures, num(s.h.run, 0),
      tostring(s.h.opened_at or ''), tostring(s.h.retry_at or ''), num(s.h.n, 0),
    }
  end
  return {out, made}
end
return redis.error_reply('unknown op ' .. tostring(op))
