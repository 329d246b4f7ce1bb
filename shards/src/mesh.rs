//! The mesh: one bounded SPSC ring per ordered pair of shards, and the
//! sleep/wake protocol that keeps an idle shard asleep and a busy one free of
//! wake-up system calls.
//!
//! Shard `i` owns an [`Outbox`] (the producer ends of the rings `i→j`) and an
//! [`Inbox`] (the consumer ends of the rings `j→i`). There is no `i→i` ring: a
//! shard handles its own work directly.
//!
//! Waking follows Seastar: before a shard parks it sets its `sleeping` flag and
//! looks at its rings once more; a sender, after pushing, wakes the target
//! only if that flag is set. Both sides put a `SeqCst` fence between their
//! store and their load, so one of them always sees the other: either the
//! receiver sees the frame, or the sender sees the flag. A shard that keeps
//! up with its inbound traffic is therefore never woken by a system call.

use std::cell::{Cell, RefCell};
use std::future::poll_fn;
use std::sync::atomic::{fence, AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::Poll;

use atomic_waker::AtomicWaker;
use bytes::Bytes;
use rtrb::{Consumer, Producer, PushError, RingBuffer};

/// Per-shard wake state, shared by the shard and everyone who sends to it.
#[derive(Default)]
pub(crate) struct Wake {
    /// Set by the shard just before it parks waiting for frames.
    sleeping: AtomicBool,
    /// The shard's inbox task, woken when a frame arrives while it sleeps.
    waker: AtomicWaker,
    /// Set once by [`crate::Handle::stop`].
    stop: AtomicBool,
    /// How many times a sender had to wake this shard (a system call each).
    wakeups: AtomicU64,
    /// This shard's task waiting for every shard's congestion to clear;
    /// woken by whichever shard clears its flag.
    uncongested: AtomicWaker,
    /// This shard's task waiting for room on a full ring to another shard;
    /// woken by that shard when it takes frames off the ring.
    space: AtomicWaker,
}

impl Wake {
    /// Asks the shard to stop and wakes it so it notices.
    pub(crate) fn request_stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        self.waker.wake();
    }

    fn wake_if_sleeping(&self) {
        fence(Ordering::SeqCst);
        if self.sleeping.load(Ordering::Relaxed) && self.sleeping.swap(false, Ordering::AcqRel) {
            self.wakeups.fetch_add(1, Ordering::Relaxed);
            self.waker.wake();
        }
    }
}

/// Why a frame could not be sent; the frame is handed back.
#[derive(Debug)]
pub enum SendError {
    /// The ring to that shard is full: the receiver is behind. Keep the frame
    /// and retry later; the receiver drains in batches.
    Full(Bytes),
    /// The target is this shard itself, or out of range, or has exited.
    NoRoute(Bytes),
}

/// The sending ends of this shard's rings, one per other shard.
pub struct Outbox {
    me: usize,
    rings: RefCell<Vec<Option<Producer<Bytes>>>>,
    targets: Vec<Arc<Wake>>,
    /// `wants_space[from * n + to]`: shard `from` waits for room on its
    /// ring to `to` (set by `from`, cleared by `to` as it drains).
    wants_space: Arc<[AtomicBool]>,
    /// One flag per shard, each written only by its shard: "I am holding
    /// back more than I should". Read by every shard to push back on its
    /// own clients, so that overload anywhere slows input everywhere
    /// without any shard ever ceasing to drain its rings (which could
    /// deadlock a cycle of full rings).
    congested: Arc<[AtomicBool]>,
}

impl Outbox {
    /// Pushes `frame` onto the ring to shard `to`, waking it if it sleeps.
    pub fn send(&self, to: usize, frame: Bytes) -> Result<(), SendError> {
        let mut rings = self.rings.borrow_mut();
        let Some(Some(ring)) = rings.get_mut(to) else {
            return Err(SendError::NoRoute(frame));
        };
        if ring.is_abandoned() {
            return Err(SendError::NoRoute(frame));
        }
        match ring.push(frame) {
            Ok(()) => {
                self.targets[to].wake_if_sleeping();
                Ok(())
            }
            Err(PushError::Full(frame)) => Err(SendError::Full(frame)),
        }
    }

