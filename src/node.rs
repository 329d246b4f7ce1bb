//! One shard's chat state and the routing between shards.
//!
//! A [`Node`] lives on one shard thread and is shared by that shard's tasks
//! through an `Rc`. It owns the shard's connections, the local member lists
//! of every room that has members here, and the rooms whose home is this
//! shard. Everything about a room that needs one truth (sequence numbers,
//! retained history, the member list) is decided by its home; other shards
//! send it requests as [`Wire`] frames and get deliveries and answers back on
//! their own ring, in order.
//!
//! Requests for a room homed here take the same path without the ring: they
//! are archived and handled at once, so one code path serves both cases.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use ahash::AHashMap;
use bytes::{Bytes, BytesMut};
use smallvec::SmallVec;

use crate::api::{self, ApiError, Data};
use crate::config::Config;
use crate::conn::{Conn, Flushed, Frame, Kind, Queued, Sent};
use crate::presence::{self, Offer};
use crate::resp::{self, Proto};
use crate::room::{home_of, newest_within, HomeRoom, Joined};
use crate::sendring::SendRing;
use crate::stats::{unix_ms, ErrorKind, ShardStats};
use crate::wire::{self, code, shard_of, ArchivedWire, Entry, Wire};
use crate::ws::{self, OpCode};

/// Frames held back for full rings, across all destinations, past which
/// this shard says it is congested and every shard's readers stop taking
/// new requests from their clients until it is below again.
const HELD_PAUSE: usize = 16 * 1024;

/// One shard's state.
pub struct Node {
    /// This shard's id.
    pub id: usize,
    /// Number of shards.
    pub count: usize,
    /// Settings.
    pub cfg: Arc<Config>,
    /// Counters (written only here).
    pub stats: Arc<ShardStats>,
    outbox: shards::Outbox,
    /// Frames waiting for room on a full ring, per destination, in order.
    held: RefCell<Vec<VecDeque<Bytes>>>,
    held_total: Cell<usize>,
    held_waker: RefCell<Option<Waker>>,
    /// Open connections by id.
    conns: RefCell<AHashMap<u64, Rc<Conn>>>,
    next_conn: Cell<u64>,
    /// Local members of each room that has any on this shard.
    local: RefCell<AHashMap<Rc<str>, Vec<Rc<Conn>>>>,
    /// Rooms whose home is this shard.
    homed: RefCell<AHashMap<Box<str>, HomeRoom>>,
    /// Connections with frames queued this turn.
    dirty: RefCell<Vec<Rc<Conn>>>,
    flush_waker: RefCell<Option<Waker>>,
    /// Batched sends, when the shard has io_uring.
    send_ring: RefCell<Option<SendRing>>,
    /// Bytes of messages retained by the rooms homed here.
    retained: Cell<usize>,
    /// Rooms homed here that have had no members since they were queued
    /// (oldest first; may name rooms gone or joined since). Evicted first
    /// when `retained` passes its budget.
    idle: RefCell<VecDeque<Box<str>>>,
    /// Rooms homed here with presence events held, each with when its
    /// batch leaves (in that order: the interval is the same for all).
    presence_due: RefCell<VecDeque<(Instant, Box<str>)>>,
    presence_waker: RefCell<Option<Waker>>,
    /// Set when a graceful shutdown has begun.
    pub stopping: Cell<bool>,
}

/// Connection ids start at 1 in every shard's range: an `exclude` of 0
/// skips nobody.
const NOBODY: u64 = 0;

/// Shards to send an ephemeral frame to, the connection it skips, the JSON.
type Ephemeral = (SmallVec<[usize; 8]>, u64, Vec<u8>);

fn req_id(req: &[u8]) -> Option<&str> {
    if req.is_empty() {
        None
    } else {
        std::str::from_utf8(req).ok()
    }
}

/// A WebSocket text frame with `json` as payload.
pub fn text_frame(json: &[u8]) -> Bytes {
    ws::encode_frame(OpCode::Text, json)
}

