-- Shard migration, step 2 of 2 (migrate.go): remove due-set members from
-- the shard they do not belong in, with their claim records, each only
-- if its score is still the one read before step 1: a member claimed,
-- renewed or re-scored meanwhile stays.
-- KEYS[1] the shard, KEYS[2] its claims hash (same slot).
-- ARGV pairs: member, score read.
-- Returns per pair 1 (removed), 0 (score changed: left) or -1 (gone).
local out = {}
for i = 1, #ARGV, 2 do
  local m = ARGV[i]
  local cur = redis.call('ZSCORE', KEYS[1], m)
  if not cur then
    out[#out + 1] = -1
  elseif tonumber(cur) ~= tonumber(ARGV[i + 1]) then
    out[#out + 1] = 0
  else
    redis.call('ZREM', KEYS[1], m)
    redis.call('HDEL', KEYS[2], m)
    out[#out + 1] = 1
  end
end
return out
