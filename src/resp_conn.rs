//! RESP connections: the Redis pub/sub subset, mapped onto rooms.
//!
//! A channel is a room. `SUBSCRIBE` joins (its confirmation is sent once the
//! room's home has the member, so anything published after the
//! confirmation is delivered), `PUBLISH` sequences through the home and
//! answers with the number of members, and subscribers get `message`
//! pushes built once per shard.

use std::rc::Rc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use monoio::net::TcpStream;

use crate::conn::{self, Conn, Kind};
use crate::node::{resp_error, resp_req, Node, ReadStep};
use crate::resp::{self, encode, Command, Proto};
use crate::room::valid_room_name;
use crate::stats::ErrorKind;
use crate::ws_conn::valid_user_name;

const READ_CHUNK: usize = 16 * 1024;
const CLOSE_LINGER: Duration = Duration::from_secs(2);

/// Serves one accepted RESP connection to its end.
pub async fn serve(node: Rc<Node>, stream: TcpStream) {
    conn::prepare_socket(&stream);
    let id = node.next_conn_id();
    let user: Rc<str> = default_name(&node, id).into();
    let conn = Rc::new(Conn::new(
        id,
        stream,
        Kind::Resp,
        user,
        node.cfg.outbound_limit,
    ));
    node.register(&conn);
    node.stats.accepted.inc();
    session(&node, &conn).await;
    if conn.is_closing() {
        Box::pin(conn::linger(&conn, CLOSE_LINGER)).await;
    }
    node.unregister(&conn);
}

fn default_name(node: &Node, id: u64) -> String {
    format!("resp-{}-{}", node.id, id & 0xffff_ffff_ffff)
}

async fn session(node: &Rc<Node>, conn: &Rc<Conn>) {
    let mut buf = BytesMut::new();
    let mut parser = resp::Parser::default();
    let max_bulk = node.cfg.max_payload + 1024;
    loop {
        loop {
            if conn.is_closing() {
                return;
            }
            match parser.parse(&mut buf, max_bulk) {
                Ok(Some(cmd)) => on_command(node, conn, cmd),
                Ok(None) => break,
                Err(e) => {
                    node.stats.error(ErrorKind::Resp);
                    conn.push_last(Some(e.reply()));
                    node.flush(conn);
                    return;
                }
            }
        }
        if node.backlogged() {
            Box::pin(node.wait_backlog(conn)).await;
        }
        match node.read_step(conn, &mut buf, READ_CHUNK) {
            ReadStep::Data => conn::yield_now().await,
            ReadStep::Wait => {
                if conn.stream.readable(false).await.is_err() {
                    return;
                }
            }
            ReadStep::End => return,
        }
    }
}

fn proto(conn: &Conn) -> Proto {
    if conn.resp3.get() {
        Proto::Resp3
    } else {
        Proto::Resp2
    }
}

fn reply(node: &Node, conn: &Rc<Conn>, f: impl FnOnce(&mut BytesMut)) {
    let mut out = BytesMut::with_capacity(64);
    f(&mut out);
    node.send(conn, out.freeze());
}

fn error(node: &Node, conn: &Rc<Conn>, text: &str) {
    node.stats.error(ErrorKind::Resp);
    node.send(conn, resp_error(text));
}

fn channel_error(ch: &[u8]) -> String {
    format!(
        "ERR invalid channel name '{}': channels are rooms, 1-128 bytes of A-Z a-z 0-9 _ . : @ -",
        String::from_utf8_lossy(&ch[..ch.len().min(64)])
    )
}

