//! Starting and stopping the server: listeners, shards, the admin thread,
//! signals.

use std::net::{SocketAddr, TcpListener as StdListener};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use monoio::io::{CancelHandle, Canceller};
use monoio::net::TcpListener;
use socket2::{Domain, Protocol, Socket, Type};

use crate::admin::Admin;
use crate::config::Config;
use crate::conn::yield_now;
use crate::node::Node;
use crate::stats::{unix_ms, ShardStats};
use crate::{doctor, resp_conn, ws_conn};

/// Frames taken from the rings per turn before other tasks run.
const INBOX_BUDGET: usize = 512;

/// Binds `n` listening sockets to the same address with SO_REUSEPORT, so the
/// kernel spreads incoming connections over the shards. With port 0 the
/// first socket picks the port and the others follow it.
pub fn bind_reuseport(addr: SocketAddr, n: usize) -> anyhow::Result<Vec<StdListener>> {
    let mut out: Vec<StdListener> = Vec::with_capacity(n);
    let mut addr = addr;
    for _ in 0..n {
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
        socket.set_reuse_address(true)?;
        socket.set_reuse_port(true)?;
        socket.set_nonblocking(true)?;
        socket
            .bind(&addr.into())
            .with_context(|| format!("binding {addr}"))?;
        socket.listen(65535)?;
        let listener: StdListener = socket.into();
        addr = listener.local_addr()?;
        out.push(listener);
    }
    Ok(out)
}

/// Where the server ended up listening.
#[derive(Clone, Copy, Debug)]
pub struct Bound {
    /// WebSocket address.
    pub ws: SocketAddr,
    /// RESP address.
    pub resp: SocketAddr,
    /// Admin address.
    pub admin: SocketAddr,
}

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
    let handle = shards::launch(&scfg, move |shard| {
        let (ws, resp) = listeners.lock().expect("start-up only")[shard.id]
            .take()
            .expect("each shard takes its listeners once");
        let stats = shard_stats[shard.id].clone();
        run_shard(shard, shard_cfg.clone(), stats, ws, resp)
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

async fn run_shard(
    shard: shards::Shard,
    cfg: Arc<Config>,
    stats: Arc<ShardStats>,
    ws: StdListener,
    resp: StdListener,
) {
    stats
        .core_plus_one
        .set(shard.core.map_or(0, |c| c as u64 + 1));
    stats
        .io_uring
        .set(u64::from(shard.driver == shards::Driver::IoUring));
    stats.heartbeat_ms.set(unix_ms());
    let uring = shard.driver == shards::Driver::IoUring;
    let shards::Shard {
        id,
        count,
        inbox,
        outbox,
        ..
    } = shard;
    let node = Node::new(id, count, cfg, stats, outbox);
    if uring {
        node.use_send_ring();
    }
    monoio::spawn(node.clone().run_flusher());
    monoio::spawn(node.clone().run_held_retry());
    monoio::spawn(node.clone().run_presence());
    monoio::spawn(heartbeat(node.clone()));
    let canceller = Canceller::new();
    for (std, kind) in [(ws, Listener::Ws), (resp, Listener::Resp)] {
        match TcpListener::from_std(std) {
            Ok(listener) => {
                monoio::spawn(accept_loop(
                    node.clone(),
                    listener,
                    canceller.handle(),
                    kind,
                ));
            }
            Err(e) => tracing::error!(shard = id, error = %e, "cannot use listener"),
        }
    }
    loop {
        inbox.ready().await;
        if inbox.stop_requested() {
            break;
        }
        let n = inbox.drain(INBOX_BUDGET, |_, frame| node.on_frame(&frame));
        node.stats.ring_received.add(n as u64);
        yield_now().await;
    }
    canceller.cancel();
    node.drain_for_shutdown().await;
}

async fn heartbeat(node: std::rc::Rc<Node>) {
    loop {
        node.stats.heartbeat_ms.set(unix_ms());
        monoio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[derive(Clone, Copy)]
enum Listener {
    Ws,
    Resp,
}

async fn accept_loop(
    node: std::rc::Rc<Node>,
    listener: TcpListener,
    cancel: CancelHandle,
    kind: Listener,
) {
    let mut fd_errors: u64 = 0;
    loop {
        match listener.cancelable_accept(cancel.clone()).await {
            Ok((stream, _)) => {
                if node.stopping.get() {
                    break;
                }
                match kind {
                    Listener::Ws => monoio::spawn(ws_conn::serve(node.clone(), stream)),
                    Listener::Resp => monoio::spawn(resp_conn::serve(node.clone(), stream)),
                };
            }
            Err(_) if node.stopping.get() => break,
            Err(e) if matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)) => {
                node.stats.accept_fd_exhausted.inc();
                fd_errors += 1;
                if fd_errors.is_power_of_two() {
                    tracing::warn!(
                        shard = node.id,
                        connections = node.conn_count(),
                        times = fd_errors,
                        "out of file descriptors: not accepting for 100 ms; existing connections keep being served"
                    );
                }
                monoio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => {
                tracing::debug!(shard = node.id, error = %e, "accept failed");
                monoio::time::sleep(Duration::from_millis(1)).await;
            }
        }
    }
}
