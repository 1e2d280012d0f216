if ARGV[2] ~= '' then
    local refused = may_publish(ARGV[2])
    if refused then return refused end
end
local current = redis.call('GET', KEYS[1])
if not current or redis.sha1hex(current) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
if ARGV[2] ~= '' then
    announce(ARGV[2], 'removed', KEYS[1])
end
return 1
