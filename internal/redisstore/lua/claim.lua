-- Claim due entries of one due-set shard.
-- KEYS[1] the shard (zset), KEYS[2] its claims (hash, same slot).
-- ARGV[1] now (ms), ARGV[2] lease until (ms), ARGV[3] limit, ARGV[4] the
-- claim's fence (an identity the store draws per claim).
-- Returns member, due pairs. Each claimed member is re-scored to the lease
-- end, and its claim recorded as KEYS[2][member] = "fence:lease". Later
-- writes check the fence, which lease renewals leave alone.
-- The writes go as multi-member ZADD and HSET, in chunks: each
-- redis.call costs about as much as the member it carries.
local items = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'WITHSCORES', 'LIMIT', 0, tonumber(ARGV[3]))
local zargs, hargs = {}, {}
for i = 1, #items, 2 do
  zargs[#zargs + 1] = ARGV[2]
  zargs[#zargs + 1] = items[i]
  hargs[#hargs + 1] = items[i]
  hargs[#hargs + 1] = ARGV[4] .. ':' .. ARGV[2]
  if #zargs >= 1000 then
    redis.call('ZADD', KEYS[1], unpack(zargs))
    redis.call('HSET', KEYS[2], unpack(hargs))
    zargs, hargs = {}, {}
  end
end
if #zargs > 0 then
  redis.call('ZADD', KEYS[1], unpack(zargs))
  redis.call('HSET', KEYS[2], unpack(hargs))
end
return items
