-- The fencing rule (Redis Cluster, where the lease lives on another node): KEYS[2] is the hash,
-- in the written key's slot, of the newest token each lease key (ARGV[7]) has written there
-- with. A write from an older token is refused; an accepted one records its token.
local function fence_ok()
    local newest = redis.call('HGET', KEYS[2], ARGV[7])
    return not newest or tonumber(newest) <= tonumber(ARGV[1])
end
-- The record lives as long as the written key, and at least one lease ttl (ARGV[8], in
-- milliseconds) after the write, so that a removal is fenced too.
local function fence_accepted()
    redis.call('HSET', KEYS[2], ARGV[7], ARGV[1])
    local left = redis.call('PTTL', KEYS[1])
    if left == -1 then
        redis.call('PERSIST', KEYS[2])
        return
    end
    local keep = tonumber(ARGV[8])
    if left > keep then keep = left end
    local own = redis.call('PTTL', KEYS[2])
    if own > keep then keep = own end
    redis.call('PEXPIRE', KEYS[2], keep)
end
