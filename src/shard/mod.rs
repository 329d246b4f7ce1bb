//! One shard's chat state and the routing between shards.
//!
//! A [`Shard`] lives on one shard thread and is shared by that shard's
//! tasks through an `Rc`. It owns the shard's connections, the local member
//! lists of every room that has members here, and the rooms whose home is
//! this shard. Everything about a room that needs one truth (sequence
//! numbers, retained history, the member list) is decided by its home;
//! other shards send it requests as [`Wire`] frames and get deliveries and
//! answers back on their own ring, in order.
//!
//! Requests for a room homed here take the same path without the ring: they
//! are archived and handled at once, so one code path serves both cases.
//!
//! # Layout
//! The files below `mod.rs` are plain state and know nothing of [`Shard`]:
//! - [`wire`]: the rkyv frames shards exchange, and where they go.
//! - [`admission`]: connection counts, in all and per client address,
//!   shared by every shard.
//! - [`mesh`]: sending frames to other shards, holding them while a ring
//!   is full, congestion.
//! - [`home`]: the rooms homed here — sequencing, history, members,
//!   presence batching, retention.
//! - [`stats`]: the shard's counters.
//!
//! The files beside `mod.rs` are the shard's roles, each an `impl Shard`:
//! - `requests`: what clients ask for (join, publish, ...), sent to homes.
//! - `inbox`: a frame arrives from a ring (or from this shard) and goes to
//!   the role that handles it.
//! - `homing`: as a room's home — answering joins and history, sequencing
//!   messages, sending presence.
//! - `member`: as a member shard — delivering to local members, answering
//!   the requester.
//! - `output`: connections and the write side — queueing, the flusher.
//! - `sweep`: the shard's clock, and finding dead and idle peers.
//! - `shutdown`: saying goodbye to every connection.
//!
//! [`Wire`]: wire::Wire

pub mod admission;
pub mod home;
pub mod mesh;
pub mod stats;
pub mod wire;

mod homing;
mod inbox;
mod member;
mod output;
mod park;
mod relay;
mod relay_upkeep;
mod requests;
mod shutdown;
mod sweep;

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;
use std::task::Waker;
use std::time::{Duration, Instant};

use ahash::AHashMap;
use bytes::Bytes;

use crate::access::Authority;
use crate::cluster::Node;
use crate::config::Config;
use crate::conn::order::Frame;
use crate::conn::sendring::SendRing;
use crate::conn::Conn;
use admission::{Admission, Refusal, Source};
use home::{Homes, Limits};
use mesh::Mesh;
use stats::ShardStats;

/// One shard's state.
pub struct Shard {
    /// This shard's id.
    pub id: usize,
    /// Number of shards.
    pub count: usize,
    /// Settings.
    pub cfg: Arc<Config>,
    /// Counters (written only here).
    pub stats: Arc<ShardStats>,
    /// Who may connect (shared by every shard).
    pub admission: Arc<Admission>,
    /// What clients are checked against: token keys, RESP users.
    pub authority: Arc<Authority>,
    /// Frames to other shards.
    mesh: Rc<Mesh>,
    /// Open connections by id.
    conns: RefCell<AHashMap<u64, park::Held>>,
    next_conn: Cell<u64>,
    /// Local members of each room that has any on this shard.
    local: RefCell<AHashMap<Rc<str>, Vec<Rc<Conn>>>>,
    /// Rooms whose home is this shard.
    homes: RefCell<Homes>,
    /// Connections with frames queued this turn.
    dirty: RefCell<Vec<Rc<Conn>>>,
    flush_waker: RefCell<Option<Waker>>,
    /// When the first of them was marked ([`Shard::now_us`]): how long the
    /// oldest queued frame has waited for the flusher.
    dirty_since_us: Cell<u64>,
    /// `:0\r\n` to `:63\r\n`, the receiver counts PUBLISH is answered
    /// with, framed once: a reply is an `Rc` count, not an allocation.
    integers: Box<[Frame]>,
    /// The flusher's buffers (taken while it runs).
    flush_scratch: Cell<output::FlushScratch>,
    /// Batched sends, when the shard has io_uring.
    send_ring: RefCell<Option<SendRing>>,
    /// Set when a graceful shutdown has begun.
    pub stopping: Cell<bool>,
    /// Milliseconds since `started`, as of the last sweep: a clock that
    /// costs a memory read (never 0).
    clock: Cell<u32>,
    started: Instant,
    /// The shutdown, waiting for the last queue to drain.
    shutdown_waker: RefCell<Option<Waker>>,
    /// Connections whose client stopped sending, waiting for what they are
    /// owed to be written; woken after each flush.
    finishing: RefCell<Vec<Waker>>,
    /// Cluster mode: this shard's links to Redis and the rooms it follows.
    relay: Option<relay::Relay>,
    /// Idle connections without a task (see [`park`]).
    parking: RefCell<Option<park::Parking>>,
}

/// A connection admitted on a shard: the shard, and the place the
/// connection holds in the admission counts, given back when this drops
/// (however the connection's task ends). Its task holds this instead of
/// the bare shard: 8 bytes more per connection, not 24.
pub struct Admitted {
    /// None once the place is handed to the shard (see [`Admitted::park`]).
    shard: Option<Rc<Shard>>,
    source: Source,
}

/// What starts a parked connection's task again (see `park.rs`).
pub type Resume = fn(Admitted, Rc<Conn>);

impl std::ops::Deref for Admitted {
    type Target = Rc<Shard>;

    fn deref(&self) -> &Rc<Shard> {
        self.shard.as_ref().expect("an admitted connection's shard")
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        if let Some(shard) = &self.shard {
            shard.admission.release(self.source);
        }
    }
}

