-- Apply one projected event to its document, atomically, only when the event is newer than the document.
-- KEYS[1] document hash, KEYS[2] offsets hash, KEYS[3..] index sorted sets.
-- ARGV: version, event time (ms), offsets field (<topic>:<partition>), offset, then
--   n_set, n_set pairs (field, value), n_add, n_add pairs (field, delta), member, one score per index.
-- The offset is recorded even when the event is old (a replay moves the recorded position on).
local doc = KEYS[1]
-- Refuse before writing anything: a script error half-way would leave a change half applied.
local function expect(key, kind)
  local t = redis.call('TYPE', key)['ok']
  if t ~= 'none' and t ~= kind then
    return 'WRONGTYPE ' .. key .. ' holds a ' .. t .. ', not a ' .. kind
  end
end
local wrong = expect(doc, 'hash') or expect(KEYS[2], 'hash')
for k = 3, #KEYS do
  wrong = wrong or expect(KEYS[k], 'zset')
end
if wrong then
  return redis.error_reply(wrong)
end
local seen = tonumber(redis.call('HGET', KEYS[2], ARGV[3]) or '-1')
if tonumber(ARGV[4]) > seen then
  redis.call('HSET', KEYS[2], ARGV[3], ARGV[4])
end
local current = tonumber(redis.call('HGET', doc, '_version') or '0')
if tonumber(ARGV[1]) <= current then
  return 0
end
local i = 6
for _ = 1, tonumber(ARGV[5]) do
  redis.call('HSET', doc, ARGV[i], ARGV[i + 1])
  i = i + 2
end
local n_add = tonumber(ARGV[i])
i = i + 1
for _ = 1, n_add do
  local r = redis.pcall('HINCRBY', doc, ARGV[i], ARGV[i + 1])
  if type(r) == 'table' and r.err then
    if string.find(r.err, 'overflow') then
      -- Saturate, as the reference Document does.
      if string.sub(ARGV[i + 1], 1, 1) == '-' then
        redis.call('HSET', doc, ARGV[i], '-9223372036854775808')
      else
        redis.call('HSET', doc, ARGV[i], '9223372036854775807')
      end
    else
      -- Not a number yet: counts from 0.
      redis.call('HSET', doc, ARGV[i], ARGV[i + 1])
    end
  end
  i = i + 2
end
local member = ARGV[i]
i = i + 1
for k = 3, #KEYS do
  redis.call('ZADD', KEYS[k], ARGV[i], member)
  i = i + 1
end
redis.call('HSET', doc, '_version', ARGV[1], '_event_time', ARGV[2])
return 1
