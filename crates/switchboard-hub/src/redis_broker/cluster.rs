//! Redis Cluster as a topology: the masters, and the slots each owns, found from seed
//! addresses with `CLUSTER SHARDS` (Redis 7).
//!
//! Each master becomes a shard of the broker, with the same parts as a shard of independent
//! servers (`shard.rs`), routed by slot (`slots.rs`) instead of by jump hash. The broker does
//! not use the redis client's cluster client: that one resubscribes by itself after a
//! Pub/Sub connection is lost, which would hide from the follower the gap it must fill.
//! Masters are numbered by the first slot they own, so every node numbers them alike.

use redis::Value;

use super::config::RedisConfig;
use super::connect::Server;
use crate::broker::BrokerError;

fn unavailable(why: String) -> BrokerError {
    BrokerError::Unavailable(why)
}

/// A master of the cluster and the slot ranges it owns (inclusive).
pub(super) struct Master {
    pub(super) server: Server,
    pub(super) ranges: Vec<(u16, u16)>,
}

/// A master as `CLUSTER SHARDS` describes it.
#[derive(Debug, PartialEq)]
struct Described {
    host: String,
    port: u16,
    ranges: Vec<(u16, u16)>,
}

/// The cluster's masters, ordered by their first slot, as the first seed of
/// [`RedisConfig::url`] that answers describes them.
///
/// # Errors
///
/// When no seed answers `CLUSTER SHARDS` (each one's reason is given), or its answer cannot
/// be read.
pub(super) async fn masters(config: &RedisConfig) -> Result<Vec<Master>, BrokerError> {
    let mut failures = Vec::new();
    for url in config.urls() {
        let seed = Server::new(url, &config.connect, config.timeout)?;
        match shards(&seed, config).await {
            Ok(found) => {
                let mut masters = found
                    .into_iter()
                    .map(|master| {
                        Ok(Master {
                            server: seed.member(&master.host, master.port)?,
                            ranges: master.ranges,
                        })
                    })
                    .collect::<Result<Vec<_>, BrokerError>>()?;
                masters.sort_by_key(|master| master.ranges.first().map(|r| r.0));
                return Ok(masters);
            }
            Err(BrokerError::Unavailable(why)) => failures.push(why),
        }
    }
    Err(unavailable(format!(
        "no redis cluster seed answered: {}",
        failures.join("; ")
    )))
}

/// What `seed` says of the cluster's shards: each master that owns slots, with its address
/// and slot ranges.
async fn shards(seed: &Server, config: &RedisConfig) -> Result<Vec<Described>, BrokerError> {
    let mut con = seed.manager().await?;
    let mut shards = redis::cmd("CLUSTER");
    shards.arg("SHARDS");
    let request = shards.query_async(&mut con);
    let reply: Value = match tokio::time::timeout(config.timeout, request).await {
        Ok(Ok(reply)) => reply,
        Ok(Err(e)) => return Err(unavailable(format!("{}: {e}", seed.name()))),
        Err(_) => {
            return Err(unavailable(format!(
                "{} did not answer CLUSTER SHARDS within {:?}",
                seed.name(),
                config.timeout
            )));
        }
    };
    let tls = seed.name().starts_with("rediss://");
    parse(&reply, tls).map_err(|why| {
        unavailable(format!(
            "unexpected CLUSTER SHARDS reply from {}: {why}",
            seed.name()
        ))
    })
}

/// Reads a `CLUSTER SHARDS` reply: the master of every shard that owns slots, with the port
/// to reach it on (its TLS port when `tls`).
fn parse(reply: &Value, tls: bool) -> Result<Vec<Described>, String> {
    let Value::Array(shards) = reply else {
        return Err("not an array".into());
    };
    let mut masters = Vec::new();
    for shard in shards {
        let shard = fields(shard)?;
        let Some(Value::Array(slots)) = field(&shard, "slots") else {
            return Err("a shard without slots".into());
        };
        let slots = slots.iter().map(slot).collect::<Result<Vec<u16>, _>>()?;
        if slots.is_empty() {
            continue;
        }
        let ranges: Vec<(u16, u16)> = slots.chunks(2).map(|r| (r[0], r[r.len() - 1])).collect();
        let Some(Value::Array(nodes)) = field(&shard, "nodes") else {
            return Err("a shard without nodes".into());
        };
        let mut master = None;
        for node in nodes {
            let node = fields(node)?;
            if field(&node, "role").and_then(text).as_deref() != Some("master") {
                continue;
            }
            let host = ["endpoint", "ip"]
                .iter()
                .filter_map(|name| field(&node, name).and_then(text))
                .find(|host| !host.is_empty() && host != "?")
                .ok_or("a master without an address")?;
            let port = if tls { "tls-port" } else { "port" };
            let port = field(&node, port)
                .and_then(integer)
                .and_then(|port| u16::try_from(port).ok())
                .ok_or_else(|| format!("a master without a {port}"))?;
            master = Some((host, port));
        }
        let (host, port) = master.ok_or("a shard with slots and no master")?;
        masters.push(Described { host, port, ranges });
    }
    if masters.is_empty() {
        return Err("no master owns slots".into());
    }
    Ok(masters)
}

