//! A room as its home shard keeps it: the sequence counter, the bounded ring
//! of recent messages, and who the members are and on which shards.
//!
//! This is plain state with no I/O; the shard calls it and does the sending.

use std::collections::{BTreeMap, VecDeque};
use std::ops::Bound;
use std::rc::Rc;

use ahash::AHashMap;
use bytes::Bytes;
use smallvec::SmallVec;

use super::presence::Gate;

/// One retained message.
#[derive(Clone, Debug)]
pub struct Retained {
    /// Sequence number.
    pub seq: u64,
    /// As RESP subscribers see it: the data as it was published.
    pub resp: Bytes,
    /// As WebSocket clients see it.
    pub json: Json,
}

/// A retained message's JSON, or what it is made from.
#[derive(Clone, Debug)]
pub enum Json {
    /// Made when it was published, for the members the room had.
    Made(Bytes),
    /// Published while no member read JSON (none, or only RESP
    /// subscribers): made only when asked for (a recovery, `history`), not
    /// on every publish that nobody reads as JSON yet.
    Later {
        /// When it was sequenced (unix ms).
        ts: u64,
        /// Who sent it.
        user: Rc<str>,
        /// RESP bytes rather than JSON text.
        raw: bool,
    },
}

impl Retained {
    /// What keeping it costs: its bytes, and the shared buffer header a
    /// `Bytes` slice holds on to.
    fn cost(&self) -> usize {
        let json = match &self.json {
            Json::Made(j) => j.len(),
            Json::Later { .. } => 0,
        };
        self.resp.len() + json + 32
    }
}

/// The newest of `entries` (oldest first) whose sizes add up to at most
/// `budget`, oldest first, and whether any had to be left out.
pub fn newest_within<T>(
    entries: impl DoubleEndedIterator<Item = T>,
    budget: usize,
    size: impl Fn(&T) -> usize,
) -> (Vec<T>, bool) {
    let mut out = Vec::new();
    let mut used = 0;
    let mut cut = false;
    for e in entries.rev() {
        if used + size(&e) > budget {
            cut = true;
            break;
        }
        used += size(&e);
        out.push(e);
    }
    out.reverse();
    (out, cut)
}

/// The rooms by name. hashbrown's map for its `entry_ref`: a room is
/// looked up once by a borrowed name, and named (allocated) only when new.
pub type Rooms = hashbrown::HashMap<Box<str>, HomeRoom, ahash::RandomState>;

/// The home shard's view of a room.
#[derive(Debug)]
pub struct HomeRoom {
    /// Names this room's sequence: made at random when the sequence starts
    /// (the room is created here), so a seq from an earlier sequence of the
    /// same name (before an eviction, a restart, a change of home) is never
    /// mistaken for one of this sequence. Never 0.
    epoch: u64,
    /// Last sequence number given out (0: none yet).
    seq: u64,
    /// The most recent messages, oldest first, at most `capacity`.
    history: VecDeque<Retained>,
    capacity: usize,
    /// Bytes held by `history` (both forms of each message, counted apart
    /// even when one is a slice of the other: an upper bound).
    bytes: usize,
    /// Member connection → user name, and whether it reads JSON (a
    /// WebSocket connection, not a RESP subscriber).
    members: AHashMap<u64, (Rc<str>, bool)>,
    /// Members that read JSON: while there are none, messages are not
    /// made into JSON when published.
    json_readers: u32,
    /// Distinct user names of the members, sorted, each with its number of
    /// member connections: `members` requests page through it.
    users: BTreeMap<Rc<str>, u32>,
    /// The `info` of member users whose token had one (the latest join's):
    /// empty, and free, in rooms without it.
    info: AHashMap<Rc<str>, Rc<str>>,
    /// Member connections per shard, indexed by shard id.
    per_shard: SmallVec<[u32; 8]>,
    /// Join and leave events on their way to the members.
    pub presence: Gate,
}

/// What a join did.
#[derive(Debug, PartialEq, Eq)]
pub enum Joined {
    /// A new member.
    New,
    /// Already a member; nothing changed.
    Again,
    /// The room is full.
    Full,
}

