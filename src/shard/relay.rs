//! The shard as a room's home in cluster mode: the room's sequence, its
//! history and its members live in Redis, shared by every node, and the
//! home on each node relays between its node's members and Redis.
//!
//! * A publish is one script call (`rc_pub`: sequence, keep, publish); the
//!   publisher's `ok` waits until the message came back on the room's
//!   channel and was delivered here, so a publisher that is a member sees
//!   its message before its `ok`, as on one node.
//! * While the node has members in a room, its home subscribes to the
//!   room's channel and delivers in seq order ([`super::home::feed`]):
//!   gaps are fetched from the room's stream, and a new epoch (Redis lost
//!   the room) is told to members (`reset`), as are messages gone before
//!   they could be delivered (`gap`).
//! * A join with `since` reads the backlog from the stream (`rc_join`)
//!   and is answered once delivery here has reached the position it read,
//!   so backlog and live messages meet without a gap or a repeat.
//! * Members are kept in Redis per room, under this node's lease, so
//!   `members` answers for the cluster; presence and typing go on the
//!   room's channel, unsequenced.
//!
//! `relay_upkeep` is the other half: the channel's messages, the links'
//! ups and downs, heartbeats and position checks.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;

use ahash::AHashMap;
use bytes::Bytes;

use crate::cluster::answers;
use crate::cluster::commands::{parse_member_value, Calls};
use crate::cluster::frame;
use crate::cluster::link::{Down, Link, Role, Timing};
use crate::cluster::Node;
use crate::proto::chat::{self, Data};
use crate::proto::resp::reply::Reply;
use crate::shard::home::feed::Feed;
use crate::shard::home::{Fanout, NOBODY};
use crate::shard::stats::unix_ms_coarse;
use crate::shard::wire::{self, code, shard_of, ArchivedWire, Entry, ReplyTo, Wire};

use super::Shard;

/// The most messages one fetch or backlog read asks for.
pub(super) const PAGE: usize = 1000;

/// A publisher's acknowledgement, waiting for its message.
#[derive(Debug)]
pub(super) struct Ack {
    conn: u64,
    reply: ReplyTo,
    epoch: u64,
    seq: u64,
}

/// A join being answered: what the client asked, and what was read.
#[derive(Debug)]
pub(super) struct Joining {
    conn: u64,
    reply: ReplyTo,
    join: u32,
    since: Option<u64>,
    epoch: Option<u64>,
    /// The backlog read from Redis: (epoch, messages after `since`).
    read: Option<(u64, Vec<(u64, Bytes)>)>,
}

/// What a command sent to Redis is for.
#[derive(Debug)]
pub(super) enum Pending {
    Publish {
        room: Box<str>,
        conn: u64,
        reply: ReplyTo,
    },
    /// A feed's first read, a fill or a resync.
    Fetch {
        room: Box<str>,
        feed: u64,
    },
    /// One join's backlog.
    JoinRead {
        room: Box<str>,
        feed: u64,
        joining: Joining,
    },
    Check {
        room: Box<str>,
        feed: u64,
    },
    Heartbeat {
        room: Box<str>,
        feed: u64,
    },
    History {
        room: Box<str>,
        conn: u64,
        id: Option<String>,
    },
    Members {
        room: Box<str>,
        conn: u64,
        id: Option<String>,
        after: Option<String>,
        limit: u32,
    },
    /// Presence bookkeeping and events: only an error matters.
    Quiet,
}

/// A shard's part of the cluster.
pub(super) struct Relay {
    pub(super) node: Arc<Node>,
    pub(super) calls: Calls,
    pub(super) cmd: Rc<Link<Pending>>,
    pub(super) sub: Rc<Link<()>>,
    pub(super) feeds: RefCell<AHashMap<Box<str>, Feed<Ack, Joining>>>,
    /// SUBSCRIBEs sent and not yet confirmed, by room.
    pub(super) subscribing: RefCell<AHashMap<Box<str>, u32>>,
    next_feed: Cell<u64>,
    /// When an error from Redis was last logged (shard clock, 0: never).
    last_warning: Cell<u32>,
}