/// A map's fields: a RESP3 map, or a RESP2 array of names and values.
fn fields(value: &Value) -> Result<Vec<(String, &Value)>, String> {
    let pairs: Vec<(&Value, &Value)> = match value {
        Value::Map(pairs) => pairs.iter().map(|(k, v)| (k, v)).collect(),
        Value::Array(flat) if flat.len() % 2 == 0 => {
            flat.chunks(2).map(|pair| (&pair[0], &pair[1])).collect()
        }
        _ => return Err("not a map".into()),
    };
    pairs
        .into_iter()
        .map(|(name, value)| Ok((text(name).ok_or("a field without a name")?, value)))
        .collect()
}

fn field<'a>(fields: &[(String, &'a Value)], name: &str) -> Option<&'a Value> {
    fields.iter().find(|(n, _)| n == name).map(|(_, v)| *v)
}

fn text(value: &Value) -> Option<String> {
    match value {
        Value::BulkString(bytes) => String::from_utf8(bytes.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        Value::VerbatimString { text, .. } => Some(text.clone()),
        _ => None,
    }
}

fn integer(value: &Value) -> Option<i64> {
    match value {
        Value::Int(n) => Some(*n),
        other => text(other)?.parse().ok(),
    }
}

fn slot(value: &Value) -> Result<u16, String> {
    integer(value)
        .and_then(|n| u16::try_from(n).ok())
        .filter(|&n| usize::from(n) < super::slots::SLOTS)
        .ok_or_else(|| "a slot out of range".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    fn node(port: i64, role: &str) -> Value {
        Value::Array(vec![
            bulk("id"),
            bulk("abc"),
            bulk("port"),
            Value::Int(port),
            bulk("tls-port"),
            Value::Int(port + 1000),
            bulk("ip"),
            bulk("10.0.0.1"),
            bulk("endpoint"),
            bulk("127.0.0.1"),
            bulk("role"),
            bulk(role),
            bulk("health"),
            bulk("online"),
        ])
    }

    fn shard(slots: &[i64], nodes: Vec<Value>) -> Value {
        Value::Array(vec![
            bulk("slots"),
            Value::Array(slots.iter().map(|&s| Value::Int(s)).collect()),
            bulk("nodes"),
            Value::Array(nodes),
        ])
    }

    #[test]
    fn cluster_shards_gives_each_master_its_slots() {
        let reply = Value::Array(vec![
            shard(&[10923, 16383], vec![node(7002, "master")]),
            shard(
                &[0, 5460, 6000, 6001],
                vec![node(7005, "replica"), node(7000, "master")],
            ),
            // A failed master that lost its slots, not yet a replica.
            shard(&[], vec![node(7009, "master")]),
        ]);
        let masters = parse(&reply, false).unwrap();
        assert_eq!(
            masters,
            [
                Described {
                    host: "127.0.0.1".into(),
                    port: 7002,
                    ranges: vec![(10923, 16383)]
                },
                Described {
                    host: "127.0.0.1".into(),
                    port: 7000,
                    ranges: vec![(0, 5460), (6000, 6001)]
                },
            ]
        );
        assert_eq!(parse(&reply, true).unwrap()[0].port, 8002);
    }

    #[test]
    fn unreadable_replies_are_errors() {
        assert!(parse(&Value::Nil, false).is_err());
        assert!(parse(&Value::Array(vec![]), false).is_err());
        let no_master = Value::Array(vec![shard(&[0, 16383], vec![node(7005, "replica")])]);
        assert!(parse(&no_master, false).is_err());
        let bad_slot = Value::Array(vec![shard(&[0, 16384], vec![node(7000, "master")])]);
        assert!(parse(&bad_slot, false).is_err());
    }
}