fn on_command(node: &Rc<Node>, conn: &Rc<Conn>, cmd: Command) {
    let p = proto(conn);
    let subscribed = !conn.rooms.borrow().is_empty();
    // Redis's rule for RESP2 connections in subscribed mode.
    if subscribed && p == Proto::Resp2 {
        let allowed = matches!(
            cmd,
            Command::Subscribe(_)
                | Command::Unsubscribe(_)
                | Command::PSubscribe(_)
                | Command::PUnsubscribe(_)
                | Command::Ping(_)
                | Command::Quit
                | Command::Reset
                | Command::Empty
        );
        if !allowed {
            let name = command_name(&cmd);
            return error(
                node,
                conn,
                &format!("ERR Can't execute '{name}': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context"),
            );
        }
    }
    match cmd {
        Command::Ping(msg) => reply(node, conn, |o| encode::pong(o, msg.as_deref(), subscribed, p)),
        Command::Echo(msg) => reply(node, conn, |o| encode::bulk(o, &msg)),
        Command::Subscribe(channels) => {
            for ch in channels {
                let Some(room) = std::str::from_utf8(&ch).ok().filter(|r| valid_room_name(r.as_bytes())) else {
                    node.stats.error(ErrorKind::InvalidRoom);
                    node.send(conn, resp_error(&channel_error(&ch)));
                    continue;
                };
                if node.is_member(conn, room) {
                    // Already subscribed: confirm at once, as Redis does.
                    let count = conn.rooms.borrow().len() as i64;
                    reply(node, conn, |o| encode::subscription(o, "subscribe", Some(&ch), count, p));
                    continue;
                }
                let count = conn.rooms.borrow().len() as u32 + 1;
                let max = node.cfg.max_rooms_per_conn;
                if count as usize > max {
                    node.stats.error(ErrorKind::Limit);
                    node.send(conn, resp_error(&format!("ERR a connection may subscribe to at most {max} channels")));
                    continue;
                }
                let ticket = conn.defer();
                if let Err(e) = node.join(conn, room, None, &resp_req(ticket, count)) {
                    conn.fulfil(ticket, resp_error(&format!("ERR {}", e.message)));
                }
            }
        }
        Command::Unsubscribe(channels) => {
            let channels: Vec<Bytes> = if channels.is_empty() {
                conn.rooms.borrow().iter().map(|(r, _)| Bytes::copy_from_slice(r.as_bytes())).collect()
            } else {
                channels
            };
            if channels.is_empty() {
                reply(node, conn, |o| encode::subscription(o, "unsubscribe", None, 0, p));
            }
            for ch in channels {
                if let Ok(room) = std::str::from_utf8(&ch) {
                    node.leave(conn, room);
                }
                let count = conn.rooms.borrow().len() as i64;
                reply(node, conn, |o| encode::subscription(o, "unsubscribe", Some(&ch), count, p));
            }
        }
        Command::PSubscribe(_) | Command::PUnsubscribe(_) => error(
            node,
            conn,
            "ERR pattern subscriptions are not supported: channels are rooms with a home shard; SUBSCRIBE to each by name",
        ),
        Command::Publish { channel, payload } => {
            let Some(room) = std::str::from_utf8(&channel).ok().filter(|r| valid_room_name(r.as_bytes())) else {
                node.stats.error(ErrorKind::InvalidRoom);
                return node.send(conn, resp_error(&channel_error(&channel)));
            };
            if payload.len() > node.cfg.max_payload {
                node.stats.error(ErrorKind::TooLarge);
                let max = node.cfg.max_payload;
                return node.send(conn, resp_error(&format!("ERR payload too large: {} bytes; the limit is {max}", payload.len())));
            }
            let ticket = conn.defer();
            node.publish(conn, room, &payload, true, &resp_req(ticket, 0));
        }
        Command::Hello { proto: want, setname } => {
            if let Some(want) = want {
                conn.resp3.set(want == Proto::Resp3);
            }
            if let Some(name) = setname {
                if !set_name(node, conn, &name) {
                    return;
                }
            }
            reply(node, conn, |o| encode::hello(o, proto(conn), conn.id as i64));
        }
        Command::ClientSetName(name) => {
            if set_name(node, conn, &name) {
                reply(node, conn, |o| encode::simple(o, "OK"));
            }
        }
        Command::ClientGetName => {
            let name = conn.user.borrow().clone();
            reply(node, conn, |o| encode::bulk(o, name.as_bytes()));
        }
        Command::ClientId => reply(node, conn, |o| encode::integer(o, conn.id as i64)),
        Command::ClientInfo => {
            let info = format!(
                "id={} name={} shard={} sub={} resp={}\n",
                conn.id,
                conn.user.borrow(),
                node.id,
                conn.rooms.borrow().len(),
                if conn.resp3.get() { 3 } else { 2 }
            );
            reply(node, conn, |o| encode::bulk(o, info.as_bytes()));
        }
        Command::ClientOther(_) => reply(node, conn, |o| encode::simple(o, "OK")),
        Command::Select(db) => {
            if db == 0 {
                reply(node, conn, |o| encode::simple(o, "OK"));
            } else {
                error(node, conn, "ERR DB index is out of range");
            }
        }
        Command::Command(sub) => reply(node, conn, |o| encode::command_reply(o, sub, p)),
        Command::Quit => {
            conn.push_last(Some(Bytes::from_static(b"+OK\r\n")));
            node.flush(conn);
        }
        Command::Reset => {
            let rooms: Vec<Rc<str>> = conn.rooms.borrow().iter().map(|(r, _)| r.clone()).collect();
            for room in rooms {
                node.leave(conn, &room);
            }
            conn.resp3.set(false);
            *conn.user.borrow_mut() = default_name(node, conn.id).into();
            reply(node, conn, |o| encode::simple(o, "RESET"));
        }
        Command::Info(_) => {
            let info = format!(
                "# Server\r\nredis_version:7.2.0\r\nredis_mode:standalone\r\nringcast_version:{}\r\nringcast_shard:{}\r\n",
                env!("CARGO_PKG_VERSION"),
                node.id
            );
            reply(node, conn, |o| encode::bulk(o, info.as_bytes()));
        }
        Command::Empty => {}
        other => {
            let text = other.error_text().unwrap_or_else(|| "ERR unsupported command".into());
            error(node, conn, &text);
        }
    }
}

fn set_name(node: &Node, conn: &Rc<Conn>, name: &[u8]) -> bool {
    if name.is_empty() {
        *conn.user.borrow_mut() = default_name(node, conn.id).into();
        return true;
    }
    match std::str::from_utf8(name)
        .ok()
        .filter(|n| valid_user_name(n) && !n.contains(' '))
    {
        Some(n) => {
            *conn.user.borrow_mut() = n.into();
            true
        }
        None => {
            error(
                node,
                conn,
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
