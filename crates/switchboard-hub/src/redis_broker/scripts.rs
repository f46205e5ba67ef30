//! The Lua scripts the Redis broker runs, the keys they touch, and the decoding of what they
//! store and publish.
//!
//! Each script runs atomically in Redis, so an offset is assigned, stored in history and
//! published in one step: every node sees a channel's publications in offset order on its
//! Pub/Sub connection, and a history read sees every publication that got an offset before it.
//!
//! Keys, under the configured prefix `P` (channel names have no whitespace, so a channel's
//! keys never collide with another's):
//!
//! ```text
//! P:meta:CH       hash    epoch, offset (the latest one given)
//! P:history:CH    stream  entry id 0-OFFSET, fields t (ms, Redis clock) and b (body)
//! P:presence:CH   hash    connection id -> "NODE CLIENT_JSON"
//! P:node:NODE     set     "CONN CH" for every presence entry the node made
//! P:nodes         zset    node -> when it counts as gone (ms, Redis clock)
//! P:channel:CH    Pub/Sub "m EPOCH OFFSET TIME BODY" | "b EPOCH FIRST TIME LEN,LEN,.. BODIES"
//!                         | "j CLIENT_JSON" | "l CLIENT_JSON"
//! P:once:CH KEY   string  "EPOCH OFFSET" of an idempotent publish, for its window
//! P:control       Pub/Sub commands between nodes and their replies (JSON, see control.rs)
//! ```
//!
//! A body is `{"from":CLIENT,"data":DATA}` with `DATA` the publisher's exact JSON text.
//! With several shards, a channel's keys are all on its shard; `P:nodes`, `P:node:NODE`
//! (for that shard's presence entries) are on every shard, `P:control` on the first.
//!
//! On a Redis Cluster (`cluster.rs`), `CH` in every key and Pub/Sub name above is the
//! channel's hash tag `{CH}` (escaped, `slots.rs`), so one script touches one slot, and the
//! Pub/Sub is sharded: the scripts SPUBLISH. `P:nodes` and `P:node:NODE` are
//! `P:nodes:{T}` and `P:node:{T}NODE` with `T` a tag in a slot of the master they are on,
//! one pair per master like one per shard. Presence scripts touch a channel's slot and the
//! master's node keys, and the sweep touches many channels: they are flagged
//! `allow-cross-slot-keys` (Redis 7), all their keys being on one master. `P:control` is
//! on the master that owns its slot.

use std::borrow::Cow;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::slots;
use crate::broker::{ClientInfo, Publication};

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

/// KEYS: presence. ARGV: connection id, node, client JSON, Pub/Sub channel, node set member,
/// node set. Announces the join when the entry is new; returns 1 then, else 0.
const JOIN: &str = r"
local fresh = redis.call('HSET', KEYS[1], ARGV[1], ARGV[2] .. ' ' .. ARGV[3])
redis.call('SADD', ARGV[6], ARGV[5])
if fresh == 1 then redis.call('PUBLISH', ARGV[4], 'j' .. ARGV[3]) end
return fresh
";

/// KEYS: presence. ARGV: connection id, Pub/Sub channel, node set member, node set.
/// Announces the leave (with the client as stored) when there was an entry; returns 1 then,
/// else 0.
const LEAVE: &str = r"
local v = redis.call('HGET', KEYS[1], ARGV[1])
redis.call('SREM', ARGV[4], ARGV[3])
if not v then return 0 end
redis.call('HDEL', KEYS[1], ARGV[1])
local sp = string.find(v, ' ', 1, true)
if sp then redis.call('PUBLISH', ARGV[2], 'l' .. string.sub(v, sp + 1)) end
return 1
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
/// for the timeout, then removes up to 16 timed-out nodes: their presence entries go, with a
/// leave announced for each. Returns 1 when the node was not registered (new, or swept).
const HEARTBEAT: &str = r"
local now = now_ms()
local fresh = redis.call('ZADD', KEYS[1], int(now + tonumber(ARGV[2])), ARGV[1])
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
        redis.call('PUBLISH', p .. 'channel:' .. channel, 'l' .. string.sub(v, #node + 2))
      end
    end
  end
  redis.call('DEL', set)
  redis.call('ZREM', KEYS[1], node)
end
return fresh
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
        let cluster = keys.node_tag.is_some();
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
            leave: script("", LEAVE, true),
            presence: script(STREAM_HELPERS, PRESENCE, true),
            heartbeat: script(STREAM_HELPERS, HEARTBEAT, true),
        }
    }
}

