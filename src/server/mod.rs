//! Starting and stopping the server: listeners, shards, the admin thread,
//! signals.
//!
//! - `mod.rs`: [`serve`], start-up and the shutdown it waits for.
//! - [`listen`]: the `SO_REUSEPORT` listeners.
//! - `run`: one shard's life — its tasks, accept loops and inbox loop.

pub mod listen;
mod run;

use std::net::TcpListener as StdListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::access::Authority;
use crate::admin::Admin;
use crate::config::Config;
use crate::doctor;
use crate::shard::admission::Admission;
use crate::shard::stats::ShardStats;
use listen::{bind_reuseport, Bound};

/// Runs the server until SIGINT or SIGTERM, then shuts down gracefully.
pub fn serve(cfg: Config) -> anyhow::Result<()> {
    match doctor::raise_nofile_limit() {
        Ok((old, new)) if old != new => {
            tracing::info!(old, new, "raised the open-files soft limit")
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "could not raise the open-files limit"),
    }
    tracing::info!("host: {}", doctor::startup_summary());
    let mut signals =
        signal_hook::iterator::Signals::new([libc::SIGINT, libc::SIGTERM, libc::SIGHUP])?;
    let cfg = Arc::new(cfg);
    let scfg = shards::Config::default()
        .shards(cfg.shards)
        .cores(cfg.cores.clone())
        .ring_capacity(cfg.ring_capacity)
        .force_epoll(cfg.force_epoll);
    let n = scfg.resolved_shards();
    let ws = bind_reuseport(cfg.ws, n)?;
    let resp = bind_reuseport(cfg.resp, n)?;
    let admin_listener =
        StdListener::bind(cfg.admin).with_context(|| format!("binding admin {}", cfg.admin))?;
    let bound = Bound {
        ws: ws[0].local_addr()?,
        resp: resp[0].local_addr()?,
        admin: admin_listener.local_addr()?,
    };
    let stats: Vec<Arc<ShardStats>> = (0..n).map(|_| Arc::new(ShardStats::default())).collect();
    // Healthy from the start: a shard thread still starting is not one
    // that stopped answering.
    for s in &stats {
        s.heartbeat_ms.set(crate::shard::stats::unix_ms());
    }
    let listeners: Mutex<Vec<Option<(StdListener, StdListener)>>> =
        Mutex::new(ws.into_iter().zip(resp).map(Some).collect());
    let shard_stats = stats.clone();
    let shard_cfg = cfg.clone();
    let admission = Arc::new(Admission::new(
        cfg.max_connections,
        cfg.max_connections_per_ip,
        cfg.limits.handshakes_per_ip_per_s,
    ));
    let authority = Arc::new(Authority::new(&cfg)?);
    let node = crate::cluster::Node::new(&cfg.cluster)?.map(Arc::new);
    if let Some(node) = &node {
        let redis = node.target.redacted();
        match crate::cluster::probe::probe(&node.target, Duration::from_secs(2)) {
            Ok(t) => {
                tracing::info!(node = %node.name, %redis, ping_ms = t.as_millis() as u64, "cluster: redis answers")
            }
            Err(e) => {
                tracing::warn!(node = %node.name, %redis, "cluster: redis does not answer ({e}); serving, and requests that need it get 'unavailable' until it does")
            }
        }
    }
    let reload = authority.clone();
    warn_if_open(&cfg, &bound);
    let handle = shards::launch(&scfg, move |shard| {
        let (ws, resp) = listeners.lock().expect("start-up only")[shard.id]
            .take()
            .expect("each shard takes its listeners once");
        let stats = shard_stats[shard.id].clone();
        let shared = (admission.clone(), authority.clone(), node.clone());
        run::run_shard(shard, shard_cfg.clone(), stats, shared, (ws, resp))
    })?;
    match &handle.fallback_reason {
        None => tracing::info!(shards = n, driver = %handle.driver, "shards started"),
        Some(why) => {
            tracing::warn!(shards = n, driver = %handle.driver, reason = %why, "io_uring unavailable; shards run on epoll")
        }
    }
    let admin = Admin {
        shards: stats,
        started: Instant::now(),
        token: (!cfg.admin_token.is_empty()).then(|| cfg.admin_token.clone()),
        clustered: cfg.cluster.enabled(),
    };
    std::thread::Builder::new()
        .name("admin".into())
        .spawn(move || admin.serve(admin_listener))?;
    tracing::info!(ws = %bound.ws, resp = %bound.resp, admin = %bound.admin, "listening");
    // One machine-readable line for scripts and tests.
    println!(
        "ringcast listening ws={} resp={} admin={} shards={n}",
        bound.ws, bound.resp, bound.admin
    );
    // SIGHUP reads the token keys again (rotation); SIGINT or SIGTERM stop.
    let signal = signals.forever().find(|&s| {
        if s != libc::SIGHUP {
            return true;
        }
        match reload.reload() {
            Ok(()) => tracing::info!("SIGHUP: token keys read again"),
            Err(e) => tracing::error!(error = %e, "SIGHUP: keys not reloaded; the old ones stay"),
        }
        false
    });
    tracing::info!(
        ?signal,
        timeout_ms = cfg.shutdown_timeout_ms,
        "shutting down: closing connections"
    );
    std::thread::spawn(move || {
        if signals.forever().any(|s| s != libc::SIGHUP) {
            eprintln!("second signal: exiting at once");
            std::process::exit(1);
        }
    });
    handle.stop();
    if !handle.join() {
        anyhow::bail!("a shard panicked");
    }
    tracing::info!("stopped");
    Ok(())
}

/// Says so, loudly, when anyone who reaches a client port may speak as
/// anyone: no authentication on a listener that is not loopback.
fn warn_if_open(cfg: &Config, bound: &Bound) {
    for e in doctor::exposures(cfg, bound.ws, bound.resp, bound.admin) {
        tracing::warn!(addr = %e.addr, fix = e.fix, "{}; see docs/security.md", e.risk);
    }
}
