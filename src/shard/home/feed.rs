//! A cluster room's feed at this node's home for it: which of the room's
//! messages (sequenced in Redis) have been delivered to the local members,
//! and what must come before the next. Plain state; the shard's `relay`
//! role does the I/O.
//!
//! Messages arrive on the room's channel in seq order, but a channel can
//! lose some (a reconnect, a dropped subscriber), and the first ones of a
//! subscription race with reading where the room stands. So a feed:
//!
//! * delivers a message only when it is the next one (`delivered + 1`) of
//!   the room's current sequence (`epoch`), holding later ones ahead;
//! * asks for a fetch from the room's stream when it knows of a message it
//!   has not got (`known_top > delivered`) and the next one is not held,
//!   one fetch at a time;
//! * drops duplicates by seq, so a fetch and the channel may overlap;
//! * treats a message of another epoch as news that the room's sequence in
//!   Redis restarted: it fetches, and the fetch says which epoch is now;
//! * holds a publisher's acknowledgement until its message was delivered
//!   here (a publisher that is a member sees its message before its `ok`),
//!   and a joiner's answer until the feed reached the room's position when
//!   the join read it (so its backlog ends where live delivery starts).

use std::collections::{BTreeMap, VecDeque};

use bytes::Bytes;

/// What [`Feed::offer`] did with a message.
#[derive(Debug, PartialEq, Eq)]
pub enum Offered {
    /// Held; [`Feed::pop_ready`] may now have messages.
    Held,
    /// Already delivered.
    Duplicate,
}

/// What a fetch found out, for the caller to tell members.
#[derive(Debug, PartialEq, Eq)]
pub enum Fetched {
    /// Nothing unusual.
    Fine,
    /// The room's sequence restarted under a new epoch (its history in
    /// Redis was lost): members must be told, and delivery starts again
    /// from seq 1 of the new epoch.
    EpochChanged {
        /// The new epoch.
        epoch: u64,
    },
    /// Messages `from..=to` are gone from Redis (trimmed or expired) before
    /// this node delivered them.
    Lost {
        /// First lost seq.
        from: u64,
        /// Last lost seq.
        to: u64,
    },
}

/// One cluster room's delivery state at this node, with acknowledgements
/// of type `A` and joins of type `J` waiting on it.
#[derive(Debug)]
pub struct Feed<A, J> {
    /// Identifies this feed among feeds of the same room made and dropped
    /// over time, so a late answer for an earlier one is recognised.
    pub id: u64,
    /// The sequence being delivered (0 until synced).
    pub epoch: u64,
    /// Last seq delivered to local members.
    pub delivered: u64,
    synced: bool,
    /// Highest seq known to exist in `epoch`.
    known_top: u64,
    /// Messages not yet deliverable: seq → (epoch, body).
    ahead: BTreeMap<u64, (u64, Bytes)>,
    /// A fetch (sync, fill or resync) is in flight.
    pub fetching: bool,
    /// The channel subscription is confirmed.
    pub subscribed: bool,
    /// A message came since the last position check.
    pub heard: bool,
    acks: VecDeque<(u64, u64, A)>,
    joins: Vec<(u64, J)>,
    /// Joins waiting for the first sync.
    pub unsynced_joins: Vec<J>,
}

/// The most messages a feed holds ahead of a gap; past it the oldest
/// held are dropped (a fetch brings them again from the stream).
pub const MAX_AHEAD: usize = 4096;

/// The most acknowledgements a feed holds for messages not yet delivered
/// (the channel is down and publishers keep publishing); past it they go at
/// once, before their message.
pub const MAX_ACKS: usize = 16_384;

impl<A, J> Feed<A, J> {
    /// A feed not yet subscribed nor synced.
    pub fn new(id: u64) -> Self {
        Self {
            id,
            epoch: 0,
            delivered: 0,
            synced: false,
            known_top: 0,
            ahead: BTreeMap::new(),
            fetching: false,
            subscribed: false,
            heard: false,
            acks: VecDeque::new(),
            joins: Vec::new(),
            unsynced_joins: Vec::new(),
        }
    }

    /// Whether the feed knows where the room stands.
    pub fn is_synced(&self) -> bool {
        self.synced
    }

