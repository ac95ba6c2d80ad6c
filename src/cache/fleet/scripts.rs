//! The Lua scripts that make the shared tier's steps atomic.
//!
//! Every per-page script is called with the same seven keys, in this order:
//! the page's entry, lease, fencing counter and last unstorable answer (one
//! hash tag, one slot), then the three purge epochs that apply to the page
//! (everything, its resource, its route). An entry remembers the epochs it
//! was stored under; an entry whose epochs differ from the current ones was
//! purged, is never served, and is unlinked on sight.
//!
//! The epoch keys are global, so these scripts need a single Redis (or
//! Valkey) primary, not a Cluster: the per-page keys are hash-tagged for the
//! day the epochs move into the page's slot.

use std::sync::LazyLock;

use redis::Script;

/// Shared by the scripts: the current epochs, and whether the entry was stored under them.
const PRELUDE: &str = r#"
local ea = redis.call('GET', KEYS[5]) or '0'
local er = redis.call('GET', KEYS[6]) or '0'
local eo = redis.call('GET', KEYS[7]) or '0'
local function current(e)
  return e[2] == ea and e[3] == er and e[4] == eo
end
"#;

/// Read the entry (fresh or stale) if it was not purged. Returns its data or nil.
pub static READ: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        r#"{PRELUDE}
local e = redis.call('HMGET', KEYS[1], 'data', 'ea', 'er', 'eo')
if not e[1] then return false end
if not current(e) then redis.call('UNLINK', KEYS[1]) return false end
return e[1]
"#
    ))
});

/// Read a fresh entry, or the answer of the fetch being waited on, or take the lease.
/// ARGV: fresh-since (wall ms) for running and for finished jobs, the awaited token
/// ('' if none), lease ms, counter ms.
/// Returns {2, data} fresh entry | {3, data} the awaited answer | {0, holder, pttl} held |
/// {1, token, ea, er, eo} acquired.
pub static LEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        r#"{PRELUDE}
local e = redis.call('HMGET', KEYS[1], 'data', 'ea', 'er', 'eo', 'at', 'term')
if e[1] then
  if current(e) then
    local since = ARGV[1]
    if e[6] == '1' then since = ARGV[2] end
    if tonumber(e[5]) >= tonumber(since) then return {{2, e[1]}} end
  else
    redis.call('UNLINK', KEYS[1])
  end
end
if ARGV[3] ~= '' then
  local a = redis.call('HMGET', KEYS[4], 'token', 'data')
  if a[1] == ARGV[3] and a[2] then return {{3, a[2]}} end
end
local holder = redis.call('GET', KEYS[2])
if holder then return {{0, holder, redis.call('PTTL', KEYS[2])}} end
local token = redis.call('INCR', KEYS[3])
redis.call('PEXPIRE', KEYS[3], ARGV[5])
redis.call('SET', KEYS[2], token, 'PX', ARGV[4])
return {{1, tostring(token), ea, er, eo}}
"#
    ))
});

/// Store a page fetched under a lease: refused if a purge happened since the lease
/// (epochs changed: -1) or a newer fill already stored (older fencing token: -2).
/// Releases the lease and announces the outcome either way.
/// ARGV: token, the lease's three epochs, data, fetched-at ms, terminal '0'|'1',
/// retain ms, channel.
pub static STORE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        r#"{PRELUDE}
local token = ARGV[1]
local function release(what)
  if redis.call('GET', KEYS[2]) == token then redis.call('DEL', KEYS[2]) end
  redis.call('PUBLISH', ARGV[9], what)
end
if ea ~= ARGV[2] or er ~= ARGV[3] or eo ~= ARGV[4] then
  release('released')
  return -1
end
local fence = tonumber(redis.call('HGET', KEYS[1], 'fence') or '0')
if fence > tonumber(token) then
  release('released')
  return -2
end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'data', ARGV[5], 'fence', token, 'at', ARGV[6], 'term', ARGV[7],
  'ea', ea, 'er', er, 'eo', eo)
redis.call('PEXPIRE', KEYS[1], ARGV[8])
release('stored')
return 1
"#
    ))
});

/// Release a lease without storing; leave the answer (if any) for the holder's waiters.
/// ARGV: token, answer data ('' for none), answer ms, channel.
pub static RELEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
if ARGV[2] ~= '' then
  redis.call('DEL', KEYS[4])
  redis.call('HSET', KEYS[4], 'token', ARGV[1], 'data', ARGV[2])
  redis.call('PEXPIRE', KEYS[4], ARGV[3])
end
if redis.call('GET', KEYS[2]) == ARGV[1] then redis.call('DEL', KEYS[2]) end
redis.call('PUBLISH', ARGV[4], 'released')
return 1
"#,
    )
});

/// Extend a lease still held. KEYS: lease. ARGV: token, ms. Returns 1 if extended.
pub static RENEW: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
"#,
    )
});

/// A purge: bump the scope's epoch and the purge sequence, announce it.
/// KEYS: epoch, sequence. ARGV: channel, message head, message tail, epoch ms (0 = keep).
/// The message is head .. ' ' .. sequence .. ' ' .. tail. Returns the sequence.
pub static PURGE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
redis.call('INCR', KEYS[1])
if tonumber(ARGV[4]) > 0 then redis.call('PEXPIRE', KEYS[1], ARGV[4]) end
local seq = redis.call('INCR', KEYS[2])
redis.call('PUBLISH', ARGV[1], ARGV[2] .. ' ' .. seq .. ' ' .. ARGV[3])
return seq
"#,
    )
});
