-- Flag a user for re-authorization after a permanent refresh failure.
-- KEYS[1] record; ARGV: lease id, version, reason, now, last error.
-- Returns {status, state}: 1 flagged (state = the state before), 2 stale
-- (a newer token was stored, or the lease is no longer the caller's:
-- verify the record as it is now), 3 already flagged.
local v = redis.call('HGET', KEYS[1], 'v')
local s = redis.call('HGET', KEYS[1], 's')
if not v then return {2, ''} end
if v ~= ARGV[2] then return {2, s} end
if s == 'reauth_required' then return {3, s} end
if redis.call('HGET', KEYS[1], 'lo') ~= ARGV[1] then return {2, s} end
redis.call('HSET', KEYS[1], 's', 'reauth_required', 'sr', ARGV[3], 'sa', ARGV[4], 'le', ARGV[5])
redis.call('HINCRBY', KEYS[1], 'f', 1)
redis.call('HDEL', KEYS[1], 'lo', 'lu', 'xl')
return {1, s}