    /// Says whether this shard is congested (only this shard writes its
    /// flag). Clearing it wakes every shard waiting for congestion to clear.
    pub fn set_congested(&self, yes: bool) {
        if self.congested[self.me].load(Ordering::Relaxed) != yes {
            self.congested[self.me].store(yes, Ordering::SeqCst);
            if !yes {
                fence(Ordering::SeqCst);
                for t in &self.targets {
                    t.uncongested.wake();
                }
            }
        }
    }

    /// Ready once no shard says it is congested; until then the task is
    /// woken when some shard clears its flag (and polls again).
    pub fn poll_uncongested(&self, cx: &mut std::task::Context<'_>) -> Poll<()> {
        if !self.any_congested() {
            return Poll::Ready(());
        }
        self.targets[self.me].uncongested.register(cx.waker());
        fence(Ordering::SeqCst);
        if self.any_congested() {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    }

    /// Ready once one of the rings to `to` has room; until then the task is
    /// woken when a receiver among them takes frames off its ring.
    pub fn poll_space(
        &self,
        to: impl Iterator<Item = usize> + Clone,
        cx: &mut std::task::Context<'_>,
    ) -> Poll<()> {
        let n = self.targets.len();
        let has_room = |rings: &Vec<Option<Producer<Bytes>>>, t: usize| {
            rings
                .get(t)
                .and_then(Option::as_ref)
                .is_none_or(|r| r.slots() > 0 || r.is_abandoned())
        };
        {
            let rings = self.rings.borrow();
            if to.clone().any(|t| has_room(&rings, t)) {
                return Poll::Ready(());
            }
        }
        self.targets[self.me].space.register(cx.waker());
        for t in to.clone() {
            self.wants_space[self.me * n + t].store(true, Ordering::SeqCst);
        }
        fence(Ordering::SeqCst);
        let rings = self.rings.borrow();
        if to.clone().any(|t| has_room(&rings, t)) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }

    /// True if any shard says it is congested.
    pub fn any_congested(&self) -> bool {
        self.congested.iter().any(|c| c.load(Ordering::Relaxed))
    }

    /// This shard's id.
    pub fn me(&self) -> usize {
        self.me
    }

    /// Number of shards in the mesh.
    pub fn shards(&self) -> usize {
        self.targets.len()
    }
}

/// The receiving ends of this shard's rings, one per other shard.
pub struct Inbox {
    me: usize,
    rings: RefCell<Vec<Option<Consumer<Bytes>>>>,
    wake: Arc<Wake>,
    /// The senders' wake state, to tell one waiting for room that there is.
    senders: Vec<Arc<Wake>>,
    wants_space: Arc<[AtomicBool]>,
    /// Round-robin start, so a flooded ring cannot starve the others.
    next: Cell<usize>,
}

impl Inbox {
    /// Takes up to `budget` frames from the rings, calling `f(from, frame)`
    /// for each in arrival order per sender; returns how many were taken.
    /// Never waits.
    pub fn drain(&self, budget: usize, mut f: impl FnMut(usize, Bytes)) -> usize {
        let mut rings = self.rings.borrow_mut();
        let n = rings.len();
        let start = self.next.get();
        let mut taken = 0;
        for k in 0..n {
            let from = (start + k) % n;
            let Some(ring) = rings[from].as_mut() else {
                continue;
            };
            let before = taken;
            while taken < budget {
                match ring.pop() {
                    Ok(frame) => {
                        taken += 1;
                        f(from, frame);
                    }
                    Err(_) => break,
                }
            }
            if taken > before {
                // The sender may be waiting for room: it set its flag, then
                // looked at the ring; we took frames, then look at the flag.
                fence(Ordering::SeqCst);
                let wants = &self.wants_space[from * n + self.me];
                if wants.load(Ordering::Relaxed) && wants.swap(false, Ordering::AcqRel) {
                    self.senders[from].space.wake();
                }
            }
        }
        self.next.set((start + 1) % n.max(1));
        taken
    }

