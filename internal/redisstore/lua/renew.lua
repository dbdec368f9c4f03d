-- Renew the leases of claimed entries of one shard.
-- KEYS[1] the shard (zset), KEYS[2] its claims (hash, same slot).
-- ARGV[1] the new lease end (ms); then pairs: member, fence.
-- Returns 1 per pair whose claim holds (score and recorded lease moved to
-- the new end together), 0 per pair whose claim is gone, another's, or
-- whose entry someone else re-scored or removed meanwhile.
-- Renewals leave the fence alone, so repeating one, or one whose answer
-- was lost, is harmless: the claimer's finish still holds.
local lease_end = ARGV[1]
local n = (#ARGV - 1) / 2
local members = {}
for k = 1, n do
  members[k] = ARGV[2 * k]
end
local find, sub = string.find, string.sub
local out, zargs, hargs = {}, {}, {}
for c = 1, n, 500 do
  local last = math.min(c + 499, n)
  local scores = redis.call('ZMSCORE', KEYS[1], unpack(members, c, last))
  local claims = redis.call('HMGET', KEYS[2], unpack(members, c, last))
  for k = c, last do
    out[k] = 0
    local s, p = scores[k - c + 1], claims[k - c + 1]
    if s and p then
      local a = find(p, ':', 1, true)
      local b = a and find(p, ':', a + 1, true)
      if b and sub(p, 1, a - 1) == ARGV[2 * k + 1] and tonumber(sub(p, a + 1, b - 1)) == tonumber(s) then
        zargs[#zargs + 1] = lease_end
        zargs[#zargs + 1] = members[k]
        hargs[#hargs + 1] = members[k]
        hargs[#hargs + 1] = sub(p, 1, a) .. lease_end .. sub(p, b)
        out[k] = 1
      end
    end
  end
  if #zargs > 0 then
    redis.call('ZADD', KEYS[1], unpack(zargs))
    redis.call('HSET', KEYS[2], unpack(hargs))
    zargs, hargs = {}, {}
  end
end
return out
