//! Targets and their wire adapters: join, publish and receive mapped onto
//! each system's own protocol.
//!
//! | target | transport | join | publish | delivery |
//! |---|---|---|---|---|
//! | `ringcast-ws` | WebSocket `/ws?user=` (or `?token=`, or a first `auth` frame) | `{"op":"join"}` → `ok` with `seq` | `{"op":"publish"}` | `{"op":"message","seq":..}` |
//! | `ringcast-resp`, `redis` | RESP | `SUBSCRIBE` | `PUBLISH` (own connection) | `*3 message` |
//! | `uws`, `ws`, `ceiling` | WebSocket, ringcast's JSON | as ringcast | as ringcast | envelope without `seq` |
//! | `socketio` | Engine.IO v4 over WebSocket | `40`, `42["join",R]` → `42["ok"]` | `42["publish",R,DATA]` | `42["message",DATA]` |
//! | `nats` | NATS text protocol in WebSocket frames | `SUB R 1` + `PING` → `PONG` | `PUB R N` | `MSG R 1 N` |
//!
//! The incoming side is one function, [`feed`]: it consumes as many whole
//! protocol units as `buf` holds, answers pings into `out`, and reports
//! deliveries and join confirmations to a [`Sink`].

use crate::scan::{Scanner, Stamp};
use crate::wsframe::{self, op};

/// A system the generator can load.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum Target {
    /// ringcast over WebSocket (JSON ops, per-room `seq`).
    RingcastWs,
    /// ringcast over RESP pub/sub.
    RingcastResp,
    /// uWebSockets.js topics (`bench/peers/uws-server.js`).
    Uws,
    /// Node `ws`, broadcast to a room's set (`bench/peers/ws-server.js`).
    Ws,
    /// socket.io rooms (`bench/peers/socketio-server.js`).
    Socketio,
    /// NATS server over its WebSocket listener.
    Nats,
    /// Redis pub/sub.
    Redis,
    /// The bare io_uring server of `ringcast-bench ceiling`.
    Ceiling,
}

/// The protocol family a target speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wire {
    /// ringcast's JSON ops in WebSocket text frames; `seq` says whether deliveries carry one.
    JsonWs {
        /// Deliveries carry a per-room `seq`.
        seq: bool,
    },
    /// socket.io (Engine.IO v4) over WebSocket.
    SocketIo,
    /// NATS text protocol in WebSocket frames.
    NatsWs,
    /// Plain RESP over TCP.
    Resp,
}

impl Target {
    /// The target's name in records and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Target::RingcastWs => "ringcast-ws",
            Target::RingcastResp => "ringcast-resp",
            Target::Uws => "uws",
            Target::Ws => "ws",
            Target::Socketio => "socketio",
            Target::Nats => "nats",
            Target::Redis => "redis",
            Target::Ceiling => "ceiling",
        }
    }

    /// The wire protocol.
    pub fn wire(self) -> Wire {
        match self {
            Target::RingcastWs => Wire::JsonWs { seq: true },
            Target::Uws | Target::Ws | Target::Ceiling => Wire::JsonWs { seq: false },
            Target::Socketio => Wire::SocketIo,
            Target::Nats => Wire::NatsWs,
            Target::RingcastResp | Target::Redis => Wire::Resp,
        }
    }

    /// Whether publishers need a connection of their own (a RESP connection in
    /// subscribe mode may not `PUBLISH`).
    pub fn separate_publishers(self) -> bool {
        self.wire() == Wire::Resp
    }

    /// The upgrade request path for user `user`, or `None` for raw TCP.
    pub fn ws_path(self, user: u64) -> Option<String> {
        match self.wire() {
            Wire::JsonWs { .. } => Some(format!("/ws?user=u{user}")),
            Wire::SocketIo => Some("/socket.io/?EIO=4&transport=websocket".to_string()),
            Wire::NatsWs => Some("/".to_string()),
            Wire::Resp => None,
        }
    }
}

/// Receives what [`feed`] finds.
pub trait Sink {
    /// A delivery carrying the generator's stamp (and ringcast's `seq`, if any).
    fn delivery(&mut self, stamp: Stamp, seq: Option<u64>);
    /// A frame that should have been a delivery but had no readable stamp.
    fn unparsed(&mut self);
    /// The server confirmed the join/subscribe; `seq` is the room's last seq if given.
    fn joined(&mut self, seq: Option<u64>);
    /// The server reported an error.
    fn error(&mut self);
    /// ringcast's `welcome` named the shard serving this connection.
    fn welcome(&mut self, _shard: u32) {}
}

