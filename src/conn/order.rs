//! What a connection has queued, and the order replies leave in.
//!
//! A RESP client that pipelines gets its replies in request order, even
//! when some of them (SUBSCRIBE, PUBLISH) are decided by another shard:
//! such a reply reserves its place with a ticket, and every frame queued
//! after it waits behind it until the ticket is answered.

use std::collections::VecDeque;
use std::rc::Rc;

use bytes::Bytes;

/// A queued frame. A room message is framed once per shard and every local
/// member queues the same `Rc`: a non-atomic count per delivery, where
/// cloning the `Bytes` itself costs a locked instruction (14% of a shard's
/// CPU under overload).
pub type Frame = Rc<Bytes>;

/// Replies owed, by ticket, each with its frame once known, and the frames
/// queued behind them (ticket 0).
#[derive(Debug, Default)]
pub struct Owed {
    slots: VecDeque<(u32, Option<Frame>)>,
}

impl Owed {
    /// True when nothing is owed or waiting.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Reserves the place of the reply for `ticket`.
    pub fn reserve(&mut self, ticket: u32) {
        self.slots.push_back((ticket, None));
    }

    /// Queues a frame behind the replies owed.
    pub fn wait(&mut self, frame: Frame) {
        self.slots.push_back((0, Some(frame)));
    }

    /// Puts `frame` in the place of `ticket`; false if no such place is
    /// open.
    pub fn fill(&mut self, ticket: u32, frame: Frame) -> bool {
        match self
            .slots
            .iter_mut()
            .find(|(t, f)| *t == ticket && f.is_none())
        {
            Some(slot) => {
                slot.1 = Some(frame);
                true
            }
            None => false,
        }
    }

    /// Moves every frame now due (the filled ones at the front) to `out`;
    /// true if any moved.
    pub fn release(&mut self, out: &mut VecDeque<Frame>) -> bool {
        let mut moved = false;
        while let Some((_, Some(_))) = self.slots.front() {
            if let Some((_, Some(frame))) = self.slots.pop_front() {
                out.push_back(frame);
                moved = true;
            }
        }
        moved
    }
}
