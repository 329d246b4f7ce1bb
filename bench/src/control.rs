//! What the coordinator and the workers share: the scenario's geometry
//! (read-only), the current step's plan, and a few counters the coordinator
//! watches to know when connects are done and a step has drained.
//!
//! Workers never lock on the hot path: they poll two generation counters
//! once per loop turn and flush their local counters with one atomic add each.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::target::Target;
use crate::token::Tokens;

/// The scenario's shape: who connects where, who is in which room, who publishes.
///
/// Member connection `i` (of `connections`) is in room `i % rooms` and is owned
/// by worker `i % threads`. Publisher `j` is in room `j % rooms`; it publishes
/// on member connection `j`, or, when the target needs it, on an extra
/// connection `connections + j` that joins nothing.
///
/// With several addresses (the nodes of a cluster), member `i` connects to
/// node `(i / rooms) % nodes` and a separate publisher `j` to node
/// `(j / rooms) % nodes`: every room's members and publishers are spread
/// evenly over the nodes, so every delivery of a publish made on one node
/// to members on another crosses the cluster's broker.
#[derive(Debug, Clone)]
pub struct Layout {
    /// What is being loaded.
    pub target: Target,
    /// Where it listens: one address, or one per node of a cluster.
    pub addrs: Vec<SocketAddrV4>,
    /// Member connections (all of them idle when `rooms` is 0).
    pub connections: u32,
    /// Rooms; 0 means the connections join nothing.
    pub rooms: u32,
    /// Publishers.
    pub publishers: u32,
    /// Data object size per publish, bytes.
    pub size: usize,
    /// Worker threads.
    pub threads: u32,
    /// Cores to pin workers to, one per worker (empty: no pinning).
    pub cores: Vec<usize>,
    /// Local source addresses, used round-robin (each has its own ephemeral ports).
    pub sources: Vec<Ipv4Addr>,
    /// Connects per second over all workers (0: as fast as `max_connecting` allows).
    pub connect_rate: f64,
    /// Connects in progress per worker at most.
    pub max_connecting: u32,
    /// Per-connection unsent-bytes cap; publishes past it are skipped and counted.
    pub out_cap: usize,
    /// Wire number of each room (`r{n}`); the identity unless rooms are home-aligned.
    pub room_numbers: Vec<u32>,
    /// ringcast shard count for shard-local placement (0: off). Each member
    /// waits for its `welcome`, then takes a slot in a room whose home is its
    /// own shard, so no delivery crosses shards.
    pub shard_local: u32,
    /// Members per room under shard-local placement (default: connections / rooms).
    pub local_members: Option<u32>,
    /// Connection tokens (ringcast `--auth-mode jwt`); socket `i` presents
    /// token `i mod N`.
    pub tokens: Option<Arc<Tokens>>,
    /// A connection that joins nothing is ready on ringcast's `welcome`,
    /// not on the `101` (implied by tokens: the welcome says the token held).
    pub await_welcome: bool,
}

impl Layout {
    /// The node (index into `addrs`) socket `i` connects to.
    pub fn node_of(&self, i: u32) -> usize {
        let n = self.addrs.len().max(1) as u32;
        if n == 1 {
            return 0;
        }
        if self.rooms == 0 {
            return (i % n) as usize;
        }
        let k = if i < self.connections {
            i
        } else {
            i - self.connections
        };
        (k / self.rooms % n) as usize
    }

    /// The address socket `i` connects to.
    pub fn addr_of(&self, i: u32) -> SocketAddrV4 {
        self.addrs[self.node_of(i)]
    }

    /// Total sockets: members plus separate publisher connections.
    pub fn sockets(&self) -> u32 {
        self.connections
            + if self.target.separate_publishers() {
                self.publishers
            } else {
                0
            }
    }

    /// Room of socket `i`, and the publisher id it publishes for.
    pub fn role(&self, i: u32) -> (Option<u32>, Option<u32>) {
        if self.rooms == 0 {
            return (None, None);
        }
        if i >= self.connections {
            let j = i - self.connections;
            return (None, Some(j));
        }
        let publishes = !self.target.separate_publishers() && i < self.publishers;
        (Some(i % self.rooms), publishes.then_some(i))
    }

