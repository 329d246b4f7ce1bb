//! The JSON side of the WebSocket protocol: parsing requests and writing
//! replies and events. See docs/protocol.md for the contract.
//!
//! Requests are parsed borrowing from the frame (room names and `data` are
//! not copied); replies are written straight into byte buffers.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::room::valid_room_name;
use crate::stats::ErrorKind;

/// A client request, borrowing from the frame it came in.
#[derive(Debug, PartialEq)]
pub enum Request<'a> {
    /// `{"op":"join","room":R,"since":S?}`
    Join {
        /// Room name.
        room: Cow<'a, str>,
        /// Recover messages after this seq first.
        since: Option<u64>,
    },
    /// `{"op":"leave","room":R}`
    Leave {
        /// Room name.
        room: Cow<'a, str>,
    },
    /// `{"op":"publish","room":R,"data":ANY}`
    Publish {
        /// Room name.
        room: Cow<'a, str>,
        /// The raw JSON of `data`.
        data: &'a str,
    },
    /// `{"op":"typing","room":R,"state":bool}`
    Typing {
        /// Room name.
        room: Cow<'a, str>,
        /// Typing or stopped.
        state: bool,
    },
    /// `{"op":"history","room":R,"since":S?,"limit":L?}`
    History {
        /// Room name.
        room: Cow<'a, str>,
        /// After this seq.
        since: u64,
        /// At most this many.
        limit: u32,
    },
    /// `{"op":"members","room":R}`
    Members {
        /// Room name.
        room: Cow<'a, str>,
    },
    /// `{"op":"ping"}`
    Ping,
}

/// A request that could not be served, with the client-visible code.
#[derive(Debug, PartialEq)]
pub struct ApiError {
    /// snake_case code, e.g. `bad_json`.
    pub code: &'static str,
    /// Human-readable explanation.
    pub message: String,
    /// Which counter it goes to.
    pub kind: ErrorKind,
}

impl ApiError {
    /// Builds an error.
    pub fn new(code: &'static str, kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            kind,
        }
    }
}

#[derive(Deserialize)]
struct Fields<'a> {
    #[serde(borrow)]
    op: Option<Cow<'a, str>>,
    #[serde(borrow)]
    id: Option<&'a RawValue>,
    #[serde(borrow)]
    room: Option<Cow<'a, str>>,
    #[serde(borrow)]
    data: Option<&'a RawValue>,
    since: Option<u64>,
    limit: Option<u64>,
    state: Option<bool>,
}

/// Most messages one `history` request returns.
pub const MAX_HISTORY_LIMIT: u32 = 1000;

/// Parses one request. The id (raw JSON) is returned whenever the frame was
/// an object with one, so even errors can echo it.
pub fn parse(text: &[u8], max_payload: usize) -> (Option<&str>, Result<Request<'_>, ApiError>) {
    let f: Fields<'_> = match serde_json::from_slice(text) {
        Ok(f) => f,
        Err(e) => {
            return (
                None,
                Err(ApiError::new("bad_json", ErrorKind::BadJson, e.to_string())),
            )
        }
    };
    let id = f.id.map(RawValue::get);
    if let Some(id) = id {
        if !(id.starts_with('"') || id.starts_with('-') || id.as_bytes()[0].is_ascii_digit()) {
            let err = ApiError::new(
                "bad_id",
                ErrorKind::BadJson,
                "id must be a string or a number",
            );
            return (None, Err(err));
        }
    }
    (id, request(f, max_payload))
}

fn request(f: Fields<'_>, max_payload: usize) -> Result<Request<'_>, ApiError> {
    let Some(op) = f.op else {
        return Err(ApiError::new(
            "bad_json",
            ErrorKind::BadJson,
            "missing \"op\"",
        ));
    };
    let room = || -> Result<Cow<'_, str>, ApiError> {
        let Some(room) = f.room.clone() else {
            return Err(ApiError::new(
                "invalid_room",
                ErrorKind::InvalidRoom,
                format!("\"{op}\" needs a \"room\""),
            ));
        };
        if !valid_room_name(room.as_bytes()) {
            return Err(ApiError::new(
                "invalid_room",
                ErrorKind::InvalidRoom,
                "room names are 1-128 bytes of A-Z a-z 0-9 _ . : @ -",
            ));
        }
        Ok(room)
    };
    Ok(match &*op {
        "join" => Request::Join {
            room: room()?,
            since: f.since,
        },
        "leave" => Request::Leave { room: room()? },
        "publish" => {
            let room = room()?;
            let Some(data) = f.data else {
                return Err(ApiError::new(
                    "bad_json",
                    ErrorKind::BadJson,
                    "publish needs \"data\"",
                ));
            };
            let data = data.get();
            if data.len() > max_payload {
                return Err(ApiError::new(
                    "payload_too_large",
                    ErrorKind::TooLarge,
                    format!("data is {} bytes; the limit is {max_payload}", data.len()),
                ));
            }
            Request::Publish { room, data }
        }
        "typing" => Request::Typing {
            room: room()?,
            state: f.state.unwrap_or(true),
        },
        "history" => Request::History {
            room: room()?,
            since: f.since.unwrap_or(0),
            limit: f
                .limit
                .map_or(100, |l| l.min(u64::from(MAX_HISTORY_LIMIT)) as u32),
        },
        "members" => Request::Members { room: room()? },
        "ping" => Request::Ping,
        other => {
            return Err(ApiError::new(
                "unknown_op",
                ErrorKind::UnknownOp,
                format!(
                "unknown op {:?}; expected join, leave, publish, typing, history, members or ping",
                truncate(other, 32)
            ),
            ))
        }
    })
}

