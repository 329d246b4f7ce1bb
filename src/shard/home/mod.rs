//! The rooms whose home is this shard, as plain state with no I/O: the
//! shard calls in with a request and gets back what to send to whom.
//!
//! - [`room`]: one room — sequence numbers, retained history, members.
//! - [`presence`]: batching a room's joins and leaves.
//! - [`retention`]: keeping retained bytes within budget.
//! - [`feed`]: in cluster mode, a room's delivery order at this node.

pub mod feed;
pub mod presence;
pub mod retention;
pub mod room;

use std::borrow::Cow;
use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hashbrown::hash_map::EntryRef;
use smallvec::SmallVec;

use crate::proto::chat::{self, Data};
use crate::shard::stats::ShardStats;
use crate::shard::wire::Entry;
use presence::{Event, Offer};
use retention::Retention;
use room::{newest_within, HomeRoom, Joined, Json, Retained, Rooms};

/// Shards that have members of a room.
pub type Targets = SmallVec<[usize; 8]>;

/// An unsequenced event (presence, typing) for a room's member shards.
#[derive(Debug)]
pub struct Fanout {
    /// The member shards.
    pub targets: Targets,
    /// A connection that must not get it (the one it is about), or 0.
    pub exclude: u64,
    /// The event as WebSocket clients see it.
    pub json: Vec<u8>,
}

/// Connection ids start at 1 in every shard's range: an `exclude` of 0
/// skips nobody.
pub const NOBODY: u64 = 0;

/// The home's answer to a join.
#[derive(Debug)]
pub struct JoinAnswer {
    /// The room's sequence.
    pub epoch: u64,
    /// The room's last seq.
    pub seq: u64,
    /// False when `since` reached back past what is retained.
    pub recovered: bool,
    /// The room is full; nothing else changed.
    pub full: bool,
    /// Retained messages after `since`, oldest first.
    pub backlog: Vec<Entry>,
    /// The join as presence news, if it leaves now.
    pub presence: Option<Fanout>,
}

/// A message the home sequenced.
#[derive(Debug)]
pub struct Sequenced {
    /// The room's sequence.
    pub epoch: u64,
    /// Its seq.
    pub seq: u64,
    /// As WebSocket clients see it (empty when no member reads JSON: it is
    /// made when a recovery or `history` asks for it).
    pub json: Bytes,
    /// The member shards to deliver it to.
    pub targets: Targets,
    /// Member connections when it was sequenced.
    pub receivers: u32,
}

/// Settings the home needs.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Messages retained per room.
    pub history: usize,
    /// Bytes retained across the shard's rooms.
    pub retained_bytes: usize,
    /// Members per room (0: unlimited).
    pub max_members: usize,
    /// Least time between a room's presence frames.
    pub presence_interval: Duration,
    /// The most one reply (a join's backlog, a history page) may carry.
    pub reply_budget: usize,
}

/// The rooms homed on one shard.
pub struct Homes {
    rooms: Rooms,
    retention: Retention,
    /// Rooms with presence events held, each with when its batch leaves
    /// (in that order: the interval is the same for all).
    presence_due: VecDeque<(Instant, Box<str>)>,
    /// The presence task, waiting for a batch to be scheduled.
    presence_waker: Option<Waker>,
    shards: usize,
    limits: Limits,
    stats: Arc<ShardStats>,
}

impl Homes {
    /// No rooms yet, for a mesh of `shards` shards.
    pub fn new(shards: usize, limits: Limits, stats: Arc<ShardStats>) -> Self {
        Self {
            rooms: Rooms::default(),
            retention: Retention::default(),
            presence_due: VecDeque::new(),
            presence_waker: None,
            shards,
            limits,
            stats,
        }
    }

    fn room_mut(&mut self, room: &str, idle_if_new: bool) -> &mut HomeRoom {
        // One hash of the name, and a key made (allocated) only for a new
        // room: every publish comes through here.
        match self.rooms.entry_ref(room) {
            EntryRef::Occupied(r) => r.into_mut(),
            EntryRef::Vacant(v) => {
                self.stats.rooms_homed.inc();
                self.retention.created(room);
                if idle_if_new {
                    self.retention.went_idle(room);
                }
                v.insert_with_key(
                    room.into(),
                    HomeRoom::new(self.shards, self.limits.history, new_epoch()),
                )
            }
        }
    }

