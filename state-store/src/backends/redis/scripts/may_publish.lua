local function may_publish(channel)
    if redis.acl_check_cmd and not redis.acl_check_cmd('PUBLISH', channel, '') then
        return redis.error_reply('NOPERM this user may not PUBLISH on `' .. channel ..
            '`, the change feed of this notified type; nothing was written')
    end
end
