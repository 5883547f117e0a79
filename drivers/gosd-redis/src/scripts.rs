//! The Lua scripts: each change to the registry is one script, so that
//! the hash, the leases, the revision and the change log move together.

use super::*;

/// A script in its two forms: publishing its events with `PUBLISH`, or,
/// on a Redis Cluster, with `SPUBLISH` on the slot's shard channel (a
/// plain `PUBLISH` there goes to every node of the cluster).
pub(crate) struct Scripts {
    pub(crate) plain: Script,
    pub(crate) sharded: Script,
}

impl Scripts {
    fn new(plain: &str) -> Self {
        let sharded = plain.replace("redis.call('PUBLISH',", "redis.call('SPUBLISH',");
        Self {
            plain: Script::new(plain),
            sharded: Script::new(&sharded),
        }
    }

    /// The form for a cluster (`sharded`) or one server.
    pub(crate) fn get(&self, sharded: bool) -> &Script {
        match sharded {
            true => &self.sharded,
            false => &self.plain,
        }
    }
}

/// Helpers every script starts with, then the reap of expired leases
/// (`script!(before_reap, body)` runs a part of its own before it). KEYS:
/// hash, leases, revision, gone, generation, log, clock, meta.
///
/// Every change starts with `bump()`, and each change is published on
/// `{<hash>}:events` with the version after it, and pushed on the log,
/// which keeps the last 64.
///
/// **Corrupt keys.** Before anything else, the keys are checked. A key of
/// the wrong type fails the script before it writes anything, with a
/// `WRONGTYPE` error naming the key, what it holds, what it should hold and
/// the fix. A revision or generation that is not a number is repaired: a
/// new generation begins, which is the honest answer, since nobody can tell
/// which changes it counted (clients read the whole registry once).
/// Garbage in the log (messages that are not gosd's) makes clients read
/// the whole registry; garbage in the clock is overwritten.
///
/// **Stalls.** `{<hash>}:clock` holds `<ms> <beat_ms> <ms>`: when a
/// script last wrote, the shortest heartbeat seen lately (the time between
/// two renewals of one lease), and when it was seen. While any instance is
/// alive, no gap between scripts is longer than a heartbeat. A longer gap
/// means the registry was not serving (stopped, a long fork, a failover),
/// or every instance stopped renewing at once. Then every lease that still
/// had more than a heartbeat to run when the gap began (one that a
/// heartbeat had renewed lately), and that would run out within a
/// heartbeat from now, is moved to run out a heartbeat from now, and
/// likewise for tombstones; then the reap runs. So the renewal that queued
/// up behind the stall lands before its lease is reaped. The bound: an
/// instance that crashed during such a gap stays at most one heartbeat
/// longer, once (the moved lease has one heartbeat left, not more, so it is
/// never moved again). Instances whose heartbeat is more than half their
/// TTL are not covered (the default is a third). A heartbeat is taken to
/// be a quarter of the TTL at the least, so that renewals a moment apart
/// (a retry, or those a stall queued up) do not shrink it. Until a renewal has been
/// seen, no gap is excused.
///
/// A reap of up to 32 leases (a few crashed instances) is one `del` change
/// per entry, like a deregistration, so that clients apply it from the
/// push or the log instead of each reading the whole hash; 32 leaves the
/// log room for the changes around it. A larger reap (a zone lost at once)
/// is one `changed`.
///
/// The first argument says what the script is: `reads` (writes the clock
/// only after a gap, so an unchanged fetch writes nothing), `writes`, or
/// `leases` (writes, and ARGV[3] is the TTL in ms).
macro_rules! script {
    (reads, $body:expr) => {
        script!(@ "local ttl, quiet = nil, true\n", "", $body)
    };
    (writes, $body:expr) => {
        script!(@ "local ttl, quiet = nil, false\n", "", $body)
    };
    (leases, $body:expr) => {
        script!(leases, "", $body)
    };
    (leases, $before_reap:expr, $body:expr) => {
        script!(@ "local ttl, quiet = tonumber(ARGV[3]), false\n", $before_reap, $body)
    };
    (@ $ttl:expr, $before_reap:expr, $body:expr) => {
        LazyLock::new(|| {
            Scripts::new(concat!(
                $ttl,
                r#"
local wrong
local function must_be(key, want, what, fix)
  local t = redis.call('TYPE', key)['ok']
  if not wrong and t ~= want and t ~= 'none' then
    wrong = 'WRONGTYPE gosd registry key ' .. key .. ' holds a ' .. t .. ', not a ' .. want
      .. ' (' .. what .. '); fix: ' .. fix
  end
end
must_be(KEYS[1], 'hash', 'the routes, field <service>-<id> to URL',
  'move it away (RENAME ' .. KEYS[1] .. ' ' .. KEYS[1] .. ':broken) or delete it (DEL ' .. KEYS[1]
  .. '); live instances register again at their next heartbeat')
must_be(KEYS[2], 'zset', 'the leases',
  'DEL ' .. KEYS[2] .. '; live instances write their leases back at their next heartbeat')
local fresh = 'DEL ' .. KEYS[3] .. ' ' .. KEYS[5] .. ' ' .. KEYS[6]
  .. '; a new generation begins and clients read the whole registry once'
must_be(KEYS[3], 'string', 'the revision, a number', fresh)
must_be(KEYS[5], 'string', 'the generation, a number', fresh)
must_be(KEYS[6], 'list', "gosd's change log",
  'DEL ' .. KEYS[6] .. '; clients read the whole registry once')
must_be(KEYS[4], 'zset', 'tombstones of deregistered instances',
  'DEL ' .. KEYS[4] .. '; a renewal in flight during a deregistration may then write it back')
must_be(KEYS[8], 'hash', 'status and metadata, field <service>-<id> to its compact form',
  'DEL ' .. KEYS[8] .. '; live instances write theirs back at their next heartbeat')
if wrong then return redis.error_reply(wrong) end
local function counter(key)
  local v = redis.call('GET', key)
  if v == false then return true end
  return type(v) == 'string' and #v <= 18 and string.match(v, '^%d+$') ~= nil
end
if not (counter(KEYS[3]) and counter(KEYS[5])) then
  redis.log(redis.LOG_WARNING, 'gosd: ' .. KEYS[3] .. ' or ' .. KEYS[5]
    .. ' held something that is not a number; starting a new generation')
  redis.call('DEL', KEYS[3], KEYS[5], KEYS[6])
end
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function generation()
  local g = redis.call('GET', KEYS[5])
  if g then return g end
  local t = redis.call('TIME')
  g = t[1] .. string.format('%06d', tonumber(t[2]))
  redis.call('SET', KEYS[5], g)
  return g
end
local gen = generation()
local function publish(what)
  local version = gen .. ' ' .. (redis.call('GET', KEYS[3]) or '0') .. ' ' .. redis.call('HLEN', KEYS[1])
  local message = version .. ' ' .. what
  redis.call('LPUSH', KEYS[6], message)
  redis.call('LTRIM', KEYS[6], 0, 63)
  redis.call('PUBLISH', '{' .. KEYS[1] .. '}:events', message)
end
local function bump()
  redis.call('INCR', KEYS[3])
end
-- An entry's metadata: '' (up, nothing else) is stored as no field, so
-- that such an entry reads as one Go gosd wrote.
local function set_meta(name, meta)
  if meta == '' then redis.call('HDEL', KEYS[8], name) else redis.call('HSET', KEYS[8], name, meta) end
end
-- A write of one entry; the form with metadata has a word of its own, so
-- that a reader that does not know it reads the whole registry instead
-- of taking the metadata for part of the URL.
local function put_message(name, ttl_ms, url, meta)
  if meta == '' then return 'put ' .. name .. ' ' .. ttl_ms .. ' ' .. url end
  return 'putm ' .. name .. ' ' .. ttl_ms .. ' ' .. meta .. ' ' .. url
end
local function reap(now)
  redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', now)
  local dead = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now)
  if #dead == 0 then return end
  if #dead <= 32 then
    for _, name in ipairs(dead) do
      bump()
      redis.call('HDEL', KEYS[1], name)
      redis.call('HDEL', KEYS[8], name)
      redis.call('ZREM', KEYS[2], name)
      publish('del ' .. name)
    end
    return
  end
  bump()
  for i = 1, #dead, 1000 do
    redis.call('HDEL', KEYS[1], unpack(dead, i, math.min(i + 999, #dead)))
    redis.call('HDEL', KEYS[8], unpack(dead, i, math.min(i + 999, #dead)))
  end
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
  publish('changed')
end
local now = now_ms()
-- Stalls: see the doc comment above.
local clock = redis.pcall('GET', KEYS[7])
local last, beat, beat_seen
if type(clock) == 'string' then
  local a, b, c = string.match(clock, '^(%d+) (%d+) (%d+)$')
  last, beat, beat_seen = tonumber(a), tonumber(b), tonumber(c)
end
local observed
if ttl then
  local lease = tonumber(redis.call('ZSCORE', KEYS[2], ARGV[1]))
  -- A quarter of the TTL at the least: two renewals a moment apart (a
  -- retry, or the burst a stall queued up) are not a heartbeat, and taken
  -- for one they would cut the next stall's grace to nothing.
  if lease then observed = math.max(now - (lease - ttl), math.floor(ttl / 4)) end
end
local stalled = last ~= nil and beat ~= nil and now - last > beat
if stalled then
  for _, set in ipairs({KEYS[2], KEYS[4]}) do
    local starved = redis.call('ZRANGEBYSCORE', set, '(' .. (last + beat), '(' .. (now + beat))
    for _, name in ipairs(starved) do redis.call('ZADD', set, now + beat, name) end
  end
end
if observed and observed > 0
  and (beat == nil or observed <= beat or (not stalled and now - beat_seen > 3 * beat)) then
  beat, beat_seen = observed, now
end
if beat and (stalled or not quiet) then
  redis.call('SET', KEYS[7], now .. ' ' .. beat .. ' ' .. beat_seen)
end
"#,
                $before_reap,
                "reap(now)\n",
                $body
            ))
        })
    };
}

/// ARGV: name, url, ttl_ms, meta. Returns 1 if written, 0 if the name is
/// taken.
pub(crate) static REGISTER: LazyLock<Scripts> = script!(
    leases,
    r#"
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then return 0 end
bump()
redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2])
set_meta(ARGV[1], ARGV[4])
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[3]), ARGV[1])
publish(put_message(ARGV[1], ARGV[3], ARGV[2], ARGV[4]))
return 1
"#
);

/// ARGV: name, url, ttl_ms, meta. Returns 1 renewed, 2 restored, 3 gone
/// (deregistered), 0 conflict. A renewal whose metadata differs from the
/// stored one (a status change) writes it and publishes the entry.
///
/// The renewal proper runs before the reap: a heartbeat that comes after
/// its lease ran out, but before any script reaped it, extends the lease
/// instead of being reaped and then restored, which would take the entry
/// out of every watching client's table for a moment.
pub(crate) static RENEW: LazyLock<Scripts> = script!(
    leases,
    r#"
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then
  redis.call('ZADD', KEYS[2], now + tonumber(ARGV[3]), ARGV[1])
  if (redis.call('HGET', KEYS[8], ARGV[1]) or '') ~= ARGV[4] then
    bump()
    set_meta(ARGV[1], ARGV[4])
    publish(put_message(ARGV[1], ARGV[3], ARGV[2], ARGV[4]))
  end
  reap(now)
  return 1
end
"#,
    r#"
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then return 0 end
if redis.call('ZSCORE', KEYS[4], ARGV[1]) then return 3 end
bump()
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
set_meta(ARGV[1], ARGV[4])
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[3]), ARGV[1])
publish(put_message(ARGV[1], ARGV[3], ARGV[2], ARGV[4]))
return 2
"#
);

