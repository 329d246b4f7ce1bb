//! RESP connections: the Redis pub/sub subset, mapped onto rooms.
//!
//! A channel is a room. `SUBSCRIBE` joins (its confirmation is sent once the
//! room's home has the member, so anything published after the
//! confirmation is delivered), `PUBLISH` sequences through the home and
//! answers with the number of members, and subscribers get `message`
//! pushes built once per shard.

use std::rc::Rc;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use monoio::net::TcpStream;

use super::{read_loop, Parsed, Protocol};
use crate::access::Access;
use crate::conn::io::{answer_and_close, linger, prepare_socket};
use crate::conn::order::Frame;
use crate::conn::{Conn, Kind};
use crate::proto::chat::{valid_room_name, valid_user_name};
use crate::proto::resp::{encode, publish_in_place, Command, Parser, Proto};
use crate::shard::admission::Refusal;
use crate::shard::stats::{unix_ms, ErrorKind};
use crate::shard::wire::ReplyTo;
use crate::shard::{Admitted, Shard};

const CLOSE_LINGER: Duration = Duration::from_secs(2);

/// Serves one accepted RESP connection to its end.
/// The connection holds its place in the admission counts (`shard`)
/// until the task ends, however it ends.
pub async fn serve(shard: Admitted, stream: TcpStream) {
    prepare_socket(
        &stream,
        shard.cfg.tcp_keepalive_s,
        shard.cfg.tcp_user_timeout_ms,
    );
    let id = shard.next_conn_id();
    let user: Rc<str> = default_name(&shard, id).into();
    let conn = Rc::new(Conn::new(
        id,
        stream,
        Kind::Resp,
        user,
        shard.cfg.outbound_limit,
        shard.now(),
    ));
    shard.register(&conn);
    shard.stats.accepted.inc();
    // RESP clients are few and busy (backends): they keep their tasks.
    read_loop::<Commands>(&shard, &conn, BytesMut::new(), false).await;
    if !conn.is_closing() {
        Box::pin(shard.finish(&conn, CLOSE_LINGER)).await;
    }
    if conn.is_closing() {
        Box::pin(linger(&conn, CLOSE_LINGER)).await;
    }
    shard.unregister(&conn);
}

/// Turns away a connection over an admission limit with Redis's own error
/// for a full server.
pub fn refuse(stream: TcpStream, why: Refusal) {
    let line: &[u8] = match why {
        Refusal::Server => b"-ERR max number of clients reached\r\n",
        Refusal::PerSource | Refusal::Rate => {
            b"-ERR max number of clients from this address reached\r\n"
        }
    };
    answer_and_close(&stream, line);
}

fn default_name(shard: &Shard, id: u64) -> String {
    format!("resp-{}-{}", shard.id, id & 0xffff_ffff_ffff)
}

/// The RESP side of the read loop: requests in, commands run.
struct Commands(Parser);

impl Protocol for Commands {
    fn new(shard: &Shard, _: &Conn) -> Self {
        Commands(Parser::default().limit_query(shard.cfg.resp_query_buffer_limit))
    }

    fn is_idle(&self) -> bool {
        self.0.is_idle()
    }

    fn parse(&mut self, shard: &Rc<Shard>, conn: &Rc<Conn>, buf: &mut BytesMut) -> Parsed {
        let max_bulk = shard.cfg.max_payload + 1024;
        loop {
            if conn.is_closing() {
                return Parsed::Done;
            }
            // The hot command, read in place when nothing stands in its
            // way (no partial request, no login owed, not a RESP2
            // subscriber, for whom PUBLISH is an error).
            if self.0.is_idle() {
                if let Some((channel, payload, used)) = publish_in_place(buf, max_bulk) {
                    let blocked = awaiting_auth(shard, conn)
                        || (conn.resp_proto() == Proto::Resp2 && !conn.rooms.borrow().is_empty());
                    if !blocked {
                        publish(shard, conn, &buf[channel], &buf[payload]);
                        buf.advance(used);
                        continue;
                    }
                }
            }
            match self.0.parse(buf, max_bulk) {
                Ok(Some(cmd)) => on_command(shard, conn, cmd),
                Ok(None) => return Parsed::More,
                Err(e) => {
                    shard.stats.error(ErrorKind::Resp);
                    conn.push_last(Some(e.reply()));
                    shard.flush(conn);
                    return Parsed::Done;
                }
            }
        }
    }
}

fn reply(shard: &Shard, conn: &Rc<Conn>, f: impl FnOnce(&mut BytesMut)) {
    let mut out = BytesMut::with_capacity(64);
    f(&mut out);
    shard.send(conn, out.freeze());
}

fn error(shard: &Shard, conn: &Rc<Conn>, kind: ErrorKind, text: &str) {
    shard.stats.error(kind);
    shard.send(conn, encode::error_frame(text));
}