impl Relay {
    /// The relay of shard `shard` of node `node`; `history` and
    /// `max_bulk` from the server's settings.
    pub(super) fn new(node: Arc<Node>, shard: usize, history: usize, max_bulk: usize) -> Self {
        let c = &node.cfg;
        let calls = Calls {
            prefix: c.prefix.clone(),
            history,
            history_ttl_s: c.history_ttl_s,
            meta_ttl_s: c.meta_ttl_s,
            presence_ttl_ms: c.presence_ttl_ms,
            node: format!("{:016x}", node.id),
        };
        let timing = Timing {
            connect_timeout: std::time::Duration::from_millis(c.connect_timeout_ms),
            reconnect_max: std::time::Duration::from_millis(c.reconnect_max_ms),
        };
        let target = Rc::new(node.target.clone());
        let name = |what: &str| format!("ringcast-{}-{shard}-{what}", node.name);
        Self {
            cmd: Link::new(
                Role::Commands,
                name("cmd"),
                target.clone(),
                timing,
                max_bulk,
            ),
            sub: Link::new(Role::Subscriber, name("sub"), target, timing, max_bulk),
            calls,
            node,
            feeds: RefCell::new(AHashMap::new()),
            subscribing: RefCell::new(AHashMap::new()),
            next_feed: Cell::new(1),
            last_warning: Cell::new(0),
        }
    }

    /// Both links are up: requests that need Redis can be taken.
    pub(super) fn is_up(&self) -> bool {
        self.cmd.is_up() && self.sub.is_up()
    }

    pub(super) fn new_feed_id(&self) -> u64 {
        let id = self.next_feed.get();
        self.next_feed.set(id + 1);
        id
    }
}

/// A random epoch for a sequence Redis may start now (never 0).
pub(super) fn new_epoch() -> u64 {
    crate::cluster::new_node_id()
}

impl Shard {
    pub(super) fn relay(&self) -> &Relay {
        self.relay.as_ref().expect("cluster mode")
    }

    /// Sends a command; `false` (and `p` given back to [`Self::on_down`])
    /// when the link is down.
    pub(super) fn redis(&self, write: impl FnOnce(&mut bytes::BytesMut, &Calls), p: Pending) {
        let relay = self.relay();
        let sent = relay.cmd.send_with(|out| write(out, &relay.calls), p);
        match sent {
            Ok(()) => self.stats.redis_commands.inc(),
            Err(p) => self.on_redis_reply(p, Err(Down)),
        }
    }

    /// Where delivery of a followed room stands here: (epoch, last seq),
    /// once its feed synced.
    fn position(&self, room: &str) -> Option<(u64, u64)> {
        let feeds = self.relay().feeds.borrow();
        feeds
            .get(room)
            .filter(|f| f.is_synced())
            .map(|f| (f.epoch, f.delivered))
    }

    // ----- requests at the home -------------------------------------------------

    /// A publish: sequenced in Redis; answered when delivered here.
    pub(super) fn relay_publish(
        &self,
        room: &str,
        conn: u64,
        (user, data, raw): (&str, &[u8], bool),
        reply: ReplyTo,
    ) {
        let body = wire::encode(&Wire::Message {
            user: user.into(),
            ts: unix_ms_coarse(),
            data: data.into(),
            raw,
        });
        let seen = self.position(room);
        self.redis(
            |out, c| c.publish(out, room, new_epoch(), &body, seen),
            Pending::Publish {
                room: room.into(),
                conn,
                reply,
            },
        );
    }

