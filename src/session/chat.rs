//! The chat requests of a WebSocket client, each checked against the
//! connection's token and rate limits here, at its own shard, then handed
//! to the shard.

use std::rc::Rc;

use super::identity::{self, Limit, Need};
use crate::conn::Conn;
use crate::proto::chat::close::UNAUTHORIZED;
use crate::proto::chat::{self, ApiError, Code, Request};
use crate::shard::wire::ReplyTo;
use crate::shard::Shard;

/// Handles one request (a text or binary message on `/ws`).
pub(super) fn on_request(shard: &Rc<Shard>, conn: &Rc<Conn>, text: &[u8]) {
    let (id, req) = chat::parse(text, shard.cfg.max_payload);
    let req = match req {
        Ok(req) => req,
        Err(e) => return shard.reply_error(conn, id, &e),
    };
    if identity::awaiting_token(shard, conn) {
        return first_request(shard, conn, req);
    }
    let not_member =
        |room: &str| ApiError::new(Code::NotMember, format!("not a member of room {room}"));
    match req {
        Request::Ping => shard.reply_json(conn, &chat::pong(id)),
        Request::Auth { .. } => {
            let e = ApiError::new(
                Code::Unauthorized,
                "already authenticated: send refresh for a new token",
            );
            shard.reply_error(conn, id, &e);
        }
        Request::Refresh { token } => identity::refresh(shard, conn, id, &token),
        Request::Join {
            room,
            since,
            epoch,
            token,
        } => {
            if !identity::within_rate(shard, conn, id, Limit::Join) {
                return;
            }
            let joined = identity::allow(shard, conn, Need::Join, &room, token.as_deref())
                .and_then(|()| shard.join(conn, &room, (since, epoch), reply_to(id)));
            if let Err(e) = joined {
                shard.reply_error(conn, id, &e);
            }
        }
        Request::Leave { room } => {
            if !identity::within_rate(shard, conn, id, Limit::Join) {
                return;
            }
            if shard.leave(conn, &room) {
                identity::left(conn, &room);
                shard.reply_json(conn, &chat::ok(id, &room, None, true));
            } else {
                shard.reply_error(conn, id, &not_member(&room));
            }
        }
        Request::Publish { room, data } => {
            if !identity::within_rate(shard, conn, id, Limit::Publish) {
                return;
            }
            let max_chars = shard.cfg.limits.max_message_chars;
            if max_chars > 0 && data.chars().count() > max_chars {
                let e = ApiError::new(
                    Code::PayloadTooLarge,
                    format!("data is over {max_chars} characters"),
                );
                return shard.reply_error(conn, id, &e);
            }
            if let Err(e) = identity::allow(shard, conn, Need::Publish, &room, None) {
                return shard.reply_error(conn, id, &e);
            }
            let data = chat::minify(data);
            shard.publish(conn, &room, data.as_bytes(), reply_to(id));
        }
        Request::Typing { room, state } => {
            if !identity::within_rate(shard, conn, id, Limit::Publish) {
                return;
            }
            if !shard.is_member(conn, &room) {
                return shard.reply_error(conn, id, &not_member(&room));
            }
            match identity::allow(shard, conn, Need::Publish, &room, None) {
                Ok(()) => shard.typing(conn, &room, state),
                Err(e) => shard.reply_error(conn, id, &e),
            }
        }
        Request::History { room, since, limit } => {
            match identity::allow(shard, conn, Need::Read, &room, None) {
                Ok(()) => shard.history(conn, &room, since, limit, id),
                Err(e) => shard.reply_error(conn, id, &e),
            }
        }
        Request::Members { room, limit, after } => {
            match identity::allow(shard, conn, Need::Read, &room, None) {
                Ok(()) => shard.members(conn, &room, (after.as_deref(), limit), id),
                Err(e) => shard.reply_error(conn, id, &e),
            }
        }
    }
}

/// The first request of a connection that owes a token: it must be
/// `auth`; anything else closes it.
fn first_request(shard: &Rc<Shard>, conn: &Rc<Conn>, req: Request<'_>) {
    let Request::Auth { token } = req else {
        shard
            .stats
            .error(crate::shard::stats::ErrorKind::Unauthorized);
        return identity::close(
            shard,
            conn,
            UNAUTHORIZED,
            "authentication required: send {\"op\":\"auth\",\"token\":…} first",
        );
    };
    match identity::log_in(shard, conn, &token) {
        Ok(()) => identity::welcome(shard, conn),
        Err(e) => identity::turn_away(shard, conn, &e),
    }
}

/// Where a request's answer goes: back to this connection with its id.
fn reply_to(id: Option<&str>) -> ReplyTo {
    ReplyTo::Ws(id.map(Into::into))
}
