//! Cluster mode's upkeep at a room's home: what arrives on the rooms'
//! channels, fetches from their streams, the Redis links going up and
//! down, the presence heartbeat and the position checks. (The requests
//! are in `relay`.)

use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;

use crate::cluster::answers::{Pair, Read};
use crate::cluster::frame::{self, Published};
use crate::cluster::keys::room_of_channel;
use crate::cluster::link::{Down, Handler, Role};
use crate::proto::chat::{self, Data};
use crate::proto::resp::reply::Reply;
use crate::shard::home::feed::Fetched;
use crate::shard::home::{Fanout, NOBODY};
use crate::shard::wire::{self, ArchivedWire};

use super::relay::{new_epoch, Pending, PAGE};
use super::Shard;

/// Rooms subscribed per `SUBSCRIBE` after a reconnect.
const SUBSCRIBE_CHUNK: usize = 256;

impl Handler<Pending> for Shard {
    fn on_reply(&self, p: Pending, reply: Result<Reply, Down>) {
        self.on_redis_reply(p, reply);
    }

    fn on_push(&self, _: Reply) {}

    fn on_state(&self, role: Role, up: bool, _why: &str) {
        self.on_link(role, up);
    }
}

impl Handler<()> for Shard {
    fn on_reply(&self, (): (), _: Result<Reply, Down>) {}

    fn on_push(&self, reply: Reply) {
        self.on_channel(reply);
    }

    fn on_state(&self, role: Role, up: bool, _why: &str) {
        self.on_link(role, up);
    }
}

/// What a finished fetch calls for.
enum AfterFetch {
    Nothing,
    Synced(u64, u64, Vec<super::relay::Joining>),
    Fetched(u64, Fetched, bool),
}

impl Shard {
    /// Starts the cluster tasks: both links, the heartbeat, the checks.
    pub(super) fn spawn_relay(self: &Rc<Self>) {
        let relay = self.relay();
        monoio::spawn(relay.cmd.clone().run(self.clone()));
        monoio::spawn(relay.sub.clone().run(self.clone()));
        monoio::spawn(self.clone().run_heartbeat());
        monoio::spawn(self.clone().run_position_checks());
    }

