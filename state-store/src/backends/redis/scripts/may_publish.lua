-- A script's feed argument is the feed's channel; for a journaled type, the channel, the
-- journal's stream and how many entries it keeps, one per line.
local function feed_of(arg)
    local channel, stream, keep = string.match(arg, '^([^\n]*)\n([^\n]*)\n(%d+)$')
    if channel then return channel, stream, tonumber(keep) end
    return arg, nil, nil
end
local function may_publish(arg)
    local channel = feed_of(arg)
    if redis.acl_check_cmd and not redis.acl_check_cmd('PUBLISH', channel, '') then
        return redis.error_reply('NOPERM this user may not PUBLISH on `' .. channel ..
            '`, the change feed of this notified type; nothing was written')
    end
end
-- Announces a change on the feed and, for a journaled type, appends it to the journal under the
-- next entry number (`0-*`: ids 0-1, 0-2, ... with nothing between two of them, so a reader
-- knows from the first entry kept exactly what was trimmed), and clears the key's expiry
-- marker (see journal_expired.lua).
local function announce(arg, op, key, value)
    local channel, stream, keep = feed_of(arg)
    local header = '{"op":"' .. op .. '","key":' .. cjson.encode(key) .. '}'
    if value then
        redis.call('PUBLISH', channel, header .. '\n' .. value)
    else
        redis.call('PUBLISH', channel, header)
    end
    if stream then
        local trim = '='
        if keep >= 100 then trim = '~' end
        if value then
            redis.call('XADD', stream, 'MAXLEN', trim, keep, '0-*', 'op', op, 'key', key,
                'value', value)
        else
            redis.call('XADD', stream, 'MAXLEN', trim, keep, '0-*', 'op', op, 'key', key)
        end
        redis.call('DEL', stream .. ':gone:' .. key)
    end
end
