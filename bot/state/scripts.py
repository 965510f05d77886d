"""The Lua scripts ``bot.state.redis_store`` runs: each an atomic step Redis takes whole.
Numbers go back as strings (a Lua number would be truncated)."""

from __future__ import annotations

# Compare-and-delete in one step (Redis runs a script atomically).
DELETE_IF = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""


# How soon a contact may be reached again under its caps (0: now), by the starts kept in
# the sorted set ``key`` (member ``<flow>|<user>|<nonce>``, scored by when). The caps are
# ARGV[first] = n, then n triples: amount, seconds, member prefix ("" for every flow).
# With ``trim``, starts older than the longest cap are dropped on the way.
_CAPPED = """
local function capped(key, t, first, trim)
  local n = tonumber(ARGV[first])
  if n == 0 or key == '' then return 0, 0 end
  local longest = 0
  for i = 0, n - 1 do longest = math.max(longest, tonumber(ARGV[first + 2 + 3 * i])) end
  if trim then
    redis.call('ZREMRANGEBYSCORE', key, '-inf', string.format('%.6f', t - longest))
  end
  local again = 0
  for i = 0, n - 1 do
    local amount = tonumber(ARGV[first + 1 + 3 * i])
    local seconds = tonumber(ARGV[first + 2 + 3 * i])
    local prefix = ARGV[first + 3 + 3 * i]
    local found = redis.call(
      'ZRANGEBYSCORE', key, string.format('(%.6f', t - seconds), '+inf', 'WITHSCORES')
    local scores = {}
    for j = 1, #found, 2 do
      if prefix == '' or string.sub(found[j], 1, #prefix) == prefix then
        scores[#scores + 1] = tonumber(found[j + 1])
      end
    end
    if #scores >= amount then
      again = math.max(again, scores[#scores - amount + 1] + seconds)
    end
  end
  return again, longest
end
"""


# A start's admission, in one round trip, by Redis's own clock:
# 1. consent (KEYS[3], the suppression list; ARGV[5], the contact's key in it): an
#    opted-out contact is refused with its entry; then the contact's caps (KEYS[4], its
#    starts; caps from ARGV[7]) with when it may be reached again;
# 2. a use in a moving window (KEYS[1], a sorted set of use times; ARGV[1] at most in
#    ARGV[2] seconds), counted only if it fits;
# 3. the duplicate claim (KEYS[2], held ARGV[3] ms), set only then;
# 4. if all passed, the start's hold on the contact's caps (ARGV[6]), kept as long as the
#    longest cap. Nothing is counted, set or held by a start refused at any step.
# Returns {wait, claimed, the opt-out entry or '', reachable again at or '0'}.
ADMIT = (
    _CAPPED
    + """
local now = redis.call('TIME')
local t = tonumber(now[1]) + tonumber(now[2]) / 1000000
local longest = 0
if KEYS[3] ~= '' then
  local entry = redis.call('HGET', KEYS[3], ARGV[5])
  if entry then return {'0', 0, entry, '0'} end
  local again
  again, longest = capped(KEYS[4], t, 7, true)
  if again > 0 then return {'0', 0, '', string.format('%.6f', again)} end
end
local limit, window = tonumber(ARGV[1]), tonumber(ARGV[2])
if limit >= 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', t - window)
  if redis.call('ZCARD', KEYS[1]) >= limit then
    local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
    local wait = window
    if oldest[2] then wait = tonumber(oldest[2]) + window - t end
    return {string.format('%.6f', math.max(wait, 0.000001)), 0, '', '0'}
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
if claimed == 1 and longest > 0 and ARGV[6] ~= '' then
  redis.call('ZADD', KEYS[4], t, ARGV[6])
  local keep = math.ceil(longest * 1000)
  if redis.call('PTTL', KEYS[4]) < keep then redis.call('PEXPIRE', KEYS[4], keep) end
end
return {'0', claimed, '', '0'}
"""
)


# Many contacts screened at once (a bulk preview), read only. KEYS[1]: the suppression
# list. ARGV[1]: the time (the caller's clock: only the guardrails' scripts ask Redis
# for TIME, and each row is judged again by ADMIT when it is sent); ARGV[2]: the prefix
# of the contacts' starts' keys ('' for no cap: each is that prefix and the contact's
# key, named here rather than in KEYS to halve what a 100,000-row preview sends; a
# single Redis, not a cluster); ARGV[3] = n caps, their triples, then one key in the
# list per contact. Returns, for the contacts that may not be reached only, their
# position (1-based) then 'o' .. its entry (opted out) or 'c' .. when it may be reached
# again (capped).
SCREEN = (
    _CAPPED
    + """
local t = tonumber(ARGV[1])
local first = 4 + 3 * tonumber(ARGV[3])
local out = {}
for i = first, #ARGV do
  local entry = redis.call('HGET', KEYS[1], ARGV[i])
  if entry then
    out[#out + 1] = i - first + 1
    out[#out + 1] = 'o' .. entry
  elseif ARGV[2] ~= '' then
    local again = capped(ARGV[2] .. ARGV[i], t, 3, false)
    if again > 0 then
      out[#out + 1] = i - first + 1
      out[#out + 1] = string.format('c%.6f', again)
    end
  end
end
return out
"""
)


