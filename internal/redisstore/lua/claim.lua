-- Claim due entries of one due-set shard.
-- KEYS[1] the shard; ARGV[1] now (ms), ARGV[2] lease until (ms), ARGV[3] limit.
-- Returns member, old score pairs. Each claimed member is re-scored to the
-- lease time, which is also its fence: later writes check it. The
-- re-scores go as multi-member ZADDs (each redis.call costs about as much
-- as the member it carries).
local items = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'WITHSCORES', 'LIMIT', 0, tonumber(ARGV[3]))
local args = {}
for i = 1, #items, 2 do
  args[#args + 1] = ARGV[2]
  args[#args + 1] = items[i]
  if #args >= 1000 then
    redis.call('ZADD', KEYS[1], unpack(args))
    args = {}
  end
end
if #args > 0 then
  redis.call('ZADD', KEYS[1], unpack(args))
end
return items