/// Per-connection protocol state.
#[derive(Debug, Default)]
pub struct ProtoState {
    /// Room index this connection joins, if it is a member.
    pub room: Option<u32>,
    /// The number in the room's name on the wire (`r{room_no}`).
    pub room_no: u32,
    /// Wait for ringcast's `welcome` before choosing a room (shard-local placement).
    pub defer_join: bool,
    /// Joining nothing, be ready on ringcast's `welcome` rather than on the upgrade.
    pub await_welcome: bool,
    /// Payload bytes of a fragmented WebSocket message, or NATS stream bytes
    /// carried between frames.
    pub stream: Vec<u8>,
    /// Mask/PRNG state for client frames.
    pub rng: u32,
    /// Next request id (ringcast ops).
    pub next_id: u64,
}

/// Why a connection cannot continue.
#[derive(Debug, PartialEq, Eq)]
pub enum ProtoError {
    /// The server closed the WebSocket.
    Closed,
    /// A frame or reply the generator cannot accept.
    Invalid,
}

impl ProtoState {
    fn mask(&mut self) -> [u8; 4] {
        // xorshift32: masks need not be secret on loopback, only present.
        let mut x = self.rng | 1;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.rng = x;
        x.to_ne_bytes()
    }
}

fn push_room(out: &mut Vec<u8>, room: u32) {
    out.push(b'r');
    crate::scan::push_u64(out, room as u64);
}

/// Appends what a member sends right after the transport is up (for socket.io,
/// the namespace connect; the join follows its confirmation).
pub fn on_open(wire: Wire, st: &mut ProtoState, scratch: &mut Vec<u8>, out: &mut Vec<u8>) {
    scratch.clear();
    match (wire, st.room) {
        (Wire::JsonWs { .. }, Some(_)) => {
            scratch.extend_from_slice(b"{\"op\":\"join\",\"room\":\"");
            push_room(scratch, st.room_no);
            scratch.extend_from_slice(b"\",\"id\":1}");
            st.next_id = 2;
            let m = st.mask();
            wsframe::encode_masked(out, op::TEXT, scratch, m);
        }
        (Wire::SocketIo, _) => {
            let m = st.mask();
            wsframe::encode_masked(out, op::TEXT, b"40", m);
        }
        (Wire::NatsWs, room) => {
            scratch.extend_from_slice(
                b"CONNECT {\"verbose\":false,\"pedantic\":false,\"protocol\":1,\"echo\":true,\"lang\":\"rust\",\"version\":\"0.1\"}\r\n",
            );
            if room.is_some() {
                scratch.extend_from_slice(b"SUB ");
                push_room(scratch, st.room_no);
                scratch.extend_from_slice(b" 1\r\n");
            }
            scratch.extend_from_slice(b"PING\r\n");
            let m = st.mask();
            wsframe::encode_masked(out, op::BINARY, scratch, m);
        }
        (Wire::Resp, Some(_)) => {
            out.extend_from_slice(b"SUBSCRIBE ");
            push_room(out, st.room_no);
            out.extend_from_slice(b"\r\n");
        }
        // A RESP socket that joins nothing (a publisher's own, or an idle one)
        // is ready when the server answers a PING.
        (Wire::Resp, None) => out.extend_from_slice(b"PING\r\n"),
        _ => {}
    }
}

/// Whether a connection is ready as soon as its transport is up (no join to
/// confirm, no `welcome` to wait for).
pub fn ready_on_open(wire: Wire, st: &ProtoState) -> bool {
    st.room.is_none() && !st.defer_join && !st.await_welcome && matches!(wire, Wire::JsonWs { .. })
}

/// Appends ringcast's first frame `{"op":"auth","token":…}` (a token is
/// base64url parts and dots: nothing to escape).
pub fn auth(st: &mut ProtoState, token: &str, scratch: &mut Vec<u8>, out: &mut Vec<u8>) {
    scratch.clear();
    scratch.extend_from_slice(b"{\"op\":\"auth\",\"token\":\"");
    scratch.extend_from_slice(token.as_bytes());
    scratch.extend_from_slice(b"\"}");
    let m = st.mask();
    wsframe::encode_masked(out, op::TEXT, scratch, m);
}

