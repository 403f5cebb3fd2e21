-- Move a dead letter from one state to another, only when it is in the first.
-- KEYS[1] the letter's hash, KEYS[2] letters in the state it leaves (zset), KEYS[3] letters in the
-- state it enters, KEYS[4] its group's parked letters, KEYS[5] parked counts by class (hash), KEYS[6]
-- parked letters of its class, KEYS[7] parked letters waiting behind a head.
-- ARGV[1] from, ARGV[2] to, ARGV[3] now (ms), ARGV[4] by whom, ARGV[5] a note, ARGV[6] its class.
-- Returns the state it was in.
local state = redis.call('HGET', KEYS[1], 'state')
if not state then
  return ''
end
if state ~= ARGV[1] then
  return state
end
local id = redis.call('HGET', KEYS[1], 'id')
local score = redis.call('ZSCORE', KEYS[2], id) or ARGV[3]
redis.call('HSET', KEYS[1], 'state', ARGV[2], 'state_at', ARGV[3], 'state_by', ARGV[4], 'note', ARGV[5])
redis.call('ZREM', KEYS[2], id)
redis.call('ZADD', KEYS[3], score, id)
if ARGV[1] == 'parked' then
  redis.call('ZREM', KEYS[4], id)
  redis.call('HINCRBY', KEYS[5], ARGV[6], -1)
  redis.call('ZREM', KEYS[6], id)
  redis.call('ZREM', KEYS[7], id)
end
return state
