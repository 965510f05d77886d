"""The Lua scripts ``bot.state.redis_store`` runs: each an atomic step Redis takes whole.
Numbers go back as strings (a Lua number would be truncated)."""

from __future__ import annotations

# Compare-and-delete in one step (Redis runs a script atomically).
DELETE_IF = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""


# A use in a moving window (a sorted set of use times) and the duplicate claim, in one
# round trip, by Redis's own clock: the use is counted only if it fits, the claim is set
# only then. Numbers go back as strings (a Lua number would be truncated).
ADMIT = """
local now = redis.call('TIME')
local t = tonumber(now[1]) + tonumber(now[2]) / 1000000
local limit, window = tonumber(ARGV[1]), tonumber(ARGV[2])
if limit >= 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', t - window)
  if redis.call('ZCARD', KEYS[1]) >= limit then
    local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
    local wait = window
    if oldest[2] then wait = tonumber(oldest[2]) + window - t end
    return {string.format('%.6f', math.max(wait, 0.000001)), 0}
  end
  redis.call('ZADD', KEYS[1], t, ARGV[4])
  redis.call('PEXPIRE', KEYS[1], math.ceil(window * 1000))
end
local claimed = 1
if KEYS[2] ~= '' then
  if not redis.call('SET', KEYS[2], string.format('%.6f', t), 'NX', 'PX', ARGV[3]) then
    claimed = 0
  end
end
return {'0', claimed}
"""


# A hash and the sorted sets that index it, as one command: the hash with the TTL
# ARGV[1], each index with at least that (an index shared by records of longer lives
# keeps the longest, so a short-lived record never expires a long-lived one's entry)
# (a client's cost is per command, and a start writes a record with two indexes).
# ARGV: the TTL in ms, the field count n, n field/value pairs, then for each sorted set
# KEYS[2..] a member count m and m score/member pairs.
PUT = """
local n = tonumber(ARGV[2])
local fields = {}
for i = 3, 2 + 2 * n do fields[#fields + 1] = ARGV[i] end
redis.call('HSET', KEYS[1], unpack(fields))
redis.call('PEXPIRE', KEYS[1], ARGV[1])
local at = 3 + 2 * n
for k = 2, #KEYS do
  local m = tonumber(ARGV[at])
  at = at + 1
  for i = 1, m do
    redis.call('ZADD', KEYS[k], ARGV[at], ARGV[at + 1])
    at = at + 2
  end
  if redis.call('PTTL', KEYS[k]) < tonumber(ARGV[1]) then
    redis.call('PEXPIRE', KEYS[k], ARGV[1])  -- an index only lives longer, never shorter
  end
end
return 1
"""
PUT_MOST = 1000  # fields and members in one PUT (Lua's unpack takes a few thousand)


# A member's score moved from "due" to its next time, only if it is still due: of two
# processes that read the same due member, one claims it.
ZCLAIM = """
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if score and tonumber(score) <= tonumber(ARGV[2]) then
  redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
  return 1
end
return 0
"""


# The next send time of a schedule, by Redis's own clock (one clock for every process):
# GCRA with no burst. Numbers go back as strings (a Lua number would be truncated).
RESERVE = """
local now = redis.call('TIME')
local t = tonumber(now[1]) + tonumber(now[2]) / 1000000
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < t then tat = t end
local wait = tat - t
if wait > tonumber(ARGV[2]) then return tostring(-wait) end
local keep = math.ceil((wait + tonumber(ARGV[1])) * 1000) + 60000
redis.call('SET', KEYS[1], string.format('%.6f', tat + tonumber(ARGV[1])), 'PX', keep)
return string.format('%.6f', wait)
"""


def ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))