impl HomeRoom {
    /// An empty room for a mesh of `shards` shards keeping `capacity`
    /// messages, its sequence named `epoch` (not 0).
    pub fn new(shards: usize, capacity: usize, epoch: u64) -> Self {
        debug_assert_ne!(epoch, 0);
        Self {
            epoch,
            seq: 0,
            history: VecDeque::new(),
            bytes: 0,
            capacity,
            members: AHashMap::new(),
            json_readers: 0,
            users: BTreeMap::new(),
            info: AHashMap::new(),
            per_shard: SmallVec::from_elem(0, shards),
            presence: Gate::default(),
        }
    }

    /// Last sequence number given out.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// The name of this room's sequence.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Adds a member connection that reads JSON; `max_members` of 0 means
    /// unlimited.
    pub fn join(&mut self, conn: u64, shard: usize, user: Rc<str>, max_members: usize) -> Joined {
        self.join_with(conn, shard, (user, None), true, max_members)
    }

    /// [`join`](Self::join), with the user's `info` to show in `members`,
    /// and whether the member reads JSON.
    pub fn join_with(
        &mut self,
        conn: u64,
        shard: usize,
        (user, info): (Rc<str>, Option<Rc<str>>),
        json: bool,
        max_members: usize,
    ) -> Joined {
        if self.members.contains_key(&conn) {
            return Joined::Again;
        }
        if max_members > 0 && self.members.len() >= max_members {
            return Joined::Full;
        }
        if let Some(info) = info {
            self.info.insert(user.clone(), info);
        }
        *self.users.entry(user.clone()).or_insert(0) += 1;
        self.members.insert(conn, (user, json));
        self.json_readers += u32::from(json);
        self.per_shard[shard] += 1;
        Joined::New
    }

    /// Removes a member; returns its user name if it was one.
    pub fn leave(&mut self, conn: u64, shard: usize) -> Option<Rc<str>> {
        let (user, json) = self.members.remove(&conn)?;
        self.json_readers -= u32::from(json);
        self.per_shard[shard] -= 1;
        if let Some(n) = self.users.get_mut(&user) {
            *n -= 1;
            if *n == 0 {
                self.users.remove(&user);
                self.info.remove(&user);
            }
        }
        Some(user)
    }

    /// Gives the next sequence number to a message and retains it. `build`
    /// gets the seq and returns the message as RESP subscribers and as
    /// WebSocket clients see it. Returns the seq and the JSON, if it was
    /// made (the payload, the caller has already).
    pub fn append(&mut self, build: impl FnOnce(u64) -> (Bytes, Json)) -> (u64, Bytes) {
        self.seq += 1;
        let (resp, json) = build(self.seq);
        let made = match &json {
            Json::Made(json) => json.clone(),
            Json::Later { .. } => Bytes::new(),
        };
        if self.capacity > 0 {
            if self.history.len() == self.capacity {
                if let Some(old) = self.history.pop_front() {
                    self.bytes -= old.cost();
                }
            }
            let entry = Retained {
                seq: self.seq,
                json,
                resp,
            };
            self.bytes += entry.cost();
            self.history.push_back(entry);
        }
        (self.seq, made)
    }

    /// Bytes of retained messages.
    /// Bytes of retained messages, with what keeping them costs: the
    /// ring's slots (all it has room for) and each message's buffer header.
    pub fn retained_bytes(&self) -> usize {
        self.bytes + self.history.capacity() * std::mem::size_of::<Retained>()
    }

    /// Retained messages with seq > `since`, oldest first, and whether that
    /// is all of them (false when some were already dropped from the ring).
    pub fn since(
        &self,
        since: u64,
    ) -> (
        bool,
        impl DoubleEndedIterator<Item = &Retained> + ExactSizeIterator,
    ) {
        let oldest_kept = self.history.front().map_or(self.seq + 1, |e| e.seq);
        let recovered = since.saturating_add(1) >= oldest_kept || since == self.seq;
        let skip = self.history.partition_point(|e| e.seq <= since);
        (recovered, self.history.iter().skip(skip))
    }

    /// What a client that saw everything up to `since` of the sequence
    /// `epoch` (when it says) missed: the retained messages after `since`,
    /// and whether they are all it missed. Not when the epoch differs (the
    /// sequence restarted: its seqs name other messages) or `since` is
    /// ahead of this sequence (it saw a sequence this one is not); then
    /// nothing is sent and the client must start afresh.
    pub fn recover(
        &self,
        since: u64,
        epoch: Option<u64>,
    ) -> (
        bool,
        impl DoubleEndedIterator<Item = &Retained> + ExactSizeIterator,
    ) {
        let same = epoch.is_none_or(|e| e == self.epoch) && since <= self.seq;
        let (recovered, it) = self.since(if same { since } else { self.seq });
        (same && recovered, it)
    }

