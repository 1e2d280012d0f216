-- The currency rule (one server, or Sentinel's primary): KEYS[2] is the lease, KEYS[3] its
-- token record; the write is made only while the lease is the one with token ARGV[1]. A newer
-- token exists only once this lease was lost, so the fencing rule holds too.
local function fence_ok()
    return is_current(KEYS[2], KEYS[3], ARGV[1])
end
local function fence_accepted() end