# The newest hold of ``ARGV[1]`` (a prefix: flow and user) on a contact's caps given back:
# that start certainly reached no one.
UNHOLD = """
local found = redis.call('ZREVRANGE', KEYS[1], 0, -1)
for _, member in ipairs(found) do
  if string.sub(member, 1, #ARGV[1]) == ARGV[1] then
    return redis.call('ZREM', KEYS[1], member)
  end
end
return 0
"""


# A contact added to the suppression list (KEYS[1], a hash: key -> entry) unless it is
# there already (the first opt-out is the one kept); then kept among the latest
# additions (KEYS[2], a sorted set trimmed to ARGV[4]) and counted by its source
# (KEYS[3], a hash). ARGV: the contact's key, its entry, its source, how many latest,
# when (the caller's clock). Returns 1 if it was added.
SUPPRESS = """
if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) == 0 then return 0 end
redis.call('ZADD', KEYS[2], ARGV[5], ARGV[1])
redis.call('ZREMRANGEBYRANK', KEYS[2], 0, -tonumber(ARGV[4]) - 1)
redis.call('HINCRBY', KEYS[3], ARGV[3], 1)
return 1
"""


# A contact taken off the suppression list (the keys as SUPPRESS's): its entry returned
# (or false), the latest additions and the count of its source updated. ARGV[1]: the
# contact's key.
UNSUPPRESS = """
local entry = redis.call('HGET', KEYS[1], ARGV[1])
if not entry then return false end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
local source = cjson.decode(entry)['source']
if source and redis.call('HINCRBY', KEYS[3], source, -1) <= 0 then
  redis.call('HDEL', KEYS[3], source)
end
return entry
"""


# A hash and the sorted sets that index it, as one command: the hash with the TTL
# ARGV[1], each index with at least that (an index shared by records of longer lives
# keeps the longest, so a short-lived record never expires a long-lived one's entry)
# (a client's cost is per command, and a start writes a record with two indexes); then
# counters (hashes of numbers, e.g. a day's counts of runs) moved by the write, kept as
# long as the indexes. With guards (fields of the hash and the values they must hold, ''
# for a field it lacks), nothing is written unless the hash holds them all: a change
# made once, whichever process makes it (a run's end counted once). Returns 1 if
# written.
#
# ARGV: the TTL in ms, the guard count g, g field/value pairs, the number of indexes
# i, the field count n, n field/value pairs; then for each sorted set KEYS[2..1+i] a
# member count m and m score/member pairs; then for each counter KEYS[2+i..] a count c
# and c field/delta pairs. A counter's field "\31<name>\31<value>" (an answer) is one of
# at most ANSWERS_KEPT values of <name> per counter; the others are counted as
# "\31<name>\31" (the rest), so a counter stays small whatever people answer.
PUT = (
    """
local ttl = tonumber(ARGV[1])
local g = tonumber(ARGV[2])
for i = 3, 2 + 2 * g, 2 do
  if (redis.call('HGET', KEYS[1], ARGV[i]) or '') ~= ARGV[i + 1] then return 0 end
end
local base = 3 + 2 * g
local indexes = tonumber(ARGV[base])
local n = tonumber(ARGV[base + 1])
if n > 0 then
  local fields = {}
  for i = base + 2, base + 1 + 2 * n do fields[#fields + 1] = ARGV[i] end
  redis.call('HSET', KEYS[1], unpack(fields))
  redis.call('PEXPIRE', KEYS[1], ttl)
end
local at = base + 2 + 2 * n
local function live(key)
  if redis.call('PTTL', key) < ttl then
    redis.call('PEXPIRE', key, ttl)  -- an index only lives longer, never shorter
  end
end
for k = 2, 1 + indexes do
  local m = tonumber(ARGV[at])
  at = at + 1
  for i = 1, m do
    redis.call('ZADD', KEYS[k], ARGV[at], ARGV[at + 1])
    at = at + 2
  end
  live(KEYS[k])
end
for k = 2 + indexes, #KEYS do
  local c = tonumber(ARGV[at])
  at = at + 1
  for i = 1, c do
    local field, delta = ARGV[at], tonumber(ARGV[at + 1])
    at = at + 2
    if string.byte(field, 1) == 31 and redis.call('HEXISTS', KEYS[k], field) == 0 then
      local name = string.match(field, '^\\31([^\\31]*)\\31')
      if redis.call('HINCRBY', KEYS[k], '\\30' .. name, 1) > """
    + "{answers}"
    + """ then
        redis.call('HINCRBY', KEYS[k], '\\30' .. name, -1)
        field = '\\31' .. name .. '\\31'
      end
    end
    redis.call('HINCRBY', KEYS[k], field, delta)
  end
  live(KEYS[k])
end
return 1
"""
)
ANSWERS_KEPT = 50  # distinct values of one answer a counter keeps (per flow and day)
PUT = PUT.replace("{answers}", str(ANSWERS_KEPT))
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
