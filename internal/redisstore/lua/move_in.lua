-- Shard migration, step 1 of 2 (migrate.go): copy due-set members into
-- the shard they belong in, each with the score read in the shard they
-- are in (a claim's lease score, its fence, moves unchanged) and, for a
-- claimed member, its claim record.
-- KEYS[1] the members' shard, KEYS[2] its claims hash (same slot).
-- ARGV quadruples: member, score read, claim record ('' for none), and
-- the score of the copy an earlier pass left here ('' for none).
-- A member not here is copied; one here with exactly that earlier copy's
-- score (nobody touched the copy since) is updated to the new score and
-- record. Returns per quadruple 1 (copied or updated) or 0 (already
-- here, otherwise: that entry stays as it is).
local out = {}
for i = 1, #ARGV, 4 do
  local m, score, rec, was = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  local cur = redis.call('ZSCORE', KEYS[1], m)
  if (not cur and was == '') or (cur and was ~= '' and tonumber(cur) == tonumber(was)) then
    redis.call('ZADD', KEYS[1], score, m)
    if rec ~= '' then
      redis.call('HSET', KEYS[2], m, rec)
    else
      redis.call('HDEL', KEYS[2], m)
    end
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
end
return out
