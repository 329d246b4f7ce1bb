//! Frames between shards, archived with rkyv and carried as `Bytes`.
//!
//! A frame is archived once by its sender and read in place by its receiver,
//! with no deserialisation: one `Deliver` frame serves every member shard
//! (the same `Bytes` is pushed to each ring), and each member shard reads the
//! message body straight out of it to build its one WebSocket or RESP frame.
//! The archive format is unaligned (rkyv's `unaligned` feature) so any
//! `Bytes` can be read without re-aligning it. (A `Deliver` still carries the
//! RESP payload apart from the JSON, which usually contains it; sending an
//! offset instead would halve the frame.)
//!
//! A connection id carries its shard in the top 16 bits, so replies find
//! their way back without naming the origin shard; a room's home is a hash
//! of its name ([`home_of`]), the same on every shard.

use bytes::Bytes;
use rkyv::rancor;

/// Which shard a connection id belongs to.
#[inline]
pub fn shard_of(conn: u64) -> usize {
    (conn >> 48) as usize
}

/// The shard a room lives on: FNV-1a of the name modulo the shard count. The
/// same on every shard and every run, whatever the hasher seeds are.
pub fn home_of(name: &[u8], shards: usize) -> usize {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in name {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    (h % shards.max(1) as u64) as usize
}

/// Builds a connection id from a shard and a per-shard counter.
#[inline]
pub fn conn_id(shard: usize, n: u64) -> u64 {
    ((shard as u64) << 48) | (n & ((1 << 48) - 1))
}

/// Error codes a home shard can answer with.
pub mod code {
    /// No error.
    pub const OK: u8 = 0;
    /// The room has `max_members_per_room` members already.
    pub const ROOM_FULL: u8 = 1;
    /// Cluster mode: Redis is unreachable.
    pub const UNAVAILABLE: u8 = 2;
}

/// Where a home's answer goes back to and how it is worded: the request
/// travels to the home and its answer comes back carrying this untouched.
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Debug, Clone, PartialEq)]
pub enum ReplyTo {
    /// A WebSocket request: its `id` as raw JSON text, if it had one.
    Ws(Option<String>),
    /// A RESP reply slot reserved in the connection's reply order.
    Resp {
        /// The slot's ticket, or [`crate::conn::order::UNRESERVED`].
        ticket: u32,
        /// The subscription count a SUBSCRIBE confirmation reports.
        count: u32,
    },
}

impl ReplyTo {
    /// True when the asking connection reads JSON (WebSocket).
    pub fn reads_json(&self) -> bool {
        matches!(self, ReplyTo::Ws(_))
    }
}

/// Where an answer goes, borrowed from a [`ReplyTo`] or from its archived
/// form: the member side answers both the same way.
#[derive(Debug, Clone, Copy)]
pub enum ReplyRef<'a> {
    /// A WebSocket request's id (raw JSON), if it had one.
    Ws(Option<&'a str>),
    /// A RESP reply slot.
    Resp {
        /// The slot's ticket.
        ticket: u32,
        /// The subscription count a SUBSCRIBE confirmation reports.
        count: u32,
    },
}

impl<'a> From<&'a ReplyTo> for ReplyRef<'a> {
    fn from(r: &'a ReplyTo) -> Self {
        match r {
            ReplyTo::Ws(id) => ReplyRef::Ws(id.as_deref()),
            ReplyTo::Resp { ticket, count } => ReplyRef::Resp {
                ticket: *ticket,
                count: *count,
            },
        }
    }
}

impl<'a> From<&'a ArchivedReplyTo> for ReplyRef<'a> {
    fn from(r: &'a ArchivedReplyTo) -> Self {
        match r {
            ArchivedReplyTo::Ws(id) => ReplyRef::Ws(id.as_ref().map(|s| s.as_str())),
            ArchivedReplyTo::Resp { ticket, count } => ReplyRef::Resp {
                ticket: ticket.to_native(),
                count: count.to_native(),
            },
        }
    }
}

/// One retained message, as sent back for `since` recovery.
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Debug, Clone, PartialEq)]
pub struct Entry {
    /// Room sequence number.
    pub seq: u64,
    /// The message as WebSocket clients see it (JSON object).
    pub json: Vec<u8>,
    /// The payload as RESP subscribers see it.
    pub resp: Vec<u8>,
}

