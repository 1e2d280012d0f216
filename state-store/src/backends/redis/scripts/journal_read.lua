-- The entries of a journal after a cursor, with what a reader needs to know it missed none.
-- KEYS: the journal's stream. ARGV: the cursor to read after, how many entries at most, and
-- `start` to read from the oldest kept entry instead.
-- Returns {the first entry kept ('' when none), the last entry appended, the entries}. Entries
-- are numbered without gaps (`0-*`), so what lies before the first kept was trimmed.
local ok, info = pcall(redis.call, 'XINFO', 'STREAM', KEYS[1])
if not ok then return {'', '0-0', {}} end
local first, last = '', '0-0'
for i = 1, #info, 2 do
    if info[i] == 'first-entry' and type(info[i + 1]) == 'table' then first = info[i + 1][1] end
    if info[i] == 'last-generated-id' then last = info[i + 1] end
end
local count = tonumber(ARGV[2])
if count == 0 then return {first, last, {}} end
local from = '(' .. ARGV[1]
if ARGV[3] == 'start' then from = '-' end
return {first, last, redis.call('XRANGE', KEYS[1], from, '+', 'COUNT', count)}