    /// A connection of shard `shard` joins; with `since` (and the `epoch`
    /// it was of, if the client said), what it missed.
    pub fn join(
        &mut self,
        room: &str,
        conn: u64,
        (shard, json): (usize, bool),
        (user, info): (&str, Option<&str>),
        (since, epoch): (Option<u64>, Option<u64>),
    ) -> JoinAnswer {
        let limits = self.limits;
        let r = self.room_mut(room, false);
        let info: Option<Rc<str>> = info.map(Into::into);
        let member = (user.into(), info.clone());
        let joined = r.join_with(conn, shard, member, json, limits.max_members);
        let (recovered, backlog) = match (since, &joined) {
            (Some(since), Joined::New | Joined::Again) => {
                // Whatever fits the reply budget, newest kept: a backlog
                // cut short is reported as not recovered.
                let (recovered, it) = r.recover(since, epoch);
                let entries = it.map(|e| entry(room, e));
                let (backlog, cut) = newest_within(entries, limits.reply_budget, |e| {
                    e.json.len() + e.resp.len()
                });
                (recovered && !cut, backlog)
            }
            _ => (true, Vec::new()),
        };
        let (seq, epoch) = (r.seq(), r.epoch());
        let presence = if joined == Joined::New {
            self.offer_presence(
                room,
                Event {
                    conn,
                    user: user.into(),
                    joined: true,
                    info,
                },
            )
        } else {
            None
        };
        JoinAnswer {
            epoch,
            seq,
            recovered,
            full: joined == Joined::Full,
            backlog,
            presence,
        }
    }

    /// A connection leaves; the leave as presence news, if it leaves now.
    pub fn leave(&mut self, room: &str, conn: u64, shard: usize) -> Option<Fanout> {
        let r = self.rooms.get_mut(room)?;
        let left = r.leave(conn, shard);
        let vacant = r.is_vacant();
        let idle = r.member_count() == 0;
        let presence = left.and_then(|user| {
            let event = Event {
                conn,
                user,
                joined: false,
                info: None,
            };
            self.offer_presence(room, event)
        });
        if vacant {
            self.drop_room(room);
        } else if idle {
            self.retention.went_idle(room);
        }
        presence
    }

    /// Passes a join or leave through the room's presence gate: what to
    /// send now, if anything (see [`presence`]).
    fn offer_presence(&mut self, room: &str, event: Event) -> Option<Fanout> {
        self.stats.presence_events.inc();
        let r = self.rooms.get_mut(room)?;
        match r
            .presence
            .offer(event, Instant::now(), self.limits.presence_interval)
        {
            Offer::Now(e) => Some(Fanout {
                targets: r.member_shards().collect(),
                exclude: e.conn,
                json: chat::presence(room, &e.user, e.joined, e.info.as_deref()),
            }),
            Offer::Scheduled(due) => {
                self.stats.presence_held.inc();
                self.presence_due.push_back((due, room.into()));
                if let Some(w) = self.presence_waker.take() {
                    w.wake();
                }
                None
            }
            Offer::Held => {
                self.stats.presence_held.inc();
                None
            }
        }
    }

