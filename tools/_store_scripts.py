"""The idempotency store's Lua scripts: each is one atomic transition of a key's record.

The record layout and the semantics are described in :mod:`agentflow.tools.store`, which runs them
with EVALSHA. Time comes from the server (``TIME``), never from a worker's clock.
"""

from __future__ import annotations

__all__ = ["ANSWER", "ASSESS", "BEGIN", "COMPLETE", "FAIL", "PEEK", "RENEW", "SETTLE"]

# KEYS[2], when given, is the approval grant a new lease must consume (irreversible and
# unknown calls): unexpired, for this fingerprint, and never used before. A key
# whose record is completed replays without one; nothing runs. A refused grant answers
# no_grant with why, and in the token's place a code: missing, other, expired or used.
BEGIN = """
local key, fp, token = KEYS[1], ARGV[1], ARGV[2]
local lease, retention = tonumber(ARGV[3]), tonumber(ARGV[4])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local r = redis.call('HMGET', key, 'state', 'fp', 'token', 'deadline', 'result', 'error',
                     'attempt', 'via')
if not r[1] then
  if KEYS[2] then
    local g = redis.call('HMGET', KEYS[2], 'digest', 'expires', 'used_by')
    if not g[1] then return {'no_grant', '0', 'no approval grant for this exact call', 'missing'} end
    if g[1] ~= fp then return {'no_grant', '0', 'the grant is for another call', 'other'} end
    if now >= tonumber(g[2]) then return {'no_grant', '0', 'the approval has expired', 'expired'} end
    if g[3] and g[3] ~= '' then
      -- One approval, one effect: a used grant never begins a call again, not even its own
      -- key once that key's record is gone (released after a failure, or expired).
      return {'no_grant', '0', 'the approval was already used', 'used'}
    end
    redis.call('HSET', KEYS[2], 'used_by', key)
  end
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

# One answer per approval, from any process: the first answer's fingerprint is kept and a
# different later answer is refused; the same answer again (LangGraph replays resume values
# when it re-runs a node) is accepted. An approving answer writes the grant (KEYS[2]) in
# the same step, so a grant exists only for the answer that won.
ANSWER = """
local fp, retention = ARGV[1], tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local old = redis.call('HMGET', KEYS[1], 'fp', 'decision', 'approver')
if old[1] then
  if old[1] == fp then return {'same', old[2], old[3]} end
  return {'answered', old[2], old[3]}
end
redis.call('HSET', KEYS[1], 'fp', fp, 'decision', ARGV[3], 'approver', ARGV[4],
           'at', string.format('%d', now))
redis.call('PEXPIRE', KEYS[1], retention)
if KEYS[2] then
  local ttl = tonumber(ARGV[6])
  redis.call('HSET', KEYS[2], 'digest', ARGV[5], 'approver', ARGV[4], 'approval_id', ARGV[7],
             'edit', ARGV[8], 'granted', string.format('%d', now),
             'expires', string.format('%d', now + ttl), 'used_by', '')
  redis.call('PEXPIRE', KEYS[2], ttl + retention)
end
return {'recorded', ARGV[3], ARGV[4]}
"""

# The consequence node's verdict for (thread, action digest), kept where graph state cannot
# reach it. Raise only: a later, lower verdict never replaces a higher one.
ASSESS = """
local old = tonumber(redis.call('HGET', KEYS[1], 'severity') or '-1')
if tonumber(ARGV[1]) > old then
  redis.call('HSET', KEYS[1], 'severity', ARGV[1], 'class', ARGV[2])
end
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[3]))
return redis.call('HGET', KEYS[1], 'class')
"""

# The lease follows the call: while the holder's tool runs, its heartbeat pushes the
# deadline on. Only the token that holds an in-flight lease can renew it.
RENEW = """
local r = redis.call('HMGET', KEYS[1], 'state', 'token')
if r[1] ~= 'in_flight' or r[2] ~= ARGV[1] then return 0 end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('HSET', KEYS[1], 'deadline', string.format('%d', now + tonumber(ARGV[2])))
return 1
"""

# What the store knows of a key, without taking anything: its state, the time left on a
# live lease, its stored result. For keys the effects journal says were started.
PEEK = """
local r = redis.call('HMGET', KEYS[1], 'state', 'deadline', 'result')
if not r[1] then return {'', '0', ''} end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local left = 0
if r[1] == 'in_flight' then left = math.max(0, tonumber(r[2]) - now) end
return {r[1], tostring(left), r[3] or ''}
"""