impl Admitted {
    /// Hands the connection's place in the admission counts to its shard
    /// (which holds it while the connection is parked, without a task).
    fn park(mut self) -> Source {
        self.shard = None;
        self.source
    }

    /// Takes back a place [`Admitted::park`] handed to `shard`.
    fn resume(shard: Rc<Shard>, source: Source) -> Self {
        Self {
            shard: Some(shard),
            source,
        }
    }
}

impl Shard {
    /// Admits a connection from `peer` (a WebSocket `handshake` also
    /// against its address's handshake rate), or says why not (see
    /// [`admission`]).
    pub fn admit(
        self: &Rc<Self>,
        peer: std::net::IpAddr,
        handshake: bool,
    ) -> Result<Admitted, Refusal> {
        let source = Source::from(peer);
        self.admission.admit(source, handshake)?;
        Ok(Admitted::resume(self.clone(), source))
    }

    /// Creates the state of shard `id` of `count`.
    pub fn new(
        id: usize,
        count: usize,
        cfg: Arc<Config>,
        stats: Arc<ShardStats>,
        (admission, authority, node): (Arc<Admission>, Arc<Authority>, Option<Arc<Node>>),
        outbox: shards::Outbox,
    ) -> Rc<Self> {
        let limits = Limits {
            history: cfg.history,
            retained_bytes: cfg.retained_bytes,
            max_members: cfg.max_members_per_room,
            presence_interval: Duration::from_millis(cfg.presence_interval_ms),
            // Half a connection's outbound bound, so answering never makes
            // it a slow consumer.
            reply_budget: cfg.outbound_limit / 2,
        };
        let relay = node.map(|node| {
            // A reply holds a page of messages of up to max_payload each.
            let max_bulk = cfg.max_payload + 64 * 1024;
            relay::Relay::new(node, id, cfg.history, max_bulk)
        });
        Rc::new(Self {
            relay,
            parking: RefCell::new(None),
            id,
            count,
            mesh: Rc::new(Mesh::new(
                outbox,
                count,
                cfg.congestion_held_frames,
                stats.clone(),
            )),
            homes: RefCell::new(Homes::new(count, limits, stats.clone())),
            cfg,
            stats,
            admission,
            authority,
            conns: RefCell::new(AHashMap::new()),
            next_conn: Cell::new(1),
            local: RefCell::new(AHashMap::new()),
            dirty: RefCell::new(Vec::new()),
            flush_waker: RefCell::new(None),
            dirty_since_us: Cell::new(0),
            integers: (0..64)
                .map(|n| Frame::from(crate::proto::resp::encode::integer_frame(n)))
                .collect(),
            flush_scratch: Cell::new(output::FlushScratch::default()),
            send_ring: RefCell::new(None),
            stopping: Cell::new(false),
            clock: Cell::new(1),
            started: Instant::now(),
            shutdown_waker: RefCell::new(None),
            finishing: RefCell::new(Vec::new()),
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

    /// Starts the shard's background tasks: the flusher, the retry of
    /// frames held for full rings, and the presence batches.
    pub fn spawn_tasks(self: &Rc<Self>) {
        monoio::spawn(self.clone().run_flusher());
        monoio::spawn(self.mesh.clone().run_held_retry());
        monoio::spawn(self.mesh.clone().run_unpause());
        monoio::spawn(self.clone().run_presence());
        monoio::spawn(self.clone().run_sweep());
        self.start_parking();
        if self.relay.is_some() {
            self.spawn_relay();
        }
    }

    /// Whether this node is part of a cluster.
    pub fn clustered(&self) -> bool {
        self.relay.is_some()
    }

    /// Cluster mode: whether both Redis links are up (requests that need
    /// Redis are taken).
    pub fn cluster_ready(&self) -> bool {
        self.relay.as_ref().is_none_or(relay::Relay::is_up)
    }

    /// Sends a frame to shard `to`; handled at once when that is this one.
    fn route(&self, to: usize, bytes: Bytes) {
        if to == self.id {
            self.on_frame(&bytes);
        } else {
            self.mesh.send(to, bytes);
        }
    }

    /// True when some shard holds so many frames for full rings that
    /// readers should stop taking requests until it catches up.
    pub fn backlogged(&self) -> bool {
        self.mesh.backlogged()
    }

    /// A fine clock: microseconds since the shard started (for rate
    /// limits; a clock read each time).
    pub fn now_us(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_micros()).unwrap_or(u64::MAX)
    }

    /// The shard's coarse clock: milliseconds since it started, as of its
    /// last sweep (at most a sweep period old).
    pub fn now(&self) -> u32 {
        self.clock.get()
    }

    /// Waits until no shard is congested (see [`Shard::backlogged`]).
    pub async fn wait_uncongested(&self) {
        self.mesh.wait_uncongested().await
    }

    /// Archives a frame and sends it to shard `to`.
    fn dispatch(&self, to: usize, frame: &wire::Wire) {
        self.route(to, wire::encode(frame));
    }

    /// Archives a frame once and sends it to each of `targets`.
    fn fan_out(&self, targets: &[usize], frame: &wire::Wire) {
        if targets.is_empty() {
            return;
        }
        let bytes = wire::encode(frame);
        for &to in targets {
            self.route(to, bytes.clone());
        }
    }

    /// Sends an unsequenced event to the member shards of a room.
    fn fan_out_event(&self, room: &str, event: home::Fanout) {
        self.fan_out(
            &event.targets,
            &wire::Wire::Ephemeral {
                room: room.into(),
                exclude: event.exclude,
                json: event.json,
            },
        );
    }

    fn conn(&self, id: u64) -> Option<Rc<Conn>> {
        self.conns.borrow().get(&id).map(|h| h.conn.clone())
    }
}
