-- A replica says which shard count it runs with.
-- KEYS[1] the shards hash; ARGV: owner, shard count, now (ms).
-- A count other than the recorded layout marks the due sets dirty for
-- that count: entries it writes may sit outside their shard for others.
redis.call('HSET', KEYS[1], 'r:' .. ARGV[1], ARGV[2] .. ':' .. ARGV[3])
if redis.call('HGET', KEYS[1], 'layout') ~= ARGV[2] then
  redis.call('HINCRBY', KEYS[1], 'dirty:' .. ARGV[2], 1)
end
return 1
