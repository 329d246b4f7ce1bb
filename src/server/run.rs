//! One shard's life: its tasks, its accept loops, its inbox loop, and
//! its part of the shutdown.

use std::net::TcpListener as StdListener;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use monoio::io::{CancelHandle, Canceller};
use monoio::net::TcpListener;

use crate::access::Authority;
use crate::cluster::Node;
use crate::config::Config;
use crate::conn::io::yield_now;
use crate::session;
use crate::shard::admission::{Admission, Refusal};
use crate::shard::stats::{unix_ms, ShardStats};
use crate::shard::Shard;

/// Frames taken from the rings per turn before other tasks run.
const INBOX_BUDGET: usize = 512;

/// Runs one shard, on the thread `runtime` gave it, until the server stops.
pub(super) async fn run_shard(
    runtime: shards::Shard,
    cfg: Arc<Config>,
    stats: Arc<ShardStats>,
    shared: (Arc<Admission>, Arc<Authority>, Option<Arc<Node>>),
    (ws, resp): (StdListener, StdListener),
) {
    stats
        .core_plus_one
        .set(runtime.core.map_or(0, |c| c as u64 + 1));
    stats
        .io_uring
        .set(u64::from(runtime.driver == shards::Driver::IoUring));
    stats.heartbeat_ms.set(unix_ms());
    let uring = runtime.driver == shards::Driver::IoUring;
    let shards::Shard {
        id,
        count,
        inbox,
        outbox,
        ..
    } = runtime;
    let shard = Shard::new(id, count, cfg, stats, shared, outbox);
    if uring {
        shard.use_send_ring();
    }
    shard.spawn_tasks();
    monoio::spawn(heartbeat(shard.clone()));
    let canceller = Canceller::new();
    for (std, kind) in [(ws, Listener::Ws), (resp, Listener::Resp)] {
        match TcpListener::from_std(std) {
            Ok(listener) => {
                monoio::spawn(accept_loop(
                    shard.clone(),
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
        let n = inbox.drain(INBOX_BUDGET, |_, frame| {
            shard.on_frame(&frame);
            shard.flush_if_due();
        });
        shard.stats.ring_received.add(n as u64);
        yield_now().await;
    }
    canceller.cancel();
    shard.drain_for_shutdown().await;
}

async fn heartbeat(shard: Rc<Shard>) {
    loop {
        shard.stats.heartbeat_ms.set(unix_ms());
        monoio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[derive(Clone, Copy)]
enum Listener {
    Ws,
    Resp,
}

async fn accept_loop(
    shard: Rc<Shard>,
    listener: TcpListener,
    cancel: CancelHandle,
    kind: Listener,
) {
    let mut fd_errors: u64 = 0;
    loop {
        match listener.cancelable_accept(cancel.clone()).await {
            Ok((stream, peer)) => {
                if shard.stopping.get() {
                    break;
                }
                let admitted = match shard.admit(peer.ip(), matches!(kind, Listener::Ws)) {
                    Ok(admitted) => admitted,
                    Err(why) => {
                        refuse(&shard, stream, kind, why);
                        continue;
                    }
                };
                match kind {
                    Listener::Ws => monoio::spawn(session::ws::serve(admitted, stream)),
                    Listener::Resp => monoio::spawn(session::resp::serve(admitted, stream)),
                };
            }
            Err(_) if shard.stopping.get() => break,
            Err(e) if matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)) => {
                shard.stats.accept_fd_exhausted.inc();
                fd_errors += 1;
                if fd_errors.is_power_of_two() {
                    tracing::warn!(
                        shard = shard.id,
                        connections = shard.conn_count(),
                        times = fd_errors,
                        "out of file descriptors: not accepting for 100 ms; existing connections keep being served"
                    );
                }
                monoio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => {
                tracing::debug!(shard = shard.id, error = %e, "accept failed");
                monoio::time::sleep(Duration::from_millis(1)).await;
            }
        }
    }
}

/// Turns away a connection over a limit, saying why where the protocol
/// can (a WebSocket client gets an HTTP 503, a RESP client Redis's own
/// error), and counts it.
fn refuse(shard: &Shard, stream: monoio::net::TcpStream, kind: Listener, why: Refusal) {
    shard.stats.conns_refused.inc();
    let refused = shard.stats.conns_refused.get();
    if refused.is_power_of_two() {
        tracing::warn!(shard = shard.id, reason = ?why, refused, "refusing connections over the limit");
    }
    match kind {
        Listener::Ws => session::ws::refuse(stream, why),
        Listener::Resp => session::resp::refuse(stream, why),
    }
}