/// Key and Pub/Sub names under a prefix.
#[derive(Clone, Debug)]
pub(super) struct Keys {
    /// The prefix with its colon.
    prefix: String,
    /// On a Redis Cluster master, the hash tag of its node keys (a slot it owns): channels
    /// are then named by their own hash tags, and Pub/Sub is sharded.
    node_tag: Option<String>,
}

impl Keys {
    /// The keys on one Redis (not a cluster).
    pub(super) fn new(prefix: &str) -> Self {
        Self {
            prefix: format!("{prefix}:"),
            node_tag: None,
        }
    }

    /// The keys on a Redis Cluster master that owns `slot`.
    pub(super) fn cluster(prefix: &str, slot: u16) -> Self {
        Self {
            prefix: format!("{prefix}:"),
            node_tag: Some(slots::tag_in(slot)),
        }
    }

    pub(super) fn prefix(&self) -> &str {
        &self.prefix
    }

    /// How keys name `channel`: as it is, or as its hash tag on a cluster.
    fn name<'a>(&self, channel: &'a str) -> Cow<'a, str> {
        match self.node_tag {
            Some(_) => Cow::Owned(slots::tag(channel)),
            None => Cow::Borrowed(channel),
        }
    }

    pub(super) fn meta(&self, channel: &str) -> String {
        format!("{}meta:{}", self.prefix, self.name(channel))
    }

    pub(super) fn history(&self, channel: &str) -> String {
        format!("{}history:{}", self.prefix, self.name(channel))
    }

    /// Where the position of the publish with idempotency `key` on `channel` is kept.
    pub(super) fn once(&self, channel: &str, key: &str) -> String {
        format!("{}once:{} {key}", self.prefix, self.name(channel))
    }

    pub(super) fn presence(&self, channel: &str) -> String {
        format!("{}presence:{}", self.prefix, self.name(channel))
    }

    /// The hash tag of the node keys (empty when not on a cluster).
    pub(super) fn node_tag(&self) -> &str {
        self.node_tag.as_deref().unwrap_or_default()
    }

    pub(super) fn node(&self, node: &str) -> String {
        format!("{}node:{}{node}", self.prefix, self.node_tag())
    }

    /// A member of a node's set: a presence entry it made, `CONN CH` (`CH` as keys name it,
    /// which the sweep script puts after `P:presence:`).
    pub(super) fn member(&self, conn: &str, channel: &str) -> String {
        format!("{conn} {}", self.name(channel))
    }

    /// The connection id and channel of a node set's member.
    pub(super) fn of_member(&self, member: &str) -> Option<(String, String)> {
        let (conn, name) = member.split_once(' ')?;
        let channel = match self.node_tag {
            Some(_) => slots::untag(name)?,
            None => name.to_owned(),
        };
        Some((conn.to_owned(), channel))
    }

    pub(super) fn nodes(&self) -> String {
        match &self.node_tag {
            Some(tag) => format!("{}nodes:{tag}", self.prefix),
            None => format!("{}nodes", self.prefix),
        }
    }

    /// The Pub/Sub channel of commands between nodes.
    pub(super) fn control(&self) -> String {
        format!("{}control", self.prefix)
    }

    /// PUBLISH, or SPUBLISH for sharded Pub/Sub on a cluster.
    pub(super) fn publish(&self) -> &'static str {
        if self.node_tag.is_some() {
            "SPUBLISH"
        } else {
            "PUBLISH"
        }
    }

    pub(super) fn pubsub(&self, channel: &str) -> String {
        format!("{}channel:{}", self.prefix, self.name(channel))
    }

    /// The hub channel a Pub/Sub channel name stands for.
    pub(super) fn channel_of<'a>(&self, pubsub: &'a str) -> Option<Cow<'a, str>> {
        let name = pubsub
            .strip_prefix(&self.prefix)?
            .strip_prefix("channel:")?;
        match self.node_tag {
            Some(_) => slots::untag(name).map(Cow::Owned),
            None => Some(Cow::Borrowed(name)),
        }
    }
}

/// A publication's body as stored and published.
#[derive(Serialize)]
pub(super) struct Body<'a> {
    pub(super) from: &'a ClientInfo,
    pub(super) data: &'a RawValue,
}

#[derive(Deserialize)]
struct OwnedBody {
    from: ClientInfo,
    data: Box<RawValue>,
}

/// Why something read from Redis could not be used (another program wrote there, or a
/// different version of the broker).
#[derive(Debug, thiserror::Error)]
#[error("unexpected data in redis: {0}")]
pub(super) struct Malformed(String);

fn malformed(what: impl Into<String>) -> Malformed {
    Malformed(what.into())
}

