local refused = may_publish(ARGV[1])
if refused then return refused end
local removed = 0
for _, key in ipairs(KEYS) do
    if redis.call('DEL', key) == 1 then
        removed = removed + 1
        announce(ARGV[1], 'removed', key)
    end
end
return removed
