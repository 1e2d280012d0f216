-- KEYS: the lease, its token record. Returns nil, or {value, token, milliseconds left}.
local value = redis.call('GET', KEYS[1])
if not value then return false end
local token = redis.call('GET', KEYS[2]) or '0'
return {value, token, redis.call('PTTL', KEYS[1])}
