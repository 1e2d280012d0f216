-- Whether the lease KEYS[lease] holds is the one with `token`: its record names the token and
-- the value under the key now.
local function is_current(lease, record, token)
    local value = redis.call('GET', lease)
    return value ~= false and redis.call('GET', record) == token .. ':' .. redis.sha1hex(value)
end
