-- Finish claimed entries of one shard: re-score or remove each.
-- KEYS[1] the shard (zset), KEYS[2] its claims (hash, same slot).
-- ARGV triples: member, fence, next (ms, or '' to remove).
-- Returns 1 per triple whose claim it was, 0 per triple whose claim is
-- gone (finished already, or never) or another claimer's.
-- A held claim ends (its record is deleted). Its next time is written only
-- if the score is still the claim's lease: an entry re-scored or removed
-- by someone else meanwhile (a schedule change, a user who left) keeps
-- what they wrote.
-- Scores and claims are read with ZMSCORE and HMGET and written with
-- multi-member ZADD, ZREM and HDEL, in chunks; a member listed twice is
-- judged against what the earlier triple left, as one at a time would.
local n = #ARGV / 3
local known, members = {}, {}
for k = 1, n do
  local m = ARGV[(k - 1) * 3 + 1]
  if not known[m] then
    known[m] = true
    members[#members + 1] = m
  end
end
local cur, rec = {}, {}
for c = 1, #members, 500 do
  local last = math.min(c + 499, #members)
  local scores = redis.call('ZMSCORE', KEYS[1], unpack(members, c, last))
  local claims = redis.call('HMGET', KEYS[2], unpack(members, c, last))
  for j = c, last do
    local s = scores[j - c + 1]
    if s then
      cur[members[j]] = tonumber(s)
    end
    rec[members[j]] = claims[j - c + 1]
  end
end
local find, sub = string.find, string.sub
local out, changed, ended = {}, {}, {}
for k = 1, n do
  local i = (k - 1) * 3 + 1
  local m, fence, nxt = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local p = rec[m]
  local a = p and find(p, ':', 1, true)
  out[k] = 0
  if a and sub(p, 1, a - 1) == fence then
    rec[m] = false
    ended[m] = true
    local b = find(p, ':', a + 1, true)
    if cur[m] and b and cur[m] == tonumber(sub(p, a + 1, b - 1)) then
      if nxt == '' then
        cur[m] = nil
      else
        cur[m] = tonumber(nxt)
      end
      changed[m] = true
    end
    out[k] = 1
  end
end
local adds, rems, dels = {}, {}, {}
for _, m in ipairs(members) do
  if changed[m] then
    if cur[m] then
      adds[#adds + 1] = cur[m]
      adds[#adds + 1] = m
    else
      rems[#rems + 1] = m
    end
  end
  if ended[m] then
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