fn proto_of(conn: &Conn) -> Proto {
    if conn.resp3.get() {
        Proto::Resp3
    } else {
        Proto::Resp2
    }
}

impl Node {
    /// Creates the state of shard `id` of `count`.
    pub fn new(
        id: usize,
        count: usize,
        cfg: Arc<Config>,
        stats: Arc<ShardStats>,
        outbox: shards::Outbox,
    ) -> Rc<Self> {
        Rc::new(Self {
            id,
            count,
            cfg,
            stats,
            outbox,
            held: RefCell::new((0..count).map(|_| VecDeque::new()).collect()),
            held_total: Cell::new(0),
            held_waker: RefCell::new(None),
            conns: RefCell::new(AHashMap::new()),
            next_conn: Cell::new(1),
            local: RefCell::new(AHashMap::new()),
            homed: RefCell::new(AHashMap::new()),
            dirty: RefCell::new(Vec::new()),
            flush_waker: RefCell::new(None),
            send_ring: RefCell::new(None),
            retained: Cell::new(0),
            idle: RefCell::new(VecDeque::new()),
            presence_due: RefCell::new(VecDeque::new()),
            presence_waker: RefCell::new(None),
            stopping: Cell::new(false),
        })
    }

    /// Batches the shard's sends through its own io_uring; without one (or
    /// if it cannot be set up) each connection is written with `sendmsg`.
    pub fn use_send_ring(&self) {
        match SendRing::new() {
            Ok(ring) => *self.send_ring.borrow_mut() = Some(ring),
            Err(e) => {
                tracing::warn!(shard = self.id, error = %e, "no io_uring for sends; writing with sendmsg")
            }
        }
    }

    // ----- connections -------------------------------------------------

    /// A fresh connection id.
    pub fn next_conn_id(&self) -> u64 {
        let n = self.next_conn.get();
        self.next_conn.set(n + 1);
        wire::conn_id(self.id, n)
    }

    /// Starts tracking an accepted, upgraded connection.
    pub fn register(&self, conn: &Rc<Conn>) {
        match conn.kind {
            Kind::Resp => self.stats.conns_resp.inc(),
            Kind::Ws | Kind::Echo => self.stats.conns_ws.inc(),
        }
        self.conns.borrow_mut().insert(conn.id, conn.clone());
    }

    /// Forgets a connection: leaves its rooms, shuts its socket.
    pub fn unregister(&self, conn: &Rc<Conn>) {
        conn.shut_down();
        let rooms = std::mem::take(&mut *conn.rooms.borrow_mut());
        for (room, _) in rooms {
            self.local_remove(&room, conn);
            self.dispatch(
                home_of(room.as_bytes(), self.count),
                &Wire::Leave {
                    room: room.to_string(),
                    conn: conn.id,
                },
            );
        }
        if self.conns.borrow_mut().remove(&conn.id).is_some() {
            match conn.kind {
                Kind::Resp => self.stats.conns_resp.sub(1),
                Kind::Ws | Kind::Echo => self.stats.conns_ws.sub(1),
            }
        }
    }

    /// Open connections on this shard.
    pub fn conn_count(&self) -> usize {
        self.conns.borrow().len()
    }

    /// Queues a frame to a connection; closes it if it is a slow consumer.
    pub fn send(&self, conn: &Rc<Conn>, frame: Bytes) {
        self.send_shared(conn, Rc::new(frame));
    }

    /// Queues a frame other connections may share.
    fn send_shared(&self, conn: &Rc<Conn>, frame: Frame) {
        match conn.push(frame) {
            Queued::Yes => self.mark_dirty(conn),
            Queued::Closed => {}
            Queued::OverLimit => self.slow_consumer(conn),
        }
    }

    /// Queues a chat JSON reply (WebSocket text frame).
    pub fn reply_json(&self, conn: &Rc<Conn>, json: &[u8]) {
        self.send(conn, text_frame(json));
    }