/// Appends one publish of `data` to room `r{room}`.
pub fn publish(
    wire: Wire,
    st: &mut ProtoState,
    room: u32,
    data: &[u8],
    scratch: &mut Vec<u8>,
    out: &mut Vec<u8>,
) {
    scratch.clear();
    match wire {
        Wire::JsonWs { .. } => {
            scratch.extend_from_slice(b"{\"op\":\"publish\",\"room\":\"");
            push_room(scratch, room);
            scratch.extend_from_slice(b"\",\"data\":");
            scratch.extend_from_slice(data);
            scratch.extend_from_slice(b",\"id\":");
            crate::scan::push_u64(scratch, st.next_id);
            st.next_id += 1;
            scratch.push(b'}');
            let m = st.mask();
            wsframe::encode_masked(out, op::TEXT, scratch, m);
        }
        Wire::SocketIo => {
            scratch.extend_from_slice(b"42[\"publish\",\"");
            push_room(scratch, room);
            scratch.extend_from_slice(b"\",");
            scratch.extend_from_slice(data);
            scratch.push(b']');
            let m = st.mask();
            wsframe::encode_masked(out, op::TEXT, scratch, m);
        }
        Wire::NatsWs => {
            scratch.extend_from_slice(b"PUB ");
            push_room(scratch, room);
            scratch.push(b' ');
            crate::scan::push_u64(scratch, data.len() as u64);
            scratch.extend_from_slice(b"\r\n");
            scratch.extend_from_slice(data);
            scratch.extend_from_slice(b"\r\n");
            let m = st.mask();
            wsframe::encode_masked(out, op::BINARY, scratch, m);
        }
        Wire::Resp => {
            let mut name = Vec::with_capacity(12);
            push_room(&mut name, room);
            out.extend_from_slice(b"*3\r\n$7\r\nPUBLISH\r\n$");
            crate::scan::push_u64(out, name.len() as u64);
            out.extend_from_slice(b"\r\n");
            out.extend_from_slice(&name);
            out.extend_from_slice(b"\r\n$");
            crate::scan::push_u64(out, data.len() as u64);
            out.extend_from_slice(b"\r\n");
            out.extend_from_slice(data);
            out.extend_from_slice(b"\r\n");
        }
    }
}

/// Consumes whole protocol units from `buf` and returns how many bytes it used;
/// the rest is a partial unit to keep for the next read.
pub fn feed(
    wire: Wire,
    st: &mut ProtoState,
    sc: &Scanner,
    buf: &[u8],
    out: &mut Vec<u8>,
    sink: &mut impl Sink,
) -> Result<usize, ProtoError> {
    if wire == Wire::Resp {
        return crate::resp::feed(sc, buf, sink);
    }
    let mut at = 0;
    loop {
        let f = match wsframe::parse_frame(&buf[at..]) {
            Ok(Some(f)) => f,
            Ok(None) => return Ok(at),
            Err(_) => return Err(ProtoError::Invalid),
        };
        let payload = &buf[at + f.start..at + f.end];
        at += f.end;
        match f.opcode {
            op::TEXT | op::BINARY | op::CONT if wire == Wire::NatsWs => {
                nats_chunk(st, sc, payload, out, sink)?
            }
            op::TEXT | op::BINARY if f.fin && st.stream.is_empty() => {
                message(wire, st, sc, payload, out, sink)?
            }
            op::TEXT | op::BINARY | op::CONT => {
                if st.stream.len() + payload.len() > wsframe::MAX_FRAME {
                    return Err(ProtoError::Invalid);
                }
                st.stream.extend_from_slice(payload);
                if f.fin {
                    let whole = std::mem::take(&mut st.stream);
                    message(wire, st, sc, &whole, out, sink)?;
                    st.stream = whole;
                    st.stream.clear();
                }
            }
            op::PING => {
                let m = st.mask();
                wsframe::encode_masked(out, op::PONG, payload, m);
            }
            op::CLOSE => return Err(ProtoError::Closed),
            _ => {}
        }
    }
}

/// The join is the only request with id 1.
fn is_join_ack(msg: &[u8]) -> bool {
    memchr::memmem::find(msg, b"\"id\":1,").is_some()
        || memchr::memmem::find(msg, b"\"id\":1}").is_some()
}

