-- Index one dead letter, once: a second call for the same letter changes nothing.
-- KEYS[1] the letter's hash, KEYS[2] every letter (zset), KEYS[3] its group's, KEYS[4] its class's,
-- KEYS[5] its source topic's, KEYS[6] its key's (zset), KEYS[7] parked letters, KEYS[8] its group's parked
-- letters, KEYS[9] the set of groups, KEYS[10] parked counts by class (hash), KEYS[11] the letters behind
-- its head (zset by source offset), KEYS[12] the letters of its source position (set), KEYS[13] parked
-- letters of its class, KEYS[14] parked letters waiting behind a head, KEYS[15] discarded letters.
-- A second dead letter of the same record (its group and source position: read again after a restart)
-- is indexed as discarded, pointing at the first. Returns 1, or 2 for such a second one.
-- ARGV[1] its time (ms, the score), ARGV[2] its id, ARGV[3] its group, ARGV[4] its class,
-- ARGV[5] 1 when it has a key, ARGV[6] its source offset, ARGV[7] 1 when it waits behind a head,
-- ARGV[8] 1 when it has a source, then field/value pairs of the hash.
if redis.call('EXISTS', KEYS[1]) == 1 then
  return 0
end
local score, id = ARGV[1], ARGV[2]
local i = 9
while i < #ARGV do
  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
  i = i + 2
end
if ARGV[8] == '1' then
  local first = redis.call('SRANDMEMBER', KEYS[12])
  if first then
    redis.call('HSET', KEYS[1], 'state', 'discarded', 'state_at', score, 'state_by', 'index',
      'note', 'a second dead letter of the same record (read again after a restart): see ' .. first)
    for k = 2, 6 do
      if k ~= 6 or ARGV[5] == '1' then
        redis.call('ZADD', KEYS[k], score, id)
      end
    end
    redis.call('ZADD', KEYS[15], score, id)
    redis.call('SADD', KEYS[12], id)
    return 2
  end
end
redis.call('HSET', KEYS[1], 'state', 'parked', 'state_at', score)
for k = 2, 8 do
  if k ~= 6 or ARGV[5] == '1' then
    redis.call('ZADD', KEYS[k], score, id)
  end
end
redis.call('SADD', KEYS[9], ARGV[3])
redis.call('HINCRBY', KEYS[10], ARGV[4], 1)
redis.call('ZADD', KEYS[13], score, id)
if ARGV[7] == '1' then
  redis.call('ZADD', KEYS[11], ARGV[6], id)
  redis.call('ZADD', KEYS[14], score, id)
end
if ARGV[8] == '1' then
  redis.call('SADD', KEYS[12], id)
end
return 1