    /// Queues a chat error reply and counts it.
    pub fn reply_error(&self, conn: &Rc<Conn>, id: Option<&str>, err: &ApiError) {
        self.stats.error(err.kind);
        self.reply_json(conn, &api::error(id, err.code, &err.message));
    }

    /// Delivers a deferred RESP reply carried back as `req`.
    fn fulfil(&self, conn: &Rc<Conn>, req: &[u8], frame: Bytes) {
        if let Some((ticket, _)) = resp_ticket(req) {
            if conn.fulfil(ticket, frame) {
                self.mark_dirty(conn);
            }
        }
    }

    fn mark_dirty(&self, conn: &Rc<Conn>) {
        if !conn.dirty.replace(true) {
            let mut dirty = self.dirty.borrow_mut();
            dirty.push(conn.clone());
            if dirty.len() == 1 {
                if let Some(w) = self.flush_waker.borrow_mut().take() {
                    w.wake();
                }
            }
        }
    }

    /// Closes a connection whose outbound queue passed its bound: drops
    /// what it had queued, tries to tell it why, and shuts it down without
    /// waiting, so its memory is freed whatever the client does.
    pub fn slow_consumer(&self, conn: &Rc<Conn>) {
        if conn.is_closing() {
            return;
        }
        self.stats.slow_consumer_closes.inc();
        tracing::debug!(
            conn = conn.id,
            queued = conn.queued(),
            "closing slow consumer"
        );
        let last = match conn.kind {
            Kind::Resp => {
                Bytes::from_static(b"-ERR slow consumer: outbound queue limit reached\r\n")
            }
            Kind::Ws | Kind::Echo => {
                ws::close_frame(1008, "slow consumer: outbound queue limit reached")
            }
        };
        conn.abandon_queue(Some(last));
        let (_, n) = conn.flush();
        self.stats.bytes_out.add(n as u64);
        conn.shut_down();
    }

    /// Writes one connection's queue now.
    pub fn flush(self: &Rc<Self>, conn: &Rc<Conn>) {
        let (res, n) = conn.flush();
        self.stats.bytes_out.add(n as u64);
        self.stats.writes.inc();
        match res {
            Flushed::All => {}
            Flushed::Blocked => self.wait_writable(conn),
            Flushed::Failed => conn.shut_down(),
        }
    }

    /// The socket buffer is full: a task waits for room and writes the rest.
    fn wait_writable(self: &Rc<Self>, conn: &Rc<Conn>) {
        if conn.blocked.replace(true) {
            return;
        }
        let node = self.clone();
        let conn = conn.clone();
        monoio::spawn(async move {
            while !conn.is_closed() {
                if conn.stream.writable(false).await.is_err() {
                    conn.shut_down();
                    break;
                }
                let (res, n) = conn.flush();
                node.stats.bytes_out.add(n as u64);
                node.stats.writes.inc();
                match res {
                    Flushed::Blocked => continue,
                    Flushed::All => break,
                    Flushed::Failed => {
                        conn.shut_down();
                        break;
                    }
                }
            }
            conn.blocked.set(false);
        });
    }

    /// Finishes a connection after its batched send.
    fn sent(self: &Rc<Self>, conn: &Rc<Conn>, sent: Sent, bytes: usize) {
        self.stats.bytes_out.add(bytes as u64);
        match sent {
            // More than one batch entry's worth was queued: write the rest now.
            Sent::All if !conn.drained() => self.flush(conn),
            Sent::All => {}
            Sent::Part(_) | Sent::Again => self.wait_writable(conn),
            Sent::Retry => self.flush(conn),
            Sent::Failed => conn.shut_down(),
        }
    }

