-- Move due-set members from a shard they do not belong in to their own,
-- each only if its score is still the one the caller read: a member
-- claimed or re-scored meanwhile is left for the next pass. The score
-- moves with the member, so a claim's fence (its lease score) holds in
-- the new shard, where the claimer finishes it.
-- A claimed member's claim record (its due time, in the shard's claims
-- hash) moves with it.
-- KEYS[1] the shard the members are in, KEYS[2] their shard, KEYS[3] and
-- KEYS[4] the two shards' claims hashes; ARGV pairs: member, score read.
-- Returns {moved, dropped (already in their shard: that entry stays),
-- changed (score changed since read: not moved)}.
local moved, dropped, changed = 0, 0, 0
for i = 1, #ARGV, 2 do
  local m = ARGV[i]
  local cur = redis.call('ZSCORE', KEYS[1], m)
  if cur then
    if tonumber(cur) ~= tonumber(ARGV[i + 1]) then
      changed = changed + 1
    else
      local claim = redis.call('HGET', KEYS[3], m)
      if redis.call('ZSCORE', KEYS[2], m) then
        dropped = dropped + 1
      else
        redis.call('ZADD', KEYS[2], cur, m)
        if claim then
          redis.call('HSET', KEYS[4], m, claim)
        end
        moved = moved + 1
      end
      redis.call('ZREM', KEYS[1], m)
      if claim then
        redis.call('HDEL', KEYS[3], m)
      end
    end
  end
end
return {moved, dropped, changed}
