//! Replies and events, written straight into byte buffers as JSON text.
//! See docs/protocol.md for the contract.

use super::json::{epoch_text, push_str, push_u64};

fn open(out: &mut Vec<u8>, op: &str, id: Option<&str>) {
    out.extend_from_slice(b"{\"op\":\"");
    out.extend_from_slice(op.as_bytes());
    out.push(b'"');
    if let Some(id) = id {
        out.extend_from_slice(b",\"id\":");
        out.extend_from_slice(id.as_bytes());
    }
}

/// `,"epoch":"<16 hex digits>"`: a string, as a u64 does not fit a
/// JavaScript number.
fn field_epoch(out: &mut Vec<u8>, epoch: u64) {
    out.extend_from_slice(b",\"epoch\":\"");
    out.extend_from_slice(epoch_text(epoch).as_bytes());
    out.push(b'"');
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

/// `{"op":"ok","id":…,"room":R,"seq":S,"epoch":E[,"recovered":false]}`;
/// `at` None leaves seq and epoch out (leave).
pub fn ok(id: Option<&str>, room: &str, at: Option<(u64, u64)>, recovered: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(96 + room.len());
    open(&mut out, "ok", id);
    field_room(&mut out, room);
    if let Some((seq, epoch)) = at {
        out.extend_from_slice(b",\"seq\":");
        push_u64(&mut out, seq);
        field_epoch(&mut out, epoch);
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

/// `{"op":"error","code":C,"room":R,"message":M}`: an event about a
/// room (the connection was taken out of it), not a request's answer.
pub fn room_error(code: &str, room: &str, message: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + room.len() + message.len());
    open(&mut out, "error", None);
    out.extend_from_slice(b",\"code\":\"");
    out.extend_from_slice(code.as_bytes());
    out.push(b'"');
    field_room(&mut out, room);
    out.extend_from_slice(b",\"message\":");
    push_str(&mut out, message);
    out.push(b'}');
    out
}

/// `{"op":"ok","id":…,"exp":N}`: a refreshed token, expiring at `exp`
/// (Unix seconds; 0: never).
pub fn refreshed(id: Option<&str>, exp: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(48);
    open(&mut out, "ok", id);
    out.extend_from_slice(b",\"exp\":");
    push_u64(&mut out, exp);
    out.push(b'}');
    out
}

/// `{"op":"error","id":…,"code":"rate_limited","message":M,"retry_after_ms":N}`
pub fn rate_limited(id: Option<&str>, message: &str, retry_after_ms: u64) -> Vec<u8> {
    let mut out = error(id, "rate_limited", message);
    out.pop();
    out.extend_from_slice(b",\"retry_after_ms\":");
    push_u64(&mut out, retry_after_ms);
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

/// `{"op":"presence","room":R,"user":U,"event":"join"|"leave"[,"info":{…}]}`;
/// `info` (compact JSON, from the user's token) comes with joins.
pub fn presence(room: &str, user: &str, joined: bool, info: Option<&str>) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + room.len() + user.len() + info.map_or(0, str::len));
    open(&mut out, "presence", None);
    field_room(&mut out, room);
    out.push(b',');
    user_event(&mut out, user, joined, info);
    out
}

/// `"user":U,"event":"join"|"leave"[,"info":{…}]}`: the tail of a presence
/// event.
fn user_event(out: &mut Vec<u8>, user: &str, joined: bool, info: Option<&str>) {
    out.extend_from_slice(b"\"user\":");
    push_str(out, user);
    out.extend_from_slice(if joined {
        b",\"event\":\"join\""
    } else {
        b",\"event\":\"leave\""
    });
    if let Some(info) = info {
        out.extend_from_slice(b",\"info\":");
        out.extend_from_slice(info.as_bytes());
    }
    out.push(b'}');
}

/// `{"op":"presence","room":R,"events":[{"user":U,"event":"join"|"leave"},…]}`:
/// a batch of presence events `(user, joined, info)`, oldest first.
pub fn presence_batch<'e>(
    room: &str,
    events: impl ExactSizeIterator<Item = (&'e str, bool, Option<&'e str>)>,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + room.len() + events.len() * 40);
    open(&mut out, "presence", None);
    field_room(&mut out, room);
    out.extend_from_slice(b",\"events\":[");
    for (i, (user, joined, info)) in events.enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.push(b'{');
        user_event(&mut out, user, joined, info);
    }
    out.extend_from_slice(b"]}");
    out
}

/// `{"op":"reset","room":R,"epoch":E}`: cluster mode, the room's sequence
/// restarted under `epoch` (its history in Redis was lost); messages go on
/// from seq 1 of it.
pub fn reset(room: &str, epoch: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + room.len());
    open(&mut out, "reset", None);
    field_room(&mut out, room);
    field_epoch(&mut out, epoch);
    out.push(b'}');
    out
}