    /// The flusher: after the tasks of a turn have queued their frames,
    /// writes each dirty connection once — all of them with one
    /// `io_uring_enter` where the shard has a send ring.
    pub async fn run_flusher(self: Rc<Self>) {
        let mut batch = Vec::new();
        let mut ready = Vec::new();
        let mut results = Vec::new();
        loop {
            std::future::poll_fn(|cx| {
                if self.dirty.borrow().is_empty() {
                    *self.flush_waker.borrow_mut() = Some(cx.waker().clone());
                    Poll::Pending
                } else {
                    Poll::Ready(())
                }
            })
            .await;
            std::mem::swap(&mut batch, &mut *self.dirty.borrow_mut());
            let mut ring = self.send_ring.borrow_mut();
            for conn in batch.drain(..) {
                conn.dirty.set(false);
                if conn.blocked.get() {
                    continue;
                }
                if ring.is_some() && !conn.is_closed() {
                    ready.push(conn);
                } else {
                    self.flush(&conn);
                }
            }
            let mut rest = &ready[..];
            while !rest.is_empty() {
                let Some(r) = ring.as_mut() else {
                    rest.iter().for_each(|conn| self.flush(conn));
                    break;
                };
                let (chunk, tail) = rest.split_at(rest.len().min(r.capacity()));
                rest = tail;
                match r.send(chunk, &mut results) {
                    Ok(entries) => {
                        self.stats.send_batches.inc();
                        self.stats.writes.add(entries as u64);
                        for (conn, &(sent, bytes)) in chunk.iter().zip(&results) {
                            self.sent(conn, sent, bytes);
                        }
                    }
                    Err(e) => {
                        tracing::warn!(shard = self.id, error = %e, "io_uring sends failed; writing with sendmsg from now on");
                        *ring = None;
                        chunk.iter().for_each(|conn| self.flush(conn));
                    }
                }
            }
            ready.clear();
        }
    }

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

    fn conn(&self, id: u64) -> Option<Rc<Conn>> {
        self.conns.borrow().get(&id).cloned()
    }

    /// Sends one encoded frame to several shards (this one included).
    fn fan_out(&self, targets: &[usize], frame: &Wire) {
        if targets.is_empty() {
            return;
        }
        let bytes = wire::encode(frame);
        for &to in targets {
            self.dispatch_bytes(to, bytes.clone());
        }
    }

    /// Sends an unsequenced event to the member shards of a room.
    fn fan_out_ephemeral(&self, targets: &[usize], room: &str, exclude: u64, json: Vec<u8>) {
        self.fan_out(
            targets,
            &Wire::Ephemeral {
                room: room.into(),
                exclude,
                json,
            },
        );
    }

    // ----- as a room's home ----------------------------------------------

    #[allow(clippy::too_many_arguments)]
    fn home_join(
        &self,
        room: &str,
        conn: u64,
        user: &str,
        since: Option<u64>,
        req: &[u8],
        epoch: u32,
    ) {
        let shard = shard_of(conn);
        let (ack, presence) = {
            let mut homed = self.homed.borrow_mut();
            let r = homed.entry(room.into()).or_insert_with(|| {
                self.stats.rooms_homed.inc();
                HomeRoom::new(self.count, self.cfg.history)
            });
            let joined = r.join(conn, shard, user.into(), self.cfg.max_members_per_room);
            let (recovered, backlog) = match (since, &joined) {
                (Some(since), Joined::New | Joined::Again) => {
                    // Whatever fits the reply budget, newest kept: a
                    // backlog cut short is reported as not recovered.
                    let (recovered, it) = r.since(since);
                    let (kept, cut) = newest_within(it, self.reply_budget());
                    let recovered = recovered && !cut;
                    let backlog = kept
                        .into_iter()
                        .map(|e| Entry {
                            seq: e.seq,
                            json: e.json.to_vec(),
                            resp: e.resp.to_vec(),
                        })
                        .collect();
                    (recovered, backlog)
                }
                _ => (true, Vec::new()),
            };
            let ack = Wire::JoinAck {
                room: room.into(),
                conn,
                req: req.to_vec(),
                seq: r.seq(),
                recovered,
                error: if joined == Joined::Full {
                    code::ROOM_FULL
                } else {
                    code::OK
                },
                backlog,
                epoch,
            };
            let presence = if joined == Joined::New {
                self.offer_presence(room, r, conn, user.into(), true)
            } else {
                None
            };
            (ack, presence)
        };
        if let Some((targets, exclude, json)) = presence {
            self.fan_out_ephemeral(&targets, room, exclude, json);
        }
        self.dispatch(shard, &ack);
    }