fn truncate(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Removes insignificant whitespace from valid JSON text; borrows when there
/// is none (the common case for machine-written messages).
pub fn minify(json: &str) -> Cow<'_, str> {
    let bytes = json.as_bytes();
    let mut in_string = false;
    let mut escaped = false;
    let needs = bytes.iter().any(|&b| {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            false
        } else if b == b'"' {
            in_string = true;
            false
        } else {
            matches!(b, b' ' | b'\n' | b'\r' | b'\t')
        }
    });
    if !needs {
        return Cow::Borrowed(json);
    }
    let mut out = String::with_capacity(json.len());
    let (mut in_string, mut escaped) = (false, false);
    for c in json.chars() {
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
        } else if c == '"' {
            in_string = true;
            out.push(c);
        } else if !matches!(c, ' ' | '\n' | '\r' | '\t') {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// Appends `s` as a JSON string.
pub fn push_str(out: &mut Vec<u8>, s: &str) {
    serde_json::to_writer(&mut *out, s).expect("writing to a Vec cannot fail");
}

fn push_u64(out: &mut Vec<u8>, n: u64) {
    let mut b = itoa_buf(n);
    out.extend_from_slice(b.as_bytes_mut());
}

struct U64Text {
    buf: [u8; 20],
    start: usize,
}

impl U64Text {
    fn as_bytes_mut(&mut self) -> &[u8] {
        &self.buf[self.start..]
    }
}

fn itoa_buf(mut n: u64) -> U64Text {
    let mut buf = [0u8; 20];
    let mut i = 20;
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    U64Text { buf, start: i }
}

fn open(out: &mut Vec<u8>, op: &str, id: Option<&str>) {
    out.extend_from_slice(b"{\"op\":\"");
    out.extend_from_slice(op.as_bytes());
    out.push(b'"');
    if let Some(id) = id {
        out.extend_from_slice(b",\"id\":");
        out.extend_from_slice(id.as_bytes());
    }
}

fn field_room(out: &mut Vec<u8>, room: &str) {
    out.extend_from_slice(b",\"room\":");
    push_str(out, room);
}

/// `{"op":"welcome","user":U,"conn":"ID","shard":N}`
pub fn welcome(user: &str, conn: u64, shard: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(80 + user.len());
    open(&mut out, "welcome", None);
    out.extend_from_slice(b",\"user\":");
    push_str(&mut out, user);
    out.extend_from_slice(b",\"conn\":\"");
    push_u64(&mut out, conn);
    out.extend_from_slice(b"\",\"shard\":");
    push_u64(&mut out, shard as u64);
    out.push(b'}');
    out
}

/// `{"op":"ok","id":…,"room":R,"seq":S[,"recovered":false]}`; `seq` None
/// leaves it out (leave).
pub fn ok(id: Option<&str>, room: &str, seq: Option<u64>, recovered: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + room.len());
    open(&mut out, "ok", id);
    field_room(&mut out, room);
    if let Some(seq) = seq {
        out.extend_from_slice(b",\"seq\":");
        push_u64(&mut out, seq);
    }
    if !recovered {
        out.extend_from_slice(b",\"recovered\":false");
    }
    out.push(b'}');
    out
}

/// `{"op":"error","id":…,"code":C,"message":M}`
pub fn error(id: Option<&str>, code: &str, message: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + message.len());
    open(&mut out, "error", id);
    out.extend_from_slice(b",\"code\":\"");
    out.extend_from_slice(code.as_bytes());
    out.extend_from_slice(b"\",\"message\":");
    push_str(&mut out, message);
    out.push(b'}');
    out
}

/// `{"op":"pong","id":…}`
pub fn pong(id: Option<&str>) -> Vec<u8> {
    let mut out = Vec::with_capacity(32);
    open(&mut out, "pong", id);
    out.push(b'}');
    out
}

