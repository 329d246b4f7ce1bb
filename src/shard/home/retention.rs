//! Keeping the bytes that a shard's rooms retain within `retained_bytes`.
//!
//! A room costs its retained messages plus its own state ([`footprint`]):
//! a million rooms of one short message each are a million rooms' worth,
//! not a million short messages' worth. Rooms with members keep their
//! history: those are bounded by the connections that joined them. Past
//! the budget, rooms without members are dropped, the one idle longest
//! first.

use std::collections::VecDeque;

use super::room::{HomeRoom, Rooms};
use crate::shard::stats::ShardStats;

/// What a room homed here costs besides its messages: its state and name
/// in the rooms' map (whose table keeps up to half its slots free), the
/// name again in the idle queue, and the allocations' own overhead.
pub fn footprint(name: &str) -> usize {
    2 * (std::mem::size_of::<HomeRoom>() + std::mem::size_of::<Box<str>>()) + 2 * name.len() + 64
}

/// The retained-bytes account and the queue of idle rooms.
#[derive(Debug, Default)]
pub struct Retention {
    /// Bytes of messages retained by the rooms homed here, plus each room's
    /// [`footprint`].
    retained: usize,
    /// Rooms that have had no members since they were queued (oldest
    /// first; may name rooms gone or joined since). Evicted first when
    /// `retained` passes its budget.
    idle: VecDeque<Box<str>>,
}

impl Retention {
    /// Bytes retained now.
    pub fn retained(&self) -> usize {
        self.retained
    }

    /// A room's retained bytes went from `before` to `after`.
    pub fn changed(&mut self, before: usize, after: usize) {
        self.retained = self.retained + after - before;
    }

    /// A room was created.
    pub fn created(&mut self, room: &str) {
        self.retained += footprint(room);
    }

    /// A room was dropped, and what it retained with it.
    pub fn dropped(&mut self, room: &str, r: &HomeRoom) {
        self.retained -= footprint(room) + r.retained_bytes();
    }

    /// `room` has no members now.
    pub fn went_idle(&mut self, room: &str) {
        self.idle.push_back(room.into());
    }

    /// Drops memberless rooms, oldest idle first, until the retained bytes
    /// are within `budget`; `current` (the room being written) stays.
    pub fn enforce(&mut self, rooms: &mut Rooms, current: &str, budget: usize, stats: &ShardStats) {
        while self.retained > budget {
            let Some(name) = self.idle.pop_front() else {
                break;
            };
            let evict =
                &*name != current && rooms.get(&name).is_some_and(|r| r.member_count() == 0);
            if evict {
                if let Some(r) = rooms.remove(&name) {
                    self.dropped(&name, &r);
                    stats.rooms_homed.sub(1);
                    stats.rooms_evicted.inc();
                }
            }
        }
        // Stale names (joined or gone since) are dropped once they
        // outnumber the rooms, so the queue stays proportional to them.
        if self.idle.len() > 2 * rooms.len() + 64 {
            let mut seen = ahash::AHashSet::new();
            self.idle.retain(|n| {
                rooms.get(n).is_some_and(|r| r.member_count() == 0) && seen.insert(n.clone())
            });
        }
    }
}
