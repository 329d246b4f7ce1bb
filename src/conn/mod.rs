//! A client connection as its shard sees it: identity, rooms, and the
//! bounded outbound queue that every reply and delivery goes through.
//! Protocol-agnostic: the sessions above decide what the bytes mean.
//!
//! Writes are corked: queueing only appends a frame (often one shared with
//! every other member of a room), or bytes to the connection's own frame,
//! and marks the connection dirty; the
//! shard's flusher then writes every dirty connection of the turn, with one
//! `io_uring_enter` for all of them where the shard has a send ring, or one
//! vectored `sendmsg` each where it has not. A queue over its byte bound
//! means a slow consumer, which is closed rather than allowed to grow
//! server memory.
//!
//! # Layout
//! - `mod.rs`: [`Conn`] and what it is.
//! - [`queue`]: the outbound queue — queueing, reply order, writing.
//! - [`order`]: queued frames and the replies owed in request order.
//! - [`io`]: reading, waiting for readiness, preparing and lingering.
//! - [`sendring`]: the shard's batched sends through its own io_uring.
//! - [`files`]: the io_uring file table the sends name sockets by.

pub mod files;
pub mod io;
pub mod order;
pub mod queue;
pub mod sendring;

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::os::fd::{AsRawFd, RawFd};
use std::rc::Rc;

use monoio::net::TcpStream;
use smallvec::SmallVec;

use crate::access::Access;
use crate::proto::resp::Proto;
use order::{Frame, Owed};

/// What protocol a connection speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// The chat protocol over WebSocket (`/ws`).
    Ws,
    /// The `/echo` conformance endpoint.
    Echo,
    /// Redis pub/sub over RESP.
    Resp,
}

/// A connection's rooms, each with the number of its latest join request.
pub type Rooms = SmallVec<[(Rc<str>, u32); 1]>;

/// One client connection. Kept small: with the connection's task it is
/// most of what an idle connection costs (the size is checked in a test).
///
/// The fields every delivery touches come first, so that with the `Rc`
/// counts before them they fill the allocation's first two cache lines: a
/// fan-out turn visits thousands of connections, and each line of a cold
/// connection is a cache miss (`repr(C)` keeps this order; jemalloc
/// places 256-byte objects on cache-line boundaries).
#[repr(C)]
pub struct Conn {
    out: RefCell<VecDeque<Frame>>,
    /// Bytes queued, minus what was already written of the head frame.
    queued: Cell<usize>,
    /// Replies owed in request order whose content another shard decides
    /// (RESP answers PUBLISH and SUBSCRIBE once the room's home has acted).
    /// While any is owed, later frames wait behind it, so a pipelining
    /// client gets its replies in order. Allocated only when needed; a
    /// `Cell` (taken and put back) where a `RefCell` would cost 8 bytes.
    deferred: Cell<Option<Box<Owed>>>,
    /// Bytes of the head frame already written (less than its length, which
    /// is within `limit`).
    head_written: Cell<u32>,
    /// The outbound bound in bytes (u32 keeps the struct small; bounds above
    /// 4 GiB are clamped).
    limit: u32,
    /// The socket's fd, kept here: the stream keeps it behind a pointer,
    /// one more cache miss per send.
    fd: RawFd,
    /// Numbers join requests and deferred replies.
    pub tickets: Cell<u32>,
    /// When the client last sent anything, on the shard's coarse clock
    /// (ms; see the shard's sweep) — or, while `pinged`, when it was pinged.
    heard: Cell<u32>,
    /// When the connection was made (a WebSocket one: its upgrade), on the
    /// same clock: what `auth.timeout_ms` counts from. 4 bytes that were
    /// padding before `rooms`.
    opened: u32,
    /// Protocol.
    pub kind: Kind,
    /// On the shard's dirty list.
    pub(crate) dirty: Cell<bool>,
    /// A task is waiting for the socket to become writable.
    pub(crate) blocked: Cell<bool>,
    /// No more frames are accepted; close once flushed.
    closing: Cell<bool>,
    /// Gone: the socket is shut down, the reader has ended or will.
    closed: Cell<bool>,
    /// In the shard's io_uring file table (see [`files`]).
    fixed: bool,
    /// RESP3 (push messages) after `HELLO 3`.
    pub resp3: Cell<bool>,
    /// The shard pinged it and waits to hear back (since `heard`).
    pinged: Cell<bool>,
    /// Rooms joined or being joined, each with the number of its latest
    /// join request (so a stale acknowledgement is recognised).
    pub rooms: RefCell<Rooms>,
    /// Globally unique id (shard in the top 16 bits).
    pub id: u64,
    /// The user name (the token's `sub`, WebSocket `?user=`, the RESP
    /// user or `CLIENT SETNAME`, or assigned). Always set; a `Cell` (taken
    /// and put back) where a `RefCell` would cost 8 bytes more.
    user: Cell<Option<Rc<str>>>,
    /// What it may do and how fast it acts, once that is known (a token or
    /// `AUTH` checked, or its first rate-limited request).
    access: Cell<Option<Box<Access>>>,
    /// The socket. Reads and writes go through raw non-blocking calls on its
    /// fd; the runtime is used only to wait for readiness, so an idle
    /// connection pins no buffer.
    pub stream: TcpStream,
}

