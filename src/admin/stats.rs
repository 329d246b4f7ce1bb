//! The `/stats` JSON document and the `/metrics` Prometheus text, read
//! from the shards' counters (each written by its own shard).

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Map, Value};

use crate::shard::stats::{unix_ms, ErrorKind, ShardStats};

/// A heartbeat older than this makes `/healthz` fail.
const HEALTHY_WITHIN_MS: u64 = 1000;

type Field = (&'static str, &'static str, bool, fn(&ShardStats) -> u64);

/// Every per-shard number: name, help, is-gauge, getter.
const FIELDS: &[Field] = &[
    ("connections_ws", "Open WebSocket connections", true, |s| {
        s.conns_ws.get()
    }),
    ("connections_resp", "Open RESP connections", true, |s| {
        s.conns_resp.get()
    }),
    ("accepted", "Connections accepted", false, |s| {
        s.accepted.get()
    }),
    (
        "accept_fd_exhausted",
        "accept() failures for lack of file descriptors",
        false,
        |s| s.accept_fd_exhausted.get(),
    ),
    ("rooms_homed", "Rooms whose home is this shard", true, |s| {
        s.rooms_homed.get()
    }),
    (
        "rooms_evicted",
        "Memberless rooms dropped to keep retained history within budget",
        false,
        |s| s.rooms_evicted.get(),
    ),
    (
        "memberships",
        "Connection-room memberships on this shard",
        true,
        |s| s.memberships.get(),
    ),
    (
        "messages_in",
        "Messages published by this shard's clients",
        false,
        |s| s.messages_in.get(),
    ),
    (
        "messages_sequenced",
        "Messages sequenced by this shard as a room home",
        false,
        |s| s.messages_sequenced.get(),
    ),
    (
        "deliveries",
        "Room messages queued to this shard's connections",
        false,
        |s| s.deliveries.get(),
    ),
    ("bytes_in", "Bytes read from clients", false, |s| {
        s.bytes_in.get()
    }),
    ("bytes_out", "Bytes written to clients", false, |s| {
        s.bytes_out.get()
    }),
    (
        "writes",
        "Sends to clients (sendmsg calls and io_uring entries)",
        false,
        |s| s.writes.get(),
    ),
    (
        "send_batches",
        "io_uring_enter calls that each carried a turn's sends",
        false,
        |s| s.send_batches.get(),
    ),
    (
        "presence_events",
        "Joins and leaves at rooms homed on the shard",
        false,
        |s| s.presence_events.get(),
    ),
    (
        "presence_held",
        "Presence events held for a batch (room within presence_interval_ms)",
        false,
        |s| s.presence_held.get(),
    ),
    ("ring_sent", "Frames sent to other shards", false, |s| {
        s.ring_sent.get()
    }),
    (
        "ring_received",
        "Frames received from other shards",
        false,
        |s| s.ring_received.get(),
    ),
    ("ring_full", "Sends that found a ring full", false, |s| {
        s.ring_full.get()
    }),
    (
        "congestion_pauses",
        "Times a reader stopped taking requests while a shard was congested",
        false,
        |s| s.congestion_pauses.get(),
    ),
    (
        "slow_consumer_closes",
        "Connections closed as slow consumers",
        false,
        |s| s.slow_consumer_closes.get(),
    ),
    (
        "ping_timeouts",
        "WebSocket connections closed for not answering a ping",
        false,
        |s| s.ping_timeouts.get(),
    ),
    (
        "idle_closes",
        "RESP connections closed after resp_idle_timeout_ms",
        false,
        |s| s.idle_closes.get(),
    ),
    (
        "handshake_timeouts",
        "WebSocket upgrades not finished within handshake_timeout_ms",
        false,
        |s| s.handshake_timeouts.get(),
    ),
    (
        "conns_refused",
        "Connections refused at accept (max_connections, max_connections_per_ip)",
        false,
        |s| s.conns_refused.get(),
    ),
    (
        "token_expiries",
        "WebSocket connections closed when their token expired",
        false,
        |s| s.token_expiries.get(),
    ),
    (
        "send_errors",
        "Connections closed because a batched send failed in the kernel",
        false,
        |s| s.send_errors.get(),
    ),
    (
        "parked",
        "Idle connections waiting without a task of their own",
        true,
        |s| s.parked.get(),
    ),
    (
        "redis_links_up",
        "Cluster mode: this shard's Redis links that are up (0-2)",
        true,
        |s| s.redis_links_up.get(),
    ),
    (
        "redis_commands",
        "Cluster mode: commands sent to Redis",
        false,
        |s| s.redis_commands.get(),
    ),
    (
        "redis_errors",
        "Cluster mode: Redis error replies and commands lost with their connection",
        false,
        |s| s.redis_errors.get(),
    ),
    (
        "redis_reconnects",
        "Cluster mode: Redis connections made again after a loss",
        false,
        |s| s.redis_reconnects.get(),
    ),
    (
        "cluster_rooms",
        "Cluster mode: rooms this shard follows on Redis",
        true,
        |s| s.cluster_rooms.get(),
    ),
    (
        "cluster_gap_fills",
        "Cluster mode: fetches that filled a gap in a room's channel",
        false,
        |s| s.cluster_gap_fills.get(),
    ),
    (
        "cluster_position_fills",
        "Cluster mode: position checks that found a room ahead of this node",
        false,
        |s| s.cluster_position_fills.get(),
    ),
    (
        "cluster_epoch_changes",
        "Cluster mode: rooms whose sequence restarted in Redis",
        false,
        |s| s.cluster_epoch_changes.get(),
    ),
    (
        "cluster_messages_lost",
        "Cluster mode: messages gone from Redis before this node delivered them",
        false,
        |s| s.cluster_messages_lost.get(),
    ),
    (
        "cluster_frames_dropped",
        "Cluster mode: channel frames of a format this version does not read",
        false,
        |s| s.cluster_frames_dropped.get(),
    ),
];

