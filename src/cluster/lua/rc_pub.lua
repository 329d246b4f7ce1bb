-- rc_pub: sequence, store and publish one room message, atomically.
-- KEYS[1] meta  P:{R}:meta   HASH  e = epoch (8 raw bytes), s = last seq
-- KEYS[2] hist  P:{R}:hist   STREAM, entry id "<seq>-0", one field "d" = body
-- ARGV[1] new_epoch  8 random bytes (node-generated); used only to start a sequence
-- ARGV[2] body       opaque bytes (rkyv), stored and published as-is
-- ARGV[3] history    MAXLEN (exact); "0" = keep no history
-- ARGV[4] hist_ttl_s EXPIRE of hist, seconds; "0" = none
-- ARGV[5] meta_ttl_s EXPIRE of meta, seconds; "0" = none (keep >= hist_ttl_s)
-- ARGV[6] channel    P:{R}:ch (same hash tag as the keys)
-- ARGV[7] publish    "PUBLISH" (single Redis) or "SPUBLISH" (Redis Cluster)
-- ARGV[8] seen_epoch "" or the epoch the calling home shard last saw for the room
-- ARGV[9] seen_seq   the highest seq it saw in seen_epoch ("0" if none)
-- returns {seq, epoch, receivers}; receivers = PUBLISH's count of subscribed
-- connections, i.e. home shards (nodes) that have members, not members
local meta, hist = KEYS[1], KEYS[2]
local new_epoch, body = ARGV[1], ARGV[2]
if #new_epoch ~= 8 then return redis.error_reply('ERR rc_pub: epoch must be 8 bytes') end

local m = redis.call('HMGET', meta, 'e', 's')
local epoch, last = m[1], tonumber(m[2] or '0')
-- Start a new sequence when the room has none, or when Redis went back in
-- time (restart from an older AOF/RDB, failover to a lagging replica): the
-- caller saw seq `seen_seq` in this very epoch but Redis is below it, so the
-- next seqs would repeat ones already delivered.
if (not epoch) or (ARGV[8] == epoch and tonumber(ARGV[9]) > last) then
  epoch = new_epoch
  redis.call('HSET', meta, 'e', epoch, 's', 0)
  -- A stream left from the older sequence holds ids >= 1: XADD 1-0 would fail.
  redis.call('DEL', hist)
end

local seq = redis.call('HINCRBY', meta, 's', 1)
if ARGV[5] ~= '0' then redis.call('EXPIRE', meta, ARGV[5]) end

if ARGV[3] ~= '0' then
  -- string.format('%d') is exact up to 2^53; `seq .. '-0'` would print
  -- 1e14 and above in exponent form ("1.2345678901234e+14-0").
  local id = string.format('%d-0', seq)
  local ok = redis.pcall('XADD', hist, 'MAXLEN', ARGV[3], id, 'd', body)
  if type(ok) == 'table' and ok.err then
    -- id <= stream top: stale stream (e.g. meta expired/evicted, hist not).
    -- The seq is already taken (Lua has no rollback): reset the stream.
    redis.call('DEL', hist)
    redis.call('XADD', hist, 'MAXLEN', ARGV[3], id, 'd', body)
  end
  if ARGV[4] ~= '0' then redis.call('EXPIRE', hist, ARGV[4]) end
end

-- 18-byte header: 'R', kind 0x01 (message), epoch[8], seq u64 big-endian, body.
local n = redis.call(ARGV[7], ARGV[6], 'R\1' .. epoch .. struct.pack('>I8', seq) .. body)
return {seq, epoch, n}