    /// At shutdown: takes this node's members out of every room it
    /// follows (waiting for Redis a little), then closes the links.
    pub(super) async fn leave_cluster(&self) {
        let Some(relay) = &self.relay else { return };
        let rooms: Vec<Box<str>> = relay.feeds.borrow().keys().cloned().collect();
        for room in &rooms {
            let conns: Vec<u64> = self
                .homes
                .borrow()
                .members_of(room)
                .iter()
                .map(|m| m.0)
                .collect();
            self.redis(
                |out, c| c.members_remove(out, room, &conns, true),
                Pending::Quiet,
            );
        }
        let _ = monoio::time::timeout(Duration::from_millis(500), async {
            while relay.cmd.is_up() && relay.cmd.in_flight() > 0 {
                monoio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await;
        relay.cmd.stop();
        relay.sub.stop();
    }

    /// Subscribes to a room's channel; its feed syncs when confirmed.
    pub(super) fn subscribe(&self, room: &str) {
        let relay = self.relay();
        let sent = relay
            .sub
            .send_with(|out| relay.calls.subscription(out, true, [room]), ());
        if sent.is_ok() {
            self.stats.redis_commands.inc();
            *relay
                .subscribing
                .borrow_mut()
                .entry(room.into())
                .or_insert(0) += 1;
        }
        // Down: every room is subscribed again when the link is back.
    }

    /// Reads where a room stands and what this node lacks of it (first
    /// sync, fill or resync); one at a time per room.
    pub(super) fn fetch(&self, room: &str) {
        let found = {
            let mut feeds = self.relay().feeds.borrow_mut();
            match feeds.get_mut(room) {
                Some(f) if !f.fetching => {
                    f.fetching = true;
                    let at = f.is_synced().then_some((f.delivered, f.epoch));
                    Some((f.id, at))
                }
                _ => None,
            }
        };
        let Some((feed, at)) = found else { return };
        self.redis(
            |out, c| {
                c.read(
                    out,
                    room,
                    new_epoch(),
                    at.map(|a| a.0),
                    PAGE,
                    at.map(|a| a.1),
                )
            },
            Pending::Fetch {
                room: room.into(),
                feed,
            },
        );
    }

    pub(super) fn on_fetched(&self, room: &str, id: u64, read: Option<Read>) {
        let after = {
            let mut feeds = self.relay().feeds.borrow_mut();
            let Some(feed) = feeds.get_mut(room).filter(|f| f.id == id) else {
                return;
            };
            match read {
                None => {
                    // Tried again when the link is back, or at the next check.
                    feed.fetching = false;
                    AfterFetch::Nothing
                }
                Some(r) if !feed.is_synced() => {
                    feed.fetching = false;
                    feed.sync(r.epoch, r.top);
                    AfterFetch::Synced(r.epoch, r.top, std::mem::take(&mut feed.unsynced_joins))
                }
                Some(r) => {
                    let brought = !r.entries.is_empty();
                    let full = r.entries.len() >= PAGE;
                    let outcome = feed.fetched(r.epoch, r.top, r.entries, full);
                    AfterFetch::Fetched(feed.epoch, outcome, brought)
                }
            }
        };
        match after {
            AfterFetch::Nothing => {}
            AfterFetch::Synced(epoch, seq, joins) => {
                self.homes.borrow_mut().adopt(room, epoch, seq);
                for j in joins {
                    self.read_for_join(room, id, j);
                }
            }
            AfterFetch::Fetched(epoch, outcome, brought) => {
                let news = match outcome {
                    Fetched::Fine => {
                        if brought {
                            self.stats.cluster_gap_fills.inc();
                        }
                        None
                    }
                    Fetched::EpochChanged { epoch } => {
                        self.stats.cluster_epoch_changes.inc();
                        self.homes.borrow_mut().adopt(room, epoch, 0);
                        tracing::warn!(shard = self.id, room, "the room's sequence restarted in redis (its history was lost); members told");
                        Some(chat::reset(room, epoch))
                    }
                    Fetched::Lost { from, to } => {
                        self.stats.cluster_messages_lost.add(to - from + 1);
                        self.homes.borrow_mut().adopt(room, epoch, to);
                        tracing::warn!(shard = self.id, room, from, to, "messages gone from redis before this node delivered them; members told");
                        Some(chat::gap(room, epoch, from, to))
                    }
                };
                if let Some(json) = news {
                    self.tell_members(room, json);
                }
            }
        }
        self.pump(room);
    }

    /// An event for the room's members on this node only.
    fn tell_members(&self, room: &str, json: Vec<u8>) {
        let targets = self.homes.borrow().member_shards(room).unwrap_or_default();
        self.fan_out_event(
            room,
            Fanout {
                targets,
                exclude: NOBODY,
                json,
            },
        );
    }

    /// Delivers what a feed can, then answers what waited for it, then
    /// fetches if it must.
    pub(super) fn pump(&self, room: &str) {
        let (epoch, msgs, acks, joins, fetch) = {
            let mut feeds = self.relay().feeds.borrow_mut();
            let Some(feed) = feeds.get_mut(room) else {
                return;
            };
            let msgs: Vec<(u64, Bytes)> = std::iter::from_fn(|| feed.pop_ready()).collect();
            (
                feed.epoch,
                msgs,
                feed.ready_acks(),
                feed.ready_joins(),
                feed.wants_fetch(),
            )
        };
        for (seq, body) in msgs {
            self.deliver_relayed(room, epoch, seq, &body);
        }
        for a in acks {
            self.publish_ack(room, a);
        }
        for j in joins {
            self.finish_join(room, j);
        }
        if fetch {
            self.fetch(room);
        }
    }

    /// One message of the room's sequence, in order: to the member shards
    /// here, framed once for the node.
    fn deliver_relayed(&self, room: &str, epoch: u64, seq: u64, body: &[u8]) {
        let Ok(ArchivedWire::Message {
            user,
            ts,
            data,
            raw,
        }) = wire::decode(body)
        else {
            self.stats.cluster_frames_dropped.inc();
            self.homes.borrow_mut().adopt(room, epoch, seq);
            return;
        };
        let payload = &data[..];
        let data = if *raw {
            Data::Raw(payload)
        } else {
            Data::Json(payload)
        };
        let msg = {
            let mut homes = self.homes.borrow_mut();
            homes.adopt(room, epoch, seq - 1);
            homes.publish(room, &user.as_str().into(), data, ts.to_native())
        };
        debug_assert_eq!(msg.seq, seq);
        self.deliver(room, &msg, payload);
    }

    /// Something on a subscriber link: a room's message or event, or a
    /// subscription confirmed.
    fn on_channel(&self, reply: Reply) {
        let Some(a) = reply.array() else { return };
        let (Some(kind), Some(channel)) = (
            a.first().and_then(Reply::bytes),
            a.get(1).and_then(Reply::bytes),
        ) else {
            return;
        };
        let relay = self.relay();
        let Some(room) = room_of_channel(&relay.calls.prefix, channel) else {
            return;
        };
        match &kind[..] {
            b"message" => {
                let Some(payload) = a.get(2).and_then(Reply::bytes) else {
                    return;
                };
                match frame::parse(payload) {
                    Some(Published::Message { epoch, seq, body }) => {
                        let body = payload.slice_ref(body);
                        let held = match relay.feeds.borrow_mut().get_mut(room) {
                            Some(feed) => {
                                feed.offer(epoch, seq, body);
                                true
                            }
                            None => false,
                        };
                        if held {
                            self.pump(room);
                        }
                    }
                    Some(Published::Event { origin, json }) => {
                        if origin != relay.node.id {
                            if let Some(targets) = self.homes.borrow().member_shards(room) {
                                self.fan_out_event(
                                    room,
                                    Fanout {
                                        targets,
                                        exclude: NOBODY,
                                        json: json.to_vec(),
                                    },
                                );
                            }
                        }
                    }
                    None => self.stats.cluster_frames_dropped.inc(),
                }
            }
            b"subscribe" => {
                let done = {
                    let mut subscribing = relay.subscribing.borrow_mut();
                    match subscribing.get_mut(room) {
                        Some(n) if *n > 1 => {
                            *n -= 1;
                            false
                        }
                        Some(_) => {
                            subscribing.remove(room);
                            true
                        }
                        None => false,
                    }
                };
                if done {
                    let known = match relay.feeds.borrow_mut().get_mut(room) {
                        Some(f) => {
                            f.subscribed = true;
                            true
                        }
                        None => false,
                    };
                    if known {
                        self.fetch(room);
                    }
                }
            }
            _ => {}
        }
    }

    fn on_link(&self, role: Role, up: bool) {
        let relay = self.relay();
        self.stats
            .redis_links_up
            .set(u64::from(relay.cmd.is_up()) + u64::from(relay.sub.is_up()));
        self.stats
            .redis_reconnects
            .set(relay.cmd.reconnects.get() + relay.sub.reconnects.get());
        let rooms: Vec<Box<str>> = relay.feeds.borrow().keys().cloned().collect();
        match (role, up) {
            (Role::Commands, true) => {
                // Redis may have lost this node's members: add them again
                // (idempotent), and finish fetches the loss cut short.
                for room in &rooms {
                    self.add_members(room);
                    let idle = relay
                        .feeds
                        .borrow()
                        .get(room)
                        .is_some_and(|f| f.subscribed && !f.fetching);
                    if idle {
                        self.fetch(room);
                    }
                }
            }
            (Role::Subscriber, true) => {
                let mut subscribing = relay.subscribing.borrow_mut();
                subscribing.clear();
                for chunk in rooms.chunks(SUBSCRIBE_CHUNK) {
                    let sent = relay.sub.send_with(
                        |out| {
                            relay
                                .calls
                                .subscription(out, true, chunk.iter().map(|r| &**r))
                        },
                        (),
                    );
                    if sent.is_ok() {
                        self.stats.redis_commands.inc();
                        for r in chunk {
                            subscribing.insert(r.clone(), 1);
                        }
                    }
                }
            }
            (Role::Subscriber, false) => {
                relay.subscribing.borrow_mut().clear();
                for f in relay.feeds.borrow_mut().values_mut() {
                    f.subscribed = false;
                }
            }
            (Role::Commands, false) => {}
        }
    }

    /// Adds every member of a room on this node to its members in Redis.
    fn add_members(&self, room: &str) {
        let members = self.homes.borrow().members_of(room);
        for chunk in members.chunks(500) {
            let list: Vec<(u64, &str, Option<&str>)> = chunk
                .iter()
                .map(|(c, u, i)| (*c, &**u, i.as_deref()))
                .collect();
            self.redis(|out, c| c.members_add(out, room, &list), Pending::Quiet);
        }
    }

    /// Every third of `presence_ttl_ms`: renews this node's lease in each
    /// room it has members in (and finds other nodes' expired ones), and
    /// pings the subscriber link so a dead one is found.
    async fn run_heartbeat(self: Rc<Self>) {
        let period = Duration::from_millis(self.relay().node.cfg.presence_ttl_ms / 3);
        loop {
            monoio::time::sleep(period).await;
            let relay = self.relay();
            let feeds: Vec<(Box<str>, u64)> = relay
                .feeds
                .borrow()
                .iter()
                .map(|(r, f)| (r.clone(), f.id))
                .collect();
            for (room, feed) in feeds {
                let p = Pending::Heartbeat {
                    room: room.clone(),
                    feed,
                };
                self.redis(|out, c| c.members_add(out, &room, &[]), p);
            }
            if relay.sub.send(&[b"PING"], ()).is_ok() {
                self.stats.redis_commands.inc();
            }
        }
    }

    pub(super) fn on_lease(&self, room: &str, id: u64, had: bool, expired: Vec<Pair>) {
        let current = self
            .relay()
            .feeds
            .borrow()
            .get(room)
            .is_some_and(|f| f.id == id);
        if current && !had {
            // Redis lost this node's lease (a restart, or a late beat let
            // another node clear it): members again.
            self.add_members(room);
        }
        self.announce_expired(room, &expired);
    }

    /// Every `position_check_ms`: rooms that heard nothing since the last
    /// check compare their position in Redis with what was delivered, so a
    /// lost last message does not go unnoticed until the next one.
    async fn run_position_checks(self: Rc<Self>) {
        let period = Duration::from_millis(self.relay().node.cfg.position_check_ms);
        loop {
            monoio::time::sleep(period).await;
            let due: Vec<(Box<str>, u64)> = {
                let mut feeds = self.relay().feeds.borrow_mut();
                feeds
                    .iter_mut()
                    .filter_map(|(room, f)| {
                        let quiet = !std::mem::take(&mut f.heard);
                        (quiet && f.is_synced() && f.subscribed && !f.fetching)
                            .then(|| (room.clone(), f.id))
                    })
                    .collect()
            };
            for (room, feed) in due {
                let p = Pending::Check {
                    room: room.clone(),
                    feed,
                };
                self.redis(|out, c| c.position(out, &room), p);
            }
        }
    }

    pub(super) fn on_position(&self, room: &str, id: u64, position: Option<(u64, u64)>) {
        let fetch = {
            let mut feeds = self.relay().feeds.borrow_mut();
            let Some(f) = feeds.get_mut(room).filter(|f| f.id == id) else {
                return;
            };
            match position {
                // Gone, restarted, or behind what was delivered: the fetch
                // finds out which, and Redis starts a new sequence if it
                // lost writes.
                None => true,
                Some((e, s)) if e != f.epoch || s < f.delivered => true,
                Some((_, s)) if s > f.delivered => {
                    f.learn_top(s);
                    f.wants_fetch()
                }
                Some(_) => false,
            }
        };
        if fetch {
            self.stats.cluster_position_fills.inc();
            self.fetch(room);
        }
    }
}
