//! The shard as a room's home: it answers joins and history, sequences
//! messages and sends them once to each member shard, and sends presence.
//! The room state itself is [`super::home`]; this file turns its answers
//! into frames.

use std::rc::Rc;
use std::time::Instant;

use crate::config::AuthMode;
use crate::conn::Conn;
use crate::proto::chat::{self, Data};
use crate::shard::home::{Fanout, Sequenced, NOBODY};
use crate::shard::stats::unix_ms_coarse;
use crate::shard::wire::{self, code, shard_of, ReplyTo, Wire};

use super::Shard;

impl Shard {
    pub(super) fn home_join(
        &self,
        room: &str,
        conn: u64,
        user: (&str, Option<&str>),
        since: (Option<u64>, Option<u64>),
        reply: ReplyTo,
        join: u32,
    ) {
        if self.clustered() {
            return self.relay_join(room, conn, user, since, reply, join);
        }
        let shard = shard_of(conn);
        let json = reply.reads_json();
        let answer = self
            .homes
            .borrow_mut()
            .join(room, conn, (shard, json), user, since);
        if let Some(event) = answer.presence {
            self.fan_out_event(room, event);
        }
        let ack = Wire::JoinAck {
            room: room.into(),
            conn,
            reply,
            epoch: answer.epoch,
            seq: answer.seq,
            recovered: answer.recovered,
            error: if answer.full {
                code::ROOM_FULL
            } else {
                code::OK
            },
            backlog: answer.backlog,
            join,
        };
        self.dispatch(shard, &ack);
    }

    pub(super) fn home_leave(&self, room: &str, conn: u64) {
        let presence = self.homes.borrow_mut().leave(room, conn, shard_of(conn));
        if let Some(event) = presence {
            self.fan_out_presence(room, event);
        }
        if self.clustered() {
            self.relay_leave(room, conn);
        }
    }

    /// `publisher`: the publishing connection when it is on this shard
    /// and at hand (no need to look it up to answer it).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn home_publish(
        &self,
        room: &str,
        conn: u64,
        user: &Rc<str>,
        data: &[u8],
        raw: bool,
        reply: ReplyTo,
        publisher: Option<&Rc<Conn>>,
    ) {
        if self.clustered() {
            return self.relay_publish(room, conn, (user, data, raw), reply);
        }
        let payload = data;
        let data = if raw {
            Data::Raw(data)
        } else {
            Data::Json(data)
        };
        let msg = self
            .homes
            .borrow_mut()
            .publish(room, user, data, unix_ms_coarse());
        self.deliver(room, &msg, payload);
        let to = shard_of(conn);
        if let Some(c) = publisher {
            let at = (msg.epoch, msg.seq);
            return self.answer_publish(c, room, (&reply).into(), at, msg.receivers);
        }
        if to == self.id {
            let at = (msg.epoch, msg.seq);
            return self.on_publish_ack(room, conn, (&reply).into(), at, msg.receivers);
        }
        let ack = Wire::PublishAck {
            room: room.into(),
            conn,
            reply,
            epoch: msg.epoch,
            seq: msg.seq,
            receivers: msg.receivers,
        };
        self.dispatch(to, &ack);
    }

    /// Sends a sequenced message to the room's member shards: archived
    /// once for the others, handed over as it is to this one. `payload` is
    /// the message's data as published, what RESP subscribers get.
    pub(super) fn deliver(&self, room: &str, msg: &Sequenced, payload: &[u8]) {
        let mut here = false;
        let mut bytes = None;
        for &to in &msg.targets {
            if to == self.id {
                here = true;
                continue;
            }
            let frame = bytes.get_or_insert_with(|| {
                wire::encode(&Wire::Deliver {
                    room: room.into(),
                    seq: msg.seq,
                    json: msg.json.to_vec(),
                    resp: payload.to_vec(),
                })
            });
            self.mesh.send(to, frame.clone());
        }
        if here {
            self.member_deliver(room, &msg.json, payload);
        }
    }

    pub(super) fn home_typing(&self, room: &str, conn: u64, user: &str, state: bool) {
        let Some(targets) = self.homes.borrow().member_shards(room) else {
            return;
        };
        let json = chat::typing(room, user, state);
        if self.clustered() {
            self.relay_event(room, true, &json);
        }
        self.fan_out_event(
            room,
            Fanout {
                targets,
                exclude: conn,
                json,
            },
        );
    }

    pub(super) fn home_members(
        &self,
        room: &str,
        conn: u64,
        id: Option<&str>,
        after: Option<&str>,
        limit: u32,
    ) {
        if self.clustered() {
            return self.relay_members(room, conn, id, after, limit);
        }
        let json = self.homes.borrow().members(id, room, after, limit as usize);
        self.dispatch(shard_of(conn), &Wire::Reply { conn, json });
    }

    pub(super) fn home_history(
        &self,
        room: &str,
        conn: u64,
        id: Option<&str>,
        since: u64,
        limit: u32,
    ) {
        if self.clustered() {
            return self.relay_history(room, conn, id, since, limit);
        }
        let json = self.homes.borrow().history(id, room, since, limit as usize);
        self.dispatch(shard_of(conn), &Wire::Reply { conn, json });
    }

    /// Sends each room's held presence events when its interval ends: one
    /// frame per room, in the single-event form when only one was held.
    pub async fn run_presence(self: Rc<Self>) {
        loop {
            let next =
                std::future::poll_fn(|cx| self.homes.borrow_mut().poll_presence_due(cx)).await;
            let wait = next.saturating_duration_since(Instant::now());
            if !wait.is_zero() {
                monoio::time::sleep(wait).await;
            }
            let now = Instant::now();
            loop {
                let due = self.homes.borrow_mut().take_due_presence(now);
                let Some((room, targets, events)) = due else {
                    break;
                };
                if let [e] = events.as_slice() {
                    let json = chat::presence(&room, &e.user, e.joined, e.info.as_deref());
                    let exclude = e.conn;
                    self.fan_out_presence(
                        &room,
                        Fanout {
                            targets,
                            exclude,
                            json,
                        },
                    );
                    continue;
                }
                // A user name is at most 64 bytes, so an event is under 128
                // bytes of JSON and its info: frames stay within
                // max_payload, which every connection's outbound bound has
                // room for.
                let info = match self.cfg.auth.mode {
                    AuthMode::Jwt => self.cfg.limits.max_info_bytes,
                    AuthMode::None => 0,
                };
                let per_event = 128 + info;
                let per_frame = (self.cfg.max_payload / per_event).max(1);
                for chunk in events.chunks(per_frame) {
                    let json = chat::presence_batch(
                        &room,
                        chunk
                            .iter()
                            .map(|e| (&*e.user, e.joined, e.info.as_deref())),
                    );
                    let targets = targets.clone();
                    self.fan_out_presence(
                        &room,
                        Fanout {
                            targets,
                            exclude: NOBODY,
                            json,
                        },
                    );
                }
            }
        }
    }
}