/// `{"op":"gap","room":R,"epoch":E,"from":F,"to":T}`: cluster mode,
/// messages `from..=to` of the room are gone (trimmed from its history
/// before this node could deliver them); messages go on after `to`.
pub fn gap(room: &str, epoch: u64, from: u64, to: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(96 + room.len());
    open(&mut out, "gap", None);
    field_room(&mut out, room);
    field_epoch(&mut out, epoch);
    out.extend_from_slice(b",\"from\":");
    push_u64(&mut out, from);
    out.extend_from_slice(b",\"to\":");
    push_u64(&mut out, to);
    out.push(b'}');
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
    epoch: Option<u64>,
    messages: impl Iterator<Item = &'m [u8]>,
    more: bool,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    open(&mut out, "history", id);
    field_room(&mut out, room);
    if let Some(epoch) = epoch {
        field_epoch(&mut out, epoch);
    }
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

/// `{"op":"members","id":…,"room":R,"users":[…],"count":N[,"info":{U:{…},…}][,"more":true]}`:
/// one page of the room's distinct users `(user, info)`, sorted; `count`
/// is all of them, and `more` says a page follows (ask with `after` = the
/// last user here). `info` maps the users of the page whose token had one
/// to it, and is left out when none did.
pub fn members(
    id: Option<&str>,
    room: &str,
    users: &[(&str, Option<&str>)],
    count: usize,
    more: bool,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + room.len() + users.len() * 16);
    open(&mut out, "members", id);
    field_room(&mut out, room);
    out.extend_from_slice(b",\"users\":[");
    for (i, (u, _)) in users.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        push_str(&mut out, u);
    }
    let mut with_info = users
        .iter()
        .filter_map(|(u, i)| Some((u, (*i)?)))
        .peekable();
    if with_info.peek().is_some() {
        out.extend_from_slice(b"],\"info\":{");
        for (n, (u, info)) in with_info.enumerate() {
            if n > 0 {
                out.push(b',');
            }
            push_str(&mut out, u);
            out.push(b':');
            out.extend_from_slice(info.as_bytes());
        }
        out.push(b'}');
    } else {
        out.push(b']');
    }
    out.extend_from_slice(b",\"count\":");
    push_u64(&mut out, count as u64);
    if more {
        out.extend_from_slice(b",\"more\":true");
    }
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
    fn replies_are_valid_json() {
        assert_eq!(
            v(welcome("a\"b", 5, 1)),
            json!({"op":"welcome","user":"a\"b","conn":"5","shard":1})
        );
        assert_eq!(
            v(ok(Some("\"q\""), "r", Some((3, 0xab)), false)),
            json!({"op":"ok","id":"q","room":"r","seq":3,"epoch":"00000000000000ab","recovered":false})
        );
        assert_eq!(v(ok(None, "r", None, true)), json!({"op":"ok","room":"r"}));
        assert_eq!(
            v(error(Some("1"), "bad_json", "x\ny")),
            json!({"op":"error","id":1,"code":"bad_json","message":"x\ny"})
        );
        assert_eq!(
            v(room_error("forbidden", "r\"", "gone")),
            json!({"op":"error","code":"forbidden","room":"r\"","message":"gone"})
        );
        assert_eq!(v(pong(None)), json!({"op":"pong"}));
        assert_eq!(
            v(rate_limited(Some("1"), "slow down", 250)),
            json!({"op":"error","id":1,"code":"rate_limited","message":"slow down","retry_after_ms":250})
        );
        assert_eq!(v(refreshed(None, 99)), json!({"op":"ok","exp":99}));
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
            v(presence("r", "u", true, None)),
            json!({"op":"presence","room":"r","user":"u","event":"join"})
        );
        assert_eq!(
            v(presence("r", "u", true, Some(r#"{"n":"U"}"#))),
            json!({"op":"presence","room":"r","user":"u","event":"join","info":{"n":"U"}})
        );
        assert_eq!(
            v(presence_batch(
                "r",
                [("a", true, Some("{}")), ("b", false, None)].into_iter()
            )),
            json!({"op":"presence","room":"r","events":[
                {"user":"a","event":"join","info":{}},{"user":"b","event":"leave"}]})
        );
        assert_eq!(
            v(reset("r", 1)),
            json!({"op":"reset","room":"r","epoch":"0000000000000001"})
        );
        assert_eq!(
            v(gap("r", 1, 5, 9)),
            json!({"op":"gap","room":"r","epoch":"0000000000000001","from":5,"to":9})
        );
        assert_eq!(
            v(typing("r", "u", false)),
            json!({"op":"typing","room":"r","user":"u","state":false})
        );
        assert_eq!(
            v(history(
                None,
                "r",
                Some(1),
                [&b"{}"[..], b"[]"].into_iter(),
                false
            )),
            json!({"op":"history","room":"r","epoch":"0000000000000001","messages":[{},[]]})
        );
        assert_eq!(
            v(history(None, "r", None, std::iter::empty(), true)),
            json!({"op":"history","room":"r","messages":[],"more":true})
        );
        assert_eq!(
            v(members(None, "r", &[("a", None), ("b", None)], 2, false)),
            json!({"op":"members","room":"r","users":["a","b"],"count":2})
        );
        assert_eq!(
            v(members(
                None,
                "r",
                &[("a", None), ("b", Some("[1]"))],
                2,
                false
            )),
            json!({"op":"members","room":"r","users":["a","b"],"info":{"b":[1]},"count":2})
        );
        assert_eq!(
            v(members(None, "r", &[("a", None)], 5, true)),
            json!({"op":"members","room":"r","users":["a"],"count":5,"more":true})
        );
    }
}