    /// A join: a member here at once (so a later leave finds it), its
    /// answer when the room's feed can give it.
    pub(super) fn relay_join(
        &self,
        room: &str,
        conn: u64,
        (user, info): (&str, Option<&str>),
        (since, epoch): (Option<u64>, Option<u64>),
        reply: ReplyTo,
        join: u32,
    ) {
        let shard = shard_of(conn);
        if !self.relay().is_up() {
            return self.join_ack(
                room,
                conn,
                reply,
                join,
                (0, 0, false, code::UNAVAILABLE),
                Vec::new(),
            );
        }
        let answer = self.homes.borrow_mut().join(
            room,
            conn,
            (shard, reply.reads_json()),
            (user, info),
            (None, None),
        );
        if answer.full {
            return self.join_ack(
                room,
                conn,
                reply,
                join,
                (0, 0, false, code::ROOM_FULL),
                Vec::new(),
            );
        }
        if let Some(event) = answer.presence {
            self.fan_out_presence(room, event);
        }
        self.redis(
            |out, c| c.members_add(out, room, &[(conn, user, info)]),
            Pending::Quiet,
        );
        let joining = Joining {
            conn,
            reply,
            join,
            since,
            epoch,
            read: None,
        };
        let relay = self.relay();
        let mut feeds = relay.feeds.borrow_mut();
        match feeds.get_mut(room) {
            Some(feed) if feed.is_synced() => {
                let id = feed.id;
                drop(feeds);
                self.read_for_join(room, id, joining);
            }
            Some(feed) => feed.unsynced_joins.push(joining),
            None => {
                let mut feed = Feed::new(relay.new_feed_id());
                feed.unsynced_joins.push(joining);
                feeds.insert(room.into(), feed);
                drop(feeds);
                self.stats.cluster_rooms.inc();
                self.subscribe(room);
            }
        }
    }

    /// Reads a join's backlog (a join without `since` needs none).
    pub(super) fn read_for_join(&self, room: &str, feed: u64, joining: Joining) {
        match joining.since {
            None => self.hold_join(room, 0, joining),
            Some(since) => self.redis(
                |out, c| {
                    c.read(
                        out,
                        room,
                        new_epoch(),
                        Some(since),
                        PAGE.min(c.history.max(1)),
                        None,
                    )
                },
                Pending::JoinRead {
                    room: room.into(),
                    feed,
                    joining,
                },
            ),
        }
    }

    /// A join waits until delivery here reached `seq`, the room's position
    /// when its backlog was read.
    fn hold_join(&self, room: &str, seq: u64, joining: Joining) {
        let ready = {
            let mut feeds = self.relay().feeds.borrow_mut();
            match feeds.get_mut(room) {
                Some(feed) => feed.hold_join(seq, joining),
                None => Some(joining),
            }
        };
        if let Some(j) = ready {
            self.finish_join(room, j);
        }
    }

    /// Answers a join: the backlog from Redis and what was delivered here
    /// since, `recovered` when together they are every message after the
    /// client's `since` in its epoch.
    pub(super) fn finish_join(&self, room: &str, j: Joining) {
        let Some((epoch, delivered)) = self.position(room) else {
            // The feed went (everyone left) or never synced: nothing to
            // offer but the truth.
            return self.join_ack(
                room,
                j.conn,
                j.reply,
                j.join,
                (0, 0, false, code::OK),
                Vec::new(),
            );
        };
        let mut recovered = true;
        let mut backlog = Vec::new();
        if let Some(since) = j.since {
            let same = j.epoch.is_none_or(|e| e == epoch);
            match j.read {
                Some((read_epoch, entries))
                    if same && read_epoch == epoch && since <= delivered =>
                {
                    // What Redis had and what was delivered here since:
                    // the run of them that ends at `delivered`, as one
                    // node sends the newest it retains.
                    let mut found: std::collections::BTreeMap<u64, Entry> = self
                        .homes
                        .borrow()
                        .retained_between(room, since, delivered)
                        .into_iter()
                        .map(|e| (e.seq, e))
                        .collect();
                    for (seq, body) in entries {
                        if seq > since && seq <= delivered && !found.contains_key(&seq) {
                            if let Some(e) = self.entry_from_body(room, seq, &body) {
                                found.insert(seq, e);
                            }
                        }
                    }
                    let budget = self.cfg.outbound_limit / 2;
                    let mut used = 0;
                    let mut next = delivered;
                    while next > since {
                        let Some(e) = found.remove(&next) else { break };
                        used += e.json.len() + e.resp.len();
                        if used > budget {
                            break;
                        }
                        backlog.push(e);
                        next -= 1;
                    }
                    backlog.reverse();
                    recovered = next == since;
                }
                _ => recovered = since == delivered && same,
            }
        }
        self.join_ack(
            room,
            j.conn,
            j.reply,
            j.join,
            (epoch, delivered, recovered, code::OK),
            backlog,
        );
    }

