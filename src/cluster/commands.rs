//! The commands a shard sends, written straight into its link's output
//! buffer: script calls with a room's keys and the cluster's settings.

use bytes::BytesMut;

use super::keys::Keys;
use super::scripts::{JOIN, PRES_ADD, PRES_LIST, PRES_REM, PUB, SCRIPTS};
use crate::proto::resp::reply::command;

/// The settings every script call carries.
#[derive(Debug, Clone)]
pub struct Calls {
    /// Key prefix (`cluster.prefix`).
    pub prefix: String,
    /// Messages kept per room (`history`).
    pub history: usize,
    /// `cluster.history_ttl_s`.
    pub history_ttl_s: u64,
    /// `cluster.meta_ttl_s`.
    pub meta_ttl_s: u64,
    /// `cluster.presence_ttl_ms`.
    pub presence_ttl_ms: u64,
    /// This node's id, 16 hex digits: its members are `<node>/<conn>`.
    pub node: String,
}

fn num() -> itoa::Buffer {
    itoa::Buffer::new()
}

impl Calls {
    /// The keys of `room`.
    pub fn keys(&self, room: &str) -> Keys {
        Keys::new(&self.prefix, room)
    }

    /// `rc_pub`: sequence, keep and publish one message. `seen` is the
    /// (epoch, seq) this node last delivered, so a Redis that went back in
    /// time starts a new sequence rather than repeat seqs.
    pub fn publish(
        &self,
        out: &mut BytesMut,
        room: &str,
        new_epoch: u64,
        body: &[u8],
        seen: Option<(u64, u64)>,
    ) {
        let k = self.keys(room);
        let (mut h, mut ht, mut mt, mut ss) = (num(), num(), num(), num());
        let seen_epoch = seen.map(|(e, _)| e.to_be_bytes());
        command(
            out,
            &[
                b"EVALSHA",
                SCRIPTS[PUB].sha.as_bytes(),
                b"2",
                k.meta.as_bytes(),
                k.hist.as_bytes(),
                &new_epoch.to_be_bytes(),
                body,
                h.format(self.history).as_bytes(),
                ht.format(self.history_ttl_s).as_bytes(),
                mt.format(self.meta_ttl_s).as_bytes(),
                k.channel.as_bytes(),
                b"PUBLISH",
                seen_epoch.as_ref().map_or(&b""[..], |e| &e[..]),
                ss.format(seen.map_or(0, |(_, s)| s)).as_bytes(),
            ],
        );
    }

    /// `rc_join`: the room's epoch (made if it has none) and last seq, and
    /// up to `limit` messages after `since` (none without). `seen_epoch`:
    /// the epoch this node delivered up to `since` in, so a Redis that
    /// lost writes is told apart from a client that is ahead.
    pub fn read(
        &self,
        out: &mut BytesMut,
        room: &str,
        new_epoch: u64,
        since: Option<u64>,
        limit: usize,
        seen_epoch: Option<u64>,
    ) {
        let k = self.keys(room);
        let since = since.map_or_else(|| "-1".to_owned(), |s| s.to_string());
        let (mut l, mut mt) = (num(), num());
        let seen = seen_epoch.map(u64::to_be_bytes);
        command(
            out,
            &[
                b"EVALSHA",
                SCRIPTS[JOIN].sha.as_bytes(),
                b"2",
                k.meta.as_bytes(),
                k.hist.as_bytes(),
                &new_epoch.to_be_bytes(),
                since.as_bytes(),
                l.format(limit.max(1)).as_bytes(),
                mt.format(self.meta_ttl_s).as_bytes(),
                seen.as_ref().map_or(&b""[..], |e| &e[..]),
            ],
        );
    }

    /// `rc_pres_add`: this node's members `(conn, user, info)` of a room,
    /// and its lease renewed (with no members: only the lease).
    pub fn members_add(
        &self,
        out: &mut BytesMut,
        room: &str,
        members: &[(u64, &str, Option<&str>)],
    ) {
        let k = self.keys(room);
        let mut ttl = num();
        let ttl = ttl.format(self.presence_ttl_ms);
        let fields: Vec<(Vec<u8>, Vec<u8>)> = members
            .iter()
            .map(|&(conn, user, info)| (self.member(conn), member_value(user, info)))
            .collect();
        let mut args: Vec<&[u8]> = vec![
            b"EVALSHA",
            SCRIPTS[PRES_ADD].sha.as_bytes(),
            b"2",
            k.members.as_bytes(),
            k.leases.as_bytes(),
            self.node.as_bytes(),
            ttl.as_bytes(),
        ];
        for (f, v) in &fields {
            args.push(f);
            args.push(v);
        }
        command(out, &args);
    }

    /// `rc_pres_rem`: this node's members `conns` leave a room; `last`
    /// when the node has none left there (its lease goes too).
    pub fn members_remove(&self, out: &mut BytesMut, room: &str, conns: &[u64], last: bool) {
        let k = self.keys(room);
        let fields: Vec<Vec<u8>> = conns.iter().map(|&c| self.member(c)).collect();
        let mut args: Vec<&[u8]> = vec![
            b"EVALSHA",
            SCRIPTS[PRES_REM].sha.as_bytes(),
            b"2",
            k.members.as_bytes(),
            k.leases.as_bytes(),
            self.node.as_bytes(),
            if last { b"1" } else { b"0" },
        ];
        args.extend(fields.iter().map(|f| &f[..]));
        command(out, &args);
    }

