//! The shard as a member shard: it delivers a room's messages and events
//! to its local members, framed once per protocol, and answers its own
//! clients' requests once their rooms' homes have acted.

use std::rc::Rc;

use bytes::BytesMut;

use crate::conn::order::Frame;
use crate::conn::{Conn, Kind};
use crate::proto::chat::{self, ApiError, Code};
use crate::proto::resp::encode as resp;
use crate::proto::ws::text_frame;
use crate::shard::wire::{code, ArchivedEntry, ReplyRef};

use super::Shard;

impl Shard {
    pub(super) fn member_deliver(&self, room: &str, json: &[u8], payload: &[u8]) {
        let local = self.local.borrow();
        let Some(members) = local.get(room) else {
            return;
        };
        // Framed once per protocol for the whole shard; every member queues
        // the same frame.
        let mut ws_frame: Option<Frame> = None;
        let mut resp_frames: [Option<Frame>; 2] = [None, None];
        let mut n = 0;
        for m in members {
            let frame = match m.kind {
                Kind::Ws => ws_frame
                    .get_or_insert_with(|| {
                        // The home makes JSON whenever a member reads it.
                        debug_assert!(!json.is_empty(), "no JSON for a WebSocket member");
                        Frame::from(text_frame(json))
                    })
                    .clone(),
                Kind::Resp => {
                    let p = m.resp_proto();
                    // The only member here, or one whose queue already ends
                    // in its own frame (a pipelining subscriber's turn):
                    // written straight in, no frame to make.
                    if members.len() == 1 || m.has_own_tail() {
                        n += 1;
                        let len = resp::message_len(room.as_bytes(), payload);
                        self.send_own(m, len, |out| {
                            resp::message_into(out, room.as_bytes(), payload, p);
                        });
                        continue;
                    }
                    resp_frames[p as usize]
                        .get_or_insert_with(|| {
                            Frame::from(resp::message(room.as_bytes(), payload, p))
                        })
                        .clone()
                }
                Kind::Echo => continue,
            };
            n += 1;
            self.send_shared(m, frame);
        }
        self.stats.deliveries.add(n);
    }

    pub(super) fn member_ephemeral(&self, room: &str, exclude: u64, json: &[u8]) {
        let local = self.local.borrow();
        let Some(members) = local.get(room) else {
            return;
        };
        let mut frame: Option<Frame> = None;
        for m in members
            .iter()
            .filter(|m| m.kind == Kind::Ws && m.id != exclude)
        {
            let f = frame
                .get_or_insert_with(|| Frame::from(text_frame(json)))
                .clone();
            self.send_shared(m, f);
        }
    }

    /// The home's answer to a join: `(epoch, seq, recovered, error)` and
    /// the backlog recovered with `since`.
    pub(super) fn on_join_ack(
        &self,
        room: &str,
        conn: u64,
        reply: ReplyRef<'_>,
        (epoch, seq, recovered, error): (u64, u64, bool, u8),
        backlog: &[ArchivedEntry],
        join: u32,
    ) {
        // A connection that closed meanwhile has no one to answer.
        let Some(conn) = self.conn(conn) else { return };
        // Every join is answered, even one overtaken by a leave or a later
        // join of the same room: a RESP client's later replies wait behind
        // this one. Only the current join changes membership.
        let current = conn
            .rooms
            .borrow()
            .iter()
            .find(|(r, j)| &**r == room && *j == join)
            .map(|(r, _)| r.clone());
        if error != code::OK {
            if current.is_some() {
                conn.rooms.borrow_mut().retain(|(r, _)| &**r != room);
            }
            return self.answer_error(&conn, reply, &self.refusal(room, error));
        }
        let is_new = current.is_some_and(|room_rc| {
            let mut local = self.local.borrow_mut();
            let members = local.entry(room_rc).or_default();
            if members.iter().any(|m| Rc::ptr_eq(m, &conn)) {
                false
            } else {
                members.push(conn.clone());
                self.stats.memberships.inc();
                true
            }
        });
        // The count is the subscriptions right after this one was asked
        // for, as Redis reports it.
        self.answer(
            &conn,
            reply,
            |id| chat::ok(id, room, Some((seq, epoch)), recovered),
            |count, p| {
                let mut out = BytesMut::with_capacity(64 + room.len());
                resp::subscription(&mut out, "subscribe", Some(room.as_bytes()), count, p);
                Frame::from(out.freeze())
            },
        );
        if is_new {
            for e in backlog {
                let frame = match conn.kind {
                    Kind::Resp => resp::message(room.as_bytes(), &e.resp, conn.resp_proto()),
                    _ => text_frame(&e.json),
                };
                self.send(&conn, frame);
            }
        }
    }

