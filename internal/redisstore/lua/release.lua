-- Release a refresh lease if the caller still holds it.
-- KEYS[1] record; ARGV[1] lease id.
if redis.call('HGET', KEYS[1], 'lo') == ARGV[1] then
  redis.call('HDEL', KEYS[1], 'lo', 'lu')
  return 1
end
return 0