    fn join_ack(
        &self,
        room: &str,
        conn: u64,
        reply: ReplyTo,
        join: u32,
        (epoch, seq, recovered, error): (u64, u64, bool, u8),
        backlog: Vec<Entry>,
    ) {
        let ack = Wire::JoinAck {
            room: room.into(),
            conn,
            reply,
            epoch,
            seq,
            recovered,
            error,
            backlog,
            join,
        };
        self.dispatch(shard_of(conn), &ack);
    }

    /// A member left the room here: out of the room's members in Redis,
    /// and when it was the node's last, the feed goes.
    pub(super) fn relay_leave(&self, room: &str, conn: u64) {
        let last = self.homes.borrow().member_count(room) == 0;
        self.redis(
            |out, c| c.members_remove(out, room, &[conn], last),
            Pending::Quiet,
        );
        if last {
            self.drop_feed(room);
        }
    }

    /// Stops following a room: its channel, its cached history, and
    /// whatever waited on it answered now.
    fn drop_feed(&self, room: &str) {
        let relay = self.relay();
        let Some(mut feed) = relay.feeds.borrow_mut().remove(room) else {
            return;
        };
        self.stats.cluster_rooms.sub(1);
        relay.subscribing.borrow_mut().remove(room);
        if relay
            .sub
            .send_with(|out| relay.calls.subscription(out, false, [room]), ())
            .is_ok()
        {
            self.stats.redis_commands.inc();
        }
        let (acks, joins) = feed.take_waiting();
        for a in acks {
            self.publish_ack(room, a);
        }
        for j in joins {
            self.join_ack(
                room,
                j.conn,
                j.reply,
                j.join,
                (feed.epoch, feed.delivered, false, code::OK),
                Vec::new(),
            );
        }
        self.homes.borrow_mut().drop_room(room);
    }

    pub(super) fn publish_ack(&self, room: &str, a: Ack) {
        let receivers = self.homes.borrow().member_count(room) as u32;
        let ack = Wire::PublishAck {
            room: room.into(),
            conn: a.conn,
            reply: a.reply,
            epoch: a.epoch,
            seq: a.seq,
            receivers,
        };
        self.dispatch(shard_of(a.conn), &ack);
    }

    fn refuse(&self, room: &str, conn: u64, reply: ReplyTo) {
        let refused = Wire::Refused {
            room: room.into(),
            conn,
            reply,
            error: code::UNAVAILABLE,
        };
        self.dispatch(shard_of(conn), &refused);
    }

    /// Typing (`typing`) or presence news for the rest of the cluster.
    pub(super) fn relay_event(&self, room: &str, typing: bool, json: &[u8]) {
        let payload = frame::event(self.relay().node.id, typing, json);
        self.redis(|out, c| c.event(out, room, &payload), Pending::Quiet);
    }

    /// Presence news: to local members, and in cluster mode to the others.
    pub(super) fn fan_out_presence(&self, room: &str, event: Fanout) {
        if self.relay.is_some() {
            self.relay_event(room, false, &event.json);
        }
        self.fan_out_event(room, event);
    }