    /// Members per room under shard-local placement (and its slot arithmetic).
    pub fn members_per_room(&self) -> u32 {
        self.local_members
            .unwrap_or_else(|| self.connections.checked_div(self.rooms).unwrap_or(0))
    }

    /// Shard-local placement: the room and publisher id for slot `k` of `shard`,
    /// or `None` when that shard's rooms are full.
    pub fn local_slot(&self, shard: u32, k: u32) -> Option<(u32, Option<u32>)> {
        let m = self.members_per_room().max(1);
        let room = (k / m) * self.shard_local + shard;
        if self.shard_local == 0 || shard >= self.shard_local || room >= self.rooms {
            return None;
        }
        let idx = k % m;
        let per_room_pubs = self.publishers.div_ceil(self.rooms);
        let id = idx * self.rooms + room;
        Some((
            room,
            (idx < per_room_pubs && id < self.publishers).then_some(id),
        ))
    }

    /// Members of room `r` when every connection is up.
    pub fn members_of(&self, r: u32) -> u32 {
        if self.rooms == 0 {
            return 0;
        }
        self.connections / self.rooms + u32::from(r < self.connections % self.rooms)
    }
}

/// One step: publish at `rate` from `start_ns` to `measure_end_ns`; latency and
/// throughput count only inside `[measure_start_ns, measure_end_ns)`.
#[derive(Debug, Clone, Copy, Default)]
pub struct StepPlan {
    /// Publishes per second over all publishers.
    pub rate: f64,
    /// Publishing starts (warm-up begins).
    pub start_ns: u64,
    /// Measured window opens.
    pub measure_start_ns: u64,
    /// Measured window closes; publishing stops.
    pub measure_end_ns: u64,
}

/// Shared between the coordinator and the workers.
#[derive(Debug)]
pub struct Control {
    /// Workers exit at their next loop turn.
    pub quit: AtomicBool,
    /// Bumped when `plan` holds a new step.
    pub step_gen: AtomicU64,
    /// Bumped when the coordinator wants every worker's step report.
    pub collect_gen: AtomicU64,
    /// The current step.
    pub plan: Mutex<StepPlan>,
    /// Sockets fully up (joined, or open when they join nothing).
    pub ready: AtomicU64,
    /// Sockets that failed to connect, upgrade or join.
    pub connect_errors: AtomicU64,
    /// Sockets whose connect finished, either way.
    pub connect_done: AtomicU64,
    /// Deliveries expected so far: each publish adds its room's ready members.
    pub expected: AtomicU64,
    /// First copies of deliveries received so far.
    pub received: AtomicU64,
    /// Ready members per room, read when a publish is counted.
    pub room_members: Vec<AtomicU32>,
    /// Shard-local placement: next free slot per shard.
    pub shard_slots: Vec<AtomicU32>,
    /// Shard-local placement: members that found no room on their shard.
    pub unplaced: AtomicU64,
    /// When the first connect started, ns on [`crate::clock::now_ns`]'s clock.
    pub connect_first_ns: AtomicU64,
    /// When the last connect finished (ready or failed), same clock.
    pub connect_last_ns: AtomicU64,
}

impl Control {
    /// Control for `rooms` rooms.
    pub fn new(rooms: u32) -> Self {
        Control {
            quit: AtomicBool::new(false),
            step_gen: AtomicU64::new(0),
            collect_gen: AtomicU64::new(0),
            plan: Mutex::new(StepPlan::default()),
            ready: AtomicU64::new(0),
            connect_errors: AtomicU64::new(0),
            connect_done: AtomicU64::new(0),
            expected: AtomicU64::new(0),
            received: AtomicU64::new(0),
            room_members: (0..rooms).map(|_| AtomicU32::new(0)).collect(),
            shard_slots: (0..64).map(|_| AtomicU32::new(0)).collect(),
            unplaced: AtomicU64::new(0),
            connect_first_ns: AtomicU64::new(u64::MAX),
            connect_last_ns: AtomicU64::new(0),
        }
    }

