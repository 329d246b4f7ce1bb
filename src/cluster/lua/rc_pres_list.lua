-- rc_pres_list: all members of a room across the cluster, after removing the
-- members of nodes whose lease ran out.
-- KEYS[1] pm, KEYS[2] pn
-- returns {members_flat, expired_flat}; both [member, info, member, info, ...]
local pm, pn = KEYS[1], KEYS[2]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local all = redis.call('HGETALL', pm)
local dead = redis.call('ZRANGEBYSCORE', pn, '-inf', now)
if #dead == 0 then return {all, {}} end
local isdead = {}
for _, d in ipairs(dead) do isdead[d] = true end
local live, expired = {}, {}
for i = 1, #all, 2 do
  local node = string.match(all[i], '^([^/]*)/')
  local dst = (node and isdead[node]) and expired or live
  dst[#dst + 1] = all[i]; dst[#dst + 1] = all[i + 1]
end
for i = 1, #expired, 2 do redis.call('HDEL', pm, expired[i]) end
redis.call('ZREMRANGEBYSCORE', pn, '-inf', now)
return {live, expired}
