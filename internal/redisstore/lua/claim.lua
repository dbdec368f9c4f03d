-- Claim due entries of one due-set shard.
-- KEYS[1] the shard (zset), KEYS[2] its claims (hash, same slot).
-- ARGV[1] now (ms), ARGV[2] lease until (ms), ARGV[3] limit, ARGV[4] the
-- claim's fence (an identity the store draws per claim).
-- Returns member, due pairs. Each claimed member is re-scored to the lease
-- end, and its claim recorded as KEYS[2][member] = "fence:lease:due".
-- Later writes check the fence, which lease renewals leave alone.
-- A member whose score is still the lease its recorded claim wrote was
-- claimed by someone who stopped renewing (a dead replica): it keeps that
-- claim's due, the slot it was due at, not the dead lease. A member
-- re-scored since (a schedule change, a trigger) is due at its score.
-- The field '' holds 1 KiB: longer than any hash-max-listpack-value in
-- use, it keeps the claims hash a hash table, and in being between
-- batches. As a listpack (Redis' compact encoding for small hashes) every
-- write and delete of a claim moved the whole hash, which cost more than
-- the rest of the claim and the finish together.
-- Reads and writes go in bulk (HMGET, multi-member ZADD and HSET), in
-- chunks: each redis.call costs about as much as the member it carries.
local items = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'WITHSCORES', 'LIMIT', 0, tonumber(ARGV[3]))
local n = #items / 2
if n == 0 then
  return items
end
local members = {}
for j = 1, n do
  members[j] = items[2 * j - 1]
end
local find, sub = string.find, string.sub
for c = 1, n, 500 do
  local last = math.min(c + 499, n)
  local prev = redis.call('HMGET', KEYS[2], unpack(members, c, last))
  for j = c, last do
    local p = prev[j - c + 1]
    if p then
      local a = find(p, ':', 1, true)
      local b = a and find(p, ':', a + 1, true)
      if b and tonumber(sub(p, a + 1, b - 1)) == tonumber(items[2 * j]) then
        items[2 * j] = sub(p, b + 1)
      end
    end
  end
end
local head = ARGV[4] .. ':' .. ARGV[2] .. ':'
local zargs, hargs = {}, { '', string.rep('-', 1024) }
for j = 1, n do
  zargs[#zargs + 1] = ARGV[2]
  zargs[#zargs + 1] = members[j]
  hargs[#hargs + 1] = members[j]
  hargs[#hargs + 1] = head .. items[2 * j]
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
