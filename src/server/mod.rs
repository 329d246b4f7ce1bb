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
use std::time::Instant;

use anyhow::Context;

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
    let mut signals = signal_hook::iterator::Signals::new([libc::SIGINT, libc::SIGTERM])?;
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
    let listeners: Mutex<Vec<Option<(StdListener, StdListener)>>> =
        Mutex::new(ws.into_iter().zip(resp).map(Some).collect());
    let shard_stats = stats.clone();
    let shard_cfg = cfg.clone();
    let admission = Arc::new(Admission::new(
        cfg.max_connections,
        cfg.max_connections_per_ip,
    ));
    let handle = shards::launch(&scfg, move |shard| {
        let (ws, resp) = listeners.lock().expect("start-up only")[shard.id]
            .take()
            .expect("each shard takes its listeners once");
        let stats = shard_stats[shard.id].clone();
        run::run_shard(
            shard,
            shard_cfg.clone(),
            stats,
            admission.clone(),
            (ws, resp),
        )
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
    let signal = signals.forever().next();
    tracing::info!(
        ?signal,
        timeout_ms = cfg.shutdown_timeout_ms,
        "shutting down: closing connections"
    );
    std::thread::spawn(move || {
        if signals.forever().next().is_some() {
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