/// NATS runs a byte stream through WebSocket frames: a protocol line or a
/// message may span frames, so unconsumed bytes wait in `st.stream`.
fn nats_chunk(
    st: &mut ProtoState,
    sc: &Scanner,
    payload: &[u8],
    out: &mut Vec<u8>,
    sink: &mut impl Sink,
) -> Result<(), ProtoError> {
    if st.stream.is_empty() {
        let used = crate::nats::feed(sc, payload, st, out, sink)?;
        st.stream.extend_from_slice(&payload[used..]);
    } else {
        if st.stream.len() + payload.len() > wsframe::MAX_FRAME {
            return Err(ProtoError::Invalid);
        }
        st.stream.extend_from_slice(payload);
        let mut whole = std::mem::take(&mut st.stream);
        let used = crate::nats::feed(sc, &whole, st, out, sink)?;
        whole.drain(..used);
        st.stream = whole;
    }
    Ok(())
}

/// One complete message (or, for NATS, a chunk of its byte stream).
fn message(
    wire: Wire,
    st: &mut ProtoState,
    sc: &Scanner,
    msg: &[u8],
    out: &mut Vec<u8>,
    sink: &mut impl Sink,
) -> Result<(), ProtoError> {
    match wire {
        Wire::JsonWs { seq } => {
            if let Some(stamp) = sc.stamp(msg) {
                sink.delivery(stamp, if seq { sc.seq(msg) } else { None });
            } else if msg.starts_with(b"{\"op\":\"welcome\"") {
                if let Some(at) = memchr::memmem::find(msg, b"\"shard\":") {
                    let n = msg[at + 8..]
                        .iter()
                        .take_while(|b| b.is_ascii_digit())
                        .fold(0u32, |v, &b| v * 10 + (b - b'0') as u32);
                    sink.welcome(n);
                }
            } else if msg.starts_with(b"{\"op\":\"ok\"") && is_join_ack(msg) {
                sink.joined(sc.seq(msg));
            } else if memchr::memmem::find(msg, b"\"op\":\"message\"").is_some() {
                sink.unparsed();
            } else if memchr::memmem::find(msg, b"\"op\":\"error\"").is_some() {
                sink.error();
            }
        }
        Wire::SocketIo => match msg {
            [b'4', b'2', ..] => {
                if let Some(stamp) = sc.stamp(msg) {
                    sink.delivery(stamp, None);
                } else if msg.starts_with(b"42[\"ok\"") {
                    sink.joined(None);
                } else {
                    sink.unparsed();
                }
            }
            [b'2', ..] => {
                let m = st.mask();
                wsframe::encode_masked(out, op::TEXT, b"3", m);
            }
            [b'4', b'0', ..] => {
                if st.room.is_some() {
                    let mut s = Vec::with_capacity(24);
                    s.extend_from_slice(b"42[\"join\",\"");
                    push_room(&mut s, st.room_no);
                    s.extend_from_slice(b"\"]");
                    let m = st.mask();
                    wsframe::encode_masked(out, op::TEXT, &s, m);
                } else {
                    sink.joined(None);
                }
            }
            [b'4', b'4', ..] => sink.error(),
            _ => {}
        },
        Wire::NatsWs | Wire::Resp => unreachable!("stream protocols are fed by chunk"),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Rec {
        got: Vec<(Stamp, Option<u64>)>,
        joined: Vec<Option<u64>>,
        errors: u32,
        unparsed: u32,
    }
    impl Sink for Rec {
        fn delivery(&mut self, stamp: Stamp, seq: Option<u64>) {
            self.got.push((stamp, seq));
        }
        fn unparsed(&mut self) {
            self.unparsed += 1;
        }
        fn joined(&mut self, seq: Option<u64>) {
            self.joined.push(seq);
        }
        fn error(&mut self) {
            self.errors += 1;
        }
    }

    fn frame(op: u8, payload: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        wsframe::server_header(&mut v, op, payload.len());
        v.extend_from_slice(payload);
        v
    }

    #[test]
    fn ringcast_join_ok_delivery_and_partial_frame() {
        let sc = Scanner::new();
        let mut st = ProtoState {
            room: Some(3),
            ..Default::default()
        };
        let (mut out, mut scratch) = (Vec::new(), Vec::new());
        on_open(Wire::JsonWs { seq: true }, &mut st, &mut scratch, &mut out);
        assert!(!out.is_empty());
        let mut buf = frame(
            op::TEXT,
            br#"{"op":"welcome","user":"u1","conn":"7","shard":0}"#,
        );
        buf.extend(frame(
            op::TEXT,
            br#"{"op":"ok","id":1,"room":"r3","seq":9}"#,
        ));
        buf.extend(frame(
            op::TEXT,
            br#"{"op":"ok","id":2,"room":"r3","seq":10}"#,
        ));
        buf.extend(frame(op::TEXT, br#"{"op":"message","room":"r3","seq":10,"user":"u1","ts":1,"data":{"p":3,"c":0,"t":5,"x":""}}"#));
        let whole = buf.len();
        buf.extend(&frame(op::TEXT, b"{\"op\":\"message\"")[..5]);
        let mut rec = Rec::default();
        let used = feed(
            Wire::JsonWs { seq: true },
            &mut st,
            &sc,
            &buf,
            &mut out,
            &mut rec,
        )
        .unwrap();
        assert_eq!(used, whole);
        assert_eq!(rec.joined, vec![Some(9)]);
        assert_eq!(
            rec.got,
            vec![(
                Stamp {
                    publisher: 3,
                    counter: 0,
                    sent_ns: 5
                },
                Some(10)
            )]
        );
    }

    #[test]
    fn ping_is_answered_and_close_ends() {
        let sc = Scanner::new();
        let mut st = ProtoState::default();
        let mut out = Vec::new();
        let mut rec = Rec::default();
        let buf = frame(op::PING, b"hi");
        feed(
            Wire::JsonWs { seq: false },
            &mut st,
            &sc,
            &buf,
            &mut out,
            &mut rec,
        )
        .unwrap();
        assert_eq!(out[0], 0x8A);
        let buf = frame(op::CLOSE, b"");
        assert_eq!(
            feed(
                Wire::JsonWs { seq: false },
                &mut st,
                &sc,
                &buf,
                &mut out,
                &mut rec
            ),
            Err(ProtoError::Closed)
        );
    }

    #[test]
    fn socketio_open_connect_join_and_event() {
        let sc = Scanner::new();
        let mut st = ProtoState {
            room: Some(1),
            ..Default::default()
        };
        let mut rec = Rec::default();
        let mut out = Vec::new();
        let mut buf = frame(op::TEXT, br#"0{"sid":"x","pingInterval":25000}"#);
        buf.extend(frame(op::TEXT, br#"40{"sid":"y"}"#));
        buf.extend(frame(op::TEXT, b"2"));
        buf.extend(frame(op::TEXT, br#"42["ok"]"#));
        buf.extend(frame(
            op::TEXT,
            br#"42["message",{"p":1,"c":2,"t":3,"x":"a"}]"#,
        ));
        feed(Wire::SocketIo, &mut st, &sc, &buf, &mut out, &mut rec).unwrap();
        assert_eq!(rec.joined.len(), 1);
        assert_eq!(rec.got.len(), 1);
        // join frame then the pong "3", both masked text frames.
        assert_eq!(out[0], 0x81);
        assert_eq!(out[1] & 0x7f, b"42[\"join\",\"r1\"]".len() as u8);
    }

    #[test]
    fn fragmented_message_is_reassembled() {
        let sc = Scanner::new();
        let mut st = ProtoState::default();
        let mut rec = Rec::default();
        let mut out = Vec::new();
        let body = br#"{"op":"message","data":{"p":1,"c":2,"t":3,"x":"a"}}"#;
        let mut buf = vec![0x01, 10];
        buf.extend_from_slice(&body[..10]);
        buf.push(0x80);
        buf.push((body.len() - 10) as u8);
        buf.extend_from_slice(&body[10..]);
        feed(
            Wire::JsonWs { seq: false },
            &mut st,
            &sc,
            &buf,
            &mut out,
            &mut rec,
        )
        .unwrap();
        assert_eq!(rec.got.len(), 1);
        assert!(st.stream.is_empty());
    }

    #[test]
    fn publish_frames_carry_room_and_data() {
        let mut st = ProtoState::default();
        let (mut scratch, mut out) = (Vec::new(), Vec::new());
        publish(
            Wire::Resp,
            &mut st,
            12,
            b"{\"p\":1}",
            &mut scratch,
            &mut out,
        );
        assert_eq!(
            out,
            b"*3\r\n$7\r\nPUBLISH\r\n$3\r\nr12\r\n$7\r\n{\"p\":1}\r\n"
        );
        out.clear();
        publish(
            Wire::JsonWs { seq: true },
            &mut st,
            2,
            b"{}",
            &mut scratch,
            &mut out,
        );
        assert_eq!(scratch, br#"{"op":"publish","room":"r2","data":{},"id":0}"#);
    }
}
