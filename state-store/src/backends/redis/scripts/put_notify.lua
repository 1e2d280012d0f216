local refused = may_publish(ARGV[1])
if refused then return refused end
local condition = ARGV[3]
if condition == 'nx' then
    if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
else
    local current = redis.call('GET', KEYS[1])
    if not current or redis.sha1hex(current) ~= condition then return 0 end
end
if ARGV[4] == 'keep' then
    redis.call('SET', KEYS[1], ARGV[2], 'KEEPTTL')
elseif ARGV[4] == 'never' then
    redis.call('SET', KEYS[1], ARGV[2])
else
    redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[4])
end
announce(ARGV[1], 'set', KEYS[1], ARGV[2])
return 1
