//! This shard's side of the ring mesh: sending frames to other shards, and
//! holding them back, in order, while a ring is full.
//!
//! A frame that finds its ring full waits in a per-destination queue, and
//! every later frame to that shard queues behind it, so frames still arrive
//! in the order sent. Past `HELD_PAUSE` held frames the shard says it is
//! congested, and every shard's readers stop taking requests from their
//! clients until it is below again (see `session`); no shard ever stops
//! draining its own rings, which could deadlock a cycle of full ones.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Poll, Waker};
use std::time::Duration;

use bytes::Bytes;

use super::stats::ShardStats;

/// Frames held back for full rings, across all destinations, past which
/// this shard says it is congested.
const HELD_PAUSE: usize = 16 * 1024;

/// The sending ends of this shard's rings and the frames held for them.
pub struct Mesh {
    outbox: shards::Outbox,
    /// Frames waiting for room on a full ring, per destination, in order.
    held: RefCell<Vec<VecDeque<Bytes>>>,
    held_total: Cell<usize>,
    held_waker: RefCell<Option<Waker>>,
    stats: Arc<ShardStats>,
}

impl Mesh {
    /// The mesh side of a shard with `outbox`, for `count` shards.
    pub fn new(outbox: shards::Outbox, count: usize, stats: Arc<ShardStats>) -> Self {
        Self {
            outbox,
            held: RefCell::new((0..count).map(|_| VecDeque::new()).collect()),
            held_total: Cell::new(0),
            held_waker: RefCell::new(None),
            stats,
        }
    }

    /// Sends a frame to another shard, or holds it while the ring is full.
    pub fn send(&self, to: usize, bytes: Bytes) {
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
}
