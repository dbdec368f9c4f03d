-- Re-score claimed entries of one shard, fenced by their lease score.
-- KEYS[1] the shard; ARGV triples: member, fence (ms), next (ms, or '' to remove).
-- Returns 1 per triple that held its fence (or asked for a removal that
-- already happened), 0 per triple that lost it.
-- The scores are read with ZMSCORE and written with multi-member ZADD and
-- ZREM, in chunks; a member listed twice is judged against the score the
-- earlier triple left, exactly as one triple at a time would.
local n = #ARGV / 3
local cur, known = {}, {}
local members = {}
for k = 1, n do
  local m = ARGV[(k - 1) * 3 + 1]
  if not known[m] then
    known[m] = true
    members[#members + 1] = m
  end
end
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
local out, changed = {}, {}
for k = 1, n do
  local i = (k - 1) * 3 + 1
  local m, fence, nxt = ARGV[i], tonumber(ARGV[i + 1]), ARGV[i + 2]
  local s = cur[m]
  if s and s == fence then
    if nxt == '' then
      cur[m] = nil
    else
      cur[m] = tonumber(nxt)
    end
    changed[m] = true
    out[k] = 1
  elseif not s and nxt == '' then
    out[k] = 1 -- removal wanted and already gone (the user left)
  else
    out[k] = 0
  end
end
local adds, rems = {}, {}
for _, m in ipairs(members) do
  if changed[m] then
    if cur[m] then
      adds[#adds + 1] = cur[m]
      adds[#adds + 1] = m
    else
      rems[#rems + 1] = m
    end
  end
  if #adds >= 1000 then
    redis.call('ZADD', KEYS[1], unpack(adds))
    adds = {}
  end
  if #rems >= 500 then
    redis.call('ZREM', KEYS[1], unpack(rems))
    rems = {}
  end
end
if #adds > 0 then
  redis.call('ZADD', KEYS[1], unpack(adds))
end
if #rems > 0 then
  redis.call('ZREM', KEYS[1], unpack(rems))
end
return out