/// A channel's room name, or the error that says why it cannot be one.
fn room_of(ch: &[u8]) -> Result<&str, String> {
    std::str::from_utf8(ch)
        .ok()
        .filter(|r| valid_room_name(r.as_bytes()))
        .ok_or_else(|| {
            format!(
                "ERR invalid channel name '{}': channels are rooms, 1-128 bytes of A-Z a-z 0-9 _ . : @ -",
                String::from_utf8_lossy(&ch[..ch.len().min(64)])
            )
        })
}

fn on_command(shard: &Rc<Shard>, conn: &Rc<Conn>, cmd: Command) {
    if cmd == Command::SecurityWarning {
        return cross_protocol(shard, conn);
    }
    if awaiting_auth(shard, conn) && !allowed_before_auth(&cmd) {
        let text = match cmd {
            Command::Hello { .. } => "NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time",
            _ => "NOAUTH Authentication required.",
        };
        return error(shard, conn, ErrorKind::Unauthorized, text);
    }
    let p = conn.resp_proto();
    let subscribed = !conn.rooms.borrow().is_empty();
    // Redis's rule for RESP2 connections in subscribed mode.
    if subscribed && p == Proto::Resp2 && !allowed_when_subscribed(&cmd) {
        let name = command_name(&cmd);
        return error(
            shard,
            conn,
            ErrorKind::Resp,
            &format!("ERR Can't execute '{name}': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context"),
        );
    }
    match cmd {
        Command::Ping(msg) => reply(shard, conn, |o| {
            encode::pong(o, msg.as_deref(), subscribed, p)
        }),
        Command::Echo(msg) => reply(shard, conn, |o| encode::bulk(o, &msg)),
        Command::Subscribe(channels) => subscribe(shard, conn, channels),
        Command::Unsubscribe(channels) => unsubscribe(shard, conn, channels),
        Command::PSubscribe(_) | Command::PUnsubscribe(_) => error(
            shard,
            conn,
            ErrorKind::Resp,
            "ERR pattern subscriptions are not supported: channels are rooms with a home shard; SUBSCRIBE to each by name",
        ),
        Command::Publish { channel, payload } => publish(shard, conn, &channel, &payload),
        Command::Auth { user, password } => {
            if log_in(shard, conn, user.as_deref(), &password) {
                reply(shard, conn, |o| encode::simple(o, "OK"));
            }
        }
        Command::Quit => {
            conn.push_last(Some(Bytes::from_static(b"+OK\r\n")));
            shard.flush(conn);
        }
        Command::Reset => {
            let rooms: Vec<Rc<str>> = conn.rooms.borrow().iter().map(|(r, _)| r.clone()).collect();
            for room in rooms {
                shard.leave(conn, &room);
            }
            conn.resp3.set(false);
            conn.set_user(default_name(shard, conn.id).into());
            // As Redis: back to the default user, so AUTH again.
            conn.with_access(|a| *a = None);
            reply(shard, conn, |o| encode::simple(o, "RESET"));
        }
        Command::Empty => {}
        other => connection_command(shard, conn, other),
    }
}

/// `POST` or `Host:` as a command: an HTTP request, which any web page can
/// make a browser send to this port, its body lines read as inline
/// commands. As Redis does, the connection is closed without a reply and
/// nothing after it runs; the warning is logged at most once a minute (for
/// the whole process), so a page repeating it cannot flood the log.
fn cross_protocol(shard: &Rc<Shard>, conn: &Rc<Conn>) {
    use std::sync::atomic::{AtomicU64, Ordering};
    /// Unix seconds of the last warning.
    static LOGGED: AtomicU64 = AtomicU64::new(0);
    shard.stats.error(ErrorKind::Resp);
    let now = unix_ms() / 1000;
    let last = LOGGED.load(Ordering::Relaxed);
    if now.saturating_sub(last) >= 60
        && LOGGED
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    {
        let peer = conn.stream.peer_addr().ok();
        tracing::warn!(
            ?peer,
            "Possible SECURITY ATTACK detected. It looks like somebody is sending POST or Host: commands to the RESP port. This is likely a web page using cross-protocol scripting to publish through a browser. Connection aborted."
        );
    }
    conn.push_last(None);
    shard.flush(conn);
}

/// The commands a RESP2 connection may send while subscribed.
fn allowed_when_subscribed(cmd: &Command) -> bool {
    matches!(
        cmd,
        Command::Subscribe(_)
            | Command::Unsubscribe(_)
            | Command::PSubscribe(_)
            | Command::PUnsubscribe(_)
            | Command::Ping(_)
            | Command::Quit
            | Command::Reset
            | Command::Empty
    )
}

