-- KEYS: the lease, its token record, the token counter of its slot (all in one slot).
-- ARGV: value, ttl in milliseconds, channel to announce on ('' for none).
-- The record holds the token and the SHA-1 of the value it goes with, so that a value written
-- under the key by anything else (a plain `SET`) is no lease, as after a removal.
local channel = ARGV[3]
if channel ~= '' then
    local refused = may_publish(channel)
    if refused then return refused end
end
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local token = redis.call('INCR', KEYS[3])
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('SET', KEYS[2], token .. ':' .. redis.sha1hex(ARGV[1]), 'PX', ARGV[2])
if channel ~= '' then
    announce(channel, 'set', KEYS[1], ARGV[1])
end
return token
