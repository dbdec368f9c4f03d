-- An operator disables or enables a user.
-- KEYS[1] record; ARGV: to ('disabled' or 'active'), reason, now.
-- Returns the state before ('' when there is no record). Enabling only
-- moves a disabled user: other states are not the operator's to set.
-- The refresh lease is left alone: a refresh in flight may hold the only
-- copy of a rotated token, and clearing its lease would let another
-- refresher present the token it is spending.
local from = redis.call('HGET', KEYS[1], 's')
if not from then return '' end
if ARGV[1] == 'active' and from ~= 'disabled' then return from end
if from == ARGV[1] then return from end
redis.call('HSET', KEYS[1], 's', ARGV[1], 'sr', ARGV[2], 'sa', ARGV[3])
return from
