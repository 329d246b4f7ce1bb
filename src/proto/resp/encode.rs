//! Reply encoding, byte-for-byte what Redis 7.2 sends in RESP2 and RESP3.
//!
//! Every function appends to a `BytesMut`; [`message`] and [`pmessage`]
//! return a `Bytes` built once with exact capacity, to be shared by all
//! subscribers of a channel.

use bytes::{BufMut, Bytes, BytesMut};

use super::command::{CommandSub, COMMAND_NAMES};
use super::version::Proto;

/// Number of bytes `n` takes in decimal.
fn digits(n: usize) -> usize {
    n.checked_ilog10().map_or(1, |d| d as usize + 1)
}

/// Encoded size of a bulk string of `len` bytes: `$<len>\r\n<data>\r\n`.
fn bulk_len(len: usize) -> usize {
    1 + digits(len) + 2 + len + 2
}

/// `<prefix><n>\r\n`: the header shared by integers and aggregates.
fn line(out: &mut BytesMut, prefix: u8, n: i64) {
    let mut buf = itoa::Buffer::new();
    let n = buf.format(n).as_bytes();
    out.reserve(n.len() + 3);
    out.put_u8(prefix);
    out.put_slice(n);
    out.put_slice(b"\r\n");
}

/// Aggregate lengths are `usize`; anything past `i64::MAX` cannot be sent anyway.
fn count(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// `+<s>\r\n`. `s` must not contain CR or LF.
pub fn simple(out: &mut BytesMut, s: &str) {
    out.reserve(s.len() + 3);
    out.put_u8(b'+');
    out.put_slice(s.as_bytes());
    out.put_slice(b"\r\n");
}

/// `-<s>\r\n`, `s` being the full text with its code, e.g. `"ERR unknown
/// command"`. CR and LF in `s` become spaces, as Redis does, so a reply can
/// never break framing.
pub fn error(out: &mut BytesMut, s: &str) {
    out.reserve(s.len() + 3);
    out.put_u8(b'-');
    for &b in s.as_bytes() {
        out.put_u8(if matches!(b, b'\r' | b'\n') { b' ' } else { b });
    }
    out.put_slice(b"\r\n");
}

/// `-<s>\r\n` as a frame of its own.
pub fn error_frame(s: &str) -> Bytes {
    let mut out = BytesMut::with_capacity(s.len() + 3);
    error(&mut out, s);
    out.freeze()
}

/// `:<n>\r\n`.
pub fn integer(out: &mut BytesMut, n: i64) {
    line(out, b':', n);
}

/// Integers below this are answered from a table (no allocation).
const SMALL_INTEGERS: usize = 1024;

/// `:<n>\r\n` as a frame of its own: `PUBLISH`'s answer. Small values come
/// from a table built once, so answering costs no allocation.
pub fn integer_frame(n: i64) -> Bytes {
    static TABLE: std::sync::LazyLock<(&'static [u8], Vec<usize>)> =
        std::sync::LazyLock::new(|| {
            let mut text = Vec::new();
            let mut ends = Vec::with_capacity(SMALL_INTEGERS);
            for i in 0..SMALL_INTEGERS {
                text.extend_from_slice(format!(":{i}\r\n").as_bytes());
                ends.push(text.len());
            }
            (Vec::leak(text), ends)
        });
    match usize::try_from(n) {
        Ok(i) if i < SMALL_INTEGERS => {
            let (text, ends) = &*TABLE;
            let start = if i == 0 { 0 } else { ends[i - 1] };
            Bytes::from_static(&text[start..ends[i]])
        }
        _ => {
            let mut out = BytesMut::with_capacity(24);
            integer(&mut out, n);
            out.freeze()
        }
    }
}

/// `$<len>\r\n<data>\r\n`.
pub fn bulk(out: &mut BytesMut, data: &[u8]) {
    out.reserve(bulk_len(data.len()));
    line(out, b'$', count(data.len()));
    out.put_slice(data);
    out.put_slice(b"\r\n");
}

/// A null: `$-1\r\n` in RESP2, `_\r\n` in RESP3.
pub fn null(out: &mut BytesMut, proto: Proto) {
    out.put_slice(match proto {
        Proto::Resp2 => b"$-1\r\n",
        Proto::Resp3 => b"_\r\n",
    });
}

/// `*<n>\r\n`.
pub fn array_header(out: &mut BytesMut, n: usize) {
    line(out, b'*', count(n));
}

/// A map of `n` pairs: `%<n>\r\n` in RESP3, `*<2n>\r\n` in RESP2.
pub fn map_header(out: &mut BytesMut, n: usize, proto: Proto) {
    match proto {
        Proto::Resp2 => line(out, b'*', count(n).saturating_mul(2)),
        Proto::Resp3 => line(out, b'%', count(n)),
    }
}

/// An out-of-band push of `n` elements: `>n` in RESP3, `*n` in RESP2.
pub fn push_header(out: &mut BytesMut, n: usize, proto: Proto) {
    match proto {
        Proto::Resp2 => line(out, b'*', count(n)),
        Proto::Resp3 => line(out, b'>', count(n)),
    }
}

/// A (un)subscribe confirmation, one per channel or pattern: `[kind, channel,
/// count]`. `kind` is `"subscribe"`, `"unsubscribe"`, `"psubscribe"` or
/// `"punsubscribe"`; `count` the connection's subscriptions afterwards
/// (channels plus patterns). `channel: None` sends a null, as Redis does for
/// `UNSUBSCRIBE` with no subscriptions left.
pub fn subscription(
    out: &mut BytesMut,
    kind: &str,
    channel: Option<&[u8]>,
    count: i64,
    proto: Proto,
) {
    push_header(out, 3, proto);
    bulk(out, kind.as_bytes());
    match channel {
        Some(ch) => bulk(out, ch),
        None => null(out, proto),
    }
    integer(out, count);
}

/// Builds a push frame of bulk strings in one allocation of exact size.
fn push_of(parts: &[&[u8]], proto: Proto) -> Bytes {
    let size = 1 + digits(parts.len()) + 2 + parts.iter().map(|p| bulk_len(p.len())).sum::<usize>();
    let mut out = BytesMut::with_capacity(size);
    push_header(&mut out, parts.len(), proto);
    for part in parts {
        bulk(&mut out, part);
    }
    debug_assert_eq!(out.len(), size);
    out.freeze()
}

/// The push delivered to channel subscribers: `[message, channel, payload]`.
/// Built once per `PUBLISH` per protocol, shared by all subscribers.
pub fn message(channel: &[u8], payload: &[u8], proto: Proto) -> Bytes {
    let mut out = Vec::with_capacity(message_len(channel, payload));
    message_into(&mut out, channel, payload, proto);
    Bytes::from(out)
}

/// The encoded size of [`message`].
pub fn message_len(channel: &[u8], payload: &[u8]) -> usize {
    MESSAGE_HEAD + bulk_len(channel.len()) + bulk_len(payload.len())
}

/// Length of `*3\r\n$7\r\nmessage\r\n` (and its RESP3 form).
const MESSAGE_HEAD: usize = 17;

/// Appends [`message`] to `out`: where one subscriber alone gets it, it
/// is written straight into that subscriber's queue.
pub fn message_into(out: &mut Vec<u8>, channel: &[u8], payload: &[u8], proto: Proto) {
    let head: &[u8; MESSAGE_HEAD] = match proto {
        Proto::Resp2 => b"*3\r\n$7\r\nmessage\r\n",
        Proto::Resp3 => b">3\r\n$7\r\nmessage\r\n",
    };
    out.reserve(message_len(channel, payload));
    out.extend_from_slice(head);
    for data in [channel, payload] {
        out.push(b'$');
        out.extend_from_slice(itoa::Buffer::new().format(data.len()).as_bytes());
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(data);
        out.extend_from_slice(b"\r\n");
    }
}

/// The push delivered to pattern subscribers: `[pmessage, pattern, channel, payload]`.
pub fn pmessage(pattern: &[u8], channel: &[u8], payload: &[u8], proto: Proto) -> Bytes {
    push_of(&[b"pmessage", pattern, channel, payload], proto)
}

/// The `PING` reply. A RESP2 connection in subscribed mode gets
/// `*2\r\n$4\r\npong\r\n$<n>\r\n<msg>\r\n` (empty bulk without a message);
/// otherwise `+PONG\r\n`, or the message as a bulk string.
pub fn pong(out: &mut BytesMut, msg: Option<&[u8]>, subscribed: bool, proto: Proto) {
    if subscribed && proto == Proto::Resp2 {
        array_header(out, 2);
        bulk(out, b"pong");
        bulk(out, msg.unwrap_or_default());
    } else {
        match msg {
            Some(m) => bulk(out, m),
            None => simple(out, "PONG"),
        }
    }
}

/// The `HELLO` reply, a map in the connection's (new) protocol. ringcast
/// identifies itself as `server: redis`, `version: 7.2.0`, because client
/// libraries gate features on those fields; it is Redis-compatible for the
/// pub/sub subset only.
pub fn hello(out: &mut BytesMut, proto: Proto, client_id: i64) {
    map_header(out, 7, proto);
    for (key, value) in [("server", "redis"), ("version", "7.2.0")] {
        bulk(out, key.as_bytes());
        bulk(out, value.as_bytes());
    }
    bulk(out, b"proto");
    integer(out, if proto == Proto::Resp3 { 3 } else { 2 });
    bulk(out, b"id");
    integer(out, client_id);
    for (key, value) in [("mode", "standalone"), ("role", "master")] {
        bulk(out, key.as_bytes());
        bulk(out, value.as_bytes());
    }
    bulk(out, b"modules");
    array_header(out, 0);
}

/// The reply to the `COMMAND` family: enough for redis-cli and client
/// libraries to start (they fall back to built-in command tables).
pub fn command_reply(out: &mut BytesMut, sub: CommandSub, proto: Proto) {
    match sub {
        CommandSub::List => array_header(out, 0),
        CommandSub::Docs => map_header(out, 0, proto),
        CommandSub::Count => integer(out, count(COMMAND_NAMES.len())),
        CommandSub::Info(n) => {
            array_header(out, n);
            for _ in 0..n {
                null(out, proto);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use redis_protocol::{resp2, resp3};

    fn enc(f: impl FnOnce(&mut BytesMut)) -> Vec<u8> {
        let mut out = BytesMut::new();
        f(&mut out);
        out.to_vec()
    }

    /// Asserts the bytes are exactly one frame for the reference decoder of
    /// that protocol, and returns them as text for comparison.
    fn checked(bytes: &[u8], proto: Proto) -> String {
        let used = match proto {
            Proto::Resp2 => resp2::decode::decode(bytes).unwrap().unwrap().1,
            Proto::Resp3 => resp3::decode::complete::decode(bytes).unwrap().unwrap().1,
        };
        assert_eq!(used, bytes.len(), "{bytes:?}");
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    use Proto::{Resp2 as R2, Resp3 as R3};

    #[test]
    fn integer_frames_from_the_table_and_past_it() {
        for n in [0, 1, 9, 10, 999, 1023, 1024, 123_456, -1, i64::MAX] {
            assert_eq!(&integer_frame(n)[..], format!(":{n}\r\n").as_bytes());
        }
    }

    #[test]
    fn scalars() {
        assert_eq!(checked(&enc(|o| simple(o, "OK")), R2), "+OK\r\n");
        assert_eq!(
            checked(&enc(|o| error(o, "ERR x\r\ny")), R2),
            "-ERR x  y\r\n"
        );
        assert_eq!(checked(&enc(|o| integer(o, 0)), R2), ":0\r\n");
        assert_eq!(checked(&enc(|o| integer(o, -42)), R2), ":-42\r\n");
        assert_eq!(
            checked(&enc(|o| integer(o, i64::MIN)), R2),
            ":-9223372036854775808\r\n"
        );
        assert_eq!(
            checked(&enc(|o| integer(o, i64::MAX)), R2),
            ":9223372036854775807\r\n"
        );
        assert_eq!(checked(&enc(|o| bulk(o, b"")), R2), "$0\r\n\r\n");
        assert_eq!(
            checked(&enc(|o| bulk(o, b"a\r\nb")), R2),
            "$4\r\na\r\nb\r\n"
        );
        assert_eq!(checked(&enc(|o| null(o, R2)), R2), "$-1\r\n");
        assert_eq!(checked(&enc(|o| null(o, R3)), R3), "_\r\n");
        let big = vec![b'x'; 1234];
        assert_eq!(enc(|o| bulk(o, &big)).len(), bulk_len(1234));
        for n in [0, 9, 10, 99, 100, 12345] {
            assert_eq!(digits(n), n.to_string().len());
        }
    }

    #[test]
    fn headers() {
        assert_eq!(enc(|o| array_header(o, 3)), b"*3\r\n");
        assert_eq!(enc(|o| map_header(o, 7, R2)), b"*14\r\n");
        assert_eq!(enc(|o| map_header(o, 7, R3)), b"%7\r\n");
        assert_eq!(enc(|o| push_header(o, 3, R2)), b"*3\r\n");
        assert_eq!(enc(|o| push_header(o, 3, R3)), b">3\r\n");
    }

    #[test]
    fn subscriptions_as_redis_sends_them() {
        let sub = |p| enc(|o| subscription(o, "subscribe", Some(b"news"), 1, p));
        let want = "*3\r\n$9\r\nsubscribe\r\n$4\r\nnews\r\n:1\r\n";
        assert_eq!(checked(&sub(R2), R2), want);
        assert_eq!(checked(&sub(R3), R3), want.replacen('*', ">", 1));
        let none = |p| enc(|o| subscription(o, "unsubscribe", None, 0, p));
        assert_eq!(
            checked(&none(R2), R2),
            "*3\r\n$11\r\nunsubscribe\r\n$-1\r\n:0\r\n"
        );
        assert_eq!(
            checked(&none(R3), R3),
            ">3\r\n$11\r\nunsubscribe\r\n_\r\n:0\r\n"
        );
        let psub = enc(|o| subscription(o, "psubscribe", Some(b"r.*"), 2, R2));
        assert_eq!(
            checked(&psub, R2),
            "*3\r\n$10\r\npsubscribe\r\n$3\r\nr.*\r\n:2\r\n"
        );
    }

    #[test]
    fn messages_are_exact_and_exactly_sized() {
        let m = message(b"news", b"hello", R2);
        assert_eq!(
            checked(&m, R2),
            "*3\r\n$7\r\nmessage\r\n$4\r\nnews\r\n$5\r\nhello\r\n"
        );
        let m3 = message(b"news", b"hello", R3);
        assert_eq!(
            checked(&m3, R3),
            ">3\r\n$7\r\nmessage\r\n$4\r\nnews\r\n$5\r\nhello\r\n"
        );
        let p = pmessage(b"n*", b"news", b"", R2);
        let want = "*4\r\n$8\r\npmessage\r\n$2\r\nn*\r\n$4\r\nnews\r\n$0\r\n\r\n";
        assert_eq!(checked(&p, R2), want);
        assert_eq!(
            checked(&pmessage(b"n*", b"news", b"", R3), R3),
            want.replacen('*', ">", 1)
        );
        // One allocation of exact size: no spare capacity was reserved.
        let payload = vec![7u8; 100_000];
        let big = message(b"c", &payload, R3);
        assert_eq!(big.len(), 4 + 13 + 7 + bulk_len(100_000));
        let decoded = resp3::decode::complete::decode(&big).unwrap().unwrap().0;
        let resp3::types::OwnedFrame::Push { data, .. } = decoded else {
            panic!("not a push");
        };
        assert_eq!(data.len(), 3);
    }

    #[test]
    fn messages_written_into_a_queue_follow_what_is_there() {
        let mut out = b":1\r\n".to_vec();
        for (c, p) in [
            (&b"news"[..], &b"hello"[..]),
            (b"", b""),
            (b"c", &[b'x'; 12][..]),
        ] {
            let before = out.len();
            message_into(&mut out, c, p, R2);
            assert_eq!(out.len() - before, message_len(c, p));
            assert_eq!(out[before..], message(c, p, R2)[..]);
        }
        assert!(out.starts_with(b":1\r\n*3\r\n$7\r\nmessage\r\n$4\r\nnews\r\n"));
    }

    #[test]
    fn pong_variants() {
        assert_eq!(enc(|o| pong(o, None, false, R2)), b"+PONG\r\n");
        assert_eq!(enc(|o| pong(o, Some(b"hi"), false, R2)), b"$2\r\nhi\r\n");
        assert_eq!(
            enc(|o| pong(o, None, true, R2)),
            b"*2\r\n$4\r\npong\r\n$0\r\n\r\n"
        );
        assert_eq!(
            enc(|o| pong(o, Some(b"hi"), true, R2)),
            b"*2\r\n$4\r\npong\r\n$2\r\nhi\r\n"
        );
        assert_eq!(enc(|o| pong(o, None, true, R3)), b"+PONG\r\n");
        assert_eq!(enc(|o| pong(o, Some(b"hi"), true, R3)), b"$2\r\nhi\r\n");
    }

    #[test]
    fn hello_reply_like_redis_7_2() {
        let body = "$6\r\nserver\r\n$5\r\nredis\r\n$7\r\nversion\r\n$5\r\n7.2.0\r\n\
                    $5\r\nproto\r\n:P\r\n$2\r\nid\r\n:17\r\n$4\r\nmode\r\n$10\r\nstandalone\r\n\
                    $4\r\nrole\r\n$6\r\nmaster\r\n$7\r\nmodules\r\n*0\r\n";
        let r3 = enc(|o| hello(o, R3, 17));
        assert_eq!(
            checked(&r3, R3),
            format!("%7\r\n{}", body.replace('P', "3"))
        );
        let r2 = enc(|o| hello(o, R2, 17));
        assert_eq!(
            checked(&r2, R2),
            format!("*14\r\n{}", body.replace('P', "2"))
        );
    }

    #[test]
    fn command_replies() {
        assert_eq!(
            checked(&enc(|o| command_reply(o, CommandSub::List, R3)), R3),
            "*0\r\n"
        );
        assert_eq!(
            checked(&enc(|o| command_reply(o, CommandSub::Docs, R2)), R2),
            "*0\r\n"
        );
        assert_eq!(
            checked(&enc(|o| command_reply(o, CommandSub::Docs, R3)), R3),
            "%0\r\n"
        );
        let count = enc(|o| command_reply(o, CommandSub::Count, R2));
        assert_eq!(checked(&count, R2), format!(":{}\r\n", COMMAND_NAMES.len()));
        let info = enc(|o| command_reply(o, CommandSub::Info(2), R2));
        assert_eq!(checked(&info, R2), "*2\r\n$-1\r\n$-1\r\n");
        let info3 = enc(|o| command_reply(o, CommandSub::Info(1), R3));
        assert_eq!(checked(&info3, R3), "*1\r\n_\r\n");
    }
}