/// How a message's `data` is carried.
pub enum Data<'a> {
    /// Compact JSON text from a WebSocket publish.
    Json(&'a [u8]),
    /// Raw bytes from a RESP publish.
    Raw(&'a [u8]),
}

/// `{"op":"message","room":R,"seq":S,"user":U,"ts":T,"data":…}`, and the
/// range of the JSON `data` inside it when it is JSON (so RESP can reuse it).
pub fn message(room: &str, seq: u64, user: &str, ts: u64, data: Data<'_>) -> Vec<u8> {
    let len = match &data {
        Data::Json(d) => d.len(),
        Data::Raw(d) => d.len() * 4 / 3 + 16,
    };
    let mut out = Vec::with_capacity(72 + room.len() + user.len() + len);
    open(&mut out, "message", None);
    field_room(&mut out, room);
    out.extend_from_slice(b",\"seq\":");
    push_u64(&mut out, seq);
    out.extend_from_slice(b",\"user\":");
    push_str(&mut out, user);
    out.extend_from_slice(b",\"ts\":");
    push_u64(&mut out, ts);
    match data {
        Data::Json(d) => {
            out.extend_from_slice(b",\"data\":");
            out.extend_from_slice(d);
        }
        Data::Raw(d) => match std::str::from_utf8(d) {
            Ok(s) => {
                out.extend_from_slice(b",\"data\":");
                push_str(&mut out, s);
            }
            Err(_) => {
                use base64::Engine as _;
                out.extend_from_slice(b",\"data_b64\":\"");
                out.extend_from_slice(
                    base64::engine::general_purpose::STANDARD
                        .encode(d)
                        .as_bytes(),
                );
                out.push(b'"');
            }
        },
    }
    out.push(b'}');
    out
}

/// `{"op":"presence","room":R,"user":U,"event":"join"|"leave"}`
pub fn presence(room: &str, user: &str, joined: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + room.len() + user.len());
    open(&mut out, "presence", None);
    field_room(&mut out, room);
    out.push(b',');
    user_event(&mut out, user, joined);
    out
}

/// `"user":U,"event":"join"|"leave"}`: the tail of a presence event.
fn user_event(out: &mut Vec<u8>, user: &str, joined: bool) {
    out.extend_from_slice(b"\"user\":");
    push_str(out, user);
    out.extend_from_slice(if joined {
        b",\"event\":\"join\"}"
    } else {
        b",\"event\":\"leave\"}"
    });
}

/// `{"op":"presence","room":R,"events":[{"user":U,"event":"join"|"leave"},…]}`:
/// a batch of presence events, oldest first (see [`crate::presence`]).
pub fn presence_batch(room: &str, events: &[crate::presence::Event]) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + room.len() + events.len() * 40);
    open(&mut out, "presence", None);
    field_room(&mut out, room);
    out.extend_from_slice(b",\"events\":[");
    for (i, e) in events.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.push(b'{');
        user_event(&mut out, &e.user, e.joined);
    }
    out.extend_from_slice(b"]}");
    out
}

/// `{"op":"typing","room":R,"user":U,"state":bool}`
pub fn typing(room: &str, user: &str, state: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + room.len() + user.len());
    open(&mut out, "typing", None);
    field_room(&mut out, room);
    out.extend_from_slice(b",\"user\":");
    push_str(&mut out, user);
    out.extend_from_slice(if state {
        b",\"state\":true}"
    } else {
        b",\"state\":false}"
    });
    out
}

/// `{"op":"history","id":…,"room":R,"messages":[…]}`
/// `more` says the reply stopped short (at the reply size budget): ask
/// again with `since` set to the last seq received.
pub fn history<'m>(
    id: Option<&str>,
    room: &str,
    messages: impl Iterator<Item = &'m [u8]>,
    more: bool,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    open(&mut out, "history", id);
    field_room(&mut out, room);
    out.extend_from_slice(b",\"messages\":[");
    for (i, m) in messages.enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(m);
    }
    out.push(b']');
    if more {
        out.extend_from_slice(b",\"more\":true");
    }
    out.push(b'}');
    out
}

