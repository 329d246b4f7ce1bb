//! Shutdown: every connection is told goodbye and its queue flushed,
//! within `shutdown_timeout_ms`.

use std::rc::Rc;
use std::time::Duration;

use crate::conn::{Conn, Kind};
use crate::proto::ws;

use super::Shard;

impl Shard {
    /// Says goodbye to every connection (WebSocket close 1001; RESP just
    /// flushes) and waits until their queues are written or the deadline.
    pub async fn drain_for_shutdown(self: &Rc<Self>) {
        self.stopping.set(true);
        let conns: Vec<Rc<Conn>> = self.conns.borrow().values().cloned().collect();
        for conn in &conns {
            let last = match conn.kind {
                Kind::Resp => None,
                Kind::Ws | Kind::Echo => Some(ws::close_frame(1001, "server shutting down")),
            };
            conn.push_last(last);
            self.flush(conn);
        }
        let deadline =
            std::time::Instant::now() + Duration::from_millis(self.cfg.shutdown_timeout_ms);
        while std::time::Instant::now() < deadline
            && conns.iter().any(|c| !c.is_closed() && c.queued() > 0)
        {
            monoio::time::sleep(Duration::from_millis(5)).await;
        }
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
    }
}