    /// The room stood at `(epoch, seq)` after the subscription was
    /// confirmed: delivery continues from `seq + 1`.
    pub fn sync(&mut self, epoch: u64, seq: u64) {
        self.synced = true;
        self.epoch = epoch;
        self.delivered = seq;
        self.known_top = self.known_top.max(seq);
        self.ahead.retain(|&s, (e, _)| *e == epoch && s > seq);
        if let Some((&top, _)) = self.ahead.last_key_value() {
            self.known_top = self.known_top.max(top);
        }
    }

    /// A message from the channel (or a fetch).
    pub fn offer(&mut self, epoch: u64, seq: u64, body: Bytes) -> Offered {
        self.heard = true;
        if self.synced && epoch == self.epoch && seq <= self.delivered {
            return Offered::Duplicate;
        }
        if self.ahead.len() >= MAX_AHEAD {
            // A gap that does not close: keep the newest, the fetch brings
            // the rest from the stream.
            self.ahead.pop_first();
        }
        if epoch == self.epoch {
            self.known_top = self.known_top.max(seq);
        }
        self.ahead.insert(seq, (epoch, body));
        Offered::Held
    }

    /// The next message to deliver, if it is here.
    pub fn pop_ready(&mut self) -> Option<(u64, Bytes)> {
        if !self.synced {
            return None;
        }
        loop {
            let first = self.ahead.first_entry()?;
            let seq = *first.key();
            let (epoch, _) = first.get();
            if *epoch != self.epoch {
                // Another sequence: wait for a fetch to say which is now.
                return None;
            }
            if seq <= self.delivered {
                first.remove();
                continue;
            }
            if seq != self.delivered + 1 {
                return None;
            }
            let (_, body) = first.remove();
            self.delivered = seq;
            return Some((seq, body));
        }
    }

    /// Whether the feed should fetch now: it knows of a message it lacks
    /// (or of another epoch) and the next one is not held, and no fetch
    /// is in flight.
    pub fn wants_fetch(&self) -> bool {
        if !self.synced || self.fetching || !self.subscribed {
            return false;
        }
        match self.ahead.first_key_value() {
            Some((_, (e, _))) if *e != self.epoch => true,
            Some((&s, _)) if s == self.delivered + 1 => false,
            _ => self.known_top > self.delivered,
        }
    }

    /// Something (a position check) says the room reached `seq` in the
    /// current epoch.
    pub fn learn_top(&mut self, seq: u64) {
        self.known_top = self.known_top.max(seq);
    }

    /// A fetch of the messages after `delivered` answered: the room's
    /// `epoch` and last `top` seq, and the messages it returned (oldest
    /// first; `full` when it stopped at its limit, more may follow).
    /// The messages go ahead; what was missing from Redis is reported.
    pub fn fetched(
        &mut self,
        epoch: u64,
        top: u64,
        entries: impl IntoIterator<Item = (u64, Bytes)>,
        full: bool,
    ) -> Fetched {
        self.fetching = false;
        if epoch != self.epoch {
            self.epoch = epoch;
            self.delivered = 0;
            self.known_top = top;
            self.ahead.retain(|_, (e, _)| *e == epoch);
            for (seq, body) in entries {
                self.ahead.insert(seq, (epoch, body));
            }
            return Fetched::EpochChanged { epoch };
        }
        self.known_top = self.known_top.max(top);
        let mut first_fetched = None;
        for (seq, body) in entries {
            first_fetched.get_or_insert(seq);
            if seq > self.delivered {
                self.ahead.insert(seq, (epoch, body));
            }
        }
        let next = self.delivered + 1;
        if self.ahead.contains_key(&next) {
            return Fetched::Fine;
        }
        // What Redis has from `next` on starts at its first entry; with
        // none, and not cut at the limit, at what the channel holds ahead.
        let available = match first_fetched {
            Some(s) => Some(s),
            None if !full => self
                .ahead
                .first_key_value()
                .map(|(&s, _)| s)
                .or(Some(top + 1)),
            None => None,
        };
        match available {
            Some(s) if s > next && top >= next => {
                let to = (s - 1).min(top);
                self.delivered = to;
                Fetched::Lost { from: next, to }
            }
            _ => Fetched::Fine,
        }
    }

