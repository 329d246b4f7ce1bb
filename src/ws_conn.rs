//! WebSocket connections: the HTTP upgrade, then the chat protocol on `/ws`
//! or plain echo on `/echo`.

use std::rc::Rc;
use std::time::Duration;

use bytes::BytesMut;
use monoio::net::TcpStream;

use crate::api::{self, ApiError, Request};
use crate::conn::{self, Conn, Kind};
use crate::node::{Node, ReadStep};
use crate::stats::ErrorKind;
use crate::ws::{self, Decoder, Message, OpCode};

/// How long a client may take to send its upgrade request.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long to wait for the peer's close after ours.
const CLOSE_LINGER: Duration = Duration::from_secs(5);
/// Room for the JSON envelope around a payload of `max_payload` bytes: a
/// request frame bigger than both is closed with 1009.
const ENVELOPE_SLACK: usize = 4096;
/// Read size; also what one read may bring of a flood before others run.
const READ_CHUNK: usize = 16 * 1024;

/// Longest user name, in bytes.
pub const MAX_USER_NAME: usize = 64;

/// Checks a user name: 1–64 bytes, printable, no quotes or backslashes.
pub fn valid_user_name(name: &str) -> bool {
    (1..=MAX_USER_NAME).contains(&name.len())
        && name
            .chars()
            .all(|c| !c.is_control() && c != '"' && c != '\\')
}

fn send_raw_and_close(stream: &TcpStream, bytes: &[u8]) {
    use std::os::fd::AsRawFd;
    // SAFETY: a non-blocking send of a small reply on an fd we own; if the
    // socket cannot take it now the client gets just the close.
    unsafe {
        libc::send(
            stream.as_raw_fd(),
            bytes.as_ptr() as *const libc::c_void,
            bytes.len(),
            libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
        );
        libc::shutdown(stream.as_raw_fd(), libc::SHUT_WR);
    }
}

/// Serves one accepted WebSocket-port connection to its end.
///
/// The handshake and the closing linger run as boxed futures of their own,
/// so the task that stays alive while a connection idles holds only the
/// session's state (a connection's most expensive resource is this task).
pub async fn serve(node: Rc<Node>, stream: TcpStream) {
    let Some((conn, buf)) = Box::pin(handshake(&node, stream)).await else {
        return;
    };
    session(&node, &conn, buf).await;
    if conn.is_closing() {
        Box::pin(conn::linger(&conn, CLOSE_LINGER)).await;
    }
    node.unregister(&conn);
}

/// Reads and answers the upgrade request; on success the connection is
/// registered and welcomed, and the bytes after the request are returned.
async fn handshake(node: &Rc<Node>, stream: TcpStream) -> Option<(Rc<Conn>, BytesMut)> {
    conn::prepare_socket(&stream);
    let mut buf = BytesMut::new();
    let head = monoio::time::timeout(HANDSHAKE_TIMEOUT, async {
        loop {
            match ws::parse_request(&buf) {
                Ok(Some(parsed)) => return Ok(parsed),
                Ok(None) => {}
                Err(e) => return Err(Some(e)),
            }
            match conn::read_some(&stream, &mut buf, 4096).await {
                Ok(0) | Err(_) => return Err(None),
                Ok(n) => node.stats.bytes_in.add(n as u64),
            }
        }
    })
    .await;
    let (req, used) = match head {
        Ok(Ok(parsed)) => parsed,
        Ok(Err(Some(e))) => {
            node.stats.error(ErrorKind::BadHandshake);
            send_raw_and_close(&stream, &e.to_response());
            return None;
        }
        // Timed out or went away before finishing the request.
        _ => return None,
    };
    let kind = match req.path.as_str() {
        "/ws" | "/ws/" => Kind::Ws,
        "/echo" => Kind::Echo,
        _ => {
            node.stats.error(ErrorKind::BadHandshake);
            let body = format!(
                "no such path {:?}: connect to /ws (chat) or /echo\n",
                req.path
            );
            send_raw_and_close(&stream, &ws::http_response(404, &body, &[]));
            return None;
        }
    };
    let accept = match req.upgrade {
        Ok(accept) => accept,
        Err(e) => {
            node.stats.error(ErrorKind::BadHandshake);
            send_raw_and_close(&stream, &e.to_response());
            return None;
        }
    };
    let id = node.next_conn_id();
    let user = match req
        .query
        .as_deref()
        .and_then(|q| ws::query_param(q, "user"))
    {
        Some(name) if valid_user_name(&name) => name,
        Some(_) => {
            node.stats.error(ErrorKind::BadHandshake);
            let body = format!("invalid user name: 1-{MAX_USER_NAME} printable bytes without quotes or backslashes\n");
            send_raw_and_close(&stream, &ws::http_response(400, &body, &[]));
            return None;
        }
        None => format!("guest-{}-{}", node.id, id & 0xffff_ffff_ffff),
    };
    let _ = buf.split_to(used);
    let limit = match kind {
        Kind::Echo => node
            .cfg
            .outbound_limit
            .max(2 * node.cfg.echo_max_message + 64),
        _ => node.cfg.outbound_limit,
    };
    let conn = Rc::new(Conn::new(id, stream, kind, user.into(), limit));
    node.register(&conn);
    node.stats.accepted.inc();
    node.send(&conn, ws::response_101(&accept).into());
    if kind == Kind::Ws {
        let welcome = api::welcome(&conn.user.borrow(), id, node.id);
        node.reply_json(&conn, &welcome);
    }
    Some((conn, buf))
}

