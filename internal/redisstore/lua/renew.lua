-- Renew the leases of claimed entries of one shard.
-- KEYS[1] the shard (zset). ARGV[1] the new lease end (ms); then pairs:
-- member, fence.
-- Returns 1 per pair whose claim holds (the score carries its fence; see
-- claim.lua), 0 per pair whose entry is gone, claimed by another, or
-- re-scored by someone else meanwhile. The new score keeps the fence:
-- repeating a renewal, or one whose answer was lost, is harmless.
-- tag(s): lib/tag.lua, prepended when the script is loaded.
local secs = math.ceil(tonumber(ARGV[1]) / 1000) * 1000
local n = (#ARGV - 1) / 2
local members = {}
for k = 1, n do
  members[k] = ARGV[2 * k]
end
local out, zargs = {}, {}
for c = 1, n, 500 do
  local last = math.min(c + 499, n)
  local scores = redis.call('ZMSCORE', KEYS[1], unpack(members, c, last))
  for k = c, last do
    out[k] = 0
    local s = scores[k - c + 1]
    local fence = tonumber(ARGV[2 * k + 1])
    if s and tag(tonumber(s)) == fence then
      local f = fence - 1
      zargs[#zargs + 1] = secs + math.floor(f / 2047) + (f % 2047 + 1) / 2048
      zargs[#zargs + 1] = members[k]
      out[k] = 1
    end
  end
  if #zargs > 0 then
    redis.call('ZADD', KEYS[1], unpack(zargs))
    zargs = {}
  end
end
return out
