-- Re-score claimed entries of one shard, fenced by their lease score.
-- KEYS[1] the shard; ARGV triples: member, fence (ms), next (ms, or '' to remove).
-- Returns 1 per triple that held its fence (or asked for a removal that
-- already happened), 0 per triple that lost it.
local out = {}
for i = 1, #ARGV, 3 do
  local s = redis.call('ZSCORE', KEYS[1], ARGV[i])
  if s and tonumber(s) == tonumber(ARGV[i + 1]) then
    if ARGV[i + 2] == '' then
      redis.call('ZREM', KEYS[1], ARGV[i])
    else
      redis.call('ZADD', KEYS[1], ARGV[i + 2], ARGV[i])
    end
    out[#out + 1] = 1
  elseif not s and ARGV[i + 2] == '' then
    out[#out + 1] = 1 -- removal wanted and already gone (the user left)
  else
    out[#out + 1] = 0
  end
end
return out