    /// Holds a publisher's acknowledgement of `(epoch, seq)` until that
    /// message is delivered here; gives it back when it may go now.
    pub fn hold_ack(&mut self, epoch: u64, seq: u64, ack: A) -> Option<A> {
        if !self.synced
            || epoch != self.epoch
            || seq <= self.delivered
            || self.acks.len() >= MAX_ACKS
        {
            return Some(ack);
        }
        self.acks.push_back((epoch, seq, ack));
        None
    }

    /// Acknowledgements that may go now: their message was delivered, or
    /// belongs to a sequence that is no longer current.
    pub fn ready_acks(&mut self) -> Vec<A> {
        let mut out = Vec::new();
        while let Some(&(e, s, _)) = self.acks.front() {
            if e == self.epoch && s > self.delivered {
                break;
            }
            out.extend(self.acks.pop_front().map(|(_, _, a)| a));
        }
        // Acks of an older epoch behind a current one.
        if self.acks.iter().any(|&(e, _, _)| e != self.epoch) {
            let (old, keep): (VecDeque<_>, VecDeque<_>) =
                self.acks.drain(..).partition(|&(e, _, _)| e != self.epoch);
            self.acks = keep;
            out.extend(old.into_iter().map(|(_, _, a)| a));
        }
        out
    }

    /// Holds a join's answer until the feed delivered up to `seq`; gives
    /// it back when that is already so.
    pub fn hold_join(&mut self, seq: u64, join: J) -> Option<J> {
        if self.synced && self.delivered >= seq {
            return Some(join);
        }
        self.joins.push((seq, join));
        None
    }

    /// Joins whose answer may go now.
    pub fn ready_joins(&mut self) -> Vec<J> {
        if self.joins.is_empty() {
            return Vec::new();
        }
        let delivered = self.delivered;
        let (ready, wait): (Vec<_>, Vec<_>) = std::mem::take(&mut self.joins)
            .into_iter()
            .partition(|(s, _)| *s <= delivered);
        self.joins = wait;
        ready.into_iter().map(|(_, j)| j).collect()
    }

    /// Everything still waiting, when the feed goes (the last local member
    /// left): acknowledgements, joins, and joins waiting for a sync.
    pub fn take_waiting(&mut self) -> (Vec<A>, Vec<J>) {
        let acks = self.acks.drain(..).map(|(_, _, a)| a).collect();
        let mut joins: Vec<J> = self.joins.drain(..).map(|(_, j)| j).collect();
        joins.append(&mut self.unsynced_joins);
        (acks, joins)
    }

