//! What a connection has queued, and the order replies leave in.
//!
//! A RESP client that pipelines gets its replies in request order, even
//! when some of them (SUBSCRIBE, PUBLISH) are decided by another shard:
//! such a reply reserves its place with a ticket, and every frame queued
//! after it waits behind it until the ticket is answered.

use std::collections::VecDeque;
use std::fmt;
use std::ops::Deref;
use std::rc::Rc;

use bytes::Bytes;

/// A queued frame: bytes framed once and shared, or bytes the connection
/// owns alone and may add to.
///
/// A room message is framed once per shard and every local member queues
/// the same `Rc`: a non-atomic count per delivery, where cloning the
/// `Bytes` itself costs a locked instruction (14% of a shard's CPU under
/// overload). A connection's own frame is where what only it gets (its
/// replies, the messages of a room it alone is in here) is written
/// straight in, one after the other: no allocation per message, and a
/// pipelined batch leaves as one buffer rather than an iovec each.
#[derive(Clone)]
pub struct Frame(Rc<Body>);

enum Body {
    Shared(Bytes),
    Own(Vec<u8>),
}

impl Frame {
    /// A frame of bytes the connection owns and may add to.
    pub fn own(bytes: Vec<u8>) -> Self {
        Self(Rc::new(Body::Own(bytes)))
    }

    /// The bytes to add to, if this is an own frame nothing else holds.
    pub fn own_mut(&mut self) -> Option<&mut Vec<u8>> {
        match Rc::get_mut(&mut self.0) {
            Some(Body::Own(bytes)) => Some(bytes),
            _ => None,
        }
    }

    /// True if [`Frame::own_mut`] would give its bytes.
    pub fn is_own(&self) -> bool {
        matches!(*self.0, Body::Own(_)) && Rc::strong_count(&self.0) == 1
    }
}

impl From<Bytes> for Frame {
    fn from(bytes: Bytes) -> Self {
        Self(Rc::new(Body::Shared(bytes)))
    }
}

impl Deref for Frame {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match &*self.0 {
            Body::Shared(bytes) => bytes,
            Body::Own(bytes) => bytes,
        }
    }
}

impl fmt::Debug for Frame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = if self.is_own() { "own" } else { "shared" };
        write!(f, "Frame({kind}, {} bytes)", self.len())
    }
}

/// The ticket of a reply that reserved no place: it is answered before
/// anything else is queued to the connection (a PUBLISH whose room is
/// homed on the connection's shard), so queueing it as it comes keeps the
/// order. [`crate::conn::Conn::ticket`] never gives it out.
pub const UNRESERVED: u32 = 0;

/// One place in the reply order.
#[derive(Debug)]
struct Place {
    /// The ticket of this reply, or for a frame waiting behind replies,
    /// the ticket of the last reply before it: never decreasing along the
    /// queue, so a ticket is found by binary search.
    key: u32,
    /// A reserved reply (rather than a frame queued behind one).
    owed: bool,
    /// The frame, once known.
    frame: Option<Frame>,
}

/// Replies owed, in request order, each with its frame once known, and the
/// frames queued behind them. Filling a place is O(log n): a client may
/// have a hundred thousand pipelined replies owed, answered out of order by
/// two homes.
#[derive(Debug, Default)]
pub struct Owed {
    places: VecDeque<Place>,
}

impl Owed {
    /// True when nothing is owed or waiting.
    pub fn is_empty(&self) -> bool {
        self.places.is_empty()
    }

    /// Reserves the place of the reply for `ticket` (tickets come in
    /// increasing order, wrapping).
    pub fn reserve(&mut self, ticket: u32) {
        self.places.push_back(Place {
            key: ticket,
            owed: true,
            frame: None,
        });
    }

    /// Queues a frame behind the replies owed (there must be one).
    pub fn wait(&mut self, frame: Frame) {
        let key = self.places.back().map_or(0, |p| p.key);
        self.places.push_back(Place {
            key,
            owed: false,
            frame: Some(frame),
        });
    }

    /// Puts `frame` in the place of `ticket`; false if no such place is
    /// open.
    pub fn fill(&mut self, ticket: u32, frame: Frame) -> bool {
        let Some(base) = self.places.front().map(|p| p.key) else {
            return false;
        };
        // Keys relative to the front, so the order survives wrapping.
        let target = ticket.wrapping_sub(base);
        let i = self
            .places
            .partition_point(|p| p.key.wrapping_sub(base) < target);
        match self.places.get_mut(i) {
            Some(p) if p.owed && p.key == ticket && p.frame.is_none() => {
                p.frame = Some(frame);
                true
            }
            _ => false,
        }
    }

    /// Moves every frame now due (the filled ones at the front) to `out`;
    /// true if any moved.
    pub fn release(&mut self, out: &mut VecDeque<Frame>) -> bool {
        let mut moved = false;
        while self.places.front().is_some_and(|p| p.frame.is_some()) {
            if let Some(frame) = self.places.pop_front().and_then(|p| p.frame) {
                out.push_back(frame);
                moved = true;
            }
        }
        moved
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(s: &'static str) -> Frame {
        Frame::from(Bytes::from_static(s.as_bytes()))
    }

    fn drain(o: &mut Owed) -> Vec<String> {
        let mut out = VecDeque::new();
        o.release(&mut out);
        out.iter()
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .collect()
    }

    #[test]
    fn replies_leave_in_request_order_with_waiting_frames_between() {
        let mut o = Owed::default();
        o.reserve(1);
        o.wait(f("after-1"));
        o.reserve(2);
        o.reserve(3);
        o.wait(f("after-3"));
        assert!(o.fill(3, f("three")));
        assert!(drain(&mut o).is_empty(), "1 is still owed");
        assert!(o.fill(1, f("one")));
        assert_eq!(drain(&mut o), ["one", "after-1"]);
        assert!(!o.fill(1, f("again")), "filled places are gone");
        assert!(o.fill(2, f("two")));
        assert_eq!(drain(&mut o), ["two", "three", "after-3"]);
        assert!(o.is_empty());
    }

    #[test]
    fn tickets_may_wrap() {
        let mut o = Owed::default();
        for t in [u32::MAX - 1, u32::MAX, 0, 1] {
            o.reserve(t);
        }
        for t in [1, 0, u32::MAX] {
            assert!(o.fill(t, f("x")), "{t}");
        }
        assert!(drain(&mut o).is_empty());
        assert!(o.fill(u32::MAX - 1, f("x")));
        assert_eq!(drain(&mut o).len(), 4);
    }

    #[test]
    fn many_out_of_order_fills_are_cheap() {
        let mut o = Owed::default();
        let n = 200_000u32;
        for t in 1..=n {
            o.reserve(t);
        }
        // The even tickets (one home) answer first, then the odd ones.
        for t in (2..=n).step_by(2).chain((1..=n).step_by(2)) {
            assert!(o.fill(t, f("r")));
        }
        let mut out = VecDeque::new();
        o.release(&mut out);
        assert_eq!(out.len(), n as usize);
    }
}