    pub(super) fn relay_members(
        &self,
        room: &str,
        conn: u64,
        id: Option<&str>,
        after: Option<&str>,
        limit: u32,
    ) {
        self.redis(
            |out, c| c.members_list(out, room),
            Pending::Members {
                room: room.into(),
                conn,
                id: id.map(Into::into),
                after: after.map(Into::into),
                limit,
            },
        );
    }

    pub(super) fn relay_history(
        &self,
        room: &str,
        conn: u64,
        id: Option<&str>,
        since: u64,
        limit: u32,
    ) {
        self.redis(
            |out, c| c.read(out, room, new_epoch(), Some(since), limit as usize, None),
            Pending::History {
                room: room.into(),
                conn,
                id: id.map(Into::into),
            },
        );
    }

    /// A message body from Redis as a retained entry: its JSON and RESP
    /// forms (`None` for a body this version cannot read).
    pub(super) fn entry_from_body(&self, room: &str, seq: u64, body: &[u8]) -> Option<Entry> {
        let ArchivedWire::Message {
            user,
            ts,
            data,
            raw,
        } = wire::decode(body).ok()?
        else {
            return None;
        };
        let resp = data.to_vec();
        let data = if *raw {
            Data::Raw(data)
        } else {
            Data::Json(data)
        };
        let json = chat::message(room, seq, user, ts.to_native(), data);
        Some(Entry { seq, json, resp })
    }

    // ----- replies ----------------------------------------------------------------

    /// A reply from Redis, or [`Down`] when the connection went first.
    pub(super) fn on_redis_reply(&self, p: Pending, reply: Result<Reply, Down>) {
        let reply = match reply {
            Ok(Reply::Error(e)) => {
                self.stats.redis_errors.inc();
                let noscript = e.starts_with(b"NOSCRIPT");
                if noscript {
                    // Redis forgot the scripts (SCRIPT FLUSH, a failover):
                    // a new connection loads them again.
                    self.relay().cmd.restart();
                }
                let now = self.now();
                let last = self.relay().last_warning.get();
                if last == 0 || now.wrapping_sub(last) >= 1000 {
                    self.relay().last_warning.set(now);
                    if noscript {
                        tracing::warn!(
                            shard = self.id,
                            "redis lost the scripts; reconnecting to load them"
                        );
                    } else {
                        tracing::warn!(
                            shard = self.id,
                            "redis: {} (one warning a second at most)",
                            String::from_utf8_lossy(&e)
                        );
                    }
                }
                Err(Down)
            }
            Ok(r) => Ok(r),
            Err(Down) => {
                if !matches!(p, Pending::Quiet) {
                    self.stats.redis_errors.inc();
                }
                Err(Down)
            }
        };
        match p {
            Pending::Publish {
                room,
                conn,
                reply: to,
            } => match reply.as_ref().ok().and_then(answers::sequenced) {
                Some(s) => {
                    let ack = Ack {
                        conn,
                        reply: to,
                        epoch: s.epoch,
                        seq: s.seq,
                    };
                    let now = match self.relay().feeds.borrow_mut().get_mut(&*room) {
                        Some(feed) => feed.hold_ack(s.epoch, s.seq, ack),
                        None => Some(ack),
                    };
                    if let Some(a) = now {
                        self.publish_ack(&room, a);
                    }
                }
                None => self.refuse(&room, conn, to),
            },
            Pending::JoinRead {
                room,
                feed,
                mut joining,
            } => {
                let read = reply.as_ref().ok().and_then(answers::read);
                let current = self
                    .relay()
                    .feeds
                    .borrow()
                    .get(&*room)
                    .is_some_and(|f| f.id == feed);
                match read {
                    Some(r) if current => {
                        let top = r.top;
                        joining.read = Some((r.epoch, r.entries));
                        self.hold_join(&room, top, joining);
                    }
                    // Redis failed, or the feed went: the join is in, with
                    // what the client may have missed unknown.
                    _ => self.finish_join(&room, joining),
                }
            }
            Pending::Fetch { room, feed } => {
                let read = reply.as_ref().ok().and_then(answers::read);
                self.on_fetched(&room, feed, read);
            }
            Pending::Check { room, feed } => {
                if let Some(pos) = reply.as_ref().ok().and_then(answers::position) {
                    self.on_position(&room, feed, pos);
                }
            }
            Pending::Heartbeat { room, feed } => {
                if let Some((had, expired)) = reply.as_ref().ok().and_then(answers::lease) {
                    self.on_lease(&room, feed, had, expired);
                }
            }
            Pending::History { room, conn, id } => {
                let json = match reply.as_ref().ok().and_then(answers::read) {
                    Some(r) => self.history_json(&room, id.as_deref(), r),
                    None => unavailable(id.as_deref()),
                };
                self.dispatch(shard_of(conn), &Wire::Reply { conn, json });
            }
            Pending::Members {
                room,
                conn,
                id,
                after,
                limit,
            } => {
                let json = match reply.as_ref().ok().and_then(answers::listed) {
                    Some((live, expired)) => {
                        self.announce_expired(&room, &expired);
                        members_json(
                            &room,
                            id.as_deref(),
                            &live,
                            after.as_deref(),
                            limit as usize,
                        )
                    }
                    None => unavailable(id.as_deref()),
                };
                self.dispatch(shard_of(conn), &Wire::Reply { conn, json });
            }
            Pending::Quiet => {}
        }
    }

