use std::rc::Rc;
use std::task::Poll;
use std::time::Duration;

use bytes::{Bytes, BytesMut};

use crate::api;
use crate::conn::{Conn, Kind};
use crate::resp;
use crate::room::HomeRoom;
use crate::wire::{self, shard_of, ArchivedWire, Wire};

use super::{req_id, Node, ReadStep, HELD_PAUSE};

impl Node {
    // ----- between shards ------------------------------------------------

    /// Sends a frame to the home of a room (handled at once when that is
    /// this shard).
    pub fn dispatch(&self, to: usize, frame: &Wire) {
        let bytes = wire::encode(frame);
        self.dispatch_bytes(to, bytes);
    }

    fn dispatch_bytes(&self, to: usize, bytes: Bytes) {
        if to == self.id {
            self.on_frame(&bytes);
        } else {
            self.ring_send(to, bytes);
        }
    }

    fn ring_send(&self, to: usize, bytes: Bytes) {
        let mut held = self.held.borrow_mut();
        if !held[to].is_empty() {
            held[to].push_back(bytes);
            self.held_changed(self.held_total.get() + 1);
            return;
        }
        match self.outbox.send(to, bytes) {
            Ok(()) => self.stats.ring_sent.inc(),
            Err(shards::SendError::Full(bytes)) => {
                self.stats.ring_full.inc();
                held[to].push_back(bytes);
                self.held_changed(self.held_total.get() + 1);
                if let Some(w) = self.held_waker.borrow_mut().take() {
                    w.wake();
                }
            }
            Err(shards::SendError::NoRoute(_)) => {
                tracing::error!(to, "no ring to shard; frame dropped");
            }
        }
    }

    /// True when some shard holds so many frames for full rings that
    /// readers should stop taking requests until it catches up.
    pub fn backlogged(&self) -> bool {
        self.outbox.any_congested()
    }

    fn held_changed(&self, total: usize) {
        self.held_total.set(total);
        self.outbox.set_congested(total > HELD_PAUSE);
    }