    /// `rc_pres_list`: every live member of a room, in the whole cluster.
    pub fn members_list(&self, out: &mut BytesMut, room: &str) {
        let k = self.keys(room);
        command(
            out,
            &[
                b"EVALSHA",
                SCRIPTS[PRES_LIST].sha.as_bytes(),
                b"2",
                k.members.as_bytes(),
                k.leases.as_bytes(),
            ],
        );
    }

    /// Where the room stands: `HMGET meta e s`.
    pub fn position(&self, out: &mut BytesMut, room: &str) {
        let k = self.keys(room);
        command(out, &[b"HMGET", k.meta.as_bytes(), b"e", b"s"]);
    }

    /// An unsequenced event (presence, typing) on the room's channel.
    pub fn event(&self, out: &mut BytesMut, room: &str, payload: &[u8]) {
        let k = self.keys(room);
        command(out, &[b"PUBLISH", k.channel.as_bytes(), payload]);
    }

    /// `SUBSCRIBE` (or `UNSUBSCRIBE`) the channels of `rooms`.
    pub fn subscription<'r>(
        &self,
        out: &mut BytesMut,
        subscribe: bool,
        rooms: impl IntoIterator<Item = &'r str>,
    ) {
        let channels: Vec<String> = rooms.into_iter().map(|r| self.keys(r).channel).collect();
        if channels.is_empty() {
            return;
        }
        let mut args: Vec<&[u8]> = vec![if subscribe {
            b"SUBSCRIBE"
        } else {
            b"UNSUBSCRIBE"
        }];
        args.extend(channels.iter().map(|c| c.as_bytes()));
        command(out, &args);
    }

    /// A member's field: `<node>/<conn>`.
    fn member(&self, conn: u64) -> Vec<u8> {
        format!("{}/{conn}", self.node).into_bytes()
    }
}

/// A member's value: its user, and `\n` and its info when it has one.
pub fn member_value(user: &str, info: Option<&str>) -> Vec<u8> {
    let mut v = Vec::with_capacity(user.len() + info.map_or(0, |i| i.len() + 1));
    v.extend_from_slice(user.as_bytes());
    if let Some(info) = info {
        v.push(b'\n');
        v.extend_from_slice(info.as_bytes());
    }
    v
}

/// A member's user and info, from its value.
pub fn parse_member_value(v: &[u8]) -> Option<(&str, Option<&str>)> {
    let s = std::str::from_utf8(v).ok()?;
    Some(match s.split_once('\n') {
        Some((user, info)) => (user, Some(info)),
        None => (s, None),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::resp::reply::{parse_reply, Reply};

    fn calls() -> Calls {
        Calls {
            prefix: "rc".into(),
            history: 100,
            history_ttl_s: 60,
            meta_ttl_s: 600,
            presence_ttl_ms: 3000,
            node: "00000000000000ab".into(),
        }
    }

    fn args(out: &mut BytesMut) -> Vec<Vec<u8>> {
        let r = parse_reply(out, 1 << 20).unwrap().unwrap();
        r.array()
            .unwrap()
            .iter()
            .map(|a| a.bytes().unwrap().to_vec())
            .collect()
    }

    #[test]
    fn publish_carries_the_keys_settings_and_seen_position() {
        let mut out = BytesMut::new();
        calls().publish(&mut out, "lobby", 7, b"\x00body", Some((9, 41)));
        let a = args(&mut out);
        assert_eq!(a[0], b"EVALSHA");
        assert_eq!(a[2], b"2");
        assert_eq!(a[3], b"rc:{lobby}:meta");
        assert_eq!(a[5], 7u64.to_be_bytes());
        assert_eq!(a[6], b"\x00body");
        assert_eq!(
            (&a[7][..], &a[8][..], &a[9][..]),
            (&b"100"[..], &b"60"[..], &b"600"[..])
        );
        assert_eq!(a[10], b"rc:{lobby}:ch");
        assert_eq!(a[12], 9u64.to_be_bytes());
        assert_eq!(a[13], b"41");
        calls().publish(&mut out, "lobby", 7, b"b", None);
        let a = args(&mut out);
        assert_eq!((&a[12][..], &a[13][..]), (&b""[..], &b"0"[..]));
    }

    #[test]
    fn reads_members_and_subscriptions() {
        let mut out = BytesMut::new();
        calls().read(&mut out, "r", 1, None, 0, None);
        let a = args(&mut out);
        assert_eq!(
            (&a[6][..], &a[7][..], &a[9][..]),
            (&b"-1"[..], &b"1"[..], &b""[..])
        );
        calls().members_add(&mut out, "r", &[(5, "ann", Some("{}")), (6, "bo", None)]);
        let a = args(&mut out);
        assert_eq!(
            &a[5..],
            [
                &b"00000000000000ab"[..],
                b"3000",
                b"00000000000000ab/5",
                b"ann\n{}",
                b"00000000000000ab/6",
                b"bo"
            ]
        );
        calls().subscription(&mut out, true, ["a", "b"]);
        assert_eq!(
            args(&mut out),
            [
                b"SUBSCRIBE".to_vec(),
                b"rc:{a}:ch".to_vec(),
                b"rc:{b}:ch".to_vec()
            ]
        );
        calls().subscription(&mut out, false, std::iter::empty());
        assert!(out.is_empty());
        assert!(matches!(
            parse_reply(&mut BytesMut::from(&b"+x\r\n"[..]), 9),
            Ok(Some(Reply::Simple(_)))
        ));
    }

    #[test]
    fn member_values() {
        assert_eq!(
            parse_member_value(&member_value("ann", Some("{\"a\":1}"))),
            Some(("ann", Some("{\"a\":1}")))
        );
        assert_eq!(
            parse_member_value(&member_value("bo", None)),
            Some(("bo", None))
        );
    }
}
