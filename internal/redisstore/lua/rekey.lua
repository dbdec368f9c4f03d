-- Replace a record's ciphertext (key rotation) if its version is unchanged.
-- The version is not bumped: the token itself did not change.
-- KEYS[1] record; ARGV: version, kid, ciphertext.
if redis.call('HGET', KEYS[1], 'v') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'k', ARGV[2], 'c', ARGV[3])
return 1
