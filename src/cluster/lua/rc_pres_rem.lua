-- rc_pres_rem: remove members of this node; drop its lease when it has none left.
-- KEYS[1] pm, KEYS[2] pn
-- ARGV[1] node
-- ARGV[2] "1" = this node has no members left in the room (ZREM its lease)
-- ARGV[3..] members
-- returns the number of members removed
local n = 0
for i = 3, #ARGV do n = n + redis.call('HDEL', KEYS[1], ARGV[i]) end
if ARGV[2] == '1' then redis.call('ZREM', KEYS[2], ARGV[1]) end
return n