async fn session(node: &Rc<Node>, conn: &Rc<Conn>, mut buf: BytesMut) {
    let max_message = match conn.kind {
        Kind::Echo => node.cfg.echo_max_message,
        _ => node.cfg.max_payload + ENVELOPE_SLACK,
    };
    let mut dec = Decoder::new(max_message);
    loop {
        loop {
            if conn.is_closing() {
                return;
            }
            match dec.decode(&mut buf) {
                Ok(Some(msg)) => on_message(node, conn, msg),
                Ok(None) => break,
                Err(e) => {
                    node.stats.error(match e.code {
                        1007 => ErrorKind::BadUtf8,
                        1009 => ErrorKind::TooLarge,
                        _ => ErrorKind::BadFrame,
                    });
                    tracing::debug!(
                        conn = conn.id,
                        code = e.code,
                        reason = e.reason,
                        "closing on a bad frame"
                    );
                    conn.push_last(Some(e.to_frame()));
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

fn on_message(node: &Rc<Node>, conn: &Rc<Conn>, msg: Message) {
    match msg {
        Message::Text(t) if conn.kind == Kind::Echo => {
            node.send(conn, ws::encode_frame(OpCode::Text, &t))
        }
        Message::Binary(b) if conn.kind == Kind::Echo => {
            node.send(conn, ws::encode_frame(OpCode::Binary, &b))
        }
        Message::Text(t) | Message::Binary(t) => on_request(node, conn, &t),
        Message::Ping(p) => node.send(conn, ws::encode_frame(OpCode::Pong, &p)),
        Message::Pong(_) => {}
        Message::Close(code, _) => {
            conn.push_last(Some(ws::close_frame(code.unwrap_or(1000), "")));
            node.flush(conn);
        }
    }
}

fn on_request(node: &Rc<Node>, conn: &Rc<Conn>, text: &[u8]) {
    let (id, req) = api::parse(text, node.cfg.max_payload);
    let req = match req {
        Ok(req) => req,
        Err(e) => return node.reply_error(conn, id, &e),
    };
    let not_member = |room: &str| {
        ApiError::new(
            "not_member",
            ErrorKind::NotMember,
            format!("not a member of room {room}"),
        )
    };
    match req {
        Request::Ping => node.reply_json(conn, &api::pong(id)),
        Request::Join { room, since } => {
            if let Err(e) = node.join(conn, &room, since, id.unwrap_or("").as_bytes()) {
                node.reply_error(conn, id, &e);
            }
        }
        Request::Leave { room } => {
            if node.leave(conn, &room) {
                node.reply_json(conn, &api::ok(id, &room, None, true));
            } else {
                node.reply_error(conn, id, &not_member(&room));
            }
        }
        Request::Publish { room, data } => {
            let data = api::minify(data);
            node.publish(
                conn,
                &room,
                data.as_bytes(),
                false,
                id.unwrap_or("").as_bytes(),
            );
        }
        Request::Typing { room, state } => {
            if node.is_member(conn, &room) {
                node.typing(conn, &room, state);
            } else {
                node.reply_error(conn, id, &not_member(&room));
            }
        }
        Request::History { room, since, limit } => node.history(conn, &room, since, limit, id),
        Request::Members { room } => node.members(conn, &room, id),
    }
}