pub(super) fn publication(offset: u64, time: u64, body: &str) -> Result<Publication, Malformed> {
    let body: OwnedBody =
        serde_json::from_str(body).map_err(|e| malformed(format!("publication body: {e}")))?;
    Ok(Publication {
        offset,
        time,
        from: body.from,
        data: body.data,
    })
}

fn number(text: &str, what: &str) -> Result<u64, Malformed> {
    text.parse()
        .map_err(|_| malformed(format!("{what} {text:?} is not a number")))
}

/// What arrived on a channel's Pub/Sub.
#[derive(Debug)]
pub(super) enum Event {
    /// Publications with consecutive offsets (one, or a batch the pipeline sent together).
    Publications {
        epoch: String,
        publications: Vec<Arc<Publication>>,
    },
    Join(ClientInfo),
    Leave(ClientInfo),
}

/// Decodes a Pub/Sub payload (see the module docs).
pub(super) fn event(payload: &[u8]) -> Result<Event, Malformed> {
    let text = std::str::from_utf8(payload).map_err(|_| malformed("payload is not utf-8"))?;
    let client = |json: &str| {
        serde_json::from_str::<ClientInfo>(json).map_err(|e| malformed(format!("client: {e}")))
    };
    match text.split_at_checked(1) {
        Some(("m", rest)) => {
            let mut parts = rest.splitn(4, ' ');
            let (Some(epoch), Some(offset), Some(time), Some(body)) =
                (parts.next(), parts.next(), parts.next(), parts.next())
            else {
                return Err(malformed("publication without its four parts"));
            };
            let offset = number(offset, "offset")?;
            let time = number(time, "time")?;
            Ok(Event::Publications {
                epoch: epoch.to_owned(),
                publications: vec![Arc::new(publication(offset, time, body)?)],
            })
        }
        Some(("b", rest)) => {
            let mut parts = rest.splitn(5, ' ');
            let (Some(epoch), Some(first), Some(time), Some(lengths), Some(mut bodies)) = (
                parts.next(),
                parts.next(),
                parts.next(),
                parts.next(),
                parts.next(),
            ) else {
                return Err(malformed("batch without its five parts"));
            };
            let first = number(first, "offset")?;
            let time = number(time, "time")?;
            let mut publications = Vec::new();
            for (length, offset) in lengths.split(',').zip(first..) {
                let length = usize::try_from(number(length, "length")?)
                    .map_err(|_| malformed("batch length too large"))?;
                let (Some(body), Some(rest)) = (bodies.get(..length), bodies.get(length..)) else {
                    return Err(malformed("batch shorter than its lengths"));
                };
                publications.push(Arc::new(publication(offset, time, body)?));
                bodies = rest;
            }
            if !bodies.is_empty() {
                return Err(malformed("batch longer than its lengths"));
            }
            Ok(Event::Publications {
                epoch: epoch.to_owned(),
                publications,
            })
        }
        Some(("j", json)) => Ok(Event::Join(client(json)?)),
        Some(("l", json)) => Ok(Event::Leave(client(json)?)),
        _ => Err(malformed("unknown event kind")),
    }
}

/// The reply of the history script: the position, then the entries asked for.
#[derive(Clone, Debug)]
pub(super) struct Stream {
    pub(super) epoch: String,
    pub(super) top: u64,
    pub(super) publications: Vec<Arc<Publication>>,
}

