local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local raw = redis.call('GET', KEYS[1])
local count = 0
local left = window
if raw then
    -- INCRBY 0 applies Redis's own integer rule, exactly as `incr` would.
    count = redis.pcall('INCRBY', KEYS[1], 0)
    if type(count) == 'table' then
        return counter_error(count)
    end
    left = redis.call('PTTL', KEYS[1])
    if left < 0 then
        -- A counter without expiry would refuse forever once full: give it a window.
        redis.call('PEXPIRE', KEYS[1], window)
        left = window
    end
end
if count < 0 then count = 0 end
if count >= limit then return {0, 0, left, left} end
if raw then
    redis.call('SET', KEYS[1], count + 1, 'KEEPTTL')
else
    redis.call('SET', KEYS[1], 1, 'PX', window)
end
return {1, limit - count - 1, 0, left}