    fn home_leave(&self, room: &str, conn: u64) {
        let presence = {
            let mut homed = self.homed.borrow_mut();
            let Some(r) = homed.get_mut(room) else { return };
            let left = r.leave(conn, shard_of(conn));
            let presence = left.and_then(|user| self.offer_presence(room, r, conn, user, false));
            if r.is_vacant() {
                homed.remove(room);
                self.stats.rooms_homed.sub(1);
            } else if r.member_count() == 0 {
                self.idle.borrow_mut().push_back(room.into());
            }
            presence
        };
        if let Some((targets, exclude, json)) = presence {
            self.fan_out_ephemeral(&targets, room, exclude, json);
        }
    }

    /// Passes a join or leave through the room's presence gate: what to
    /// send now, if anything (see [`crate::presence`]).
    fn offer_presence(
        &self,
        room: &str,
        r: &mut HomeRoom,
        conn: u64,
        user: Rc<str>,
        joined: bool,
    ) -> Option<Ephemeral> {
        self.stats.presence_events.inc();
        let interval = Duration::from_millis(self.cfg.presence_interval_ms);
        let event = presence::Event { conn, user, joined };
        match r.presence.offer(event, Instant::now(), interval) {
            Offer::Now(e) => Some((
                r.member_shards().collect(),
                e.conn,
                api::presence(room, &e.user, e.joined),
            )),
            Offer::Scheduled(due) => {
                self.stats.presence_held.inc();
                self.presence_due.borrow_mut().push_back((due, room.into()));
                if let Some(w) = self.presence_waker.borrow_mut().take() {
                    w.wake();
                }
                None
            }
            Offer::Held => {
                self.stats.presence_held.inc();
                None
            }
        }
    }

    /// Sends each room's held presence events when its interval ends: one
    /// frame per room, in the single-event form when only one was held.
    pub async fn run_presence(self: Rc<Self>) {
        loop {
            let next = std::future::poll_fn(|cx| match self.presence_due.borrow().front() {
                Some(&(due, _)) => Poll::Ready(due),
                None => {
                    *self.presence_waker.borrow_mut() = Some(cx.waker().clone());
                    Poll::Pending
                }
            })
            .await;
            let wait = next.saturating_duration_since(Instant::now());
            if !wait.is_zero() {
                monoio::time::sleep(wait).await;
            }
            let now = Instant::now();
            loop {
                let room = {
                    let mut due = self.presence_due.borrow_mut();
                    match due.front() {
                        Some(&(t, _)) if t <= now => due.pop_front().map(|(_, room)| room),
                        _ => None,
                    }
                };
                let Some(room) = room else { break };
                let batch: Ephemeral = {
                    let mut homed = self.homed.borrow_mut();
                    let Some(r) = homed.get_mut(&*room) else {
                        continue;
                    };
                    let events = r.presence.take(now);
                    let targets = r.member_shards().collect();
                    match events.as_slice() {
                        [] => continue,
                        [e] => (targets, e.conn, api::presence(&room, &e.user, e.joined)),
                        all => (targets, NOBODY, api::presence_batch(&room, all)),
                    }
                };
                let (targets, exclude, json) = batch;
                self.fan_out_ephemeral(&targets, &room, exclude, json);
            }
        }
    }

