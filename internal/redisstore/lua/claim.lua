-- Claim due entries of one due-set shard.
-- KEYS[1] the shard; ARGV[1] now (ms), ARGV[2] lease until (ms), ARGV[3] limit.
-- Returns member, old score pairs. Each claimed member is re-scored to the
-- lease time, which is also its fence: later writes check it.
local items = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'WITHSCORES', 'LIMIT', 0, tonumber(ARGV[3]))
for i = 1, #items, 2 do
  redis.call('ZADD', KEYS[1], ARGV[2], items[i])
end
return items
