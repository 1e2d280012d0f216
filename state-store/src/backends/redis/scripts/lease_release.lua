-- KEYS: the lease, its token record. ARGV: token, channel to announce on ('' for none).
local channel = ARGV[2]
if channel ~= '' then
    local refused = may_publish(channel)
    if refused then return refused end
end
if not is_current(KEYS[1], KEYS[2], ARGV[1]) then return 0 end
redis.call('DEL', KEYS[1], KEYS[2])
if channel ~= '' then
    announce(channel, 'removed', KEYS[1])
end
return 1
