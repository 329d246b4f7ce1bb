//! WebSocket connections: the HTTP upgrade, then the chat protocol on `/ws`
//! or plain echo on `/echo`.

use std::rc::Rc;
use std::time::Duration;

use bytes::BytesMut;
use monoio::net::TcpStream;

use super::identity::{self, awaiting_token};
use super::{chat, read_loop, Ended, Parsed, Protocol};
use crate::access::origin_allowed;
use crate::conn::io::{answer_and_close, linger, prepare_socket, read_some};
use crate::conn::{Conn, Kind};
use crate::proto::chat::{valid_user_name, MAX_USER_NAME};
use crate::proto::ws::{self, Decoder, Message, OpCode};
use crate::shard::admission::Refusal;
use crate::shard::stats::ErrorKind;
use crate::shard::{Admitted, Shard};

/// How long to wait for the peer's close after ours.
const CLOSE_LINGER: Duration = Duration::from_secs(5);
/// Room for the JSON envelope around a payload of `max_payload` bytes: a
/// request frame bigger than both is closed with 1009.
const ENVELOPE_SLACK: usize = 4096;
/// Turns away a connection over an admission limit with an HTTP 503 (the
/// request is not read: the answer is the same whatever it is).
pub fn refuse(stream: TcpStream, why: Refusal) {
    let body = match why {
        Refusal::Server => "the server holds all the connections it may; try again later\n",
        Refusal::PerSource => "too many connections from your address\n",
        Refusal::Rate => "too many connections from your address in the last second\n",
    };
    answer_and_close(
        &stream,
        &ws::http_response(503, body, &[("Retry-After", "1")]),
    );
}

/// Serves one accepted WebSocket-port connection to its end.
///
/// The handshake and the closing linger run as boxed futures of their own,
/// so the task that stays alive while a connection idles holds only the
/// session's state (a connection's most expensive resource is this task).
///
/// The connection holds its place in the admission counts (`shard`)
/// until the task ends, however it ends.
pub async fn serve(shard: Admitted, stream: TcpStream) {
    let Some((conn, buf)) = Box::pin(handshake(&shard, stream)).await else {
        return;
    };
    drive(shard, conn, buf).await;
}

/// Reads a connection until it closes — or goes idle, when it parks and
/// this task ends; [`resume`] starts the next when the client sends again.
async fn drive(mut shard: Admitted, mut conn: Rc<Conn>, buf: BytesMut) {
    let mut buf = Some(buf);
    let mut may_park = true;
    loop {
        let read = buf.take().unwrap_or_default();
        if read_loop::<Frames>(&shard, &conn, read, may_park).await == Ended::Closed {
            break;
        }
        match Shard::park(shard, conn, resume) {
            Ok(()) => return,
            // Not parked: this task waits, as without parking.
            Err((s, c)) => (shard, conn, may_park) = (s, c, false),
        }
    }
    if !conn.is_closing() {
        Box::pin(shard.finish(&conn, CLOSE_LINGER)).await;
    }
    if conn.is_closing() {
        Box::pin(linger(&conn, CLOSE_LINGER)).await;
    }
    shard.unregister(&conn);
}

/// A parked connection's socket is readable: a task for it again.
fn resume(shard: Admitted, conn: Rc<Conn>) {
    monoio::spawn(drive(shard, conn, BytesMut::new()));
}

/// Reads and answers the upgrade request; on success the connection is
/// registered and welcomed, and the bytes after the request are returned.
async fn handshake(shard: &Rc<Shard>, stream: TcpStream) -> Option<(Rc<Conn>, BytesMut)> {
    prepare_socket(
        &stream,
        shard.cfg.tcp_keepalive_s,
        shard.cfg.tcp_user_timeout_ms,
    );
    let mut buf = BytesMut::new();
    let deadline = Duration::from_millis(shard.cfg.handshake_timeout_ms);
    let head = monoio::time::timeout(deadline, async {
        loop {
            match ws::parse_request(&buf) {
                Ok(Some(parsed)) => return Ok(parsed),
                Ok(None) => {}
                Err(e) => return Err(Some(e.to_response())),
            }
            match read_some(&stream, &mut buf, 4096).await {
                Ok(0) | Err(_) => return Err(None),
                Ok(n) => shard.stats.bytes_in.add(n as u64),
            }
        }
    })
    .await;
    if let Ok(Ok((req, used))) = &head {
        if let Some(response) = super::web::page(req, &buf[..*used]) {
            Box::pin(super::web::send(shard, &stream, &response)).await;
            return None;
        }
    }
    let accepted = match head {
        Ok(Ok((req, used))) => accept(shard, req).map(|a| (a, used)),
        Ok(Err(refusal)) => Err(refusal),
        Err(_) => {
            shard.stats.handshake_timeouts.inc();
            Err(None)
        }
    };
    let (
        Accepted {
            kind,
            key,
            user,
            token,
        },
        used,
    ) = match accepted {
        Ok(accepted) => accepted,
        Err(refusal) => {
            if let Some(response) = refusal {
                shard.stats.error(ErrorKind::BadHandshake);
                answer_and_close(&stream, &response);
            }
            return None;
        }
    };
    let _ = buf.split_to(used);
    let limit = match kind {
        Kind::Echo => shard
            .cfg
            .outbound_limit
            .max(2 * shard.cfg.echo_max_message + 64),
        _ => shard.cfg.outbound_limit,
    };
    let id = shard.next_conn_id();
    let user = user.unwrap_or_else(|| format!("guest-{}-{}", shard.id, id & 0xffff_ffff_ffff));
    let conn = Rc::new(Conn::new(id, stream, kind, user.into(), limit, shard.now()));
    shard.register(&conn);
    shard.stats.accepted.inc();
    shard.send(&conn, ws::response_101(&key).into());
    if kind == Kind::Ws {
        greet(shard, &conn, token.as_deref());
    }
    Some((conn, buf))
}

