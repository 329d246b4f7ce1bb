//! Client requests: one JSON object per WebSocket message, parsed
//! borrowing from the frame (room names and `data` are not copied).

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;

use super::json::{parse_epoch, relay_problem};
use super::names::valid_room_name;

/// A client request, borrowing from the frame it came in.
#[derive(Debug, PartialEq)]
pub enum Request<'a> {
    /// `{"op":"join","room":R,"since":S?}`
    Join {
        /// Room name.
        room: Cow<'a, str>,
        /// Recover messages after this seq first.
        since: Option<u64>,
        /// The room sequence `since` is of (see [`super::json::epoch_text`]).
        epoch: Option<u64>,
        /// A room token letting the user into a room its connection token
        /// does not list.
        token: Option<Cow<'a, str>>,
    },
    /// `{"op":"auth","token":T}`: the connection token, as the first frame.
    Auth {
        /// The token.
        token: Cow<'a, str>,
    },
    /// `{"op":"refresh","token":T}`: a new token for a live connection.
    Refresh {
        /// The token.
        token: Cow<'a, str>,
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
    /// `{"op":"members","room":R,"limit":L?,"after":U?}`
    Members {
        /// Room name.
        room: Cow<'a, str>,
        /// At most this many users.
        limit: u32,
        /// Users after this one (the last of the previous page).
        after: Option<Cow<'a, str>>,
    },
    /// `{"op":"ping"}`
    Ping,
}

/// Why a request was refused: the client-visible `code` of an error reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Code {
    /// Not JSON, not an object, or a field of the wrong type.
    BadJson,
    /// An `id` that is neither a string nor a number.
    BadId,
    /// An `op` this server does not know.
    UnknownOp,
    /// A missing or malformed room name.
    InvalidRoom,
    /// `data` over `max_payload`.
    PayloadTooLarge,
    /// Leave or typing in a room the connection is not in.
    NotMember,
    /// Joining more than `max_rooms_per_conn` rooms.
    TooManyRooms,
    /// Joining a room that has `max_members_per_room` members.
    RoomFull,
    /// Outside what the connection's token (or RESP user) allows.
    Forbidden,
    /// Over a rate limit (`[limits]`).
    RateLimited,
    /// A token that does not verify (a refresh or a room token).
    Unauthorized,
    /// Cluster mode: Redis, which the request needs, is unreachable.
    Unavailable,
}

impl Code {
    /// The snake_case text sent as `"code"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Code::BadJson => "bad_json",
            Code::BadId => "bad_id",
            Code::UnknownOp => "unknown_op",
            Code::InvalidRoom => "invalid_room",
            Code::PayloadTooLarge => "payload_too_large",
            Code::NotMember => "not_member",
            Code::TooManyRooms => "too_many_rooms",
            Code::RoomFull => "room_full",
            Code::Forbidden => "forbidden",
            Code::RateLimited => "rate_limited",
            Code::Unauthorized => "unauthorized",
            Code::Unavailable => "unavailable",
        }
    }
}

/// A request that could not be served, with the client-visible code.
#[derive(Debug, PartialEq)]
pub struct ApiError {
    /// What went wrong, as a code.
    pub code: Code,
    /// Human-readable explanation.
    pub message: String,
}

impl ApiError {
    /// Builds an error.
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
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
    #[serde(borrow)]
    epoch: Option<Cow<'a, str>>,
    #[serde(borrow)]
    after: Option<Cow<'a, str>>,
    #[serde(borrow)]
    token: Option<Cow<'a, str>>,
}

/// Most messages one `history` request returns.
pub const MAX_HISTORY_LIMIT: u32 = 1000;

/// Most users one `members` request returns (and the default).
pub const MAX_MEMBERS_LIMIT: u32 = 1000;