    /// The bottom of every session's read loop: reads what the client sent
    /// next without waiting. Sessions wait themselves, on
    /// `conn.stream.readable` directly: that wait is the state an idle
    /// connection's task sits in, and awaiting it through nested async
    /// functions made every connection's task 150 bytes bigger.
    pub fn read_step(&self, conn: &Conn, buf: &mut BytesMut, chunk: usize) -> ReadStep {
        match crate::conn::recv_into(conn.fd(), buf, chunk) {
            Ok(0) => ReadStep::End,
            Ok(n) => {
                self.stats.bytes_in.add(n as u64);
                ReadStep::Data
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                // An idle connection keeps no read buffer.
                if buf.is_empty() {
                    *buf = BytesMut::new();
                }
                ReadStep::Wait
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => ReadStep::Data,
            Err(_) => ReadStep::End,
        }
    }

    /// Waits (polling every millisecond) until the held frames drain, or
    /// the connection goes.
    pub async fn wait_backlog(&self, conn: &Conn) {
        while self.backlogged() && !conn.is_closed() {
            monoio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    /// Retries frames held for full rings until all are sent.
    pub async fn run_held_retry(self: Rc<Self>) {
        loop {
            std::future::poll_fn(|cx| {
                if self.held_total.get() == 0 {
                    *self.held_waker.borrow_mut() = Some(cx.waker().clone());
                    Poll::Pending
                } else {
                    Poll::Ready(())
                }
            })
            .await;
            monoio::time::sleep(Duration::from_micros(100)).await;
            let mut held = self.held.borrow_mut();
            for (to, queue) in held.iter_mut().enumerate() {
                while let Some(bytes) = queue.pop_front() {
                    match self.outbox.send(to, bytes) {
                        Ok(()) => {
                            self.stats.ring_sent.inc();
                            self.held_changed(self.held_total.get() - 1);
                        }
                        Err(shards::SendError::Full(bytes)) => {
                            queue.push_front(bytes);
                            break;
                        }
                        Err(shards::SendError::NoRoute(_)) => {
                            self.held_changed(self.held_total.get() - 1);
                        }
                    }
                }
            }
        }
    }

    /// Handles one frame from another shard (or from this one).
    pub fn on_frame(&self, bytes: &Bytes) {
        let frame = match wire::decode(bytes) {
            Ok(f) => f,
            Err(e) => {
                tracing::error!(error = %e, "undecodable frame between shards");
                return;
            }
        };
        match frame {
            ArchivedWire::Join {
                room,
                conn,
                user,
                since,
                req,
                epoch,
            } => self.home_join(
                room.as_str(),
                conn.to_native(),
                user.as_str(),
                since.as_ref().map(|s| s.to_native()),
                req.as_slice(),
                epoch.to_native(),
            ),
            ArchivedWire::Leave { room, conn } => self.home_leave(room.as_str(), conn.to_native()),
            ArchivedWire::Publish {
                room,
                conn,
                user,
                data,
                raw,
                req,
            } => self.home_publish(
                room.as_str(),
                conn.to_native(),
                user.as_str(),
                data.as_slice(),
                *raw,
                req.as_slice(),
            ),
            ArchivedWire::Typing {
                room,
                conn,
                user,
                state,
            } => {
                let json = api::typing(room.as_str(), user.as_str(), *state);
                self.home_ephemeral(room.as_str(), conn.to_native(), json);
            }
            ArchivedWire::Members { room, conn, req } => {
                let users = self
                    .homed
                    .borrow()
                    .get(room.as_str())
                    .map(HomeRoom::users)
                    .unwrap_or_default();
                let json = api::members(req_id(req.as_slice()), room.as_str(), &users);
                let conn = conn.to_native();
                self.dispatch(shard_of(conn), &Wire::Reply { conn, json });
            }
            ArchivedWire::History {
                room,
                conn,
                req,
                since,
                limit,
            } => {
                let json = {
                    let homed = self.homed.borrow();
                    let id = req_id(req.as_slice());
                    match homed.get(room.as_str()) {
                        Some(r) => {
                            // Oldest first from `since`, within the count
                            // limit and the reply size budget.
                            let (_, it) = r.since(since.to_native());
                            let mut used = 0;
                            let mut more = false;
                            let mut picked = Vec::new();
                            for e in it.take(limit.to_native() as usize) {
                                if used + e.size() > self.reply_budget() {
                                    more = true;
                                    break;
                                }
                                used += e.size();
                                picked.push(&e.json[..]);
                            }
                            api::history(id, room.as_str(), picked.into_iter(), more)
                        }
                        None => api::history(id, room.as_str(), std::iter::empty(), false),
                    }
                };
                let conn = conn.to_native();
                self.dispatch(shard_of(conn), &Wire::Reply { conn, json });
            }
            ArchivedWire::Deliver {
                room, json, resp, ..
            } => {
                self.member_deliver(room.as_str(), json.as_slice(), resp.as_slice());
            }
            ArchivedWire::Ephemeral {
                room,
                exclude,
                json,
            } => {
                self.member_ephemeral(room.as_str(), exclude.to_native(), json.as_slice());
            }
            ArchivedWire::JoinAck {
                room,
                conn,
                req,
                seq,
                recovered,
                error,
                backlog,
                epoch,
            } => {
                self.on_join_ack(
                    room.as_str(),
                    conn.to_native(),
                    req.as_slice(),
                    seq.to_native(),
                    *recovered,
                    *error,
                    backlog.as_slice(),
                    epoch.to_native(),
                );
            }
            ArchivedWire::PublishAck {
                room,
                conn,
                req,
                seq,
                receivers,
            } => {
                let Some(conn) = self.conn(conn.to_native()) else {
                    return;
                };
                match conn.kind {
                    Kind::Resp => {
                        let mut out = BytesMut::with_capacity(16);
                        resp::encode::integer(&mut out, i64::from(receivers.to_native()));
                        self.fulfil(&conn, req.as_slice(), out.freeze());
                    }
                    _ => self.reply_json(
                        &conn,
                        &api::ok(
                            req_id(req.as_slice()),
                            room.as_str(),
                            Some(seq.to_native()),
                            true,
                        ),
                    ),
                }
            }
            ArchivedWire::Reply { conn, json } => {
                if let Some(conn) = self.conn(conn.to_native()) {
                    self.reply_json(&conn, json.as_slice());
                }
            }
        }
    }

    pub(super) fn conn(&self, id: u64) -> Option<Rc<Conn>> {
        self.conns.borrow().get(&id).cloned()
    }

    /// Sends one encoded frame to several shards (this one included).
    pub(super) fn fan_out(&self, targets: &[usize], frame: &Wire) {
        if targets.is_empty() {
            return;
        }
        let bytes = wire::encode(frame);
        for &to in targets {
            self.dispatch_bytes(to, bytes.clone());
        }
    }

    /// Sends an unsequenced event to the member shards of a room.
    pub(super) fn fan_out_ephemeral(
        &self,
        targets: &[usize],
        room: &str,
        exclude: u64,
        json: Vec<u8>,
    ) {
        self.fan_out(
            targets,
            &Wire::Ephemeral {
                room: room.into(),
                exclude,
                json,
            },
        );
    }
}
