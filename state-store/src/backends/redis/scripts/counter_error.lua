local function counter_error(reply)
    if string.find(reply.err, 'not an integer', 1, true)
        or string.find(reply.err, 'overflow', 1, true) then
        return redis.error_reply('NOTCOUNTER ' .. reply.err)
    end
    return reply
end
