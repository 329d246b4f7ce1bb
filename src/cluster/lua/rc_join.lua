-- rc_join: create-or-read the room's epoch, read its seq and, optionally, the
-- backlog after `since`, atomically. Also used for backlog pages, gap fills
-- that must be epoch-safe, and the reconnect check.
-- KEYS[1] meta, KEYS[2] hist
-- ARGV[1] new_epoch   8 random bytes; used only to start a sequence
-- ARGV[2] since       "-1" = position only; else entries with seq > since
-- ARGV[3] limit       max entries returned (> 0)
-- ARGV[4] meta_ttl_s  refresh meta TTL; "0" = leave it
-- ARGV[5] seen_epoch  "" or the epoch the calling NODE delivered up to `since`
--                     (never a client's claim): if Redis is at the same epoch
--                     but below `since`, it lost writes -> start a new sequence
-- returns {epoch, seq, entries, flags}
--   entries = [[ "<seq>-0", ["d", body] ], ...] oldest first
--   flags: 0 = existing sequence, 1 = sequence started now, 2 = restarted (regression)
local meta, hist = KEYS[1], KEYS[2]
if #ARGV[1] ~= 8 then return redis.error_reply('ERR rc_join: epoch must be 8 bytes') end
local since = tonumber(ARGV[2])
local m = redis.call('HMGET', meta, 'e', 's')
local epoch, seq = m[1], tonumber(m[2] or '0')
local flags = 0
if not epoch then
  flags = 1
elseif ARGV[5] == epoch and since > seq then
  flags = 2
end
if flags ~= 0 then
  epoch, seq = ARGV[1], 0
  redis.call('HSET', meta, 'e', epoch, 's', 0)
  redis.call('DEL', hist)
end
if ARGV[4] ~= '0' then redis.call('EXPIRE', meta, ARGV[4]) end
local entries = {}
if since >= 0 and since < seq then
  entries = redis.call('XRANGE', hist, string.format('%d', since + 1), '+', 'COUNT', ARGV[3])
end
return {epoch, seq, entries, flags}