/// Decodes the history script's reply.
pub(super) fn stream(reply: Vec<String>) -> Result<Stream, Malformed> {
    let mut items = reply.into_iter();
    let (Some(epoch), Some(top)) = (items.next(), items.next()) else {
        return Err(malformed("history reply without a position"));
    };
    let top = number(&top, "offset")?;
    let mut publications = Vec::new();
    while let Some(id) = items.next() {
        let (Some(time), Some(body)) = (items.next(), items.next()) else {
            return Err(malformed("history entry without time or body"));
        };
        let offset = id
            .strip_prefix("0-")
            .ok_or_else(|| malformed(format!("history entry id {id:?}")))?;
        let offset = number(offset, "entry offset")?;
        let time = number(&time, "time")?;
        publications.push(Arc::new(publication(offset, time, &body)?));
    }
    Ok(Stream {
        epoch,
        top,
        publications,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_decode_and_garbage_is_an_error() {
        let Event::Publications {
            epoch,
            publications,
        } = event(br#"m9f2c 7 1700000000000 {"from":{"user":"ann","conn":"c1"},"data":{"a": 1}}"#)
            .unwrap()
        else {
            panic!("not a publication")
        };
        assert_eq!(epoch, "9f2c");
        let [publication] = &publications[..] else {
            panic!("not one publication")
        };
        assert_eq!(publication.offset, 7);
        assert_eq!(publication.time, 1_700_000_000_000);
        assert_eq!(publication.from.user, "ann");
        assert_eq!(
            publication.data.get(),
            r#"{"a": 1}"#,
            "data keeps its exact text"
        );
        assert!(matches!(
            event(br#"j{"user":"bob","conn":"c2"}"#),
            Ok(Event::Join(c)) if c.conn == "c2"
        ));
        assert!(matches!(
            event(br#"l{"user":"bob","conn":"c2"}"#),
            Ok(Event::Leave(_))
        ));
        let one = r#"{"from":{"user":"a","conn":"c"},"data":"x y"}"#;
        let two = r#"{"from":{"user":"b","conn":"d"},"data":[1, 2]}"#;
        let batch = format!("be1 5 1000 {},{} {one}{two}", one.len(), two.len());
        let Ok(Event::Publications { publications, .. }) = event(batch.as_bytes()) else {
            panic!("not a batch")
        };
        let offsets: Vec<u64> = publications.iter().map(|p| p.offset).collect();
        assert_eq!(offsets, [5, 6]);
        assert_eq!(publications[1].data.get(), "[1, 2]");
        assert_eq!(publications[1].from.user, "b");
        let short = format!("be1 5 1000 {},{} {one}", one.len(), two.len());
        let long = format!("be1 5 1000 {} {one}{two}", one.len());
        for bad in [
            short.as_bytes(),
            long.as_bytes(),
            b"be1 5 1000 x {}",
            &b""[..],
            b"x{}",
            b"m9f2c 7",
            b"m9f2c seven 1 {}",
            b"m9f2c 7 1 {not json",
            b"j[]",
            b"\xff\xfe",
        ] {
            assert!(event(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn history_replies_decode() {
        let body = r#"{"from":{"user":"u","conn":"c"},"data":"x"}"#;
        let s = stream(vec![
            "e1".into(),
            "5".into(),
            "0-4".into(),
            "10".into(),
            body.into(),
            "0-5".into(),
            "11".into(),
            body.into(),
        ])
        .unwrap();
        assert_eq!((s.epoch.as_str(), s.top), ("e1", 5));
        let offsets: Vec<u64> = s.publications.iter().map(|p| p.offset).collect();
        assert_eq!(offsets, [4, 5]);
        assert!(stream(vec!["e1".into()]).is_err());
        assert!(stream(vec!["e1".into(), "5".into(), "4".into()]).is_err());
        assert!(stream(vec!["e1".into(), "x".into()]).is_err());
    }

    #[test]
    fn pubsub_names_map_back_to_channels() {
        let keys = Keys::new("sb");
        assert_eq!(keys.pubsub("a:b"), "sb:channel:a:b");
        assert_eq!(keys.channel_of("sb:channel:a:b").as_deref(), Some("a:b"));
        assert_eq!(keys.channel_of("other:channel:a"), None);
        assert_eq!(keys.meta("x"), "sb:meta:x");
        assert_eq!(
            keys.of_member(&keys.member("c1", "a b")),
            Some(("c1".into(), "a b".into()))
        );
    }

    #[test]
    fn on_a_cluster_a_channels_keys_share_its_slot_and_node_keys_their_masters() {
        let keys = Keys::cluster("sb", 5461);
        for channel in ["room", "a}b", "}", "{x}"] {
            let slot = slots::hash_slot(keys.meta(channel).as_bytes());
            for key in [
                keys.history(channel),
                keys.presence(channel),
                keys.once(channel, "k{1}"),
                keys.pubsub(channel),
            ] {
                assert_eq!(slots::hash_slot(key.as_bytes()), slot, "{key}");
            }
            let pubsub = keys.pubsub(channel);
            assert_eq!(keys.channel_of(&pubsub).as_deref(), Some(channel));
            let member = keys.member("c1", channel);
            assert_eq!(keys.of_member(&member), Some(("c1".into(), channel.into())));
            // The sweep script finds the presence key from the member.
            let (_, name) = member.split_once(' ').unwrap();
            assert_eq!(
                format!("{}presence:{name}", keys.prefix()),
                keys.presence(channel)
            );
        }
        assert_eq!(keys.meta("room"), "sb:meta:{room}");
        assert_eq!(slots::hash_slot(keys.nodes().as_bytes()), 5461);
        assert_eq!(slots::hash_slot(keys.node("n1").as_bytes()), 5461);
        assert_eq!(
            keys.node("n1"),
            format!("{}node:{}n1", keys.prefix(), keys.node_tag())
        );
        assert_eq!(keys.channel_of("sb:channel:room"), None, "untagged");
        assert_eq!(keys.publish(), "SPUBLISH");
        assert_eq!(Keys::new("sb").publish(), "PUBLISH");
    }
}
