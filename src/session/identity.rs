//! Who a WebSocket client is and what it may do: its token checked once
//! (at the upgrade or in its first frame), refreshed while it is
//! connected, room tokens for rooms beyond its token's, the grants checked
//! once per request here at its own shard (never per delivery), and its
//! rate limits.

use std::rc::Rc;

use crate::access::jwt::TokenError;
use crate::access::Access;
use crate::conn::Conn;
use crate::proto::chat::close::{FORBIDDEN, RATE_LIMITED, TOKEN_EXPIRED, UNAUTHORIZED};
use crate::proto::chat::{self, ApiError, Code};
use crate::proto::ws;
use crate::shard::stats::{unix_ms, ErrorKind};
use crate::shard::Shard;

/// What a request needs of the connection's grants.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Need {
    /// Joining: the room's messages.
    Join,
    /// History and members.
    Read,
    /// Publishing and typing.
    Publish,
}

/// Which rate limit a request counts against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Limit {
    /// Publishes and typing events.
    Publish,
    /// Joins and leaves.
    Join,
}

/// True when the server wants a token and this connection has not given a
/// good one yet.
pub(super) fn awaiting_token(shard: &Shard, conn: &Conn) -> bool {
    shard.authority.tokens_required() && conn.with_access(|a| a.is_none())
}

/// Verifies `token` as the connection's: on success it is the token's
/// `sub` from now on, with the token's grants.
pub(super) fn log_in(shard: &Shard, conn: &Conn, token: &str) -> Result<(), TokenError> {
    let verifier = shard
        .authority
        .jwt
        .as_ref()
        .ok_or_else(|| TokenError::Invalid("this server takes no tokens".into()))?;
    let id = verifier.verify(token)?;
    conn.set_user(id.user.into());
    conn.with_access(|a| {
        *a = Some(Box::new(Access {
            grants: Some(id.grants),
            expires: id.expires,
            info: id.info.map(Into::into),
            ..Access::default()
        }))
    });
    Ok(())
}

/// Sends the welcome: the connection is in.
pub(super) fn welcome(shard: &Shard, conn: &Rc<Conn>) {
    let welcome = chat::welcome(&conn.user(), conn.id, shard.id);
    shard.reply_json(conn, &welcome);
}

/// Closes a connection whose token failed: 4002 when it expired, else 4001.
pub(super) fn turn_away(shard: &Rc<Shard>, conn: &Rc<Conn>, err: &TokenError) {
    shard.stats.error(ErrorKind::Unauthorized);
    let code = match err {
        TokenError::Expired => TOKEN_EXPIRED,
        TokenError::Invalid(_) => UNAUTHORIZED,
    };
    close(shard, conn, code, &err.to_string());
}

/// Closes with `code` and `reason`, after what is queued.
pub(super) fn close(shard: &Rc<Shard>, conn: &Rc<Conn>, code: u16, reason: &str) {
    conn.push_last(Some(ws::close_frame(code, reason)));
    shard.flush(conn);
}

/// `refresh`: a new token for the same user replaces the old one (its
/// expiry and grants). A token for someone else closes the connection
/// (4003): nobody becomes another user on a live connection.
pub(super) fn refresh(shard: &Rc<Shard>, conn: &Rc<Conn>, id: Option<&str>, token: &str) {
    let Some(verifier) = shard.authority.jwt.as_ref() else {
        let e = ApiError::new(
            Code::Unauthorized,
            "this server takes no tokens (auth.mode = none)",
        );
        return shard.reply_error(conn, id, &e);
    };
    let identity = match verifier.verify(token) {
        Ok(identity) => identity,
        Err(e) => {
            return shard.reply_error(conn, id, &ApiError::new(Code::Unauthorized, e.to_string()))
        }
    };
    if *identity.user != *conn.user() {
        shard.stats.error(ErrorKind::Forbidden);
        return close(
            shard,
            conn,
            FORBIDDEN,
            "a refresh must be for the same user",
        );
    }
    let expires = identity.expires;
    conn.with_access(|a| {
        let a = a.get_or_insert_with(Box::default);
        a.grants = Some(identity.grants);
        a.expires = expires;
        a.info = identity.info.map(Into::into);
    });
    // Never more than the new token allows: out of the rooms it drops.
    shard.enforce_access(conn, unix_ms() / 1000);
    shard.reply_json(conn, &chat::refreshed(id, expires));
}

