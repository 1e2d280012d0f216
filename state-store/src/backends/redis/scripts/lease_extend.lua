-- KEYS: the lease, its token record. ARGV: token, ttl in milliseconds.
if not is_current(KEYS[1], KEYS[2], ARGV[1]) then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('PEXPIRE', KEYS[2], ARGV[2])
return 1
