//! A frame arrives from another shard's ring (or from this shard) and goes
//! to the role that handles it: requests to the home, deliveries and
//! answers to the member side.

use bytes::Bytes;

use super::wire::{self, ArchivedReplyTo, ArchivedWire, ReplyTo};
use super::Shard;

impl Shard {
    /// Handles one frame from another shard (or from this one).
    pub fn on_frame(&self, bytes: &Bytes) {
        let frame = match wire::decode(bytes) {
            Ok(f) => f,
            Err(e) => {
                tracing::error!(error = %e, "undecodable frame between shards");
                return;
            }
        };
        match frame {
            ArchivedWire::Join { .. }
            | ArchivedWire::Leave { .. }
            | ArchivedWire::Publish { .. }
            | ArchivedWire::Typing { .. }
            | ArchivedWire::Members { .. }
            | ArchivedWire::History { .. } => self.at_home(frame),
            _ => self.at_member(frame),
        }
    }

    /// A request for a room homed here.
    fn at_home(&self, frame: &ArchivedWire) {
        match frame {
            ArchivedWire::Join {
                room,
                conn,
                user,
                info,
                since,
                epoch,
                reply,
                join,
            } => self.home_join(
                room,
                conn.to_native(),
                (user, info.as_deref()),
                (
                    since.as_ref().map(|s| s.to_native()),
                    epoch.as_ref().map(|e| e.to_native()),
                ),
                owned(reply),
                join.to_native(),
            ),
            ArchivedWire::Leave { room, conn } => self.home_leave(room, conn.to_native()),
            ArchivedWire::Publish {
                room,
                conn,
                user,
                data,
                raw,
                reply,
            } => self.home_publish(
                room,
                conn.to_native(),
                &user.as_str().into(),
                data,
                *raw,
                owned(reply),
                None,
            ),
            ArchivedWire::Typing {
                room,
                conn,
                user,
                state,
            } => self.home_typing(room, conn.to_native(), user, *state),
            ArchivedWire::Members {
                room,
                conn,
                id,
                after,
                limit,
            } => self.home_members(
                room,
                conn.to_native(),
                id.as_ref().map(|s| s.as_str()),
                after.as_ref().map(|s| s.as_str()),
                limit.to_native(),
            ),
            ArchivedWire::History {
                room,
                conn,
                id,
                since,
                limit,
            } => self.home_history(
                room,
                conn.to_native(),
                id.as_ref().map(|s| s.as_str()),
                since.to_native(),
                limit.to_native(),
            ),
            _ => {}
        }
    }

    /// A delivery or an answer for this shard's connections.
    fn at_member(&self, frame: &ArchivedWire) {
        match frame {
            ArchivedWire::Deliver {
                room, json, resp, ..
            } => self.member_deliver(room, json, resp),
            ArchivedWire::Ephemeral {
                room,
                exclude,
                json,
            } => self.member_ephemeral(room, exclude.to_native(), json),
            ArchivedWire::JoinAck {
                room,
                conn,
                reply,
                epoch,
                seq,
                recovered,
                error,
                backlog,
                join,
            } => self.on_join_ack(
                room,
                conn.to_native(),
                reply.into(),
                (epoch.to_native(), seq.to_native(), *recovered, *error),
                backlog,
                join.to_native(),
            ),
            ArchivedWire::PublishAck {
                room,
                conn,
                reply,
                epoch,
                seq,
                receivers,
            } => self.on_publish_ack(
                room,
                conn.to_native(),
                reply.into(),
                (epoch.to_native(), seq.to_native()),
                receivers.to_native(),
            ),
            ArchivedWire::Refused {
                room,
                conn,
                reply,
                error,
            } => self.on_refused(room, conn.to_native(), reply.into(), *error),
            ArchivedWire::Reply { conn, json } => self.on_reply(conn.to_native(), json),
            _ => {}
        }
    }
}

/// The reply address of a request, to carry on to its answer.
pub(super) fn owned(reply: &ArchivedReplyTo) -> ReplyTo {
    match reply {
        ArchivedReplyTo::Ws(id) => ReplyTo::Ws(id.as_ref().map(|s| s.as_str().into())),
        ArchivedReplyTo::Resp { ticket, count } => ReplyTo::Resp {
            ticket: ticket.to_native(),
            count: count.to_native(),
        },
    }
}
