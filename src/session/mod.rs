//! Protocol sessions: what a connection says, and what the shard does
//! about it. One file per protocol; both run the same read loop.
//!
//! - [`ws`]: the WebSocket port — HTTP upgrade, then the chat protocol on
//!   `/ws` or plain echo on `/echo`.
//! - [`resp`]: the RESP port — the Redis pub/sub subset, mapped onto rooms.
//! - `chat`: a WebSocket client's chat requests, checked and handed on.
//! - `identity`: who a WebSocket client is — tokens, grants, rate limits.
//! - [`web`]: the WebSocket port's plain pages — the chat page and the
//!   client library, for a GET that is not an upgrade.

mod chat;
mod identity;
pub mod resp;
pub mod web;
pub mod ws;

use std::rc::Rc;

use bytes::BytesMut;

use crate::conn::io::{recv_into, yield_now};
use crate::conn::Conn;
use crate::shard::Shard;

/// Read size; also what one read may bring of a flood before others run.
const READ_CHUNK: usize = 16 * 1024;

/// What a protocol made of the bytes at the front of the read buffer.
#[derive(Debug, PartialEq, Eq)]
enum Parsed {
    /// Every complete message was handled: read more.
    More,
    /// The connection is closing: stop reading.
    Done,
}

/// A protocol's side of the read loop.
trait Protocol {
    /// The state for a new connection.
    fn new(shard: &Shard, conn: &Conn) -> Self;

    /// Handles every complete message at the front of `buf`, leaving a
    /// partial one there.
    fn parse(&mut self, shard: &Rc<Shard>, conn: &Rc<Conn>, buf: &mut BytesMut) -> Parsed;

    /// True when nothing of a message is held (the connection may park:
    /// a new state is made when it reads again).
    fn is_idle(&self) -> bool;
}

/// Why a read loop returned.
#[derive(Debug, PartialEq, Eq)]
enum Ended {
    /// The connection closed, or is closing.
    Closed,
    /// Nothing to read and nothing held: the connection may park.
    Idle,
}

/// Reads from the client and hands what arrives to `proto` until the
/// connection closes or the stream ends. Bytes already read (after a
/// handshake) come in `buf`. The protocol's state is made here, so an idle
/// connection's task holds it once: made by the caller and passed in, it
/// was also kept in the caller's state (and the task was 32 bytes bigger).
///
/// While any shard is congested, no new requests are read. Between reads
/// of a busy connection the task yields, so one flood cannot starve the
/// shard's other connections. The wait for readability is the state an
/// idle connection's task sits in, so it is awaited here directly:
/// awaiting it through nested async functions made every connection's
/// task 150 bytes bigger.
///
/// With `may_park`, it returns [`Ended::Idle`] instead of waiting when the
/// socket is empty and nothing is held, so the caller can park the
/// connection (see `shard/park.rs`).
async fn read_loop<P: Protocol>(
    shard: &Rc<Shard>,
    conn: &Rc<Conn>,
    mut buf: BytesMut,
    may_park: bool,
) -> Ended {
    let mut proto = P::new(shard, conn);
    let mut drained = false;
    loop {
        if conn.is_closing() || proto.parse(shard, conn, &mut buf) == Parsed::Done {
            return Ended::Closed;
        }
        shard.flush_if_due();
        if shard.backlogged() {
            Box::pin(shard.wait_uncongested()).await;
        }
        // Nothing of the read (its result, an error) may live across the
        // awaits below: the task would carry it while the connection idles.
        let step = if std::mem::take(&mut drained) {
            // The last read was short: the socket had no more, so wait
            // rather than ask again (a request-reply client saves a
            // system call a request).
            if buf.is_empty() {
                buf = BytesMut::new();
            }
            Step::Wait
        } else {
            read_step(shard, conn, &mut buf)
        };
        match step {
            Step::Data => yield_now().await,
            Step::Drained => drained = true,
            Step::Wait => {
                if may_park && buf.is_empty() && proto.is_idle() && !conn.is_closing() {
                    return Ended::Idle;
                }
                if conn.stream.readable(false).await.is_err() {
                    return Ended::Closed;
                }
            }
            Step::End => return Ended::Closed,
        }
    }
}

/// What a read found.
enum Step {
    /// A full read arrived (or the read was interrupted): parse, then
    /// yield, and read again.
    Data,
    /// Less than a full read arrived: the socket is empty now. Parse, then
    /// wait for readability.
    Drained,
    /// Nothing to read: wait for readability.
    Wait,
    /// The stream ended or failed.
    End,
}

/// Reads what the client sent next, without waiting.
fn read_step(shard: &Shard, conn: &Conn, buf: &mut BytesMut) -> Step {
    match recv_into(conn.fd(), buf, READ_CHUNK) {
        Ok(0) => Step::End,
        Ok(n) => {
            shard.stats.bytes_in.add(n as u64);
            conn.heard_at(shard.now());
            if n < READ_CHUNK {
                Step::Drained
            } else {
                Step::Data
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
            // An idle connection keeps no read buffer.
            if buf.is_empty() {
                *buf = BytesMut::new();
            }
            Step::Wait
        }
        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => Step::Data,
        Err(_) => Step::End,
    }
}
