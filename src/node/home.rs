use std::rc::Rc;
use std::task::Poll;
use std::time::{Duration, Instant};

use bytes::Bytes;
use smallvec::SmallVec;

use crate::api::{self, Data};
use crate::presence::{self, Offer};
use crate::room::{newest_within, HomeRoom, Joined};
use crate::stats::unix_ms;
use crate::wire::{code, shard_of, Entry, Wire};

use super::{Ephemeral, Node, NOBODY};

impl Node {
    // ----- as a room's home ----------------------------------------------

    #[allow(clippy::too_many_arguments)]
    pub(super) fn home_join(
        &self,
        room: &str,
        conn: u64,
        user: &str,
        since: Option<u64>,
        req: &[u8],
        epoch: u32,
    ) {
        let shard = shard_of(conn);
        let (ack, presence) = {
            let mut homed = self.homed.borrow_mut();
            let r = homed.entry(room.into()).or_insert_with(|| {
                self.stats.rooms_homed.inc();
                HomeRoom::new(self.count, self.cfg.history)
            });
            let joined = r.join(conn, shard, user.into(), self.cfg.max_members_per_room);
            let (recovered, backlog) = match (since, &joined) {
                (Some(since), Joined::New | Joined::Again) => {
                    // Whatever fits the reply budget, newest kept: a
                    // backlog cut short is reported as not recovered.
                    let (recovered, it) = r.since(since);
                    let (kept, cut) = newest_within(it, self.reply_budget());
                    let recovered = recovered && !cut;
                    let backlog = kept
                        .into_iter()
                        .map(|e| Entry {
                            seq: e.seq,
                            json: e.json.to_vec(),
                            resp: e.resp.to_vec(),
                        })
                        .collect();
                    (recovered, backlog)
                }
                _ => (true, Vec::new()),
            };
            let ack = Wire::JoinAck {
                room: room.into(),
                conn,
                req: req.to_vec(),
                seq: r.seq(),
                recovered,
                error: if joined == Joined::Full {
                    code::ROOM_FULL
                } else {
                    code::OK
                },
                backlog,
                epoch,
            };
            let presence = if joined == Joined::New {
                self.offer_presence(room, r, conn, user.into(), true)
            } else {
                None
            };
            (ack, presence)
        };
        if let Some((targets, exclude, json)) = presence {
            self.fan_out_ephemeral(&targets, room, exclude, json);
        }
        self.dispatch(shard, &ack);
    }

    pub(super) fn home_leave(&self, room: &str, conn: u64) {
        let presence = {
            let mut homed = self.homed.borrow_mut();
            let Some(r) = homed.get_mut(room) else { return };
            let left = r.leave(conn, shard_of(conn));
            let presence = left.and_then(|user| self.offer_presence(room, r, conn, user, false));
            if r.is_vacant() {
                homed.remove(room);
                self.stats.rooms_homed.sub(1);
            } else if r.member_count() == 0 {
                self.idle.borrow_mut().push_back(room.into());
            }
            presence
        };
        if let Some((targets, exclude, json)) = presence {
            self.fan_out_ephemeral(&targets, room, exclude, json);
        }
    }

