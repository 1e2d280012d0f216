local current = redis.call('GET', KEYS[1])
if not current or redis.sha1hex(current) ~= ARGV[1] then return 0 end
if ARGV[3] == 'keep' then
    redis.call('SET', KEYS[1], ARGV[2], 'KEEPTTL')
elseif ARGV[3] == 'never' then
    redis.call('SET', KEYS[1], ARGV[2])
else
    redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
end
return 1
