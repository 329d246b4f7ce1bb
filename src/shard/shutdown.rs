//! Shutdown: every connection is told goodbye and its queue flushed,
//! within `shutdown_timeout_ms`.

use std::rc::Rc;
use std::task::Poll;
use std::time::Duration;

use crate::conn::{Conn, Kind};
use crate::proto::chat::close::GOING_AWAY;
use crate::proto::ws;

use super::Shard;

impl Shard {
    /// Says goodbye to every connection (WebSocket close 1001; RESP just
    /// flushes) and waits until their queues are written or the deadline:
    /// woken as each connection finishes, not by polling.
    pub async fn drain_for_shutdown(self: &Rc<Self>) {
        self.stopping.set(true);
        let conns: Vec<Rc<Conn>> = self
            .conns
            .borrow()
            .values()
            .map(|h| h.conn.clone())
            .collect();
        for conn in &conns {
            let last = match conn.kind {
                Kind::Resp => None,
                Kind::Ws | Kind::Echo => Some(ws::close_frame(GOING_AWAY, "server shutting down")),
            };
            conn.push_last(last);
            self.flush(conn);
        }
        let deadline = Duration::from_millis(self.cfg.shutdown_timeout_ms);
        let flushed = std::future::poll_fn(|cx| {
            if conns.iter().all(|c| c.is_closed() || c.queued() == 0) {
                return Poll::Ready(());
            }
            *self.shutdown_waker.borrow_mut() = Some(cx.waker().clone());
            Poll::Pending
        });
        let _ = monoio::time::timeout(deadline, flushed).await;
        let unflushed = conns
            .iter()
            .filter(|c| !c.is_closed() && c.queued() > 0)
            .count();
        if unflushed > 0 {
            tracing::warn!(
                shard = self.id,
                unflushed,
                "shutdown deadline passed with queues unflushed"
            );
        }
        for conn in &conns {
            conn.shut_down();
        }
        // Parked connections' tasks see their close, and let go of their
        // places in the admission counts.
        self.unpark_all();
        // This node's members leave Redis now, not when its lease runs out.
        self.leave_cluster().await;
    }

    /// A connection finished writing or went: a shutdown waiting for the
    /// queues to drain looks again.
    pub(super) fn shutdown_progress(&self) {
        if self.stopping.get() {
            if let Some(w) = self.shutdown_waker.borrow_mut().take() {
                w.wake();
            }
        }
    }
}
