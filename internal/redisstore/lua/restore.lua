-- Bring a quarantined record back as the user's record.
-- KEYS[1] quarantine key, KEYS[2] record (same slot); ARGV[1] the version
-- the caller read and checked.
-- Returns 1 restored, 0 not quarantined (or no longer a hash), -1 a live
-- record exists (never overwritten), -2 the quarantined copy changed
-- since the caller read it.
if redis.call('EXISTS', KEYS[2]) == 1 then return -1 end
if redis.call('TYPE', KEYS[1])['ok'] ~= 'hash' then return 0 end
if redis.call('HGET', KEYS[1], 'v') ~= ARGV[1] then return -2 end
redis.call('RENAME', KEYS[1], KEYS[2])
-- A refresh lease taken before the quarantine is long gone.
redis.call('HDEL', KEYS[2], 'lo', 'lu')
return 1