/// Ends the room passes past their `exp` (+ leeway) before a request is
/// checked against them, rather than at the next sweep.
fn end_passes(shard: &Shard, conn: &Rc<Conn>) {
    let has_passes = conn.with_access(|a| a.as_ref().is_some_and(|a| !a.room_passes.is_empty()));
    if !has_passes {
        return;
    }
    let (now, leeway) = (unix_ms() / 1000, shard.cfg.auth.leeway_s);
    if conn.with_access(|a| a.as_ref().is_some_and(|a| a.passes_expired(now, leeway))) {
        shard.enforce_access(conn, now);
    }
}

/// The connection left `room`: a room token it came in with is spent.
pub(super) fn left(conn: &Conn, room: &str) {
    conn.with_access(|a| {
        if let Some(a) = a {
            a.drop_pass(room);
        }
    });
}

/// Whether the connection may do what `need` says with `room`; with a room
/// `token`, checked and kept, it may join (and use) a room its connection
/// token does not list, until the room token's `exp` (+ leeway) or until
/// it leaves the room. A room token that does not verify is refused even
/// when an earlier one for the room still holds (which then stays).
pub(super) fn allow(
    shard: &Shard,
    conn: &Rc<Conn>,
    need: Need,
    room: &str,
    token: Option<&str>,
) -> Result<(), ApiError> {
    end_passes(shard, conn);
    // A room token that comes with a join is looked at whenever the
    // connection token does not allow the room, also when an earlier one
    // still does: so a client renews its pass before it expires.
    let granted = conn.with_access(|a| match a {
        None => true,
        Some(a) => match need {
            Need::Join if token.is_some() => a.granted_join(room),
            Need::Join => a.may_join(room),
            Need::Read => a.may_read(room),
            Need::Publish => a.may_publish(room),
        },
    });
    if granted {
        return Ok(());
    }
    match (token, shard.authority.jwt.as_ref()) {
        (Some(token), Some(v)) => match v.verify_room(token, &conn.user(), room) {
            Ok(exp) => {
                conn.with_access(|a| a.get_or_insert_with(Box::default).grant_pass(room, exp));
                Ok(())
            }
            Err(e) => Err(ApiError::new(
                Code::Unauthorized,
                format!("room token: {e}"),
            )),
        },
        _ => Err(ApiError::new(
            Code::Forbidden,
            format!("your token does not allow this in room {room}"),
        )),
    }
}

/// Takes one request from the connection's `limit` bucket. Over the
/// limit the client gets `rate_limited` with how long to wait, and nothing
/// is queued. A client refused at least once a second (whatever got
/// through between) for `rate_limited_close_ms` is closed (4029): the
/// bucket lets one request through every 1 / rate s, so a flooder is never
/// refused "in a row". True when the request may go on.
pub(super) fn within_rate(
    shard: &Rc<Shard>,
    conn: &Rc<Conn>,
    id: Option<&str>,
    limit: Limit,
) -> bool {
    let l = &shard.cfg.limits;
    let (rate, burst) = match limit {
        Limit::Publish => (l.publish_rate, l.publish_burst),
        Limit::Join => (l.join_rate, l.join_burst),
    };
    if rate == 0 {
        return true;
    }
    let now = shard.now_us();
    let close_after = l.rate_limited_close_ms * 1000;
    let verdict = conn.with_access(|a| {
        let a = a.get_or_insert_with(Box::default);
        let bucket = match limit {
            Limit::Publish => &mut a.publishes,
            Limit::Join => &mut a.joins,
        };
        match bucket.take(now, rate, burst) {
            Ok(()) => Ok(()),
            Err(wait) => Err((wait, a.limited(now, close_after))),
        }
    });
    match verdict {
        Ok(()) => true,
        Err((_, true)) => {
            shard.stats.error(ErrorKind::RateLimited);
            close(
                shard,
                conn,
                RATE_LIMITED,
                "over the rate limit for too long",
            );
            false
        }
        Err((wait, false)) => {
            shard.stats.error(ErrorKind::RateLimited);
            let what = match limit {
                Limit::Publish => format!("at most {rate} publishes a second ({burst} at once)"),
                Limit::Join => {
                    format!("at most {rate} joins and leaves a second ({burst} at once)")
                }
            };
            shard.reply_json(conn, &chat::rate_limited(id, &what, wait));
            false
        }
    }
}
