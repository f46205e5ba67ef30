//! The Lua scripts the Redis broker runs (their keys are in `keys.rs`, the decoding of what
//! they store and publish in `decode.rs`).
//!
//! Each script runs atomically in Redis, so an offset is assigned, stored in history and
//! published in one step: every node sees a channel's publications in offset order on its
//! Pub/Sub connection, and a history read sees every publication that got an offset before it.

use super::keys::Keys;

/// Lua helpers shared by the scripts that read or write a channel's stream.
const STREAM_HELPERS: &str = r"
-- Redis 7 replicates a script's effects, not the script; before 7 this asks for it, so that
-- TIME may precede writes.
redis.replicate_commands()
local function int(n) return string.format('%.0f', n) end
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
-- The channel's epoch; a missing one (new channel, or history lost) is created with an
-- empty history, so offsets restart at 1 under a name nobody has seen.
local function epoch_of(meta, hist, candidate)
  local epoch = redis.call('HGET', meta, 'epoch')
  if not epoch then
    epoch = candidate
    redis.call('DEL', hist)
    redis.call('HSET', meta, 'epoch', epoch, 'offset', 0)
  end
  return epoch
end
-- Keeps the channel's position for idle_ms more (0: for ever).
local function keep(meta, idle_ms)
  if idle_ms > 0 then redis.call('PEXPIRE', meta, idle_ms) end
end
-- Drops history entries older than ttl_ms (0: none).
local function expire(hist, ttl_ms, now)
  if ttl_ms <= 0 then return end
  local cutoff = now - ttl_ms
  while true do
    local first = redis.call('XRANGE', hist, '-', '+', 'COUNT', 1)[1]
    if not first or tonumber(first[2][2]) > cutoff then break end
    redis.call('XDEL', hist, first[1])
  end
end
";

/// KEYS: meta, history, and for an idempotent publish its `once` key. ARGV: Pub/Sub channel,
/// epoch candidate, history size, history ttl (ms), position ttl (ms), the `once` key's
/// window (ms, 0 without one), then the bodies of the publications, which get consecutive
/// offsets (one body with a `once` key). Returns `{epoch, first offset}`: with a `once` key
/// already set, the position stored there, publishing nothing. One publication is announced
/// as `m`, several in one `b` message.
const PUBLISH: &str = r"
local meta, hist, once = KEYS[1], KEYS[2], KEYS[3]
if once then
  local seen = redis.call('GET', once)
  if seen then
    local sp = string.find(seen, ' ', 1, true)
    return {string.sub(seen, 1, sp - 1), string.sub(seen, sp + 1)}
  end
end
local n = #ARGV - 6
local epoch = epoch_of(meta, hist, ARGV[2])
local last = redis.call('HINCRBY', meta, 'offset', n)
local first = last - n + 1
local now = int(now_ms())
local size, ttl = tonumber(ARGV[3]), tonumber(ARGV[4])
if size > 0 then
  -- One trim for the batch: half the cost of trimming at each XADD.
  for i = 1, n do
    redis.call('XADD', hist, '0-' .. int(first + i - 1), 't', now, 'b', ARGV[6 + i])
  end
  redis.call('XTRIM', hist, 'MAXLEN', size)
  if ttl > 0 then
    expire(hist, ttl, tonumber(now))
    redis.call('PEXPIRE', hist, ttl)
  end
end
keep(meta, tonumber(ARGV[5]))
local head = epoch .. ' ' .. int(first) .. ' ' .. now .. ' '
if n == 1 then
  redis.call('PUBLISH', ARGV[1], 'm' .. head .. ARGV[7])
else
  local lengths, bodies = {}, {}
  for i = 1, n do
    lengths[i] = #ARGV[6 + i]
    bodies[i] = ARGV[6 + i]
  end
  redis.call('PUBLISH', ARGV[1], 'b' .. head .. table.concat(lengths, ',') .. ' ' .. table.concat(bodies))
end
if once then redis.call('SET', once, epoch .. ' ' .. int(first), 'PX', ARGV[6]) end
return {epoch, int(first)}
";

/// KEYS: meta, history. ARGV: epoch candidate, `latest` or `after`, then for `latest` how
/// many, for `after` the first entry id wanted; the most entries; history ttl (ms); position
/// ttl (ms). Returns `{epoch, top, id, time, body, id, time, body, ...}`, oldest first.
const HISTORY: &str = r"
local meta, hist = KEYS[1], KEYS[2]
local epoch = epoch_of(meta, hist, ARGV[1])
local top = redis.call('HGET', meta, 'offset')
keep(meta, tonumber(ARGV[6]))
expire(hist, tonumber(ARGV[5]), now_ms())
local entries = {}
if ARGV[2] == 'latest' then
  if tonumber(ARGV[3]) > 0 then
    local newest = redis.call('XREVRANGE', hist, '+', '-', 'COUNT', ARGV[3])
    for i = #newest, 1, -1 do entries[#entries + 1] = newest[i] end
  end
elseif tonumber(ARGV[4]) > 0 then
  entries = redis.call('XRANGE', hist, ARGV[3], '+', 'COUNT', ARGV[4])