    /// A connect finished at `now`, either way.
    pub fn connect_finished(&self, now: u64) {
        self.connect_last_ns.fetch_max(now, Ordering::Relaxed);
        self.connect_done.fetch_add(1, Ordering::Relaxed);
    }

    /// Starts a new step.
    pub fn start_step(&self, plan: StepPlan) {
        *self.plan.lock().expect("plan lock") = plan;
        self.step_gen.fetch_add(1, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(target: Target, connections: u32, rooms: u32, publishers: u32) -> Layout {
        Layout {
            target,
            addrs: vec!["127.0.0.1:1".parse().unwrap()],
            connections,
            rooms,
            publishers,
            size: 100,
            threads: 1,
            cores: vec![],
            sources: vec![],
            connect_rate: 0.0,
            max_connecting: 1,
            out_cap: 1,
            room_numbers: (0..rooms).collect(),
            shard_local: 0,
            local_members: None,
            tokens: None,
            await_welcome: false,
        }
    }

    #[test]
    fn roles_and_room_sizes() {
        let l = layout(Target::RingcastWs, 10, 3, 4);
        assert_eq!(l.sockets(), 10);
        assert_eq!(l.role(0), (Some(0), Some(0)));
        assert_eq!(l.role(5), (Some(2), None));
        assert_eq!(
            (0..3).map(|r| l.members_of(r)).collect::<Vec<_>>(),
            vec![4, 3, 3]
        );
        let l = layout(Target::Redis, 10, 3, 4);
        assert_eq!(l.sockets(), 14);
        assert_eq!(l.role(0), (Some(0), None));
        assert_eq!(l.role(11), (None, Some(1)));
        let l = layout(Target::Uws, 10, 0, 0);
        assert_eq!(l.role(3), (None, None));
    }

    #[test]
    fn two_nodes_split_every_room_and_its_publishers() {
        let mut l = layout(Target::Socketio, 40, 4, 8);
        l.addrs.push("127.0.0.1:2".parse().unwrap());
        // Per room: members and publishers half on each node.
        for r in 0..4 {
            let on = |node: usize, upto: u32| {
                (0..upto)
                    .filter(|&i| i % 4 == r && l.node_of(i) == node)
                    .count()
            };
            assert_eq!((on(0, 40), on(1, 40)), (5, 5));
            assert_eq!((on(0, 8), on(1, 8)), (1, 1));
        }
        assert_eq!(l.addr_of(4).port(), 2);
        // Separate publisher sockets (RESP) split the same way.
        let mut l = layout(Target::Redis, 8, 2, 4);
        l.addrs.push("127.0.0.1:2".parse().unwrap());
        let nodes: Vec<usize> = (8..12).map(|i| l.node_of(i)).collect();
        assert_eq!(nodes, vec![0, 0, 1, 1]);
        // One address: everything on it.
        let l = layout(Target::Uws, 10, 0, 0);
        assert!((0..10).all(|i| l.node_of(i) == 0));
    }

    #[test]
    fn shard_local_slots_fill_rooms_of_the_own_shard() {
        let mut l = layout(Target::RingcastWs, 12, 4, 4);
        l.shard_local = 2;
        l.local_members = Some(2);
        // Shard 1 owns rooms 1 and 3, two members each; the first member of each publishes.
        assert_eq!(l.local_slot(1, 0), Some((1, Some(1))));
        assert_eq!(l.local_slot(1, 1), Some((1, None)));
        assert_eq!(l.local_slot(1, 2), Some((3, Some(3))));
        assert_eq!(l.local_slot(1, 3), Some((3, None)));
        assert_eq!(l.local_slot(1, 4), None);
        assert_eq!(l.local_slot(0, 0), Some((0, Some(0))));
        assert_eq!(l.local_slot(2, 0), None);
    }
}
