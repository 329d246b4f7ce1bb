//! What clients ask for: each request becomes a frame to its room's home
//! (handled at once when that is this shard), and its answer comes back
//! to the member side ([`super::member`]).

use std::rc::Rc;

use crate::conn::order::UNRESERVED;
use crate::conn::Conn;
use crate::proto::chat::{self, ApiError, Code};
use crate::shard::stats::ErrorKind;
use crate::shard::wire::{home_of, ReplyTo, Wire};

use super::Shard;

impl Shard {
    /// Starts a join; the reply comes when the home answers, to `reply`.
    /// With `since`, the messages after it (of the sequence `epoch`, when
    /// given) come first.
    pub fn join(
        &self,
        conn: &Rc<Conn>,
        room: &str,
        (since, epoch): (Option<u64>, Option<u64>),
        reply: ReplyTo,
    ) -> Result<(), ApiError> {
        let join = conn.ticket();
        {
            let mut rooms = conn.rooms.borrow_mut();
            if let Some(entry) = rooms.iter_mut().find(|(r, _)| &**r == room) {
                entry.1 = join;
            } else {
                let max = self.cfg.max_rooms_per_conn;
                if rooms.len() >= max {
                    return Err(ApiError::new(
                        Code::TooManyRooms,
                        format!("a connection may be in at most {max} rooms"),
                    ));
                }
                rooms.push((self.intern(room), join));
            }
        }
        let user = conn.user().to_string();
        let info =
            conn.with_access(|a| a.as_ref().and_then(|a| a.info.as_deref().map(String::from)));
        self.dispatch(
            home_of(room.as_bytes(), self.count),
            &Wire::Join {
                room: room.into(),
                conn: conn.id,
                user,
                info,
                since,
                epoch,
                reply,
                join,
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
        self.left(conn, &rc);
        true
    }

    /// Leaves every room, as a connection that closes does.
    pub fn leave_all(&self, conn: &Rc<Conn>) {
        let rooms = std::mem::take(&mut *conn.rooms.borrow_mut());
        for (room, _) in rooms {
            self.left(conn, &room);
        }
    }

    /// A connection is out of `room`: no more local deliveries, and the
    /// home is told.
    fn left(&self, conn: &Rc<Conn>, room: &str) {
        self.local_remove(room, conn);
        self.dispatch(
            home_of(room.as_bytes(), self.count),
            &Wire::Leave {
                room: room.into(),
                conn: conn.id,
            },
        );
    }

    /// Takes the connection out of every room it may no longer be in: its
    /// room passes that ended by `unix_s` go, then each room its access
    /// (token grants, the passes left) does not allow is left, with an
    /// error event that says why. A connection's rooms are never more than
    /// its tokens allow now: the sweep calls this when a pass ends, a
    /// request before its check, a refresh after the grants change.
    pub fn enforce_access(&self, conn: &Rc<Conn>, unix_s: u64) {
        let leeway = self.cfg.auth.leeway_s;
        let joined: Vec<Rc<str>> = conn.rooms.borrow().iter().map(|(r, _)| r.clone()).collect();
        let revoked: Vec<(Rc<str>, bool)> = conn.with_access(|a| {
            let Some(a) = a else { return Vec::new() };
            let ended = a.expire_passes(unix_s, leeway);
            joined
                .into_iter()
                .filter(|room| !a.may_join(room))
                .map(|room| {
                    let by_pass = ended.iter().any(|e| **e == *room);
                    (room, by_pass)
                })
                .collect()
        });
        for (room, pass_ended) in revoked {
            if !self.leave(conn, &room) {
                continue;
            }
            let why = if pass_ended {
                format!("the room token for room {room} expired: you left it")
            } else {
                format!("your token no longer allows room {room}: you left it")
            };
            self.stats.error(ErrorKind::Forbidden);
            self.reply_json(
                conn,
                &chat::room_error(Code::Forbidden.as_str(), &room, &why),
            );
        }
    }

    /// True if the connection is in (or joining) the room.
    pub fn is_member(&self, conn: &Conn, room: &str) -> bool {
        conn.rooms.borrow().iter().any(|(r, _)| &**r == room)
    }

    /// Sends a WebSocket message (its `data`, compact JSON) to its room's
    /// home for sequencing.
    pub fn publish(&self, conn: &Rc<Conn>, room: &str, data: &[u8], reply: ReplyTo) {
        let home = home_of(room.as_bytes(), self.count);
        self.publish_to(home, conn, room, data, reply);
    }

    /// A RESP `PUBLISH`. Its reply reserves a place in the connection's
    /// reply order only when another shard or the cluster decides it: homed
    /// here, it is answered before anything else is queued.
    pub fn publish_resp(&self, conn: &Rc<Conn>, room: &str, data: &[u8]) {
        let home = home_of(room.as_bytes(), self.count);
        let ticket = if home == self.id && !self.clustered() {
            UNRESERVED
        } else {
            conn.defer()
        };
        let reply = ReplyTo::Resp { ticket, count: 0 };
        self.publish_to(home, conn, room, data, reply);
    }

    /// Sends a message to `home`: JSON from a WebSocket client, the bytes
    /// as published (`raw`) from a RESP one, as the reply says.
    fn publish_to(&self, home: usize, conn: &Rc<Conn>, room: &str, data: &[u8], reply: ReplyTo) {
        self.stats.messages_in.inc();
        let raw = !reply.reads_json();
        if home == self.id {
            // Homed here: no frame to archive and read back.
            return self.home_publish(room, conn.id, &conn.user(), data, raw, reply, Some(conn));
        }
        let user = conn.user().to_string();
        self.dispatch(
            home,
            &Wire::Publish {
                room: room.into(),
                conn: conn.id,
                user,
                data: data.to_vec(),
                raw,
                reply,
            },
        );
    }

    /// Sends a typing indicator through the room's home.
    pub fn typing(&self, conn: &Rc<Conn>, room: &str, state: bool) {
        let user = conn.user().to_string();
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
    /// A page of at most `limit` users after `after`.
    pub fn members(
        &self,
        conn: &Rc<Conn>,
        room: &str,
        (after, limit): (Option<&str>, u32),
        id: Option<&str>,
    ) {
        self.dispatch(
            home_of(room.as_bytes(), self.count),
            &Wire::Members {
                room: room.into(),
                conn: conn.id,
                id: id.map(Into::into),
                after: after.map(Into::into),
                limit,
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
                id: id.map(Into::into),
                since,
                limit,
            },
        );
    }
}