    fn history_json(&self, room: &str, id: Option<&str>, r: answers::Read) -> Vec<u8> {
        let budget = self.cfg.outbound_limit / 2;
        let mut used = 0;
        let mut more = false;
        let mut messages = Vec::with_capacity(r.entries.len());
        for (seq, body) in &r.entries {
            let Some(e) = self.entry_from_body(room, *seq, body) else {
                continue;
            };
            if used + e.json.len() > budget {
                more = true;
                break;
            }
            used += e.json.len();
            messages.push(e.json);
        }
        if let Some(&(last, _)) = r.entries.last() {
            more |= last < r.top && r.entries.len() >= PAGE;
        }
        chat::history(
            id,
            room,
            Some(r.epoch),
            messages.iter().map(|m| &m[..]),
            more,
        )
    }

    /// Members of other nodes whose lease ran out, found by this node:
    /// their leave is news to everyone.
    pub(super) fn announce_expired(&self, room: &str, expired: &[answers::Pair]) {
        for (_, value) in expired {
            let Some((user, _)) = parse_member_value(value) else {
                continue;
            };
            let json = chat::presence(room, user, false, None);
            let targets = self.homes.borrow().member_shards(room).unwrap_or_default();
            self.fan_out_presence(
                room,
                Fanout {
                    targets,
                    exclude: NOBODY,
                    json,
                },
            );
        }
    }
}

fn unavailable(id: Option<&str>) -> Vec<u8> {
    chat::error(
        id,
        "unavailable",
        "the cluster's Redis is unreachable; try again",
    )
}

/// A `members` page from the cluster's members: distinct users, sorted,
/// after `after`, at most `limit`.
fn members_json(
    room: &str,
    id: Option<&str>,
    live: &[answers::Pair],
    after: Option<&str>,
    limit: usize,
) -> Vec<u8> {
    let mut users: std::collections::BTreeMap<&str, Option<&str>> =
        std::collections::BTreeMap::new();
    for (_, v) in live {
        if let Some((user, info)) = parse_member_value(v) {
            let slot = users.entry(user).or_insert(None);
            if info.is_some() {
                *slot = info;
            }
        }
    }
    let count = users.len();
    let page: Vec<(&str, Option<&str>)> = users
        .into_iter()
        .filter(|(u, _)| after.is_none_or(|a| *u > a))
        .take(limit + 1)
        .collect();
    let more = page.len() > limit;
    chat::members(id, room, &page[..page.len().min(limit)], count, more)
}
