-- Store a new token for a user (token put, API, app). Overrides any
-- refresh in flight: the version bump makes its commit fail.
-- KEYS[1] record; ARGV: provider, kid, ciphertext, access expiry, refresh expiry, now, reason.
-- Returns {version, from state ('' if new), to state}.
local from = redis.call('HGET', KEYS[1], 's')
local to = 'active'
if from == 'disabled' then to = 'disabled' end
redis.call('HSET', KEYS[1], 'p', ARGV[1], 'k', ARGV[2], 'c', ARGV[3], 'ae', ARGV[4], 're', ARGV[5], 'f', 0)
redis.call('HDEL', KEYS[1], 'lo', 'lu', 'le', 'xl')
if not from then
  redis.call('HSET', KEYS[1], 'ca', ARGV[6])
  from = ''
end
local v = redis.call('HINCRBY', KEYS[1], 'v', 1)
if from ~= to then
  redis.call('HSET', KEYS[1], 's', to, 'sr', ARGV[7], 'sa', ARGV[6])
end
return {v, from, to}