    fn home_publish(&self, room: &str, conn: u64, user: &str, data: &[u8], raw: bool, req: &[u8]) {
        let ts = unix_ms();
        let (deliver, targets, seq, receivers) = {
            let mut homed = self.homed.borrow_mut();
            let r = homed.entry(room.into()).or_insert_with(|| {
                self.stats.rooms_homed.inc();
                self.idle.borrow_mut().push_back(room.into());
                HomeRoom::new(self.count, self.cfg.history)
            });
            let before = r.retained_bytes();
            let entry = r.append(|seq| {
                if raw {
                    let json = api::message(room, seq, user, ts, Data::Raw(data));
                    (Bytes::from(json), Bytes::copy_from_slice(data))
                } else {
                    let json = Bytes::from(api::message(room, seq, user, ts, Data::Json(data)));
                    // The JSON message ends with `data` and a closing brace:
                    // RESP subscribers get that slice, not a copy.
                    let end = json.len() - 1;
                    let resp = json.slice(end - data.len()..end);
                    (json, resp)
                }
            });
            self.stats.messages_sequenced.inc();
            self.retained
                .set(self.retained.get() + r.retained_bytes() - before);
            let targets: SmallVec<[usize; 8]> = r.member_shards().collect();
            let deliver = Wire::Deliver {
                room: room.into(),
                seq: entry.seq,
                json: entry.json.to_vec(),
                resp: entry.resp.to_vec(),
            };
            (deliver, targets, entry.seq, r.member_count() as u32)
        };
        self.fan_out(&targets, &deliver);
        self.enforce_retention(room);
        self.dispatch(
            shard_of(conn),
            &Wire::PublishAck {
                room: room.into(),
                conn,
                req: req.to_vec(),
                seq,
                receivers,
            },
        );
    }

    /// The most a single reply (history, join backlog) may carry: half a
    /// connection's outbound bound, so answering never makes it a slow
    /// consumer.
    fn reply_budget(&self) -> usize {
        self.cfg.outbound_limit / 2
    }

    /// Keeps the bytes retained by this shard's rooms within
    /// `retained_bytes` by dropping rooms that have no members, oldest idle
    /// first. Rooms with members keep their history: those are bounded by
    /// the connections that joined them.
    fn enforce_retention(&self, current: &str) {
        let budget = self.cfg.retained_bytes;
        let mut idle = self.idle.borrow_mut();
        let mut homed = self.homed.borrow_mut();
        while self.retained.get() > budget {
            let Some(name) = idle.pop_front() else { break };
            let evict =
                &*name != current && homed.get(&name).is_some_and(|r| r.member_count() == 0);
            if evict {
                if let Some(r) = homed.remove(&name) {
                    self.retained.set(self.retained.get() - r.retained_bytes());
                    self.stats.rooms_homed.sub(1);
                    self.stats.rooms_evicted.inc();
                }
            }
        }
        // Stale names (joined or gone since) are dropped once they
        // outnumber the rooms, so the queue stays proportional to them.
        if idle.len() > 2 * homed.len() + 64 {
            let mut seen = ahash::AHashSet::new();
            idle.retain(|n| {
                homed.get(n).is_some_and(|r| r.member_count() == 0) && seen.insert(n.clone())
            });
        }
    }

    fn home_ephemeral(&self, room: &str, exclude: u64, json: Vec<u8>) {
        let targets: SmallVec<[usize; 8]> = match self.homed.borrow().get(room) {
            Some(r) => r.member_shards().collect(),
            None => return,
        };
        self.fan_out(
            &targets,
            &Wire::Ephemeral {
                room: room.into(),
                exclude,
                json,
            },
        );
    }

    // ----- as a member shard ---------------------------------------------

