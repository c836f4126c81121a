"""The idempotency store's Lua scripts: each is one atomic transition of a key's record.

The record layout and the semantics are described in :mod:`tools.store`, which runs them
with EVALSHA. Time comes from the server (``TIME``), never from a worker's clock.
"""

from __future__ import annotations

__all__ = ["BEGIN", "COMPLETE", "FAIL", "SETTLE"]

BEGIN = """
local key, fp, token = KEYS[1], ARGV[1], ARGV[2]
local lease, retention = tonumber(ARGV[3]), tonumber(ARGV[4])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local r = redis.call('HMGET', key, 'state', 'fp', 'token', 'deadline', 'result', 'error',
                     'attempt', 'via')
if not r[1] then
  redis.call('HSET', key, 'state', 'in_flight', 'fp', fp, 'token', token,
             'deadline', string.format('%d', now + lease), 'attempt', '1', 'via', 'new',
             'created', string.format('%d', now))
  redis.call('PEXPIRE', key, retention)
  return {'new', '1', '', token}
end
if r[2] ~= fp then return {'mismatch', r[7] or '0', '', ''} end
if r[1] == 'completed' then return {'completed', r[7], r[5], ''} end
if r[1] == 'failed' then return {'failed', r[7], r[6] or '', ''} end
if r[3] == token then return {r[8], r[7], '', token} end
local deadline = tonumber(r[4])
if now < deadline then return {'in_flight', r[7], tostring(deadline - now), ''} end
if ARGV[5] == '1' then
  local attempt = redis.call('HINCRBY', key, 'attempt', 1)
  redis.call('HSET', key, 'token', token, 'deadline', string.format('%d', now + lease),
             'via', 'expired')
  redis.call('PEXPIRE', key, retention)
  return {'expired', tostring(attempt), '', token}
end
return {'expired', r[7], '', ''}
"""

COMPLETE = """
local r = redis.call('HMGET', KEYS[1], 'state', 'token')
if not r[1] then return 'missing' end
if r[2] ~= ARGV[1] then return 'lost' end
if r[1] == 'completed' then return 'stored' end
if r[1] ~= 'in_flight' then return 'lost' end
redis.call('HSET', KEYS[1], 'state', 'completed', 'result', ARGV[2])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[3]))
return 'stored'
"""

FAIL = """
local r = redis.call('HMGET', KEYS[1], 'state', 'token')
if not r[1] then return 'missing' end
if r[2] ~= ARGV[1] then return 'lost' end
if r[1] == 'failed' then return 'kept' end
if r[1] ~= 'in_flight' then return 'lost' end
if ARGV[3] == '1' then
  redis.call('DEL', KEYS[1])
  return 'released'
end
redis.call('HSET', KEYS[1], 'state', 'failed', 'error', ARGV[2])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[4]))
return 'kept'
"""

SETTLE = """
local state = redis.call('HGET', KEYS[1], 'state')
if not state or state == 'completed' then return 0 end
redis.call('HSET', KEYS[1], 'state', 'completed', 'result', ARGV[1], 'token', '')
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]))
return 1
"""
