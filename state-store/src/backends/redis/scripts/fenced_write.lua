-- A write under a lease, after `fence_ok` (fence_current.lua or fence_record.lua) accepted the
-- token. KEYS[1] is the written key. ARGV: token, 'set' or 'remove', condition ('' none, 'nx'
-- a new key only, else the SHA-1 hex the current value must have), value, expiry ('keep',
-- 'never' or milliseconds), channel ('' for none), lease key, lease ttl in milliseconds.
-- Returns -1 when the fence refused, 1 when written (or removed), 0 when the condition failed.
local channel = ARGV[6]
if channel ~= '' then
    local refused = may_publish(channel)
    if refused then return refused end
end
if not fence_ok() then return -1 end
local key = KEYS[1]
local condition = ARGV[3]
if condition == 'nx' then
    if redis.call('EXISTS', key) == 1 then return 0 end
elseif condition ~= '' then
    local current = redis.call('GET', key)
    if not current or redis.sha1hex(current) ~= condition then return 0 end
end
if ARGV[2] == 'remove' then
    if redis.call('DEL', key) == 0 then return 0 end
    fence_accepted()
    if channel ~= '' then
        announce(channel, 'removed', key)
    end
    return 1
end
if ARGV[5] == 'keep' then
    redis.call('SET', key, ARGV[4], 'KEEPTTL')
elseif ARGV[5] == 'never' then
    redis.call('SET', key, ARGV[4])
else
    redis.call('SET', key, ARGV[4], 'PX', ARGV[5])
end
fence_accepted()
if channel ~= '' then
    announce(channel, 'set', key, ARGV[4])
end
return 1