end
local out = {epoch, top}
for _, e in ipairs(entries) do
  out[#out + 1] = e[1]
  out[#out + 1] = e[2][2]
  out[#out + 1] = e[2][4]
end
return out
";

// The presence scripts take the node keys as arguments, not KEYS: on a cluster those are in
// another slot than the channel's (on the same master), which a script may touch only
// undeclared, with the allow-cross-slot-keys flag.

/// Lua helpers of the scripts that remove presence entries: a channel's users hash counts
/// each user's entries, so that a join or leave says, in the same step, whether it was the
/// user's first connection or its last.
const USER_HELPERS: &str = r"
-- Counts a removed entry of CLIENT (its JSON) out of USERS; 2 when it was its user's last.
local function gone(users, client)
  local ok, c = pcall(cjson.decode, client)
  if not ok or type(c) ~= 'table' or type(c.user) ~= 'string' then return 1 end
  if redis.call('HINCRBY', users, c.user, -1) > 0 then return 1 end
  redis.call('HDEL', users, c.user)
  return 2
end
";

/// KEYS: presence, users. ARGV: connection id, node, client JSON, Pub/Sub channel, node set
/// member, node set, user. Announces the join when the entry is new; returns 2 then when it
/// is the user's first entry, 1 when not, and 0 for an entry that was there.
const JOIN: &str = r"
local fresh = redis.call('HSET', KEYS[1], ARGV[1], ARGV[2] .. ' ' .. ARGV[3])
redis.call('SADD', ARGV[6], ARGV[5])
if fresh == 0 then return 0 end
redis.call('PUBLISH', ARGV[4], 'j' .. ARGV[3])
if redis.call('HINCRBY', KEYS[2], ARGV[7], 1) == 1 then return 2 end
return 1
";

/// KEYS: presence, users. ARGV: connection id, Pub/Sub channel, node set member, node set.
/// Announces the leave (with the client as stored) when there was an entry; returns 2 then
/// when it was the user's last entry, 1 when not, and 0 when there was none.
const LEAVE: &str = r"
local v = redis.call('HGET', KEYS[1], ARGV[1])
redis.call('SREM', ARGV[4], ARGV[3])
if not v then return 0 end
redis.call('HDEL', KEYS[1], ARGV[1])
local sp = string.find(v, ' ', 1, true)
if not sp then return 1 end
local client = string.sub(v, sp + 1)
redis.call('PUBLISH', ARGV[2], 'l' .. client)
return gone(KEYS[2], client)
";

/// KEYS: presence. ARGV: nodes. The client JSON of every entry whose node has not timed out.
const PRESENCE: &str = r"
local now = now_ms()
local all = redis.call('HGETALL', KEYS[1])
local alive, out = {}, {}
for i = 1, #all, 2 do
  local v = all[i + 1]
  local sp = string.find(v, ' ', 1, true)
  if sp then
    local node = string.sub(v, 1, sp - 1)
    local ok = alive[node]
    if ok == nil then
      local deadline = redis.call('ZSCORE', ARGV[1], node)
      ok = (not deadline) or tonumber(deadline) > now
      alive[node] = ok
    end
    if ok then out[#out + 1] = string.sub(v, sp + 1) end
  end
end
return out
";

/// KEYS: nodes. ARGV: node, timeout (ms), key prefix (with its colon), the hash tag of node
/// keys (empty when not on a cluster). Marks the node alive
/// for the timeout, then removes up to 16 timed-out nodes: their presence entries go, counted
/// out of their channels' users, with a leave announced for each. Returns "1" when the node
/// was not registered (new, or swept), else "0"; then the channel (as keys name it) and client
/// JSON of each entry removed that was its user's last on the channel.
const HEARTBEAT: &str = r"
local now = now_ms()
local fresh = redis.call('ZADD', KEYS[1], int(now + tonumber(ARGV[2])), ARGV[1])
local out = {tostring(fresh)}
local p = ARGV[3]
for _, node in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', int(now), 'LIMIT', 0, 16)) do
  local set = p .. 'node:' .. ARGV[4] .. node
  for _, member in ipairs(redis.call('SMEMBERS', set)) do
    local sp = string.find(member, ' ', 1, true)
    if sp then
      local conn, channel = string.sub(member, 1, sp - 1), string.sub(member, sp + 1)
      local pres = p .. 'presence:' .. channel
      local v = redis.call('HGET', pres, conn)
      if v and string.sub(v, 1, #node + 1) == node .. ' ' then
        redis.call('HDEL', pres, conn)
        local client = string.sub(v, #node + 2)
        redis.call('PUBLISH', p .. 'channel:' .. channel, 'l' .. client)
        if gone(p .. 'users:' .. channel, client) == 2 then
          out[#out + 1] = channel
          out[#out + 1] = client
        end
      end
    end
  end
  redis.call('DEL', set)
  redis.call('ZREM', KEYS[1], node)
end
return out
";

/// The scripts, loaded by hash (EVALSHA; reloaded by the client after a Redis restart).
#[derive(Debug)]
pub(super) struct Scripts {
    pub(super) publish: redis::Script,
    pub(super) history: redis::Script,
    pub(super) join: redis::Script,
    pub(super) leave: redis::Script,
    pub(super) presence: redis::Script,
    pub(super) heartbeat: redis::Script,
}

impl Scripts {
    /// The scripts for the key layout of `keys`.
    pub(super) fn new(keys: &Keys) -> Self {
        let cluster = keys.on_cluster();
        let script = |helpers: &str, body: &str, cross_slot: bool| {
            // A Redis Cluster master runs a script whose keys span slots only when it says
            // so, in its first line.
            let flags = if cluster && cross_slot {
                "#!lua flags=allow-cross-slot-keys\n"
            } else {
                ""
            };
            let mut source = format!("{flags}{helpers}{body}");
            if cluster {
                source = source.replace("'PUBLISH'", "'SPUBLISH'");
            }
            redis::Script::new(&source)
        };
        Self {
            publish: script(STREAM_HELPERS, PUBLISH, false),
            history: script(STREAM_HELPERS, HISTORY, false),
            join: script("", JOIN, true),
            leave: script(USER_HELPERS, LEAVE, true),
            presence: script(STREAM_HELPERS, PRESENCE, true),
            heartbeat: script(&format!("{STREAM_HELPERS}{USER_HELPERS}"), HEARTBEAT, true),
        }
    }
}