/// A new chat connection: welcomed at once when it needs no token or
/// brought one (`?token=`) that verifies; closed (4001/4002) when its token
/// fails; otherwise it waits for `{"op":"auth"}` as its first frame (a
/// sweep closes it past `auth.timeout_ms`).
fn greet(shard: &Rc<Shard>, conn: &Rc<Conn>, token: Option<&str>) {
    if !awaiting_token(shard, conn) {
        return identity::welcome(shard, conn);
    }
    match token.map(|t| identity::log_in(shard, conn, t)) {
        Some(Ok(())) => identity::welcome(shard, conn),
        Some(Err(e)) => identity::turn_away(shard, conn, &e),
        None => {}
    }
}

/// An accepted upgrade.
struct Accepted {
    /// The endpoint.
    kind: Kind,
    /// The `Sec-WebSocket-Accept` value.
    key: String,
    /// The user name asked for (`?user=`; ignored when tokens are used).
    user: Option<String>,
    /// A token in the URL (`?token=`), for clients that cannot send a
    /// first frame.
    token: Option<String>,
}

/// Routes a parsed request and checks it as an upgrade; a refusal is the
/// HTTP response to send (`None`: the client just goes).
fn accept(shard: &Shard, req: ws::Request) -> Result<Accepted, Option<Vec<u8>>> {
    if !origin_allowed(&shard.cfg.allowed_origins, req.origin.as_deref()) {
        let body = format!(
            "origin {:?} is not allowed to connect (allowed_origins)\n",
            req.origin.as_deref().unwrap_or("")
        );
        return Err(Some(ws::http_response(403, &body, &[])));
    }
    let kind = match req.path.as_str() {
        "/ws" | "/ws/" => Kind::Ws,
        "/echo" if shard.cfg.echo => Kind::Echo,
        "/echo" => {
            let body = "the /echo endpoint is off (echo = true, or --echo, turns it on)\n";
            return Err(Some(ws::http_response(404, body, &[])));
        }
        _ => {
            let body = format!(
                "no such path {:?}: connect to /ws (chat) or /echo\n",
                req.path
            );
            return Err(Some(ws::http_response(404, &body, &[])));
        }
    };
    let accept_key = req.upgrade.map_err(|e| Some(e.to_response()))?;
    let user = match req
        .query
        .as_deref()
        .and_then(|q| ws::query_param(q, "user"))
    {
        Some(name) if valid_user_name(&name) => Some(name),
        Some(_) => {
            let body = format!("invalid user name: 1-{MAX_USER_NAME} printable bytes without quotes or backslashes\n");
            return Err(Some(ws::http_response(400, &body, &[])));
        }
        None => None,
    };
    let token = req
        .query
        .as_deref()
        .and_then(|q| ws::query_param(q, "token"));
    let user = if shard.authority.tokens_required() {
        None
    } else {
        user
    };
    Ok(Accepted {
        kind,
        key: accept_key,
        user,
        token,
    })
}

/// The WebSocket side of the read loop: frames in, messages handled.
struct Frames(Decoder);

impl Protocol for Frames {
    fn new(shard: &Shard, conn: &Conn) -> Self {
        let max_message = match conn.kind {
            Kind::Echo => shard.cfg.echo_max_message,
            _ => shard.cfg.max_payload + ENVELOPE_SLACK,
        };
        Frames(Decoder::new(max_message))
    }

    fn is_idle(&self) -> bool {
        self.0.is_idle()
    }

    fn parse(&mut self, shard: &Rc<Shard>, conn: &Rc<Conn>, buf: &mut BytesMut) -> Parsed {
        loop {
            if conn.is_closing() {
                return Parsed::Done;
            }
            match self.0.decode(buf) {
                Ok(Some(msg)) => on_message(shard, conn, msg),
                Ok(None) => return Parsed::More,
                Err(e) => {
                    shard.stats.error(match e.code {
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
                    shard.flush(conn);
                    return Parsed::Done;
                }
            }
        }
    }
}

fn on_message(shard: &Rc<Shard>, conn: &Rc<Conn>, msg: Message) {
    match msg {
        Message::Text(t) if conn.kind == Kind::Echo => {
            shard.send(conn, ws::encode_frame(OpCode::Text, &t))
        }
        Message::Binary(b) if conn.kind == Kind::Echo => {
            shard.send(conn, ws::encode_frame(OpCode::Binary, &b))
        }
        Message::Text(t) | Message::Binary(t) => chat::on_request(shard, conn, &t),
        Message::Ping(p) => shard.send(conn, ws::encode_frame(OpCode::Pong, &p)),
        Message::Pong(_) => {}
        Message::Close(code, _) => {
            conn.push_last(Some(ws::close_frame(code.unwrap_or(1000), "")));
            shard.flush(conn);
        }
    }
}