/// `{"op":"members","id":…,"room":R,"users":[…],"count":N}`
pub fn members<S: AsRef<str>>(id: Option<&str>, room: &str, users: &[S]) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + users.len() * 16);
    open(&mut out, "members", id);
    field_room(&mut out, room);
    out.extend_from_slice(b",\"users\":[");
    for (i, u) in users.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        push_str(&mut out, u.as_ref());
    }
    out.extend_from_slice(b"],\"count\":");
    push_u64(&mut out, users.len() as u64);
    out.push(b'}');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn v(b: Vec<u8>) -> Value {
        serde_json::from_slice(&b).unwrap()
    }

    #[test]
    fn parses_every_op() {
        let (id, r) = parse(br#"{"op":"join","room":"a","since":4,"id":7}"#, 100);
        assert_eq!(id, Some("7"));
        assert_eq!(
            r.unwrap(),
            Request::Join {
                room: "a".into(),
                since: Some(4)
            }
        );
        let (id, r) = parse(
            br#"{"id":"x","op":"publish","room":"a","data":{"t": [1, 2]}}"#,
            100,
        );
        assert_eq!(id, Some("\"x\""));
        assert_eq!(
            r.unwrap(),
            Request::Publish {
                room: "a".into(),
                data: r#"{"t": [1, 2]}"#
            }
        );
        assert_eq!(parse(br#"{"op":"ping"}"#, 1).1.unwrap(), Request::Ping);
        assert_eq!(
            parse(br#"{"op":"history","room":"a","limit":5000}"#, 1)
                .1
                .unwrap(),
            Request::History {
                room: "a".into(),
                since: 0,
                limit: MAX_HISTORY_LIMIT
            }
        );
        assert_eq!(
            parse(br#"{"op":"typing","room":"a","state":false}"#, 1)
                .1
                .unwrap(),
            Request::Typing {
                room: "a".into(),
                state: false
            }
        );
    }

    #[test]
    fn errors_have_codes() {
        let code = |t: &[u8]| parse(t, 8).1.unwrap_err().code;
        assert_eq!(code(b"not json"), "bad_json");
        assert_eq!(code(b"[1,2]"), "bad_json");
        assert_eq!(code(br#"{"room":"a"}"#), "bad_json");
        assert_eq!(code(br#"{"op":"fly"}"#), "unknown_op");
        assert_eq!(code(br#"{"op":"join"}"#), "invalid_room");
        assert_eq!(code(br#"{"op":"join","room":"a b"}"#), "invalid_room");
        assert_eq!(
            code(br#"{"op":"publish","room":"a","data":"0123456789"}"#),
            "payload_too_large"
        );
        assert_eq!(code(br#"{"op":"publish","room":"a"}"#), "bad_json");
        assert_eq!(code(br#"{"op":"ping","id":{"a":1}}"#), "bad_id");
        let (id, r) = parse(br#"{"op":"fly","id":3}"#, 8);
        assert_eq!((id, r.is_err()), (Some("3"), true));
    }

    #[test]
    fn minify_keeps_strings() {
        assert!(matches!(minify(r#"{"a":1}"#), Cow::Borrowed(_)));
        assert_eq!(
            minify("{ \"a b\" : [1, \"x\\\" y\"] }"),
            r#"{"a b":[1,"x\" y"]}"#
        );
    }

    #[test]
    fn replies_are_valid_json() {
        assert_eq!(
            v(welcome("a\"b", 5, 1)),
            json!({"op":"welcome","user":"a\"b","conn":"5","shard":1})
        );
        assert_eq!(
            v(ok(Some("\"q\""), "r", Some(3), false)),
            json!({"op":"ok","id":"q","room":"r","seq":3,"recovered":false})
        );
        assert_eq!(v(ok(None, "r", None, true)), json!({"op":"ok","room":"r"}));
        assert_eq!(
            v(error(Some("1"), "bad_json", "x\ny")),
            json!({"op":"error","id":1,"code":"bad_json","message":"x\ny"})
        );
        assert_eq!(v(pong(None)), json!({"op":"pong"}));
        assert_eq!(
            v(message("r", 2, "u", 9, Data::Json(br#"{"k":[1]}"#))),
            json!({"op":"message","room":"r","seq":2,"user":"u","ts":9,"data":{"k":[1]}})
        );
        assert_eq!(
            v(message("r", 2, "u", 9, Data::Raw(b"hi"))).get("data"),
            Some(&json!("hi"))
        );
        assert_eq!(
            v(message("r", 2, "u", 9, Data::Raw(&[0xff, 0]))).get("data_b64"),
            Some(&json!("/wA="))
        );
        assert_eq!(
            v(presence("r", "u", true)),
            json!({"op":"presence","room":"r","user":"u","event":"join"})
        );
        assert_eq!(
            v(typing("r", "u", false)),
            json!({"op":"typing","room":"r","user":"u","state":false})
        );
        assert_eq!(
            v(history(None, "r", [&b"{}"[..], b"[]"].into_iter(), false)),
            json!({"op":"history","room":"r","messages":[{},[]]})
        );
        assert_eq!(
            v(history(None, "r", std::iter::empty(), true)),
            json!({"op":"history","room":"r","messages":[],"more":true})
        );
        assert_eq!(
            v(members(None, "r", &["a", "b"])),
            json!({"op":"members","room":"r","users":["a","b"],"count":2})
        );
        assert_eq!(push_u64_str(0), "0");
        assert_eq!(push_u64_str(u64::MAX), u64::MAX.to_string());
    }

    fn push_u64_str(n: u64) -> String {
        let mut out = Vec::new();
        push_u64(&mut out, n);
        String::from_utf8(out).unwrap()
    }
}