/// A frame between shards. Requests go to a room's home shard; deliveries
/// and replies come back from it.
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Debug, Clone, PartialEq)]
pub enum Wire {
    /// A connection joins a room (to the home shard).
    Join {
        /// Room name.
        room: String,
        /// Joining connection.
        conn: u64,
        /// Its user name.
        user: String,
        /// The user's `info` (compact JSON object), shown in presence and
        /// members.
        info: Option<String>,
        /// Deliver retained messages after this seq first.
        since: Option<u64>,
        /// The room sequence `since` is of, if the client said.
        epoch: Option<u64>,
        /// Where the answer goes.
        reply: ReplyTo,
        /// Numbers the connection's joins, so a stale answer is recognised.
        join: u32,
    },
    /// A connection leaves a room (to the home shard).
    Leave {
        /// Room name.
        room: String,
        /// Leaving connection.
        conn: u64,
    },
    /// A message to sequence (to the home shard).
    Publish {
        /// Room name.
        room: String,
        /// Publishing connection.
        conn: u64,
        /// Its user name.
        user: String,
        /// Compact JSON of `data` (WebSocket), or raw bytes (RESP).
        data: Vec<u8>,
        /// True when `data` is raw bytes rather than JSON.
        raw: bool,
        /// Where the answer goes.
        reply: ReplyTo,
    },
    /// A typing indicator (to the home shard).
    Typing {
        /// Room name.
        room: String,
        /// Typing connection (it does not get its own event).
        conn: u64,
        /// Its user name.
        user: String,
        /// Typing or stopped.
        state: bool,
    },
    /// Asks for the members of a room (to the home shard).
    Members {
        /// Room name.
        room: String,
        /// Asking connection.
        conn: u64,
        /// The request id to echo (raw JSON).
        id: Option<String>,
        /// Users after this one.
        after: Option<String>,
        /// At most this many.
        limit: u32,
    },
    /// Asks for retained messages (to the home shard).
    History {
        /// Room name.
        room: String,
        /// Asking connection.
        conn: u64,
        /// The request id to echo (raw JSON).
        id: Option<String>,
        /// Messages with seq greater than this.
        since: u64,
        /// At most this many.
        limit: u32,
    },
    /// A sequenced message for a member shard's local members.
    Deliver {
        /// Room name.
        room: String,
        /// Room sequence number.
        seq: u64,
        /// As WebSocket clients see it.
        json: Vec<u8>,
        /// As RESP subscribers see it.
        resp: Vec<u8>,
    },
    /// An unsequenced event (presence, typing) for a member shard.
    Ephemeral {
        /// Room name.
        room: String,
        /// A connection that must not get it (the one it is about), or 0.
        exclude: u64,
        /// The event as WebSocket clients see it.
        json: Vec<u8>,
    },
    /// The home shard's answer to [`Wire::Join`].
    JoinAck {
        /// Room name.
        room: String,
        /// Joining connection.
        conn: u64,
        /// Where the answer goes.
        reply: ReplyTo,
        /// The room's sequence.
        epoch: u64,
        /// The room's last seq at the moment of joining.
        seq: u64,
        /// False when `since` was older than what is retained.
        recovered: bool,
        /// [`code`] of the answer.
        error: u8,
        /// Retained messages after `since`, oldest first.
        backlog: Vec<Entry>,
        /// The `join` number of the request this answers.
        join: u32,
    },
    /// The home shard's answer to [`Wire::Publish`].
    PublishAck {
        /// Room name.
        room: String,
        /// Publishing connection.
        conn: u64,
        /// Where the answer goes.
        reply: ReplyTo,
        /// The room's sequence.
        epoch: u64,
        /// The seq the message got.
        seq: u64,
        /// Member connections of the room when it was sequenced.
        receivers: u32,
    },
    /// A request the home could not serve (cluster mode: Redis is
    /// unreachable), for the requester's shard to answer with an error.
    Refused {
        /// Room name.
        room: String,
        /// The requesting connection.
        conn: u64,
        /// Where the answer goes.
        reply: ReplyTo,
        /// [`code`] of the answer.
        error: u8,
    },
    /// Cluster mode: one message as nodes publish it to each other, the
    /// body of what a room's channel and stream carry (its seq and epoch
    /// travel in the channel's header and the stream's entry id).
    Message {
        /// Its user name.
        user: String,
        /// Unix milliseconds when the publishing node's home took it.
        ts: u64,
        /// Compact JSON of `data` (WebSocket), or raw bytes (RESP).
        data: Vec<u8>,
        /// True when `data` is raw bytes rather than JSON.
        raw: bool,
    },
    /// A ready-made JSON reply for one connection.
    Reply {
        /// The connection.
        conn: u64,
        /// The reply text.
        json: Vec<u8>,
    },
}

/// Archives a frame into a fresh buffer.
pub fn encode(frame: &Wire) -> Bytes {
    let vec = rkyv::api::high::to_bytes_in::<_, rancor::Error>(frame, Vec::with_capacity(256))
        .expect("archiving into a Vec cannot fail");
    Bytes::from(vec)
}

/// Reads a frame in place, validating it.
pub fn decode(bytes: &[u8]) -> Result<&ArchivedWire, rancor::Error> {
    rkyv::access::<ArchivedWire, rancor::Error>(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_zero_copy_slice() {
        let frame = Wire::Deliver {
            room: "lobby".into(),
            seq: 7,
            json: br#"{"op":"message"}"#.to_vec(),
            resp: b"hi".to_vec(),
        };
        let bytes = encode(&frame);
        let ArchivedWire::Deliver { seq, json, .. } = decode(&bytes).unwrap() else {
            panic!("wrong variant")
        };
        assert_eq!(seq.to_native(), 7);
        let body = bytes.slice_ref(json.as_slice());
        assert_eq!(&body[..], br#"{"op":"message"}"#);
        let back: Wire = rkyv::deserialize::<Wire, rancor::Error>(decode(&bytes).unwrap()).unwrap();
        assert_eq!(back, frame);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(decode(b"\xff\xff\xff").is_err());
    }

    #[test]
    fn home_is_stable_and_spread() {
        assert_eq!(home_of(b"lobby", 4), home_of(b"lobby", 4));
        assert_eq!(home_of(b"anything", 1), 0);
        let mut seen = [0; 4];
        for i in 0..400 {
            seen[home_of(format!("room-{i}").as_bytes(), 4)] += 1;
        }
        assert!(seen.iter().all(|&n| n > 50), "{seen:?}");
    }

    #[test]
    fn conn_ids_carry_their_shard() {
        let id = conn_id(3, 12345);
        assert_eq!(shard_of(id), 3);
        assert_ne!(conn_id(0, 1), conn_id(1, 1));
    }
}
