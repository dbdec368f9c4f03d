-- Take a user's refresh lease for one acquisition.
-- KEYS[1] record; ARGV: lease id, now (ms), lease until (ms), the id of a
-- lease the caller already holds and renews ('' for none), and the grace
-- (ms) after its end before someone else's lease may be taken over: its
-- holder may be storing a rotated token after a Redis stall, and taking
-- over would present the token it spent.
-- A lease id names one acquisition, not a process: two refreshes in the
-- same process never share a lease, so whoever holds it knows that the
-- token in the record it got back is the current one and that nobody
-- else is spending it.
-- Returns {status, record fields...}: 0 no record, 1 acquired, 2 busy
-- (another unexpired lease), 3 state not runnable. When the lease taken
-- over had expired without a release (its holder died or stalled, maybe
-- between the provider's answer and the commit) the record gets 'xl' = 1
-- until the next commit, fail or flag, so a rejection that follows can be
-- told apart from a plain revocation.
if redis.call('EXISTS', KEYS[1]) == 0 then return {0} end
local s = redis.call('HGET', KEYS[1], 's')
local status = 1
if s ~= 'active' and s ~= 'degraded' then
  status = 3
else
  local lo = redis.call('HGET', KEYS[1], 'lo')
  local lu = tonumber(redis.call('HGET', KEYS[1], 'lu') or '0') or 0
  local mine = lo == ARGV[1] or (ARGV[4] ~= '' and lo == ARGV[4])
  if lo and not mine and lu + tonumber(ARGV[5]) > tonumber(ARGV[2]) then
    status = 2
  else
    if lo and not mine then
      redis.call('HSET', KEYS[1], 'xl', 1)
    end
    redis.call('HSET', KEYS[1], 'lo', ARGV[1], 'lu', ARGV[3])
  end
end
local out = redis.call('HGETALL', KEYS[1])
table.insert(out, 1, status)
return out
