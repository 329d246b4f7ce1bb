use std::rc::Rc;
use std::time::Duration;

use crate::api::ApiError;
use crate::conn::{Conn, Kind};
use crate::room::home_of;
use crate::stats::ErrorKind;
use crate::wire::Wire;
use crate::ws;

use super::Node;

impl Node {
    // ----- client requests -----------------------------------------------

    /// Starts a join; the reply comes when the home answers.
    /// `req` travels to the home and back untouched: the WebSocket request
    /// id, or a RESP connection's reply ticket.
    pub fn join(
        &self,
        conn: &Rc<Conn>,
        room: &str,
        since: Option<u64>,
        req: &[u8],
    ) -> Result<(), ApiError> {
        let epoch = conn.ticket();
        {
            let mut rooms = conn.rooms.borrow_mut();
            if let Some(entry) = rooms.iter_mut().find(|(r, _)| &**r == room) {
                entry.1 = epoch;
            } else {
                let max = self.cfg.max_rooms_per_conn;
                if rooms.len() >= max {
                    return Err(ApiError::new(
                        "too_many_rooms",
                        ErrorKind::Limit,
                        format!("a connection may be in at most {max} rooms"),
                    ));
                }
                rooms.push((self.intern(room), epoch));
            }
        }
        let user = conn.user.borrow().to_string();
        self.dispatch(
            home_of(room.as_bytes(), self.count),
            &Wire::Join {
                room: room.into(),
                conn: conn.id,
                user,
                since,
                req: req.to_vec(),
                epoch,
            },
        );
        Ok(())
    }

    /// Leaves a room at once; false if the connection was not in it.
    pub fn leave(&self, conn: &Rc<Conn>, room: &str) -> bool {
        let removed = {
            let mut rooms = conn.rooms.borrow_mut();
            rooms
                .iter()
                .position(|(r, _)| &**r == room)
                .map(|i| rooms.swap_remove(i).0)
        };
        let Some(rc) = removed else { return false };
        self.local_remove(&rc, conn);
        self.dispatch(
            home_of(room.as_bytes(), self.count),
            &Wire::Leave {
                room: room.into(),
                conn: conn.id,
            },
        );
        true
    }

    /// True if the connection is in (or joining) the room.
    pub fn is_member(&self, conn: &Conn, room: &str) -> bool {
        conn.rooms.borrow().iter().any(|(r, _)| &**r == room)
    }

    /// Sends a message to its room's home for sequencing.
    pub fn publish(&self, conn: &Rc<Conn>, room: &str, data: &[u8], raw: bool, req: &[u8]) {
        self.stats.messages_in.inc();
        let user = conn.user.borrow().to_string();
        self.dispatch(
            home_of(room.as_bytes(), self.count),
            &Wire::Publish {
                room: room.into(),
                conn: conn.id,
                user,
                data: data.to_vec(),
                raw,
                req: req.to_vec(),
            },
        );
    }

    /// Sends a typing indicator through the room's home.
    pub fn typing(&self, conn: &Rc<Conn>, room: &str, state: bool) {
        let user = conn.user.borrow().to_string();
        self.dispatch(
            home_of(room.as_bytes(), self.count),
            &Wire::Typing {
                room: room.into(),
                conn: conn.id,
                user,
                state,
            },
        );
    }

    /// Asks the home for the room's members.
    pub fn members(&self, conn: &Rc<Conn>, room: &str, id: Option<&str>) {
        self.dispatch(
            home_of(room.as_bytes(), self.count),
            &Wire::Members {
                room: room.into(),
                conn: conn.id,
                req: id.map(|s| s.as_bytes().to_vec()).unwrap_or_default(),
            },
        );
    }

    /// Asks the home for retained messages.
    pub fn history(&self, conn: &Rc<Conn>, room: &str, since: u64, limit: u32, id: Option<&str>) {
        self.dispatch(
            home_of(room.as_bytes(), self.count),
            &Wire::History {
                room: room.into(),
                conn: conn.id,
                req: id.map(|s| s.as_bytes().to_vec()).unwrap_or_default(),
                since,
                limit,
            },
        );
    }

    // ----- shutdown ------------------------------------------------------

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