/// `SUBSCRIBE`: each channel joins its room; the confirmation waits in its
/// place in the reply order until the room's home has the member.
fn subscribe(shard: &Rc<Shard>, conn: &Rc<Conn>, channels: Vec<Bytes>) {
    let p = conn.resp_proto();
    // As Redis: a channel the user may not use refuses the whole command.
    let denied = channels
        .iter()
        .filter_map(|ch| room_of(ch).ok())
        .any(|room| !conn.with_access(|a| a.as_ref().is_none_or(|a| a.may_join(room))));
    if denied {
        return no_permission(shard, conn);
    }
    for ch in channels {
        let room = match room_of(&ch) {
            Ok(room) => room,
            Err(text) => {
                error(shard, conn, ErrorKind::InvalidRoom, &text);
                continue;
            }
        };
        if shard.is_member(conn, room) {
            // Already subscribed: confirm at once, as Redis does.
            let count = conn.rooms.borrow().len() as i64;
            reply(shard, conn, |o| {
                encode::subscription(o, "subscribe", Some(&ch), count, p)
            });
            continue;
        }
        let count = conn.rooms.borrow().len() as u32 + 1;
        let max = shard.cfg.max_rooms_per_conn;
        if count as usize > max {
            error(
                shard,
                conn,
                ErrorKind::Limit,
                &format!("ERR a connection may subscribe to at most {max} channels"),
            );
            continue;
        }
        let ticket = conn.defer();
        if let Err(e) = shard.join(conn, room, (None, None), ReplyTo::Resp { ticket, count }) {
            let text = format!("ERR {}", e.message);
            shard.fulfil(conn, ticket, Frame::from(encode::error_frame(&text)));
        }
    }
}

/// `UNSUBSCRIBE`: leaves each channel's room (every room when none is
/// named), confirming each.
fn unsubscribe(shard: &Rc<Shard>, conn: &Rc<Conn>, channels: Vec<Bytes>) {
    let p = conn.resp_proto();
    let channels: Vec<Bytes> = if channels.is_empty() {
        conn.rooms
            .borrow()
            .iter()
            .map(|(r, _)| Bytes::copy_from_slice(r.as_bytes()))
            .collect()
    } else {
        channels
    };
    if channels.is_empty() {
        reply(shard, conn, |o| {
            encode::subscription(o, "unsubscribe", None, 0, p)
        });
    }
    for ch in channels {
        if let Ok(room) = std::str::from_utf8(&ch) {
            shard.leave(conn, room);
        }
        let count = conn.rooms.borrow().len() as i64;
        reply(shard, conn, |o| {
            encode::subscription(o, "unsubscribe", Some(&ch), count, p)
        });
    }
}

/// `PUBLISH`: sequenced by the room's home, answered with its receivers.
fn publish(shard: &Rc<Shard>, conn: &Rc<Conn>, channel: &[u8], payload: &[u8]) {
    let room = match room_of(channel) {
        Ok(room) => room,
        Err(text) => return error(shard, conn, ErrorKind::InvalidRoom, &text),
    };
    if !permitted(shard, conn, room, true) {
        return;
    }
    if payload.len() > shard.cfg.max_payload {
        let max = shard.cfg.max_payload;
        let text = format!(
            "ERR payload too large: {} bytes; the limit is {max}",
            payload.len()
        );
        return error(shard, conn, ErrorKind::TooLarge, &text);
    }
    shard.publish_resp(conn, room, payload);
}

/// The commands about the connection itself: HELLO, CLIENT, SELECT,
/// COMMAND, INFO, and the errors the parser already worded.
fn connection_command(shard: &Rc<Shard>, conn: &Rc<Conn>, cmd: Command) {
    let p = conn.resp_proto();
    match cmd {
        Command::Hello {
            proto: want,
            auth,
            setname,
        } => {
            if let Some((user, password)) = auth {
                if !log_in(shard, conn, Some(&user), &password) {
                    return;
                }
            }
            if let Some(want) = want {
                conn.resp3.set(want == Proto::Resp3);
            }
            if let Some(name) = setname {
                if !set_name(shard, conn, &name) {
                    return;
                }
            }
            reply(shard, conn, |o| {
                encode::hello(o, conn.resp_proto(), conn.id as i64)
            });
        }
        Command::ClientSetName(name) => {
            if set_name(shard, conn, &name) {
                reply(shard, conn, |o| encode::simple(o, "OK"));
            }
        }
        Command::ClientGetName => {
            let name = conn.user();
            reply(shard, conn, |o| encode::bulk(o, name.as_bytes()));
        }
        Command::ClientId => reply(shard, conn, |o| encode::integer(o, conn.id as i64)),
        Command::ClientInfo => {
            let info = format!(
                "id={} name={} shard={} sub={} resp={}\n",
                conn.id,
                conn.user(),
                shard.id,
                conn.rooms.borrow().len(),
                if conn.resp3.get() { 3 } else { 2 }
            );
            reply(shard, conn, |o| encode::bulk(o, info.as_bytes()));
        }
        Command::ClientOther(_) => reply(shard, conn, |o| encode::simple(o, "OK")),
        Command::Select(0) => reply(shard, conn, |o| encode::simple(o, "OK")),
        Command::Select(_) => error(shard, conn, ErrorKind::Resp, "ERR DB index is out of range"),
        Command::Command(sub) => reply(shard, conn, |o| encode::command_reply(o, sub, p)),
        Command::Info(_) => {
            let info = format!(
                "# Server\r\nredis_version:7.2.0\r\nredis_mode:standalone\r\nringcast_version:{}\r\nringcast_shard:{}\r\n",
                env!("CARGO_PKG_VERSION"),
                shard.id
            );
            reply(shard, conn, |o| encode::bulk(o, info.as_bytes()));
        }
        other => {
            let text = other
                .error_text()
                .unwrap_or_else(|| "ERR unsupported command".into());
            error(shard, conn, ErrorKind::Resp, &text);
        }
    }
}

