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
//!
//! # Layout
//! - `mod.rs`: the [`Node`] struct and its state, [`Node::new`], and the
//!   small helpers the other files share (framing, RESP reply tickets,
//!   [`ReadStep`]).
//! - `output`: connections and the write side — registering, queueing,
//!   flushing, the flusher task, waiting for a writable socket.
//! - `routing`: between shards — dispatch, the rings and frames held for
//!   full ones, reading from clients, and [`Node::on_frame`].
//! - `home`: as a room's home — joins, leaves, the presence gate,
//!   sequencing published messages, retention.
//! - `member`: as a member shard — delivering to local members, join acks.
//! - `requests`: client requests (join, leave, publish, ...) and shutdown.
//!
//! [`Wire`]: crate::wire::Wire

mod home;
mod member;
mod output;
mod requests;
mod routing;

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::Arc;
use std::task::Waker;
use std::time::Instant;

use ahash::AHashMap;
use bytes::{Bytes, BytesMut};
use smallvec::SmallVec;

use crate::config::Config;
use crate::conn::Conn;
use crate::resp::{self, Proto};
use crate::room::HomeRoom;
use crate::sendring::SendRing;
use crate::stats::ShardStats;
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
