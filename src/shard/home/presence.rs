//! Presence batching at a room's home.
//!
//! Every join and leave is news to every other member of the room, so a
//! room filling up costs members × joins frames: 5,000 users rejoining a
//! room after a restart would mean 12.5 million presence frames, each its
//! own TCP segment to a member's socket. A [`Gate`] per room bounds that to
//! one presence frame per member per `presence_interval`:
//!
//! * the first event after a quiet interval goes out at once, in the
//!   single-event form, so a quiet room sees presence without delay;
//! * events inside the interval are held, in order, and leave together
//!   when it ends — a batch of one keeps the single-event form (and still
//!   skips the member it is about), a longer one is one frame listing them.
//!
//! Nothing is dropped: every event reaches every member, at most one
//! interval late.

use std::rc::Rc;
use std::time::{Duration, Instant};

/// One join or leave.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// The connection that joined or left (the single-event form skips it).
    pub conn: u64,
    /// Its user name.
    pub user: Rc<str>,
    /// Joined (true) or left.
    pub joined: bool,
    /// A join's user `info`, if its token had one.
    pub info: Option<Rc<str>>,
}

/// What to do with an event offered to a [`Gate`].
#[derive(Debug, PartialEq, Eq)]
pub enum Offer {
    /// Send it now.
    Now(Event),
    /// Held for the batch that leaves at this instant; the caller schedules
    /// the room (only the first held event of a batch says so).
    Scheduled(Instant),
    /// Held for a batch already scheduled.
    Held,
}

/// A room's presence throttle.
#[derive(Debug, Default)]
pub struct Gate {
    /// When presence last left for this room.
    last: Option<Instant>,
    /// Events waiting for the end of the interval, oldest first.
    pending: Vec<Event>,
}

impl Gate {
    /// Sends `event` now if the room has been quiet for `interval`,
    /// otherwise holds it. An interval of zero never holds.
    pub fn offer(&mut self, event: Event, now: Instant, interval: Duration) -> Offer {
        if !self.pending.is_empty() {
            self.pending.push(event);
            return Offer::Held;
        }
        match self.last {
            Some(last) if !interval.is_zero() && now < last + interval => {
                self.pending.push(event);
                Offer::Scheduled(last + interval)
            }
            _ => {
                self.last = Some(now);
                Offer::Now(event)
            }
        }
    }

    /// The held events, oldest first, for the batch leaving at `now`.
    pub fn take(&mut self, now: Instant) -> Vec<Event> {
        if !self.pending.is_empty() {
            self.last = Some(now);
        }
        std::mem::take(&mut self.pending)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(conn: u64, joined: bool) -> Event {
        Event {
            conn,
            user: format!("u{conn}").into(),
            joined,
            info: None,
        }
    }

    const I: Duration = Duration::from_millis(100);

    #[test]
    fn a_quiet_room_sends_at_once() {
        let mut g = Gate::default();
        let t0 = Instant::now();
        assert_eq!(g.offer(ev(1, true), t0, I), Offer::Now(ev(1, true)));
        let later = t0 + I;
        assert_eq!(g.offer(ev(2, true), later, I), Offer::Now(ev(2, true)));
        assert!(g.take(later).is_empty(), "nothing held");
    }

    #[test]
    fn events_inside_the_interval_wait_for_its_end_in_order() {
        let mut g = Gate::default();
        let t0 = Instant::now();
        assert!(matches!(g.offer(ev(1, true), t0, I), Offer::Now(_)));
        let t1 = t0 + Duration::from_millis(10);
        assert_eq!(g.offer(ev(2, true), t1, I), Offer::Scheduled(t0 + I));
        assert_eq!(g.offer(ev(3, true), t1, I), Offer::Held);
        assert_eq!(g.offer(ev(2, false), t1, I), Offer::Held);
        let t2 = t0 + I;
        assert_eq!(g.take(t2), vec![ev(2, true), ev(3, true), ev(2, false)]);
        // The batch counts as the last send: the next event waits again.
        let t3 = t2 + Duration::from_millis(1);
        assert_eq!(g.offer(ev(4, true), t3, I), Offer::Scheduled(t2 + I));
        assert_eq!(g.take(t2 + I), vec![ev(4, true)]);
    }

    #[test]
    fn once_a_batch_is_held_later_events_join_it_even_after_the_interval() {
        // Order is kept: an event never overtakes one still held.
        let mut g = Gate::default();
        let t0 = Instant::now();
        g.offer(ev(1, true), t0, I);
        g.offer(ev(2, true), t0, I);
        assert_eq!(g.offer(ev(3, true), t0 + 2 * I, I), Offer::Held);
        assert_eq!(g.take(t0 + 2 * I).len(), 2);
    }

    #[test]
    fn a_zero_interval_never_holds() {
        let mut g = Gate::default();
        let t0 = Instant::now();
        for c in 0..3 {
            assert!(matches!(
                g.offer(ev(c, true), t0, Duration::ZERO),
                Offer::Now(_)
            ));
        }
        assert!(g.take(t0).is_empty());
    }
}