    fn any_ready(&self) -> bool {
        self.rings
            .borrow()
            .iter()
            .flatten()
            .any(|ring| !ring.is_empty())
    }

    /// Waits until a frame is on some ring, or a stop was requested. Parks
    /// the task (and so, if nothing else runs, the shard) in between.
    pub async fn ready(&self) {
        poll_fn(|cx| {
            if self.any_ready() || self.stop_requested() {
                return Poll::Ready(());
            }
            self.wake.waker.register(cx.waker());
            self.wake.sleeping.store(true, Ordering::SeqCst);
            fence(Ordering::SeqCst);
            if self.any_ready() || self.stop_requested() {
                self.wake.sleeping.store(false, Ordering::Relaxed);
                return Poll::Ready(());
            }
            Poll::Pending
        })
        .await
    }

    /// True once [`crate::Handle::stop`] was called.
    pub fn stop_requested(&self) -> bool {
        self.wake.stop.load(Ordering::Acquire)
    }

    /// How many times other shards had to wake this one.
    pub fn wakeups(&self) -> u64 {
        self.wake.wakeups.load(Ordering::Relaxed)
    }
}

/// Builds the N×N mesh: `(outboxes, inboxes, wakes)`, indexed by shard.
pub(crate) fn build(n: usize, capacity: usize) -> (Vec<Outbox>, Vec<Inbox>, Vec<Arc<Wake>>) {
    let wakes: Vec<Arc<Wake>> = (0..n).map(|_| Arc::new(Wake::default())).collect();
    let mut producers: Vec<Vec<Option<Producer<Bytes>>>> =
        (0..n).map(|_| (0..n).map(|_| None).collect()).collect();
    let mut consumers: Vec<Vec<Option<Consumer<Bytes>>>> =
        (0..n).map(|_| (0..n).map(|_| None).collect()).collect();
    for from in 0..n {
        for to in 0..n {
            if from != to {
                let (p, c) = RingBuffer::new(capacity);
                producers[from][to] = Some(p);
                consumers[to][from] = Some(c);
            }
        }
    }
    let congested: Arc<[AtomicBool]> = (0..n).map(|_| AtomicBool::new(false)).collect();
    let wants_space: Arc<[AtomicBool]> = (0..n * n).map(|_| AtomicBool::new(false)).collect();
    let outboxes = producers
        .into_iter()
        .enumerate()
        .map(|(me, rings)| Outbox {
            me,
            rings: RefCell::new(rings),
            targets: wakes.clone(),
            wants_space: wants_space.clone(),
            congested: congested.clone(),
        })
        .collect();
    let inboxes = consumers
        .into_iter()
        .zip(&wakes)
        .enumerate()
        .map(|(me, (rings, wake))| Inbox {
            me,
            rings: RefCell::new(rings),
            wake: wake.clone(),
            senders: wakes.clone(),
            wants_space: wants_space.clone(),
            next: Cell::new(0),
        })
        .collect();
    (outboxes, inboxes, wakes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(inbox: &Inbox) -> Vec<(usize, Bytes)> {
        let mut out = Vec::new();
        inbox.drain(usize::MAX, |from, b| out.push((from, b)));
        out
    }

    #[test]
    fn frames_arrive_in_order_per_sender() {
        let (out, inb, _) = build(3, 8);
        for i in 0..5u8 {
            out[0].send(2, Bytes::from(vec![i])).unwrap();
            out[1].send(2, Bytes::from(vec![10 + i])).unwrap();
        }
        let got = frames(&inb[2]);
        let from0: Vec<u8> = got.iter().filter(|f| f.0 == 0).map(|f| f.1[0]).collect();
        let from1: Vec<u8> = got.iter().filter(|f| f.0 == 1).map(|f| f.1[0]).collect();
        assert_eq!(from0, vec![0, 1, 2, 3, 4]);
        assert_eq!(from1, vec![10, 11, 12, 13, 14]);
        assert!(frames(&inb[1]).is_empty());
    }

    #[test]
    fn full_ring_hands_the_frame_back() {
        let (out, inb, _) = build(2, 2);
        out[0].send(1, Bytes::from_static(b"a")).unwrap();
        out[0].send(1, Bytes::from_static(b"b")).unwrap();
        match out[0].send(1, Bytes::from_static(b"c")) {
            Err(SendError::Full(b)) => assert_eq!(&b[..], b"c"),
            other => panic!("expected Full, got {other:?}"),
        }
        assert_eq!(frames(&inb[1]).len(), 2);
        out[0].send(1, Bytes::from_static(b"c")).unwrap();
    }

    #[test]
    fn no_ring_to_self() {
        let (out, _, _) = build(2, 2);
        assert!(matches!(
            out[1].send(1, Bytes::new()),
            Err(SendError::NoRoute(_))
        ));
        assert!(matches!(
            out[1].send(7, Bytes::new()),
            Err(SendError::NoRoute(_))
        ));
    }

    #[test]
    fn congestion_anywhere_is_seen_everywhere() {
        let (out, _, _) = build(3, 2);
        assert!(!out[0].any_congested());
        out[2].set_congested(true);
        assert!(out[0].any_congested() && out[1].any_congested());
        out[2].set_congested(false);
        assert!(!out[1].any_congested());
    }

    /// A waker that counts its wakes.
    struct Count(std::sync::atomic::AtomicUsize);
    impl std::task::Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn counting() -> (Arc<Count>, std::task::Waker) {
        let c = Arc::new(Count(std::sync::atomic::AtomicUsize::new(0)));
        (c.clone(), std::task::Waker::from(c))
    }

    #[test]
    fn clearing_congestion_wakes_the_shards_waiting_for_it() {
        let (out, _, _) = build(2, 2);
        let (woken, waker) = counting();
        let mut cx = std::task::Context::from_waker(&waker);
        assert!(out[0].poll_uncongested(&mut cx).is_ready());
        out[1].set_congested(true);
        assert!(out[0].poll_uncongested(&mut cx).is_pending());
        assert_eq!(woken.0.load(Ordering::SeqCst), 0);
        out[1].set_congested(false);
        assert_eq!(woken.0.load(Ordering::SeqCst), 1, "woken by the clear");
        assert!(out[0].poll_uncongested(&mut cx).is_ready());
    }

    #[test]
    fn draining_a_full_ring_wakes_its_waiting_sender() {
        let (out, inb, _) = build(2, 2);
        out[0].send(1, Bytes::new()).unwrap();
        out[0].send(1, Bytes::new()).unwrap();
        let (woken, waker) = counting();
        let mut cx = std::task::Context::from_waker(&waker);
        assert!(out[0].poll_space([1].into_iter(), &mut cx).is_pending());
        assert_eq!(inb[1].drain(1, |_, _| {}), 1);
        assert_eq!(woken.0.load(Ordering::SeqCst), 1, "woken by the drain");
        assert!(out[0].poll_space([1].into_iter(), &mut cx).is_ready());
        // Nobody waits now: draining wakes nobody.
        inb[1].drain(1, |_, _| {});
        assert_eq!(woken.0.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn budget_limits_a_drain() {
        let (out, inb, _) = build(2, 16);
        for _ in 0..10 {
            out[0].send(1, Bytes::new()).unwrap();
        }
        assert_eq!(inb[1].drain(4, |_, _| {}), 4);
        assert_eq!(inb[1].drain(100, |_, _| {}), 6);
    }

    #[test]
    fn a_sleeping_shard_is_woken_once_and_a_busy_one_never() {
        let (out, inb, wakes) = build(2, 64);
        // Not sleeping: sends don't wake.
        out[0].send(1, Bytes::new()).unwrap();
        assert_eq!(inb[1].wakeups(), 0);
        inb[1].drain(usize::MAX, |_, _| {});
        // Declares sleep: the first send wakes, the next ones don't.
        wakes[1].sleeping.store(true, Ordering::SeqCst);
        out[0].send(1, Bytes::new()).unwrap();
        out[0].send(1, Bytes::new()).unwrap();
        assert_eq!(inb[1].wakeups(), 1);
    }
}