impl Drop for Conn {
    fn drop(&mut self) {
        // The file table holds a reference to the socket: leave it before
        // the fd closes, or the connection would stay open.
        if self.fixed {
            if let Err(e) = files::unregister(self.fd) {
                tracing::warn!(fd = self.fd, error = %e, "leaving the io_uring file table failed; the socket stays open until the ring closes");
            }
        }
    }
}

impl Conn {
    /// A new connection with an outbound bound of `limit` bytes.
    /// `now` is the shard's coarse clock, as [`Conn::heard_at`] takes it.
    pub fn new(
        id: u64,
        stream: TcpStream,
        kind: Kind,
        user: Rc<str>,
        limit: usize,
        now: u32,
    ) -> Self {
        let fd = stream.as_raw_fd();
        let fixed = files::register(fd);
        Self {
            fd,
            id,
            stream,
            kind,
            user: Cell::new(Some(user)),
            access: Cell::new(None),
            rooms: RefCell::new(SmallVec::new()),
            tickets: Cell::new(0),
            deferred: Cell::new(None),
            resp3: Cell::new(false),
            out: RefCell::new(VecDeque::new()),
            queued: Cell::new(0),
            head_written: Cell::new(0),
            limit: u32::try_from(limit).unwrap_or(u32::MAX),
            dirty: Cell::new(false),
            blocked: Cell::new(false),
            closing: Cell::new(false),
            closed: Cell::new(false),
            fixed,
            heard: Cell::new(now),
            opened: now,
            pinged: Cell::new(false),
        }
    }

    /// The user name.
    pub fn user(&self) -> Rc<str> {
        let user = self.user.take().unwrap_or_else(|| "".into());
        self.user.set(Some(user.clone()));
        user
    }

    /// Names the connection's user.
    pub fn set_user(&self, user: Rc<str>) {
        self.user.set(Some(user));
    }

    /// Runs `f` on the connection's access state (`None` until known).
    pub fn with_access<R>(&self, f: impl FnOnce(&mut Option<Box<Access>>) -> R) -> R {
        let mut access = self.access.take();
        let r = f(&mut access);
        self.access.set(access);
        r
    }

    /// The client sent something at `now` (a ping outstanding is answered).
    pub fn heard_at(&self, now: u32) {
        self.heard.set(now);
        self.pinged.set(false);
    }

    /// When the client last sent anything.
    pub fn heard(&self) -> u32 {
        self.heard.get()
    }

    /// When it was made, on the shard's coarse clock.
    pub fn opened(&self) -> u32 {
        self.opened
    }

    /// When it was pinged without an answer yet, if it was.
    pub fn pinged(&self) -> Option<u32> {
        self.pinged.get().then(|| self.heard.get())
    }

    /// It was pinged at `now`.
    pub fn pinged_at(&self, now: u32) {
        self.heard.set(now);
        self.pinged.set(true);
    }

    /// Registered in the shard's io_uring file table at the index of its fd.
    pub fn fixed(&self) -> bool {
        self.fixed
    }

    /// The socket's file descriptor.
    pub fn fd(&self) -> RawFd {
        self.fd
    }

    /// The RESP version the connection speaks (RESP2 until `HELLO 3`).
    pub fn resp_proto(&self) -> Proto {
        if self.resp3.get() {
            Proto::Resp3
        } else {
            Proto::Resp2
        }
    }

    /// True once no more frames are accepted.
    pub fn is_closing(&self) -> bool {
        self.closing.get() || self.closed.get()
    }

    /// True once the connection is gone.
    pub fn is_closed(&self) -> bool {
        self.closed.get()
    }

    /// Marks the connection gone and shuts the socket down both ways, which
    /// also wakes a reader waiting on it.
    pub fn shut_down(&self) {
        if !self.closed.replace(true) {
            // SAFETY: shutdown on an fd we own; errors (e.g. ENOTCONN) are harmless.
            unsafe { libc::shutdown(self.fd(), libc::SHUT_RDWR) };
        }
    }

    /// Half-closes the write side after the last frame left, so the peer
    /// sees the end of the stream while we still read its close frame.
    fn shut_write(&self) {
        // SAFETY: as above.
        unsafe { libc::shutdown(self.fd(), libc::SHUT_WR) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_fits_a_256_byte_allocation_with_its_rc_counts() {
        assert!(
            std::mem::size_of::<Conn>() + 16 <= 256,
            "{}",
            std::mem::size_of::<Conn>()
        );
    }

    #[test]
    fn what_a_delivery_touches_is_in_the_first_two_cache_lines() {
        use std::mem::offset_of;
        // The Rc counts take the allocation's first 16 bytes.
        let lines = 128 - 16;
        let ends = [
            offset_of!(Conn, out) + std::mem::size_of::<RefCell<VecDeque<Frame>>>(),
            offset_of!(Conn, queued) + 8,
            offset_of!(Conn, deferred) + 8,
            offset_of!(Conn, head_written) + 4,
            offset_of!(Conn, limit) + 4,
            offset_of!(Conn, fd) + 4,
            offset_of!(Conn, kind) + 1,
            offset_of!(Conn, dirty) + 1,
            offset_of!(Conn, blocked) + 1,
            offset_of!(Conn, closing) + 1,
            offset_of!(Conn, closed) + 1,
            offset_of!(Conn, fixed) + 1,
        ];
        assert!(ends.iter().all(|&e| e <= lines), "{ends:?}");
    }
}
