-- Record that every due set is laid out for a shard count, after a sweep.
-- KEYS[1] the shards hash; ARGV: the shard count swept to, announcements
-- older than this (ms) are dropped, then pairs of a dirty field (of
-- another count) and its value, as read before the sweep.
-- Returns 1, or 0 (nothing recorded) when a replica with another count
-- marked the sets dirty during the sweep: the next sweep goes again.
local own = 'dirty:' .. ARGV[1]
local seen = {}
for i = 3, #ARGV, 2 do
  seen[ARGV[i]] = ARGV[i + 1]
end
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
  local f, v = all[i], all[i + 1]
  if string.sub(f, 1, 6) == 'dirty:' and f ~= own and seen[f] ~= v then
    return 0
  end
end
for i = 1, #all, 2 do
  local f, v = all[i], all[i + 1]
  if string.sub(f, 1, 6) == 'dirty:' then
    redis.call('HDEL', KEYS[1], f)
  elseif string.sub(f, 1, 2) == 'r:' then
    local at = tonumber(string.match(v, ':(%d+)$') or '0')
    if at < tonumber(ARGV[2]) then redis.call('HDEL', KEYS[1], f) end
  end
end
redis.call('HSET', KEYS[1], 'layout', ARGV[1])
return 1
