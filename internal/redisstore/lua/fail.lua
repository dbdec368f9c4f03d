-- Record a transient refresh failure and release the lease.
-- KEYS[1] record; ARGV: lease id, version, last error, degrade after, now, reason.
-- Returns {1, failures, from state if it changed else ''} or {0} when fenced out.
if redis.call('HGET', KEYS[1], 'v') ~= ARGV[2] or redis.call('HGET', KEYS[1], 'lo') ~= ARGV[1] then
  return {0}
end
local f = redis.call('HINCRBY', KEYS[1], 'f', 1)
redis.call('HSET', KEYS[1], 'le', ARGV[3])
redis.call('HDEL', KEYS[1], 'lo', 'lu', 'xl')
if redis.call('HGET', KEYS[1], 's') == 'active' and f >= tonumber(ARGV[4]) then
  redis.call('HSET', KEYS[1], 's', 'degraded', 'sr', ARGV[6], 'sa', ARGV[5])
  return {1, f, 'active'}
end
return {1, f, ''}