    /// When the next held presence batch leaves; registers the waker
    /// until one is scheduled.
    pub fn poll_presence_due(&mut self, cx: &mut Context<'_>) -> Poll<Instant> {
        match self.presence_due.front() {
            Some(&(due, _)) => Poll::Ready(due),
            None => {
                self.presence_waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }

    /// The next room whose held presence batch is due at `now`: its name,
    /// member shards and events, oldest first.
    pub fn take_due_presence(&mut self, now: Instant) -> Option<(Box<str>, Targets, Vec<Event>)> {
        loop {
            match self.presence_due.front() {
                Some(&(t, _)) if t <= now => {}
                _ => return None,
            }
            let (_, room) = self.presence_due.pop_front()?;
            if let Some(r) = self.rooms.get_mut(&*room) {
                let targets = r.member_shards().collect();
                let events = r.presence.take(now);
                return Some((room, targets, events));
            }
        }
    }

    /// Gives a message the room's next seq, retains it, and keeps the
    /// shard's retained bytes within budget.
    pub fn publish(&mut self, room: &str, user: &Rc<str>, data: Data<'_>, ts: u64) -> Sequenced {
        let r = self.room_mut(room, true);
        let before = r.retained_bytes();
        let read_now = r.has_json_readers();
        let (seq, json) = r.append(|seq| match data {
            // No member reads JSON: it waits until someone asks.
            Data::Raw(d) | Data::Json(d) if !read_now => {
                let raw = matches!(data, Data::Raw(_));
                let user = user.clone();
                (Bytes::copy_from_slice(d), Json::Later { ts, user, raw })
            }
            Data::Raw(d) => {
                let json = Bytes::from(chat::message(room, seq, user, ts, Data::Raw(d)));
                // Text that needed no escaping ends the JSON as it came
                // (`…"data":"<d>"}`): RESP subscribers get that slice too.
                let end = json.len().saturating_sub(2);
                let verbatim =
                    end >= d.len() && &json[end - d.len()..end] == d && json.ends_with(b"\"}");
                let resp = if verbatim {
                    json.slice(end - d.len()..end)
                } else {
                    Bytes::copy_from_slice(d)
                };
                (resp, Json::Made(json))
            }
            Data::Json(d) => {
                let json = Bytes::from(chat::message(room, seq, user, ts, Data::Json(d)));
                // The JSON message ends with `data` and a closing brace:
                // RESP subscribers get that slice, not a copy.
                let end = json.len() - 1;
                let resp = json.slice(end - d.len()..end);
                (resp, Json::Made(json))
            }
        });
        let after = r.retained_bytes();
        let epoch = r.epoch();
        let targets = r.member_shards().collect();
        let receivers = r.member_count() as u32;
        let vacant = r.is_vacant();
        self.stats.messages_sequenced.inc();
        self.retention.changed(before, after);
        if vacant {
            // Nobody is in it and it keeps nothing (history = 0): there is
            // nothing to come back to.
            self.drop_room(room);
        }
        self.retention.enforce(
            &mut self.rooms,
            room,
            self.limits.retained_bytes,
            &self.stats,
        );
        Sequenced {
            epoch,
            seq,
            json,
            targets,
            receivers,
        }
    }

    /// Forgets a room (cluster mode: the node's last member left, and what
    /// it retained is a cache of Redis that would go stale).
    pub fn drop_room(&mut self, room: &str) {
        if let Some(r) = self.rooms.remove(room) {
            self.retention.dropped(room, &r);
            self.stats.rooms_homed.sub(1);
        }
    }

    /// Rooms homed here.
    pub fn len(&self) -> usize {
        self.rooms.len()
    }

    /// True when no room is homed here.
    pub fn is_empty(&self) -> bool {
        self.rooms.is_empty()
    }

    /// The member shards of a room, if it is homed here.
    pub fn member_shards(&self, room: &str) -> Option<Targets> {
        self.rooms.get(room).map(|r| r.member_shards().collect())
    }

    /// Member connections of a room here (0 when it is not homed here).
    pub fn member_count(&self, room: &str) -> usize {
        self.rooms.get(room).map_or(0, HomeRoom::member_count)
    }

    /// The room's member connections here, each with its user and info.
    pub fn members_of(&self, room: &str) -> Vec<(u64, Rc<str>, Option<Rc<str>>)> {
        self.rooms.get(room).map_or_else(Vec::new, |r| {
            r.member_list()
                .map(|(conn, user)| (conn, user.clone(), r.info_of(user).cloned()))
                .collect()
        })
    }

    /// Cluster mode: the room's sequence is `epoch` and this node has
    /// delivered up to `seq` (its next message is `seq + 1`). What it
    /// retained of another sequence, or short of `seq`, is dropped.
    pub fn adopt(&mut self, room: &str, epoch: u64, seq: u64) {
        let Some(r) = self.rooms.get_mut(room) else {
            return;
        };
        let before = r.retained_bytes();
        r.adopt(epoch, seq);
        let after = r.retained_bytes();
        self.retention.changed(before, after);
    }

    /// The retained messages of a room after `since` and up to `upto`,
    /// oldest first (cluster mode: what this node delivered since a join
    /// read the room in Redis).
    pub fn retained_between(&self, room: &str, since: u64, upto: u64) -> Vec<Entry> {
        let Some(r) = self.rooms.get(room) else {
            return Vec::new();
        };
        let (_, it) = r.since(since);
        it.take_while(|e| e.seq <= upto)
            .map(|e| entry(room, e))
            .collect()
    }

    /// A `members` reply: a page of the room's distinct users (see
    /// [`HomeRoom::users`]).
    pub fn members(
        &self,
        id: Option<&str>,
        room: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Vec<u8> {
        let Some(r) = self.rooms.get(room) else {
            return chat::members(id, room, &[] as &[(&str, Option<&str>)], 0, false);
        };
        let (users, count, more) = r.users(after, limit, self.limits.reply_budget);
        let page: Vec<(&str, Option<&str>)> = users
            .iter()
            .map(|u| (&**u, r.info_of(u).map(|i| &**i)))
            .collect();
        chat::members(id, room, &page, count, more)
    }

    /// A `history` reply: retained messages after `since`, oldest first,
    /// at most `limit` and within the reply budget (`more` when cut).
    pub fn history(&self, id: Option<&str>, room: &str, since: u64, limit: usize) -> Vec<u8> {
        let Some(r) = self.rooms.get(room) else {
            return chat::history(id, room, None, std::iter::empty(), false);
        };
        let (_, it) = r.since(since);
        let mut used = 0;
        let mut more = false;
        let mut picked = Vec::new();
        for e in it.take(limit) {
            let json = json_of(room, e);
            let size = json.len() + e.resp.len();
            if used + size > self.limits.reply_budget {
                more = true;
                break;
            }
            used += size;
            picked.push(json);
        }
        let picked = picked.iter().map(|j| &j[..]);
        chat::history(id, room, Some(r.epoch()), picked, more)
    }

    /// Bytes retained across the rooms.
    pub fn retained(&self) -> usize {
        self.retention.retained()
    }
}

/// A new sequence's name: random, never 0.
fn new_epoch() -> u64 {
    loop {
        let e = fastrand::u64(..);
        if e != 0 {
            return e;
        }
    }
}

/// A retained message's JSON, made now if it was not when published.
fn json_of<'a>(room: &str, e: &'a Retained) -> Cow<'a, [u8]> {
    match &e.json {
        Json::Made(json) => Cow::Borrowed(json),
        Json::Later { ts, user, raw } => {
            let data = if *raw {
                Data::Raw(&e.resp)
            } else {
                Data::Json(&e.resp)
            };
            Cow::Owned(chat::message(room, e.seq, user, *ts, data))
        }
    }
}

/// A retained message as a member shard gets it back.
fn entry(room: &str, e: &Retained) -> Entry {
    Entry {
        seq: e.seq,
        json: json_of(room, e).into_owned(),
        resp: e.resp.to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn homes(history: usize, retained_bytes: usize) -> Homes {
        let limits = Limits {
            history,
            retained_bytes,
            max_members: 0,
            presence_interval: Duration::ZERO,
            reply_budget: 1 << 20,
        };
        Homes::new(1, limits, Arc::new(ShardStats::default()))
    }

    #[test]
    fn without_history_a_room_nobody_is_in_is_gone_after_each_message() {
        let mut h = homes(0, usize::MAX);
        for i in 0..1000 {
            let msg = h.publish(&format!("r{i}"), &"u".into(), Data::Json(b"1"), 0);
            assert_eq!(msg.seq, 1);
        }
        assert_eq!((h.len(), h.retained()), (0, 0));
        // A room with a member stays, and keeps its sequence.
        h.join("kept", 1, (0, true), ("m", None), (None, None));
        h.publish("kept", &"u".into(), Data::Json(b"1"), 0);
        assert_eq!(h.publish("kept", &"u".into(), Data::Json(b"1"), 0).seq, 2);
        assert_eq!(h.len(), 1);
        h.leave("kept", 1, 0);
        assert_eq!((h.len(), h.retained()), (0, 0));
    }

    #[test]
    fn many_small_rooms_are_bounded_by_what_they_cost_not_their_messages() {
        let budget = 100_000;
        let mut h = homes(16, budget);
        for i in 0..10_000 {
            h.publish(&format!("spam-{i}"), &"u".into(), Data::Json(b"1"), 0);
        }
        // A room of one short message: its footprint, the message, its
        // buffer header and the ring's first slots.
        let mut one = homes(16, usize::MAX);
        one.publish("spam-9999", &"u".into(), Data::Json(b"1"), 0);
        let per_room = one.retained();
        assert!(per_room > retention::footprint("spam-9999") + 100);
        assert!(h.retained() <= budget + per_room, "{}", h.retained());
        assert!(h.len() <= budget / per_room + 1, "{} rooms", h.len());
        assert!(h.len() >= budget / per_room - 1, "{} rooms", h.len());
    }

    /// A message published while no member reads JSON (here, only a RESP
    /// subscriber) keeps no JSON; what a recovery or `history` gets back
    /// is made then, byte for byte what a WebSocket member would have been
    /// delivered. Once one is in, messages are made as they come.
    #[test]
    fn a_message_nobody_read_as_json_comes_back_as_it_would_have_been_delivered() {
        let (mut lazy, mut eager) = (homes(8, usize::MAX), homes(8, usize::MAX));
        lazy.join("r", 8, (0, false), ("sub", None), (None, None));
        eager.join("r", 9, (0, true), ("m", None), (None, None));
        let user: Rc<str> = "ann \"a\"".into();
        let data = |i: usize| match i {
            0 => Data::Json(br#"{"a":[1,"\u00e9"]}"#),
            1 => Data::Raw(b"line\none"),
            _ => Data::Raw(b"\xff\x00"),
        };
        let (mut delivered, mut epochs) = (Vec::new(), (0, 0));
        for i in 0..3 {
            let ts = 1_700_000_000_000 + i as u64;
            let nobody = lazy.publish("r", &user, data(i), ts);
            assert!(nobody.json.is_empty(), "made for nobody");
            assert_eq!(nobody.targets.as_slice(), [0], "the subscriber's shard");
            let sent = eager.publish("r", &user, data(i), ts);
            delivered.push(sent.json.to_vec());
            epochs = (nobody.epoch, sent.epoch);
        }
        assert!(lazy.retained() < eager.retained(), "no JSON kept");
        let back = lazy.join("r", 1, (0, true), ("x", None), (Some(0), None));
        let json: Vec<_> = back.backlog.iter().map(|e| e.json.clone()).collect();
        assert_eq!(json, delivered);
        let history = |h: &Homes| String::from_utf8(h.history(None, "r", 0, 10)).unwrap();
        assert_eq!(
            history(&lazy),
            history(&eager).replace(&format!("{:016x}", epochs.1), &format!("{:016x}", epochs.0))
        );
        let now = lazy.publish("r", &user, data(0), 0);
        assert!(now.json.starts_with(br#"{"op":"message""#));
        lazy.leave("r", 1, 0);
        assert!(lazy.publish("r", &user, data(0), 0).json.is_empty());
    }

    #[test]
    fn epochs_are_new_for_each_sequence() {
        let mut h = homes(0, usize::MAX);
        let a = h.publish("r", &"u".into(), Data::Json(b"1"), 0).epoch;
        let b = h.publish("r", &"u".into(), Data::Json(b"1"), 0).epoch;
        assert_ne!(a, b, "the room was dropped in between");
        assert_ne!(a, 0);
    }
}