    fn member_deliver(&self, room: &str, json: &[u8], payload: &[u8]) {
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
                    .get_or_insert_with(|| Rc::new(text_frame(json)))
                    .clone(),
                Kind::Resp => {
                    let p = proto_of(m);
                    resp_frames[p as usize]
                        .get_or_insert_with(|| {
                            Rc::new(resp::encode::message(room.as_bytes(), payload, p))
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

    fn member_ephemeral(&self, room: &str, exclude: u64, json: &[u8]) {
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
                .get_or_insert_with(|| Rc::new(text_frame(json)))
                .clone();
            self.send_shared(m, f);
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn on_join_ack(
        &self,
        room: &str,
        conn: u64,
        req: &[u8],
        seq: u64,
        recovered: bool,
        error: u8,
        backlog: &[wire::ArchivedEntry],
        epoch: u32,
    ) {
        // A connection that closed or left meanwhile already told the home.
        let Some(conn) = self.conn(conn) else { return };
        let room_rc = {
            let rooms = conn.rooms.borrow();
            match rooms.iter().find(|(r, _)| &**r == room) {
                Some((r, e)) if *e == epoch => r.clone(),
                // Left since, or joined again and that later ack will come.
                _ => return,
            }
        };
        let id = req_id(req);
        if error == code::ROOM_FULL {
            conn.rooms.borrow_mut().retain(|(r, _)| &**r != room);
            let max = self.cfg.max_members_per_room;
            let msg = format!("room {room} has reached its limit of {max} members");
            self.stats.error(ErrorKind::Limit);
            match conn.kind {
                Kind::Resp => self.fulfil(&conn, req, resp_error(&format!("ERR {msg}"))),
                _ => self.reply_json(&conn, &api::error(id, "room_full", &msg)),
            }
            return;
        }
        let is_new = {
            let mut local = self.local.borrow_mut();
            let members = local.entry(room_rc).or_default();
            if members.iter().any(|m| Rc::ptr_eq(m, &conn)) {
                false
            } else {
                members.push(conn.clone());
                self.stats.memberships.inc();
                true
            }
        };
        match conn.kind {
            Kind::Resp => {
                // The count is the subscriptions right after this one was
                // asked for, as Redis reports it.
                let mut out = BytesMut::with_capacity(64 + room.len());
                let count = resp_ticket(req).map_or(0, |(_, count)| i64::from(count));
                let proto = proto_of(&conn);
                resp::encode::subscription(
                    &mut out,
                    "subscribe",
                    Some(room.as_bytes()),
                    count,
                    proto,
                );
                self.fulfil(&conn, req, out.freeze());
            }
            _ => self.reply_json(&conn, &api::ok(id, room, Some(seq), recovered)),
        }
        if is_new {
            for e in backlog {
                let frame = match conn.kind {
                    Kind::Resp => {
                        resp::encode::message(room.as_bytes(), e.resp.as_slice(), proto_of(&conn))
                    }
                    _ => text_frame(e.json.as_slice()),
                };
                self.send(&conn, frame);
            }
        }
    }

    fn local_remove(&self, room: &str, conn: &Rc<Conn>) {
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

    fn intern(&self, room: &str) -> Rc<str> {
        match self.local.borrow().get_key_value(room) {
            Some((k, _)) => k.clone(),
            None => room.into(),
        }
    }

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

/// Encodes a RESP reply ticket and a subscription count as a `req`.
pub fn resp_req(ticket: u32, count: u32) -> [u8; 8] {
    let mut req = [0u8; 8];
    req[..4].copy_from_slice(&ticket.to_le_bytes());
    req[4..].copy_from_slice(&count.to_le_bytes());
    req
}

fn resp_ticket(req: &[u8]) -> Option<(u32, u32)> {
    let req: &[u8; 8] = req.try_into().ok()?;
    let ticket = u32::from_le_bytes(req[..4].try_into().ok()?);
    let count = u32::from_le_bytes(req[4..].try_into().ok()?);
    Some((ticket, count))
}

/// A RESP error line.
pub fn resp_error(text: &str) -> Bytes {
    let mut out = BytesMut::with_capacity(text.len() + 3);
    resp::encode::error(&mut out, text);
    out.freeze()
}

/// What [`Node::read_step`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum ReadStep {
    /// Bytes were read (or the read was interrupted): parse, then yield.
    Data,
    /// Nothing to read: wait for readability.
    Wait,
    /// The stream ended or failed.
    End,
}