/// ARGV: name, url. Returns 1 if removed, 0 if it was not ours. The name is
/// kept in the gone set until its lease would have run out.
pub(crate) static DEREGISTER: LazyLock<Scripts> = script!(
    writes,
    r#"
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then return 0 end
bump()
local lease = redis.call('ZSCORE', KEYS[2], ARGV[1])
if lease then redis.call('ZADD', KEYS[4], lease, ARGV[1]) end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[8], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
publish('del ' .. ARGV[1])
return 1
"#
);

/// ARGV: known generation, revision and length, or nothing. Reaps, then
/// returns {"same", ms until the earliest lease runs out or ""} when they
/// still hold; {"changes", the same ms, generation, revision, length, the
/// log's messages since the known revision} when the log still has all of
/// them and the message of the known revision itself, with the known
/// version; else {"changed"} (the caller then reads the table).
pub(crate) static FETCH: LazyLock<Scripts> = script!(
    reads,
    r#"
local rev = redis.call('GET', KEYS[3]) or '0'
local len = redis.call('HLEN', KEYS[1])
local function next_expiry()
  local first = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
  if #first == 0 then return '' end
  return tostring(tonumber(first[2]) - now)
end
if ARGV[1] ~= gen then return {'changed'} end
if ARGV[2] == rev and tonumber(ARGV[3]) == len then
  return {'same', next_expiry()}
end
local behind = tonumber(rev) - (tonumber(ARGV[2]) or 0)
if behind > 0 and behind < 64 then
  -- The changes since the caller's revision, and the one that took it
  -- there: if that one has another version, this is another history (a
  -- failover to a replica that had not seen it), or a writer that keeps
  -- no record wrote since.
  local log = redis.call('LRANGE', KEYS[6], 0, behind)
  local known = ARGV[1] .. ' ' .. ARGV[2] .. ' ' .. ARGV[3] .. ' '
  if #log == behind + 1 and string.sub(log[#log], 1, #known) == known then
    return {'changes', next_expiry(), gen, rev, tostring(len), unpack(log, 1, behind)}
  end
end
return {'changed'}
"#
);

/// ARGV: url. Removes lease-less fields with that URL (expired ones were
/// just reaped); returns how many.
pub(crate) static REMOVE_STALE: LazyLock<Scripts> = script!(
    writes,
    r#"
local all = redis.call('HGETALL', KEYS[1])
local stale = {}
for i = 1, #all, 2 do
  if all[i + 1] == ARGV[1] and not redis.call('ZSCORE', KEYS[2], all[i]) then
    stale[#stale + 1] = all[i]
  end
end
if #stale == 0 then return 0 end
bump()
for _, field in ipairs(stale) do
  redis.call('HDEL', KEYS[1], field)
  redis.call('HDEL', KEYS[8], field)
end
publish('changed')
return #stale
"#
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sharded_form_differs_only_in_its_publish_command() {
        for s in [&REGISTER, &RENEW, &DEREGISTER, &FETCH, &REMOVE_STALE] {
            assert_ne!(s.plain.get_hash(), s.sharded.get_hash());
        }
    }
}