fn shard_json(id: usize, s: &ShardStats, now_ms: u64, uptime_s: u64) -> Value {
    let mut obj = Map::new();
    obj.insert("shard".into(), json!(id));
    obj.insert("core".into(), json!(s.core_plus_one.get().checked_sub(1)));
    obj.insert(
        "driver".into(),
        json!(if s.io_uring.get() == 1 {
            "io_uring"
        } else {
            "epoll"
        }),
    );
    obj.insert(
        "connections".into(),
        json!(s.conns_ws.get() + s.conns_resp.get()),
    );
    for (name, _, _, get) in FIELDS {
        obj.insert((*name).into(), json!(get(s)));
    }
    let errors: Map<String, Value> = ErrorKind::ALL
        .iter()
        .map(|k| (k.name().to_string(), json!(s.errors[*k as usize].get())))
        .collect();
    obj.insert("errors".into(), Value::Object(errors));
    obj.insert(
        "heartbeat_age_ms".into(),
        json!(now_ms.saturating_sub(s.heartbeat_ms.get())),
    );
    obj.insert("uptime_s".into(), json!(uptime_s));
    Value::Object(obj)
}

/// The `/stats` document. `uptime` is also given in ms (`uptime_ms`), a
/// monotonic clock that rates can be computed against: two documents'
/// counters differ by what happened between their `uptime_ms`.
pub fn stats(shards: &[Arc<ShardStats>], uptime: Duration) -> Value {
    let uptime_s = uptime.as_secs();
    let now = unix_ms();
    let per_shard: Vec<Value> = shards
        .iter()
        .enumerate()
        .map(|(i, s)| shard_json(i, s, now, uptime_s))
        .collect();
    let mut totals = Map::new();
    let sum = |f: fn(&ShardStats) -> u64| shards.iter().map(|s| f(s)).sum::<u64>();
    totals.insert(
        "connections".into(),
        json!(sum(|s| s.conns_ws.get() + s.conns_resp.get())),
    );
    for (name, _, _, get) in FIELDS {
        totals.insert((*name).into(), json!(sum(*get)));
    }
    let errors: u64 = shards
        .iter()
        .flat_map(|s| s.errors.iter().map(|c| c.get()))
        .sum();
    totals.insert("protocol_errors".into(), json!(errors));
    json!({
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_s": uptime_s,
        "uptime_ms": uptime.as_millis() as u64,
        "shard_count": shards.len(),
        "healthy": healthy(shards),
        "node": totals,
        "shards": per_shard,
    })
}

/// The `/metrics` document.
pub fn metrics(shards: &[Arc<ShardStats>], uptime_s: u64) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(8192);
    for (name, help, gauge, get) in FIELDS {
        let kind = if *gauge { "gauge" } else { "counter" };
        let metric = if *gauge {
            format!("ringcast_{name}")
        } else {
            format!("ringcast_{name}_total")
        };
        let _ = writeln!(out, "# HELP {metric} {help}.\n# TYPE {metric} {kind}");
        for (i, s) in shards.iter().enumerate() {
            let _ = writeln!(out, "{metric}{{shard=\"{i}\"}} {}", get(s));
        }
    }
    let _ = writeln!(out, "# HELP ringcast_protocol_errors_total Protocol errors by kind.\n# TYPE ringcast_protocol_errors_total counter");
    for (i, s) in shards.iter().enumerate() {
        for k in ErrorKind::ALL {
            let _ = writeln!(
                out,
                "ringcast_protocol_errors_total{{shard=\"{i}\",kind=\"{}\"}} {}",
                k.name(),
                s.errors[k as usize].get()
            );
        }
    }
    let _ = writeln!(out, "# HELP ringcast_uptime_seconds Seconds since start.\n# TYPE ringcast_uptime_seconds gauge\nringcast_uptime_seconds {uptime_s}");
    out
}

/// `/readyz`: healthy, and in cluster mode every shard's links to Redis
/// up (it can take requests that need Redis); or why not.
pub fn ready(shards: &[Arc<ShardStats>], clustered: bool) -> Result<(), String> {
    if !healthy(shards) {
        return Err("a shard has not answered within 1 s".into());
    }
    if clustered {
        let down: Vec<String> = shards
            .iter()
            .enumerate()
            .filter(|(_, s)| s.redis_links_up.get() < 2)
            .map(|(i, _)| i.to_string())
            .collect();
        if !down.is_empty() {
            return Err(format!(
                "redis is unreachable from shard(s) {}",
                down.join(", ")
            ));
        }
    }
    Ok(())
}

/// Every shard's event loop ticked within the last second.
pub fn healthy(shards: &[Arc<ShardStats>]) -> bool {
    let now = unix_ms();
    shards
        .iter()
        .all(|s| now.saturating_sub(s.heartbeat_ms.get()) <= HEALTHY_WITHIN_MS)
}
