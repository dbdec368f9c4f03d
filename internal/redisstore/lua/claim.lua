-- Claim due entries of one due-set shard.
-- KEYS[1] the shard (zset), KEYS[2] its claim records (hash, same slot).
-- ARGV[1] now (ms), ARGV[2] lease end (ms), ARGV[3] limit, ARGV[4] a
-- fence for the claim (1..2047000, drawn by the store).
-- Returns the claim's fence, then member, due pairs.
--
-- A claimed entry's score is its lease end rounded up to a whole second
-- plus a tag that names its claim's fence: the fence's milliseconds
-- (0..999) and a fraction k/2048 (k 1..2047), exact in a double until
-- 2109. Due times are whole milliseconds, so a fraction marks a lease.
-- Renewals move the seconds and keep the tag, so a renewal whose answer
-- was lost costs the claimer nothing, and finishes and renewals hold only
-- while the score carries their fence. The fence differs from the tag of
-- every entry this claim takes over, so a claimer that lost an entry can
-- never pass for the one that took it.
--
-- KEYS[2][member] keeps a claimed entry's due time, which its lease score
-- hides: an entry whose lease ran out (its claimer died) is claimed again
-- at that due time, the slot it was due at, not the dead lease.
-- The field '' holds 1 KiB: longer than any hash-max-listpack-value in
-- use, it keeps the hash a hash table, and in being between batches. As
-- a listpack (Redis' compact encoding for small hashes) every write and
-- delete of a record moved the whole hash, which cost more than the rest
-- of the claim.
-- Writes go in bulk (multi-member ZADD and HSET), in chunks: each
-- redis.call costs about as much as the member it carries.
-- tag(s): lib/tag.lua, prepended when the script is loaded.
local items = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'WITHSCORES', 'LIMIT', 0, tonumber(ARGV[3]))
local n = #items / 2
local fence = tonumber(ARGV[4])
local taken, again = {}, {}
local find = string.find
for j = 1, n do
  local t = find(items[2 * j], '.', 1, true) and tag(tonumber(items[2 * j]))
  if t then
    taken[t] = true
    again[#again + 1] = j
  end
end
while taken[fence] do
  fence = fence % 2047000 + 1
end
if #again > 0 then
  local ms = {}
  for i, j in ipairs(again) do
    ms[i] = items[2 * j - 1]
  end
  local due = redis.call('HMGET', KEYS[2], unpack(ms))
  for i, j in ipairs(again) do
    items[2 * j] = due[i] or string.format('%.0f', math.floor(tonumber(items[2 * j])))
  end
end
local f = fence - 1
-- As a string, formatted once (Redis formats a number argument per call).
local score = string.format('%.17g', math.ceil(tonumber(ARGV[2]) / 1000) * 1000 + math.floor(f / 2047) + (f % 2047 + 1) / 2048)
local zargs, hargs = {}, { '', string.rep('-', 1024) }
for j = 1, n do
  zargs[#zargs + 1] = score
  zargs[#zargs + 1] = items[2 * j - 1]
  hargs[#hargs + 1] = items[2 * j - 1]
  hargs[#hargs + 1] = items[2 * j]
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
table.insert(items, 1, string.format('%d', fence))
return items
