use std::rc::Rc;

use bytes::BytesMut;

use crate::api;
use crate::conn::{Conn, Frame, Kind};
use crate::resp;
use crate::stats::ErrorKind;
use crate::wire::{self, code};

use super::{proto_of, req_id, resp_error, resp_ticket, text_frame, Node};

impl Node {
    // ----- as a member shard ---------------------------------------------

    pub(super) fn member_deliver(&self, room: &str, json: &[u8], payload: &[u8]) {
        let local = self.local.borrow();
        let Some(members) = local.get(room) else {
            return;
        };
        // Framed once per protocol for the whole shard; every member queues
        // the same frame.
        let mut ws_frame: Option<Frame> = None;
        let mut resp_frames: [Option<Frame>; 2] = [None, None];
        let mut n = 0;
        for m in members {
            let frame = match m.kind {
                Kind::Ws => ws_frame
                    .get_or_insert_with(|| Rc::new(text_frame(json)))
                    .clone(),
                Kind::Resp => {
                    let p = proto_of(m);
                    resp_frames[p as usize]
                        .get_or_insert_with(|| {
                            Rc::new(resp::encode::message(room.as_bytes(), payload, p))
                        })
                        .clone()
                }
                Kind::Echo => continue,
            };
            n += 1;
            self.send_shared(m, frame);
        }
        self.stats.deliveries.add(n);
    }

    pub(super) fn member_ephemeral(&self, room: &str, exclude: u64, json: &[u8]) {
        let local = self.local.borrow();
        let Some(members) = local.get(room) else {
            return;
        };
        let mut frame: Option<Frame> = None;
        for m in members
            .iter()
            .filter(|m| m.kind == Kind::Ws && m.id != exclude)
        {
            let f = frame
                .get_or_insert_with(|| Rc::new(text_frame(json)))
                .clone();
            self.send_shared(m, f);
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn on_join_ack(
        &self,
        room: &str,
        conn: u64,
        req: &[u8],
        seq: u64,
        recovered: bool,
        error: u8,
        backlog: &[wire::ArchivedEntry],
        epoch: u32,
    ) {
        // A connection that closed or left meanwhile already told the home.
        let Some(conn) = self.conn(conn) else { return };
        let room_rc = {
            let rooms = conn.rooms.borrow();
            match rooms.iter().find(|(r, _)| &**r == room) {
                Some((r, e)) if *e == epoch => r.clone(),
                // Left since, or joined again and that later ack will come.
                _ => return,
            }
        };
        let id = req_id(req);
        if error == code::ROOM_FULL {
            conn.rooms.borrow_mut().retain(|(r, _)| &**r != room);
            let max = self.cfg.max_members_per_room;
            let msg = format!("room {room} has reached its limit of {max} members");
            self.stats.error(ErrorKind::Limit);
            match conn.kind {
                Kind::Resp => self.fulfil(&conn, req, resp_error(&format!("ERR {msg}"))),
                _ => self.reply_json(&conn, &api::error(id, "room_full", &msg)),
            }
            return;
        }
        let is_new = {
            let mut local = self.local.borrow_mut();
            let members = local.entry(room_rc).or_default();
            if members.iter().any(|m| Rc::ptr_eq(m, &conn)) {
                false
            } else {
                members.push(conn.clone());
                self.stats.memberships.inc();
                true
            }
        };
        match conn.kind {
            Kind::Resp => {
                // The count is the subscriptions right after this one was
                // asked for, as Redis reports it.
                let mut out = BytesMut::with_capacity(64 + room.len());
                let count = resp_ticket(req).map_or(0, |(_, count)| i64::from(count));
                let proto = proto_of(&conn);
                resp::encode::subscription(
                    &mut out,
                    "subscribe",
                    Some(room.as_bytes()),
                    count,
                    proto,
                );
                self.fulfil(&conn, req, out.freeze());
            }
            _ => self.reply_json(&conn, &api::ok(id, room, Some(seq), recovered)),
        }
        if is_new {
            for e in backlog {
                let frame = match conn.kind {
                    Kind::Resp => {
                        resp::encode::message(room.as_bytes(), e.resp.as_slice(), proto_of(&conn))
                    }
                    _ => text_frame(e.json.as_slice()),
                };
                self.send(&conn, frame);
            }
        }
    }

    pub(super) fn local_remove(&self, room: &str, conn: &Rc<Conn>) {
        let mut local = self.local.borrow_mut();
        let Some(members) = local.get_mut(room) else {
            return;
        };
        if let Some(i) = members.iter().position(|m| Rc::ptr_eq(m, conn)) {
            members.swap_remove(i);
            self.stats.memberships.sub(1);
        }
        if members.is_empty() {
            local.remove(room);
        }
    }

    pub(super) fn intern(&self, room: &str) -> Rc<str> {
        match self.local.borrow().get_key_value(room) {
            Some((k, _)) => k.clone(),
            None => room.into(),
        }
    }
}