    /// Shards that have at least one member.
    pub fn member_shards(&self) -> impl Iterator<Item = usize> + '_ {
        self.per_shard
            .iter()
            .enumerate()
            .filter(|(_, &n)| n > 0)
            .map(|(s, _)| s)
    }

    /// Member connections.
    pub fn member_count(&self) -> usize {
        self.members.len()
    }

    /// True when some member reads JSON.
    pub fn has_json_readers(&self) -> bool {
        self.json_readers > 0
    }

    /// Member connections and their users.
    pub fn member_list(&self) -> impl Iterator<Item = (u64, &Rc<str>)> {
        self.members.iter().map(|(&c, (u, _))| (c, u))
    }

    /// Cluster mode: the sequence is `epoch`, delivered up to `seq`; what
    /// is retained of another sequence, or before a jump in seq, goes.
    pub fn adopt(&mut self, epoch: u64, seq: u64) {
        if epoch != self.epoch || seq != self.seq {
            self.history.clear();
            self.bytes = 0;
        }
        self.epoch = epoch;
        self.seq = seq;
    }

    /// The `info` a member user joined with, if any.
    pub fn info_of(&self, user: &str) -> Option<&Rc<str>> {
        self.info.get(user)
    }

    /// Up to `limit` distinct user names of the members after `after`,
    /// sorted, within `budget` bytes of JSON (with their `info`); the
    /// number of distinct users; whether more follow.
    pub fn users(
        &self,
        after: Option<&str>,
        limit: usize,
        budget: usize,
    ) -> (Vec<Rc<str>>, usize, bool) {
        let from = match after {
            Some(a) => Bound::Excluded(a),
            None => Bound::Unbounded,
        };
        let mut it = self
            .users
            .range::<str, _>((from, Bound::Unbounded))
            .map(|(u, _)| u.clone());
        let mut used = 0;
        let mut page: Vec<Rc<str>> = Vec::new();
        let mut more = false;
        for u in it.by_ref() {
            // A name is at most 64 bytes; escaped, quoted and separated, at
            // most 6 bytes each plus 3.
            used += u.len() * 6 + 3 + self.info.get(&u).map_or(0, |i| u.len() * 6 + i.len() + 4);
            if page.len() == limit || used > budget {
                more = true;
                break;
            }
            page.push(u);
        }
        (page, self.users.len(), more)
    }

    /// True when the room has no members and nothing retained, so it can go.
    pub fn is_vacant(&self) -> bool {
        self.members.is_empty() && self.history.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(seq: u64) -> (Bytes, Json) {
        (
            Bytes::from(format!("r{seq}")),
            Json::Made(Bytes::from(format!("j{seq}"))),
        )
    }

    #[test]
    fn seqs_are_gap_free_and_history_is_bounded() {
        let mut room = HomeRoom::new(2, 3, 7);
        for want in 1..=5 {
            assert_eq!(room.append(msg).0, want);
        }
        let (recovered, it) = room.since(0);
        assert!(!recovered, "1 and 2 were dropped");
        assert_eq!(it.map(|e| e.seq).collect::<Vec<_>>(), vec![3, 4, 5]);
        let (recovered, it) = room.since(2);
        assert!(recovered);
        assert_eq!(it.map(|e| e.seq).collect::<Vec<_>>(), vec![3, 4, 5]);
        let (recovered, it) = room.since(4);
        assert!(recovered);
        assert_eq!(it.map(|e| e.seq).collect::<Vec<_>>(), vec![5]);
        let (recovered, it) = room.since(5);
        assert!(recovered);
        assert_eq!(it.count(), 0);
    }

    #[test]
    fn recovery_needs_the_same_sequence() {
        let mut room = HomeRoom::new(1, 8, 0x5eed);
        for _ in 0..5 {
            room.append(msg);
        }
        let got = |since, epoch| {
            let (ok, it) = room.recover(since, epoch);
            (ok, it.map(|e| e.seq).collect::<Vec<_>>())
        };
        assert_eq!(got(3, Some(0x5eed)), (true, vec![4, 5]));
        assert_eq!(got(3, None), (true, vec![4, 5]), "no epoch: seq alone");
        assert_eq!(got(5, Some(0x5eed)), (true, vec![]));
        // Another sequence's seq 3 is not this one's.
        assert_eq!(got(3, Some(0xbad)), (false, vec![]));
        // Ahead of this sequence: it saw one this is not.
        assert_eq!(got(500, None), (false, vec![]));
        assert_eq!(got(500, Some(0x5eed)), (false, vec![]));
        // The largest since does not overflow.
        assert_eq!(got(u64::MAX, None), (false, vec![]));
        let (ok, _) = HomeRoom::new(1, 8, 1).recover(u64::MAX, None);
        assert!(!ok);
    }

    #[test]
    fn retained_bytes_follow_the_ring_and_budgets_keep_the_newest() {
        let mut room = HomeRoom::new(1, 3, 7);
        for _ in 0..5 {
            room.append(msg);
        }
        // j3 r3 j4 r4 j5 r5, a buffer header each, and the ring's slots.
        let slots = room.history.capacity() * std::mem::size_of::<Retained>();
        assert_eq!(room.retained_bytes(), 3 * 4 + 3 * 32 + slots);
        let (_, it) = room.since(0);
        let (kept, cut) = newest_within(it, 9, |e| e.cost() - 32);
        assert_eq!(kept.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![4, 5]);
        assert!(cut);
        let (_, it) = room.since(3);
        let (kept, cut) = newest_within(it, 100, |e| e.cost() - 32);
        assert_eq!((kept.len(), cut), (2, false));
    }

    #[test]
    fn empty_room_recovers_from_zero() {
        let room = HomeRoom::new(1, 3, 7);
        let (recovered, it) = room.since(0);
        assert!(recovered);
        assert_eq!(it.count(), 0);
    }

    #[test]
    fn members_per_shard_and_limits() {
        let mut room = HomeRoom::new(3, 8, 7);
        let u: Rc<str> = "ann".into();
        assert_eq!(room.join(1, 0, u.clone(), 2), Joined::New);
        assert_eq!(room.join(1, 0, u.clone(), 2), Joined::Again);
        assert_eq!(room.join(2, 2, u.clone(), 2), Joined::New);
        assert_eq!(room.join(3, 1, "bob".into(), 2), Joined::Full);
        assert_eq!(room.member_shards().collect::<Vec<_>>(), vec![0, 2]);
        assert_eq!(room.users(None, 10, 1000), (vec!["ann".into()], 1, false));
        assert_eq!(room.leave(1, 0).as_deref(), Some("ann"));
        assert_eq!(room.leave(1, 0), None);
        assert_eq!(room.member_shards().collect::<Vec<_>>(), vec![2]);
        assert_eq!(room.member_count(), 1);
        assert_eq!(
            room.users(None, 10, 1000).1,
            1,
            "ann still has one connection"
        );
        room.leave(2, 2);
        assert_eq!(room.users(None, 10, 1000), (vec![], 0, false));
    }

    #[test]
    fn users_are_paged_in_order() {
        let mut room = HomeRoom::new(1, 0, 7);
        for (conn, user) in ["dee", "ann", "cy", "bo", "ann"].iter().enumerate() {
            room.join(conn as u64 + 1, 0, (*user).into(), 0);
        }
        let names = |v: Vec<Rc<str>>| v.iter().map(|u| u.to_string()).collect::<Vec<_>>();
        let (page, count, more) = room.users(None, 2, 1000);
        assert_eq!(
            (names(page), count, more),
            (vec!["ann".into(), "bo".into()], 4, true)
        );
        let (page, _, more) = room.users(Some("bo"), 2, 1000);
        assert_eq!(
            (names(page), more),
            (vec!["cy".into(), "dee".into()], false)
        );
        let (page, _, more) = room.users(Some("b"), 1, 1000);
        assert_eq!((names(page), more), (vec!["bo".into()], true));
        let (page, _, more) = room.users(None, 10, 40);
        assert_eq!(
            (names(page), more),
            (vec!["ann".into(), "bo".into()], true),
            "cut by the budget"
        );
    }
}