/// True when this server wants `AUTH` and the connection has not.
fn awaiting_auth(shard: &Shard, conn: &Conn) -> bool {
    shard.authority.resp.required() && conn.with_access(|a| a.is_none())
}

/// What a connection may send before `AUTH`, as in Redis.
fn allowed_before_auth(cmd: &Command) -> bool {
    match cmd {
        Command::Auth { .. } | Command::Quit | Command::Empty => true,
        Command::Hello { auth, .. } => auth.is_some(),
        _ => false,
    }
}

/// `AUTH [user] password` (or HELLO's): on success the connection is that
/// user, with its channels; else Redis's error, and false. Without any
/// password configured, as Redis 7 with its `nopass` default user: `AUTH
/// password` is an error, `AUTH default anything` (and `HELLO … AUTH
/// default anything`) succeeds and changes nothing, any other user is
/// WRONGPASS.
fn log_in(shard: &Shard, conn: &Rc<Conn>, user: Option<&[u8]>, password: &[u8]) -> bool {
    let auth = &shard.authority.resp;
    if !auth.required() && user.is_none() {
        error(
            shard,
            conn,
            ErrorKind::Unauthorized,
            "ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?",
        );
        return false;
    }
    let Some(login) = auth.login(user, password) else {
        error(
            shard,
            conn,
            ErrorKind::Unauthorized,
            "WRONGPASS invalid username-password pair or user is disabled.",
        );
        return false;
    };
    if !auth.required() {
        // The default user, as the connection already was.
        return true;
    }
    if login.user != "default" {
        // A publish carries the RESP user as its user.
        conn.set_user(login.user.into());
    }
    conn.with_access(|a| {
        *a = Some(Box::new(Access {
            grants: Some(login.grants),
            ..Access::default()
        }))
    });
    true
}

/// The channels a RESP user may not use get Redis's error.
fn permitted(shard: &Shard, conn: &Rc<Conn>, room: &str, publish: bool) -> bool {
    let ok = conn.with_access(|a| match a {
        None => true,
        Some(a) if publish => a.may_publish(room),
        Some(a) => a.may_join(room),
    });
    if !ok {
        no_permission(shard, conn);
    }
    ok
}

fn no_permission(shard: &Shard, conn: &Rc<Conn>) {
    error(
        shard,
        conn,
        ErrorKind::Forbidden,
        "NOPERM this user has no permissions to access one of the channels used as arguments",
    );
}

fn set_name(shard: &Shard, conn: &Rc<Conn>, name: &[u8]) -> bool {
    if shard.authority.resp.required() {
        // The user is who AUTH said; a name does not change it.
        return true;
    }
    if name.is_empty() {
        conn.set_user(default_name(shard, conn.id).into());
        return true;
    }
    match std::str::from_utf8(name)
        .ok()
        .filter(|n| valid_user_name(n) && !n.contains(' '))
    {
        Some(n) => {
            conn.set_user(n.into());
            true
        }
        None => {
            error(
                shard,
                conn,
                ErrorKind::Resp,
                "ERR Client names cannot contain spaces, newlines or special characters.",
            );
            false
        }
    }
}

fn command_name(cmd: &Command) -> &'static str {
    match cmd {
        Command::Publish { .. } => "publish",
        Command::Echo(_) => "echo",
        Command::Hello { .. } => "hello",
        Command::Auth { .. } => "auth",
        Command::ClientSetName(_)
        | Command::ClientGetName
        | Command::ClientId
        | Command::ClientInfo
        | Command::ClientOther(_) => "client",
        Command::Select(_) => "select",
        Command::Command(_) => "command",
        Command::Info(_) => "info",
        _ => "command",
    }
}
