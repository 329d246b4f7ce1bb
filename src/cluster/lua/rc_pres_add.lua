-- rc_pres_add: add/refresh this node's members of a room and renew the node's lease.
-- With no member pairs it is the per-room heartbeat.
-- KEYS[1] pm  P:{R}:pm  HASH  "<node>/<conn>" -> info (user name bytes)
-- KEYS[2] pn  P:{R}:pn  ZSET  node -> lease expiry, Unix ms (Redis clock)
-- ARGV[1] node     node id (16 hex), unique per process start
-- ARGV[2] ttl_ms   lease length (cluster-wide setting)
-- ARGV[3..] member, info, member, info, ...
-- returns {had_lease (0/1), expired_pairs}: had_lease = 0 means Redis lost this
-- node's entries (restart, or a late heartbeat let others clean it): re-add all
-- local members. expired_pairs = members of other nodes whose lease ran out,
-- removed here: publish a leave for those users that are no longer present.
local pm, pn, node, ttl = KEYS[1], KEYS[2], ARGV[1], tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

local expired = {}
local dead = redis.call('ZRANGEBYSCORE', pn, '-inf', now)
if #dead > 0 then
  local fields = redis.call('HGETALL', pm)
  for _, d in ipairs(dead) do
    local prefix = d .. '/'
    for i = 1, #fields, 2 do
      if string.sub(fields[i], 1, #prefix) == prefix then
        redis.call('HDEL', pm, fields[i])
        expired[#expired + 1] = fields[i]
        expired[#expired + 1] = fields[i + 1]
      end
    end
  end
  redis.call('ZREMRANGEBYSCORE', pn, '-inf', now)
end

local had = redis.call('ZSCORE', pn, node) and 1 or 0
redis.call('ZADD', pn, now + ttl, node)
for i = 3, #ARGV, 2 do
  redis.call('HSET', pm, ARGV[i], ARGV[i + 1])
end
-- Key TTL >= every lease: EXPIRE GT would not work (keys made by HSET have no TTL).
for _, k in ipairs({pm, pn}) do
  if redis.call('PTTL', k) < ttl then redis.call('PEXPIRE', k, ttl) end
end
return {had, expired}