    /// Passes a join or leave through the room's presence gate: what to
    /// send now, if anything (see [`crate::presence`]).
    fn offer_presence(
        &self,
        room: &str,
        r: &mut HomeRoom,
        conn: u64,
        user: Rc<str>,
        joined: bool,
    ) -> Option<Ephemeral> {
        self.stats.presence_events.inc();
        let interval = Duration::from_millis(self.cfg.presence_interval_ms);
        let event = presence::Event { conn, user, joined };
        match r.presence.offer(event, Instant::now(), interval) {
            Offer::Now(e) => Some((
                r.member_shards().collect(),
                e.conn,
                api::presence(room, &e.user, e.joined),
            )),
            Offer::Scheduled(due) => {
                self.stats.presence_held.inc();
                self.presence_due.borrow_mut().push_back((due, room.into()));
                if let Some(w) = self.presence_waker.borrow_mut().take() {
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

    /// Sends each room's held presence events when its interval ends: one
    /// frame per room, in the single-event form when only one was held.
    pub async fn run_presence(self: Rc<Self>) {
        loop {
            let next = std::future::poll_fn(|cx| match self.presence_due.borrow().front() {
                Some(&(due, _)) => Poll::Ready(due),
                None => {
                    *self.presence_waker.borrow_mut() = Some(cx.waker().clone());
                    Poll::Pending
                }
            })
            .await;
            let wait = next.saturating_duration_since(Instant::now());
            if !wait.is_zero() {
                monoio::time::sleep(wait).await;
            }
            let now = Instant::now();
            loop {
                let room = {
                    let mut due = self.presence_due.borrow_mut();
                    match due.front() {
                        Some(&(t, _)) if t <= now => due.pop_front().map(|(_, room)| room),
                        _ => None,
                    }
                };
                let Some(room) = room else { break };
                let (targets, events): (SmallVec<[usize; 8]>, _) = {
                    let mut homed = self.homed.borrow_mut();
                    let Some(r) = homed.get_mut(&*room) else {
                        continue;
                    };
                    (r.member_shards().collect(), r.presence.take(now))
                };
                if let [e] = events.as_slice() {
                    let json = api::presence(&room, &e.user, e.joined);
                    self.fan_out_ephemeral(&targets, &room, e.conn, json);
                    continue;
                }
                // A user name is at most 64 bytes, so an event is under 128
                // bytes of JSON: frames stay within max_payload, which every
                // connection's outbound bound has room for.
                let per_frame = (self.cfg.max_payload / 128).max(1);
                for chunk in events.chunks(per_frame) {
                    let json = api::presence_batch(&room, chunk);
                    self.fan_out_ephemeral(&targets, &room, NOBODY, json);
                }
            }
        }
    }

    pub(super) fn home_publish(
        &self,
        room: &str,
        conn: u64,
        user: &str,
        data: &[u8],
        raw: bool,
        req: &[u8],
    ) {
        let ts = unix_ms();
        let (deliver, targets, seq, receivers) = {
            let mut homed = self.homed.borrow_mut();
            let r = homed.entry(room.into()).or_insert_with(|| {
                self.stats.rooms_homed.inc();
                self.idle.borrow_mut().push_back(room.into());
                HomeRoom::new(self.count, self.cfg.history)
            });
            let before = r.retained_bytes();
            let entry = r.append(|seq| {
                if raw {
                    let json = api::message(room, seq, user, ts, Data::Raw(data));
                    (Bytes::from(json), Bytes::copy_from_slice(data))
                } else {
                    let json = Bytes::from(api::message(room, seq, user, ts, Data::Json(data)));
                    // The JSON message ends with `data` and a closing brace:
                    // RESP subscribers get that slice, not a copy.
                    let end = json.len() - 1;
                    let resp = json.slice(end - data.len()..end);
                    (json, resp)
                }
            });
            self.stats.messages_sequenced.inc();
            self.retained
                .set(self.retained.get() + r.retained_bytes() - before);
            let targets: SmallVec<[usize; 8]> = r.member_shards().collect();
            let deliver = Wire::Deliver {
                room: room.into(),
                seq: entry.seq,
                json: entry.json.to_vec(),
                resp: entry.resp.to_vec(),
            };
            (deliver, targets, entry.seq, r.member_count() as u32)
        };
        self.fan_out(&targets, &deliver);
        self.enforce_retention(room);
        self.dispatch(
            shard_of(conn),
            &Wire::PublishAck {
                room: room.into(),
                conn,
                req: req.to_vec(),
                seq,
                receivers,
            },
        );
    }

    /// The most a single reply (history, join backlog) may carry: half a
    /// connection's outbound bound, so answering never makes it a slow
    /// consumer.
    pub(super) fn reply_budget(&self) -> usize {
        self.cfg.outbound_limit / 2
    }

    /// Keeps the bytes retained by this shard's rooms within
    /// `retained_bytes` by dropping rooms that have no members, oldest idle
    /// first. Rooms with members keep their history: those are bounded by
    /// the connections that joined them.
    fn enforce_retention(&self, current: &str) {
        let budget = self.cfg.retained_bytes;
        let mut idle = self.idle.borrow_mut();
        let mut homed = self.homed.borrow_mut();
        while self.retained.get() > budget {
            let Some(name) = idle.pop_front() else { break };
            let evict =
                &*name != current && homed.get(&name).is_some_and(|r| r.member_count() == 0);
            if evict {
                if let Some(r) = homed.remove(&name) {
                    self.retained.set(self.retained.get() - r.retained_bytes());
                    self.stats.rooms_homed.sub(1);
                    self.stats.rooms_evicted.inc();
                }
            }
        }
        // Stale names (joined or gone since) are dropped once they
        // outnumber the rooms, so the queue stays proportional to them.
        if idle.len() > 2 * homed.len() + 64 {
            let mut seen = ahash::AHashSet::new();
            idle.retain(|n| {
                homed.get(n).is_some_and(|r| r.member_count() == 0) && seen.insert(n.clone())
            });
        }
    }

    pub(super) fn home_ephemeral(&self, room: &str, exclude: u64, json: Vec<u8>) {
        let targets: SmallVec<[usize; 8]> = match self.homed.borrow().get(room) {
            Some(r) => r.member_shards().collect(),
            None => return,
        };
        self.fan_out(
            &targets,
            &Wire::Ephemeral {
                room: room.into(),
                exclude,
                json,
            },
        );
    }
}