    pub(super) fn on_publish_ack(
        &self,
        room: &str,
        conn: u64,
        reply: ReplyRef<'_>,
        (epoch, seq): (u64, u64),
        receivers: u32,
    ) {
        let Some(conn) = self.conn(conn) else {
            return;
        };
        self.answer_publish(&conn, room, reply, (epoch, seq), receivers);
    }

    /// Answers a publish: its seq, or (RESP) its receivers.
    pub(super) fn answer_publish(
        &self,
        conn: &Rc<Conn>,
        room: &str,
        reply: ReplyRef<'_>,
        (epoch, seq): (u64, u64),
        receivers: u32,
    ) {
        self.answer(
            conn,
            reply,
            |id| chat::ok(id, room, Some((seq, epoch)), true),
            |_, _| self.integer_reply(receivers),
        );
    }

    /// A request its room's home could not serve.
    pub(super) fn on_refused(&self, room: &str, conn: u64, reply: ReplyRef<'_>, error: u8) {
        if let Some(conn) = self.conn(conn) {
            self.answer_error(&conn, reply, &self.refusal(room, error));
        }
    }

    /// The error a home's [`code`] stands for.
    fn refusal(&self, room: &str, error: u8) -> ApiError {
        match error {
            code::ROOM_FULL => {
                let max = self.cfg.max_members_per_room;
                ApiError::new(
                    Code::RoomFull,
                    format!("room {room} has reached its limit of {max} members"),
                )
            }
            _ => ApiError::new(
                Code::Unavailable,
                "the cluster's Redis is unreachable; try again".to_owned(),
            ),
        }
    }

    pub(super) fn on_reply(&self, conn: u64, json: &[u8]) {
        if let Some(conn) = self.conn(conn) {
            self.reply_json(&conn, json);
        }
    }

    /// Answers a request that went through a home: a WebSocket reply
    /// carrying the request's id, or the RESP frame for the reply slot the
    /// request reserved (`resp` gets the subscription count and protocol).
    fn answer(
        &self,
        conn: &Rc<Conn>,
        reply: ReplyRef<'_>,
        ws: impl FnOnce(Option<&str>) -> Vec<u8>,
        resp: impl FnOnce(i64, crate::proto::resp::Proto) -> Frame,
    ) {
        match reply {
            ReplyRef::Ws(id) => {
                self.reply_json(conn, &ws(id));
            }
            ReplyRef::Resp { ticket, count } => {
                let frame = resp(i64::from(count), conn.resp_proto());
                self.fulfil(conn, ticket, frame);
            }
        }
    }

    /// [`Self::answer`] with an error.
    fn answer_error(&self, conn: &Rc<Conn>, reply: ReplyRef<'_>, err: &ApiError) {
        self.stats.error(err.code.into());
        self.answer(
            conn,
            reply,
            |id| chat::error(id, err.code.as_str(), &err.message),
            |_, _| {
                // Redis Cluster's word for "not now": clients retry on it.
                let prefix = if err.code == Code::Unavailable {
                    "TRYAGAIN"
                } else {
                    "ERR"
                };
                Frame::from(resp::error_frame(&format!("{prefix} {}", err.message)))
            },
        );
    }

    pub(super) fn local_remove(&self, room: &str, conn: &Rc<Conn>) {
        let mut local = self.local.borrow_mut();
        let Some(members) = local.get_mut(room) else {
            return;
        };
        if let Some(i) = members.iter().position(|m| Rc::ptr_eq(m, conn)) {
            members.swap_remove(i);
            self.stats.memberships.sub(1);
        }
        if members.is_empty() {
            local.remove(room);
        }
    }

    pub(super) fn intern(&self, room: &str) -> Rc<str> {
        match self.local.borrow().get_key_value(room) {
            Some((k, _)) => k.clone(),
            None => room.into(),
        }
    }
}
