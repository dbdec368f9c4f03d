-- Persist a refreshed token, fenced by the record's version: a token stored
-- meanwhile (put) wins. The lease is not part of the fence: a holder whose
-- lease ran out still holds the only copy of a rotated refresh token, and
-- storing it is still the best outcome (a refresher that took the lease
-- over and presented the old token meets invalid_grant, finds this newer
-- token and verifies it before keeping the user active).
-- The lease is kept when ARGV[9] is '1': the caller waits for replicas to
-- acknowledge the write and releases the lease only then, so that nobody
-- presents the new token before a failover can no longer lose it.
-- KEYS[1] record; ARGV: lease id, version, kid, ciphertext, access expiry, refresh expiry, now, reason, hold.
-- Returns {1, new version, from state if it changed else ''} or {0} when fenced out.
if redis.call('HGET', KEYS[1], 'v') ~= ARGV[2] then
  return {0}
end
redis.call('HSET', KEYS[1], 'k', ARGV[3], 'c', ARGV[4], 'ae', ARGV[5], 're', ARGV[6], 'lr', ARGV[7], 'f', 0)
redis.call('HDEL', KEYS[1], 'le', 'xl')
if ARGV[9] ~= '1' and redis.call('HGET', KEYS[1], 'lo') == ARGV[1] then
  redis.call('HDEL', KEYS[1], 'lo', 'lu')
end
local v = redis.call('HINCRBY', KEYS[1], 'v', 1)
if redis.call('HGET', KEYS[1], 's') == 'degraded' then
  redis.call('HSET', KEYS[1], 's', 'active', 'sr', ARGV[8], 'sa', ARGV[7])
  return {1, v, 'degraded'}
end
return {1, v, ''}
