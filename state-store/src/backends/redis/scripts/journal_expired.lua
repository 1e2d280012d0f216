-- Journals the expiry of a key, once however many listeners heard of it: only while the key
-- is still gone, and only if no other listener did since its last write (which deletes the
-- marker this sets).
-- KEYS: the expired key, the journal's stream, the key's marker. ARGV: how many entries the
-- journal keeps (0: not known to this process, left to the next write to trim).
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
if not redis.call('SET', KEYS[3], '1', 'NX', 'PX', 600000) then return 0 end
local keep = tonumber(ARGV[1])
if keep == 0 then
    redis.call('XADD', KEYS[2], '0-*', 'op', 'expired', 'key', KEYS[1])
else
    local trim = '='
    if keep >= 100 then trim = '~' end
    redis.call('XADD', KEYS[2], 'MAXLEN', trim, keep, '0-*', 'op', 'expired', 'key', KEYS[1])
end
return 1
