-- Move a token record aside: rename it to the user's quarantine key.
-- KEYS[1] record, KEYS[2] quarantine key (same slot).
-- ARGV[1] the type the caller saw ('' moves whatever is there),
-- ARGV[2] the version field it saw ('' for none; checked for a hash).
-- Returns the type moved ('none': no record), or '' when the record is
-- no longer what the caller saw (repaired or rewritten meanwhile) and was
-- left alone. RENAME works for a key of any type.
local t = redis.call('TYPE', KEYS[1])['ok']
if t == 'none' then return 'none' end
if ARGV[1] ~= '' then
  if t ~= ARGV[1] then return '' end
  if t == 'hash' and (redis.call('HGET', KEYS[1], 'v') or '') ~= ARGV[2] then return '' end
end
redis.call('RENAME', KEYS[1], KEYS[2])
return t
