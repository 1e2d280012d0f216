if ARGV[3] ~= '' then
    local refused = may_publish(ARGV[3])
    if refused then return refused end
end
local created = redis.call('EXISTS', KEYS[1]) == 0
local n = redis.pcall('INCRBY', KEYS[1], ARGV[1])
if type(n) == 'table' and n.err then
    return counter_error(n)
end
if created and ARGV[2] ~= '' then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
if ARGV[3] ~= '' then
    -- The stored text, not the Lua number, which would lose digits past 2^53.
    local stored = redis.call('GET', KEYS[1])
    announce(ARGV[3], 'set', KEYS[1], stored)
end
return n
