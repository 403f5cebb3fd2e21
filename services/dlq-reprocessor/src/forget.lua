-- Forget a letter that is done (replayed or discarded): its hash and its place in every set.
-- KEYS[1] the letter's hash, KEYS[2] every letter, KEYS[3] its group's, KEYS[4] its class's, KEYS[5] its
-- source topic's, KEYS[6] its key's, KEYS[7] its state's, KEYS[8] the letters behind its head, KEYS[9]
-- the letters of its source position. ARGV[1] its id. Returns 0 when it is parked (kept).
local state = redis.call('HGET', KEYS[1], 'state')
if state == 'parked' then
  return 0
end
for k = 2, 8 do
  redis.call('ZREM', KEYS[k], ARGV[1])
end
redis.call('SREM', KEYS[9], ARGV[1])
redis.call('DEL', KEYS[1])
return 1
