-- Finish claimed entries of one shard: re-score or remove each.
-- KEYS[1] the shard (zset), KEYS[2] its claim records (hash, same slot).
-- ARGV triples: member, fence, next (ms, or '' to remove).
-- Returns 1 per triple whose claim held (the score carries its fence; see
-- claim.lua) or that asked for a removal that already happened (the user
-- left), 0 per triple whose entry is gone, claimed by another, or
-- re-scored by someone else meanwhile (whose schedule stands).
-- The claim records of entries no claim holds any more are deleted.
-- Scores are read with ZMSCORE and written with multi-member ZADD and
-- ZREM, in chunks; a member listed twice is judged against what the
-- earlier triple left, exactly as one triple at a time would.
-- tag(s): lib/tag.lua, prepended when the script is loaded.
local n = #ARGV / 3
local known, members = {}, {}
for k = 1, n do
  local m = ARGV[(k - 1) * 3 + 1]
  if not known[m] then
    known[m] = true
    members[#members + 1] = m
  end
end
local cur = {}
for c = 1, #members, 500 do
  local last = math.min(c + 499, #members)
  local scores = redis.call('ZMSCORE', KEYS[1], unpack(members, c, last))
  for j = c, last do
    local s = scores[j - c + 1]
    if s then
      cur[members[j]] = tonumber(s)
    end
  end
end
local out, changed, drop, arg = {}, {}, {}, {}
for k = 1, n do
  local i = (k - 1) * 3 + 1
  local m, fence, nxt = ARGV[i], tonumber(ARGV[i + 1]), ARGV[i + 2]
  local s = cur[m]
  local t = s and tag(s)
  out[k] = 0
  if not s then
    drop[m] = true
    if nxt == '' then
      out[k] = 1
    end
  elseif t == fence then
    if nxt == '' then
      cur[m] = nil
    else
      cur[m], arg[m] = tonumber(nxt), nxt
    end
    changed[m] = true
    drop[m] = true
    out[k] = 1
  elseif not t then
    drop[m] = true
  end
end
local adds, rems, dels = {}, {}, {}
for _, m in ipairs(members) do
  if changed[m] then
    if cur[m] then
      -- The caller's string: Redis would format a number per member.
      adds[#adds + 1] = arg[m]
      adds[#adds + 1] = m
    else
      rems[#rems + 1] = m
    end
  end
  if drop[m] then
    dels[#dels + 1] = m
  end
  if #adds >= 1000 then
    redis.call('ZADD', KEYS[1], unpack(adds))
    adds = {}
  end
  if #rems >= 500 then
    redis.call('ZREM', KEYS[1], unpack(rems))
    rems = {}
  end
  if #dels >= 500 then
    redis.call('HDEL', KEYS[2], unpack(dels))
    dels = {}
  end
end
if #adds > 0 then
  redis.call('ZADD', KEYS[1], unpack(adds))
end
if #rems > 0 then
  redis.call('ZREM', KEYS[1], unpack(rems))
end
if #dels > 0 then
  redis.call('HDEL', KEYS[2], unpack(dels))
end
return out
