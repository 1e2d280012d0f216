local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
local tat = now
local raw = redis.call('GET', KEYS[1])
if raw then
    -- INCRBY 0 applies Redis's own integer rule, exactly as `incr` would.
    local stored = redis.pcall('INCRBY', KEYS[1], 0)
    if type(stored) == 'table' then
        return counter_error(stored)
    end
    tat = math.max(stored, now)
end
local new_tat = tat + interval
local allow_at = new_tat - interval * burst
if now < allow_at then
    return {0, 0, allow_at - now, tat - now}
end
local px = math.ceil((new_tat - now) / 1000)
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', string.format('%.0f', px))
return {1, math.floor((now - allow_at) / interval), 0, new_tat - now}
