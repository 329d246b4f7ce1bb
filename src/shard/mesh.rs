//! This shard's side of the ring mesh: sending frames to other shards, and
//! holding them back, in order, while a ring is full.
//!
//! A frame that finds its ring full waits in a per-destination queue, and
//! every later frame to that shard queues behind it, so frames still arrive
//! in the order sent; the retry task sleeps until the receiver takes frames
//! off that ring. Past `congestion_held_frames` held frames the shard says
//! it is congested, and every shard's readers stop taking requests from
//! their clients until no shard is (see `session`); they sleep until the
//! shard that was congested clears its flag. No shard ever stops draining
//! its own rings, which could deadlock a cycle of full ones.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Poll, Waker};

use bytes::Bytes;

use super::stats::ShardStats;

/// The sending ends of this shard's rings and the frames held for them.
pub struct Mesh {
    outbox: shards::Outbox,
    /// Frames waiting for room on a full ring, per destination, in order.
    held: RefCell<Vec<VecDeque<Bytes>>>,
    held_total: Cell<usize>,
    held_waker: RefCell<Option<Waker>>,
    /// Held frames past which this shard says it is congested.
    pause_at: usize,
    /// Readers of this shard waiting for congestion to clear.
    paused: RefCell<Vec<Waker>>,
    /// The task that wakes them, waiting for a reader to pause.
    pause_waker: RefCell<Option<Waker>>,
    stats: Arc<ShardStats>,
}

impl Mesh {
    /// The mesh side of a shard with `outbox`, for `count` shards, that
    /// says it is congested past `pause_at` held frames.
    pub fn new(
        outbox: shards::Outbox,
        count: usize,
        pause_at: usize,
        stats: Arc<ShardStats>,
    ) -> Self {
        Self {
            outbox,
            held: RefCell::new((0..count).map(|_| VecDeque::new()).collect()),
            held_total: Cell::new(0),
            held_waker: RefCell::new(None),
            pause_at,
            paused: RefCell::new(Vec::new()),
            pause_waker: RefCell::new(None),
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
        self.outbox.set_congested(total > self.pause_at);
    }

    /// Waits until no shard is congested. The reader's waker is kept here
    /// and woken when the shard that was congested clears its flag.
    pub async fn wait_uncongested(&self) {
        self.stats.congestion_pauses.inc();
        std::future::poll_fn(|cx| {
            if !self.backlogged() {
                return Poll::Ready(());
            }
            self.paused.borrow_mut().push(cx.waker().clone());
            if let Some(w) = self.pause_waker.borrow_mut().take() {
                w.wake();
            }
            Poll::Pending
        })
        .await
    }

    /// Wakes this shard's paused readers whenever congestion clears.
    pub async fn run_unpause(self: Rc<Self>) {
        loop {
            std::future::poll_fn(|cx| {
                if self.paused.borrow().is_empty() {
                    *self.pause_waker.borrow_mut() = Some(cx.waker().clone());
                    Poll::Pending
                } else {
                    Poll::Ready(())
                }
            })
            .await;
            std::future::poll_fn(|cx| self.outbox.poll_uncongested(cx)).await;
            for w in std::mem::take(&mut *self.paused.borrow_mut()) {
                w.wake();
            }
        }
    }

    /// Retries frames held for full rings until all are sent, sleeping
    /// until a receiver makes room.
    pub async fn run_held_retry(self: Rc<Self>) {
        loop {
            std::future::poll_fn(|cx| {
                if self.held_total.get() == 0 {
                    *self.held_waker.borrow_mut() = Some(cx.waker().clone());
                    return Poll::Pending;
                }
                let held = self.held.borrow();
                let waiting = (0..held.len()).filter(|&to| !held[to].is_empty());
                self.outbox.poll_space(waiting, cx)
            })
            .await;
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
