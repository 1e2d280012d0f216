-- KEYS: the lease, its token record. Returns nil, or {value, token, milliseconds left}; the
-- token is 0 for a value the record does not name (written under the key without a lease).
local value = redis.call('GET', KEYS[1])
if not value then return false end
local token = '0'
local record = redis.call('GET', KEYS[2])
if record then
    local named, digest = string.match(record, '^(%d+):(%x+)$')
    if named and digest == redis.sha1hex(value) then token = named end
end
return {value, token, redis.call('PTTL', KEYS[1])}
