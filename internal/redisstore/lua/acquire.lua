-- Take a user's refresh lease.
-- KEYS[1] record; ARGV: owner, now (ms), lease until (ms).
-- Returns {status, record fields...}: 0 no record, 1 acquired, 2 busy
-- (another owner holds an unexpired lease), 3 state not runnable.
if redis.call('EXISTS', KEYS[1]) == 0 then return {0} end
local s = redis.call('HGET', KEYS[1], 's')
local status = 1
if s ~= 'active' and s ~= 'degraded' then
  status = 3
else
  local lo = redis.call('HGET', KEYS[1], 'lo')
  local lu = tonumber(redis.call('HGET', KEYS[1], 'lu') or '0') or 0
  if lo and lo ~= ARGV[1] and lu > tonumber(ARGV[2]) then
    status = 2
  else
    redis.call('HSET', KEYS[1], 'lo', ARGV[1], 'lu', ARGV[3])
  end
end
local out = redis.call('HGETALL', KEYS[1])
table.insert(out, 1, status)
return out