    /// Messages held ahead.
    pub fn held(&self) -> usize {
        self.ahead.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type F = Feed<u32, u32>;

    fn b(s: u64) -> Bytes {
        Bytes::from(format!("m{s}"))
    }

    fn drain(f: &mut F) -> Vec<u64> {
        std::iter::from_fn(|| f.pop_ready())
            .map(|(s, _)| s)
            .collect()
    }

    fn live(epoch: u64, seq: u64) -> F {
        let mut f = F::new(1);
        f.subscribed = true;
        f.sync(epoch, seq);
        f
    }

    #[test]
    fn in_order_with_duplicates_dropped() {
        let mut f = live(7, 10);
        assert_eq!(f.offer(7, 10, b(10)), Offered::Duplicate);
        f.offer(7, 11, b(11));
        f.offer(7, 12, b(12));
        assert_eq!(drain(&mut f), [11, 12]);
        assert_eq!(f.offer(7, 12, b(12)), Offered::Duplicate);
        assert!(!f.wants_fetch());
    }

    #[test]
    fn messages_before_the_sync_are_merged_by_seq() {
        let mut f = F::new(1);
        f.subscribed = true;
        f.offer(7, 5, b(5));
        f.offer(7, 6, b(6));
        f.offer(7, 7, b(7));
        assert_eq!(f.pop_ready(), None, "not synced");
        f.sync(7, 5);
        assert_eq!(drain(&mut f), [6, 7]);
    }

    #[test]
    fn a_gap_fetches_once_and_fills() {
        let mut f = live(7, 10);
        f.offer(7, 13, b(13));
        assert_eq!(drain(&mut f), Vec::<u64>::new());
        assert!(f.wants_fetch());
        f.fetching = true;
        f.offer(7, 14, b(14));
        assert!(!f.wants_fetch(), "one fetch at a time");
        let got = f.fetched(7, 14, [(11, b(11)), (12, b(12)), (13, b(13))], false);
        assert_eq!(got, Fetched::Fine);
        assert_eq!(drain(&mut f), [11, 12, 13, 14]);
        assert!(!f.wants_fetch());
    }

    #[test]
    fn trimmed_messages_are_reported_lost() {
        let mut f = live(7, 10);
        f.offer(7, 20, b(20));
        f.fetching = true;
        // Redis kept only 15.. of them.
        let got = f.fetched(7, 20, [(15, b(15)), (16, b(16))], false);
        assert_eq!(got, Fetched::Lost { from: 11, to: 14 });
        assert_eq!(drain(&mut f), [15, 16]);
        assert!(f.wants_fetch(), "17..19 still to come");
        f.fetching = true;
        // Nothing more in Redis (history 0, or expired): lost up to 19.
        assert_eq!(
            f.fetched(7, 20, [], false),
            Fetched::Lost { from: 17, to: 19 }
        );
        assert_eq!(drain(&mut f), [20]);
    }

    #[test]
    fn a_full_page_is_not_a_loss() {
        let mut f = live(7, 0);
        f.learn_top(3000);
        f.fetching = true;
        let page: Vec<_> = (1..=1000).map(|s| (s, b(s))).collect();
        assert_eq!(f.fetched(7, 3000, page, true), Fetched::Fine);
        assert_eq!(drain(&mut f).len(), 1000);
        assert!(f.wants_fetch());
    }

    #[test]
    fn another_epoch_restarts_delivery() {
        let mut f = live(7, 50);
        f.offer(9, 3, b(3));
        assert!(f.wants_fetch(), "a frame of another epoch");
        f.fetching = true;
        assert_eq!(
            f.fetched(9, 3, [(1, b(1)), (2, b(2))], false),
            Fetched::EpochChanged { epoch: 9 }
        );
        assert_eq!((f.epoch, f.delivered), (9, 0));
        assert_eq!(drain(&mut f), [1, 2, 3]);
    }

    #[test]
    fn acks_wait_for_their_message() {
        let mut f = live(7, 10);
        assert_eq!(f.hold_ack(7, 9, 1), Some(1), "already delivered");
        assert_eq!(f.hold_ack(7, 12, 2), None);
        assert_eq!(f.hold_ack(7, 11, 3), None);
        f.offer(7, 11, b(11));
        drain(&mut f);
        assert_eq!(
            f.ready_acks(),
            Vec::<u32>::new(),
            "2 is queued before 3 and waits for 12"
        );
        f.offer(7, 12, b(12));
        drain(&mut f);
        assert_eq!(f.ready_acks(), [2, 3]);
        assert_eq!(f.hold_ack(7, 13, 4), None);
        f.offer(8, 1, b(1));
        f.fetching = true;
        f.fetched(8, 1, [], false);
        assert_eq!(f.ready_acks(), [4], "its epoch is over");
    }

    #[test]
    fn joins_wait_for_the_position_they_read() {
        let mut f = live(7, 10);
        assert_eq!(f.hold_join(10, 1), Some(1));
        assert_eq!(f.hold_join(12, 2), None);
        f.offer(7, 11, b(11));
        drain(&mut f);
        assert!(f.ready_joins().is_empty());
        f.offer(7, 12, b(12));
        drain(&mut f);
        assert_eq!(f.ready_joins(), [2]);
        f.hold_join(99, 3);
        f.unsynced_joins.push(4);
        f.hold_ack(7, 50, 5);
        assert_eq!(f.take_waiting(), (vec![5], vec![3, 4]));
    }

    #[test]
    fn what_is_held_is_bounded() {
        let mut f = live(7, 0);
        for s in 2..(MAX_AHEAD as u64 + 100) {
            f.offer(7, s, b(s));
        }
        assert_eq!(f.held(), MAX_AHEAD);
        let acked_now = (0..MAX_ACKS as u32 + 10)
            .filter(|&a| f.hold_ack(7, 1_000_000, a).is_some())
            .count();
        assert_eq!(acked_now, 10);
    }
}