/// Parses one request. The id (raw JSON) is returned whenever the frame was
/// an object with one, so even errors can echo it.
pub fn parse(text: &[u8], max_payload: usize) -> (Option<&str>, Result<Request<'_>, ApiError>) {
    let f: Fields<'_> = match serde_json::from_slice(text) {
        Ok(f) => f,
        Err(e) => return (None, Err(ApiError::new(Code::BadJson, e.to_string()))),
    };
    let id = f.id.map(RawValue::get);
    if let Some(id) = id {
        if !(id.starts_with('"') || id.starts_with('-') || id.as_bytes()[0].is_ascii_digit()) {
            let err = ApiError::new(Code::BadId, "id must be a string or a number");
            return (None, Err(err));
        }
        // The id is echoed as it came: a lone surrogate escape in it would
        // make the reply itself unreadable to strict parsers.
        if super::json::relay_problem(id).is_some() {
            let err = ApiError::new(
                Code::BadId,
                "id has a \\u escape of a lone UTF-16 surrogate",
            );
            return (None, Err(err));
        }
    }
    (id, request(f, max_payload))
}

fn request(f: Fields<'_>, max_payload: usize) -> Result<Request<'_>, ApiError> {
    let Some(op) = f.op else {
        return Err(ApiError::new(Code::BadJson, "missing \"op\""));
    };
    let room = || -> Result<Cow<'_, str>, ApiError> {
        let Some(room) = f.room.clone() else {
            return Err(ApiError::new(
                Code::InvalidRoom,
                format!("\"{op}\" needs a \"room\""),
            ));
        };
        if !valid_room_name(room.as_bytes()) {
            return Err(ApiError::new(
                Code::InvalidRoom,
                "room names are 1-128 bytes of A-Z a-z 0-9 _ . : @ -",
            ));
        }
        Ok(room)
    };
    Ok(match &*op {
        "join" => Request::Join {
            room: room()?,
            since: f.since,
            epoch: f.epoch.as_deref().map(parse_epoch),
            token: f.token,
        },
        "auth" | "refresh" => {
            let Some(token) = f.token else {
                return Err(ApiError::new(Code::BadJson, format!("\"{op}\" needs a \"token\"")));
            };
            if op == "auth" {
                Request::Auth { token }
            } else {
                Request::Refresh { token }
            }
        }
        "leave" => Request::Leave { room: room()? },
        "publish" => {
            let room = room()?;
            let Some(data) = f.data else {
                return Err(ApiError::new(Code::BadJson, "publish needs \"data\""));
            };
            let data = data.get();
            if let Some(problem) = relay_problem(data) {
                return Err(ApiError::new(Code::BadJson, problem));
            }
            if data.len() > max_payload {
                return Err(ApiError::new(
                    Code::PayloadTooLarge,
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
        "members" => Request::Members {
            room: room()?,
            limit: f.limit.map_or(MAX_MEMBERS_LIMIT, |l| {
                l.min(u64::from(MAX_MEMBERS_LIMIT)) as u32
            }),
            after: f.after,
        },
        "ping" => Request::Ping,
        other => {
            return Err(ApiError::new(
                Code::UnknownOp,
                format!(
                "unknown op {:?}; expected auth, refresh, join, leave, publish, typing, history, members or ping",
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_op() {
        let (id, r) = parse(br#"{"op":"join","room":"a","since":4,"id":7}"#, 100);
        assert_eq!(id, Some("7"));
        assert_eq!(
            r.unwrap(),
            Request::Join {
                room: "a".into(),
                since: Some(4),
                epoch: None,
                token: None
            }
        );
        let (_, r) = parse(
            br#"{"op":"join","room":"a","since":4,"epoch":"00000000000000ff"}"#,
            100,
        );
        assert!(matches!(
            r.unwrap(),
            Request::Join {
                epoch: Some(255),
                ..
            }
        ));
        let (_, r) = parse(br#"{"op":"members","room":"a","limit":5,"after":"bo"}"#, 1);
        assert_eq!(
            r.unwrap(),
            Request::Members {
                room: "a".into(),
                limit: 5,
                after: Some("bo".into())
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
        let code = |t: &[u8]| parse(t, 8).1.unwrap_err().code.as_str();
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
        assert_eq!(
            code(br#"{"op":"publish","room":"r","data":"\ud30d\ude00"}"#),
            "bad_json"
        );
        let (id, r) = parse(br#"{"op":"fly","id":3}"#, 8);
        assert_eq!((id, r.is_err()), (Some("3"), true));
    }
}
