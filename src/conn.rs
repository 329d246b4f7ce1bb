//! A client connection as its shard sees it: identity, rooms, and the
//! bounded outbound queue that every reply and delivery goes through.
//!
//! Writes are corked: enqueueing only appends a `Bytes` (often one shared
//! with every other member of a room) and marks the connection dirty; the
//! shard's flusher then writes each dirty connection's whole queue with one
//! vectored `sendmsg`. Messages that arrive in the same event-loop turn leave in the
//! same system call. A queue over its byte bound means a slow consumer, which
//! is closed rather than allowed to grow server memory.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::rc::Rc;

use bytes::Bytes;
use monoio::net::TcpStream;
use smallvec::SmallVec;

use crate::sendring;

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

/// Outcome of trying to queue a frame.
#[derive(Debug, PartialEq, Eq)]
pub enum Queued {
    /// Queued; it will be flushed this turn.
    Yes,
    /// The connection is closing or closed; the frame was dropped.
    Closed,
    /// The queue would pass its bound: the caller must close the connection
    /// as a slow consumer.
    OverLimit,
}

/// How far a flush got.
#[derive(Debug, PartialEq, Eq)]
pub enum Flushed {
    /// The queue is empty.
    All,
    /// The socket buffer is full; wait for writability.
    Blocked,
    /// The socket failed (peer gone); the connection must be dropped.
    Failed,
}

/// Most iovecs per sendmsg.
pub const IOV_BATCH: usize = 64;

/// Queue slots a room member's empty queue keeps rather than freeing (16
/// frames, 128 bytes): enough for a burst without reallocating every turn.
const KEEP_QUEUE: usize = 16;

/// A connection's rooms, each with the number of its latest join request.
pub type Rooms = SmallVec<[(Rc<str>, u32); 1]>;

/// A queued frame. A room message is framed once per shard and every local
/// member queues the same `Rc`: a non-atomic count per delivery, where
/// cloning the `Bytes` itself costs a locked instruction (11% of a shard's
/// CPU under overload).
pub type Frame = Rc<Bytes>;

/// Replies owed, by ticket, each with its frame once known.
type Owed = VecDeque<(u32, Option<Frame>)>;

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
    /// client gets its replies in order. Allocated only when needed.
    deferred: RefCell<Option<Box<Owed>>>,
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
    /// In the shard's io_uring file table (see [`crate::sendring`]).
    fixed: bool,
    /// RESP3 (push messages) after `HELLO 3`.
    pub resp3: Cell<bool>,
    /// Rooms joined or being joined, each with the number of its latest
    /// join request (so a stale acknowledgement is recognised).
    pub rooms: RefCell<Rooms>,
    /// Globally unique id (shard in the top 16 bits).
    pub id: u64,
    /// The user name (WebSocket `?user=`, RESP `CLIENT SETNAME`, or assigned).
    pub user: RefCell<Rc<str>>,
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
            sendring::unregister(self.fd());
        }
    }
}

impl Conn {
    /// A new connection with an outbound bound of `limit` bytes.
    pub fn new(id: u64, stream: TcpStream, kind: Kind, user: Rc<str>, limit: usize) -> Self {
        let fd = stream.as_raw_fd();
        let fixed = sendring::register(fd);
        Self {
            fd,
            id,
            stream,
            kind,
            user: RefCell::new(user),
            rooms: RefCell::new(SmallVec::new()),
            tickets: Cell::new(0),
            deferred: RefCell::new(None),
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
        }
    }

    fn head_written(&self) -> usize {
        self.head_written.get() as usize
    }

    /// Registered in the shard's io_uring file table at the index of its fd.
    pub fn fixed(&self) -> bool {
        self.fixed
    }

    /// The socket's file descriptor.
    pub fn fd(&self) -> RawFd {
        self.fd
    }

    /// Queues a frame. Does not write; see [`Conn::flush`].
    pub fn push(&self, frame: Frame) -> Queued {
        if self.closing.get() || self.closed.get() {
            return Queued::Closed;
        }
        let queued = self.queued.get() + frame.len();
        if queued > self.limit as usize {
            return Queued::OverLimit;
        }
        self.queued.set(queued);
        match self.deferred.borrow_mut().as_mut() {
            Some(owed) if !owed.is_empty() => owed.push_back((0, Some(frame))),
            _ => self.out.borrow_mut().push_back(frame),
        }
        Queued::Yes
    }

    /// The next ticket number.
    pub fn ticket(&self) -> u32 {
        let t = self.tickets.get().wrapping_add(1);
        self.tickets.set(t);
        t
    }

    /// Reserves the place of a reply that will be known later; returns the
    /// ticket to [`Conn::fulfil`] it with.
    pub fn defer(&self) -> u32 {
        let ticket = self.ticket();
        self.deferred
            .borrow_mut()
            .get_or_insert_with(Default::default)
            .push_back((ticket, None));
        ticket
    }

    /// Puts the reply for `ticket` in its place and moves every reply that
    /// is now due into the outbound queue. Returns true if any moved.
    pub fn fulfil(&self, ticket: u32, frame: Bytes) -> bool {
        if self.is_closing() {
            return false;
        }
        let mut deferred = self.deferred.borrow_mut();
        let Some(owed) = deferred.as_mut() else {
            return false;
        };
        let Some(slot) = owed.iter_mut().find(|(t, f)| *t == ticket && f.is_none()) else {
            return false;
        };
        self.queued.set(self.queued.get() + frame.len());
        slot.1 = Some(Rc::new(frame));
        let mut out = self.out.borrow_mut();
        let mut moved = false;
        while let Some((_, Some(_))) = owed.front() {
            let (_, frame) = owed.pop_front().expect("front exists");
            out.push_back(frame.expect("checked"));
            moved = true;
        }
        if owed.is_empty() {
            *deferred = None;
        }
        moved
    }

    /// Queues a last frame regardless of the bound, and refuses any more.
    /// When the head frame was half written, the last frame is not queued
    /// (it would corrupt framing); the connection then just closes.
    pub fn push_last(&self, frame: Option<Bytes>) {
        if self.closing.get() || self.closed.get() {
            return;
        }
        self.closing.set(true);
        if let Some(frame) = frame {
            self.queued.set(self.queued.get() + frame.len());
            self.out.borrow_mut().push_back(Rc::new(frame));
        }
    }

    /// Drops everything queued that has not started to leave, then queues
    /// `last` if framing allows (for closing a slow consumer).
    pub fn abandon_queue(&self, last: Option<Bytes>) {
        let mut out = self.out.borrow_mut();
        let keep = usize::from(self.head_written() > 0);
        let kept_len = out.front().filter(|_| keep == 1).map_or(0, |f| f.len());
        out.truncate(keep);
        self.queued.set(kept_len - self.head_written());
        drop(out);
        if keep == 0 {
            self.push_last(last);
        } else {
            self.closing.set(true);
        }
    }

    /// Bytes waiting to be written.
    pub fn queued(&self) -> usize {
        self.queued.get()
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

    /// Points `iov` at the queued frames, oldest first (the head frame from
    /// where the last write stopped), and returns how many entries it filled
    /// and their total length. Zero entries means the queue is empty.
    ///
    /// The entries borrow the frames: they stay valid until the queue is
    /// next changed, which the single-threaded shard guarantees for as long
    /// as the caller does not return to the runtime or touch this connection.
    pub fn gather(&self, iov: &mut [libc::iovec]) -> (usize, usize) {
        let out = self.out.borrow();
        let mut want = 0;
        let mut n = 0;
        for (slot, frame) in iov.iter_mut().zip(out.iter()) {
            let skip = if n == 0 { self.head_written() } else { 0 };
            let part = &frame[skip..];
            *slot = libc::iovec {
                iov_base: part.as_ptr() as *mut libc::c_void,
                iov_len: part.len(),
            };
            want += part.len();
            n += 1;
        }
        (n, want)
    }

    /// Drops what a write of `written` bytes took from the front of the queue.
    pub fn wrote(&self, mut written: usize) {
        self.queued.set(self.queued.get() - written);
        let mut out = self.out.borrow_mut();
        while written > 0 {
            let head_left = out[0].len() - self.head_written();
            if written >= head_left {
                written -= head_left;
                out.pop_front();
                self.head_written.set(0);
            } else {
                // Below the head frame's length, which `push` bounds by `limit`.
                self.head_written
                    .set((self.head_written() + written) as u32);
                written = 0;
            }
        }
    }

    /// True when nothing is queued. An empty queue gives back its buffer
    /// unless the connection is in a room and the buffer is small (a member
    /// reuses it for every delivery instead of allocating one each turn;
    /// a connection in no room keeps nothing), and a closing connection is
    /// shut for writing.
    pub fn drained(&self) -> bool {
        let mut out = self.out.borrow_mut();
        if !out.is_empty() {
            return false;
        }
        if out.capacity() > KEEP_QUEUE || self.rooms.borrow().is_empty() {
            *out = VecDeque::new();
        }
        drop(out);
        if self.closing.get() {
            self.shut_write();
        }
        true
    }

    /// Writes as much of the queue as the socket takes, `IOV_BATCH` frames
    /// per sendmsg. Returns the bytes written too.
    pub fn flush(&self) -> (Flushed, usize) {
        let mut total = 0;
        if self.closed.get() {
            return (Flushed::Failed, 0);
        }
        let mut iov = [libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0,
        }; IOV_BATCH];
        loop {
            if self.drained() {
                return (Flushed::All, total);
            }
            let (n, want) = self.gather(&mut iov);
            // sendmsg rather than writev: a socket send skips the VFS write
            // path (vfs_writev, fdget_pos showed as 6% of a fan-out profile),
            // and MSG_NOSIGNAL turns a peer reset into an error, not SIGPIPE.
            // SAFETY: `msg` points at `iov`, whose entries point into frames
            // owned by the queue, which nothing changes during the call.
            let r = unsafe {
                let mut msg: libc::msghdr = std::mem::zeroed();
                msg.msg_iov = iov.as_mut_ptr();
                msg.msg_iovlen = n;
                libc::sendmsg(self.fd(), &msg, SEND_FLAGS)
            };
            match self.sent(r as i64, want) {
                Sent::All => total += want,
                Sent::Part(w) => return (Flushed::Blocked, total + w),
                Sent::Again => return (Flushed::Blocked, total),
                Sent::Retry => {}
                Sent::Failed => return (Flushed::Failed, total),
            }
        }
    }

    /// Accounts for a send of `want` bytes that returned `r` (a byte count
    /// or, negative, an errno or -1 with `errno` set for a system call).
    pub fn sent(&self, r: i64, want: usize) -> Sent {
        if r < 0 {
            let err = if r == -1 {
                io::Error::last_os_error()
            } else {
                io::Error::from_raw_os_error(-r as i32)
            };
            return match err.kind() {
                io::ErrorKind::WouldBlock => Sent::Again,
                io::ErrorKind::Interrupted => Sent::Retry,
                _ => Sent::Failed,
            };
        }
        let written = r as usize;
        self.wrote(written);
        if written < want {
            Sent::Part(written)
        } else {
            Sent::All
        }
    }
}

/// Flags of every send: never block, and a peer reset is an error rather
/// than SIGPIPE.
pub const SEND_FLAGS: libc::c_int = libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL;

/// What one send did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sent {
    /// Everything offered was written.
    All,
    /// Only this many bytes fit: the socket buffer is full.
    Part(usize),
    /// Nothing fit (EAGAIN).
    Again,
    /// Interrupted before anything was written; try again.
    Retry,
    /// The socket failed.
    Failed,
}

/// Reads what the socket has into `buf` without waiting; `Ok(0)` is the end
/// of the stream, `WouldBlock` means wait for readability.
pub fn recv_into(fd: RawFd, buf: &mut bytes::BytesMut, min_spare: usize) -> io::Result<usize> {
    if buf.capacity() - buf.len() < min_spare {
        buf.reserve(min_spare);
    }
    let spare = buf.spare_capacity_mut();
    loop {
        // SAFETY: recv writes at most `spare.len()` bytes into the spare
        // capacity; we only mark as initialised what it reports written.
        let r = unsafe {
            libc::recv(
                fd,
                spare.as_mut_ptr() as *mut libc::c_void,
                spare.len(),
                libc::MSG_DONTWAIT,
            )
        };
        if r >= 0 {
            // SAFETY: the kernel initialised `r` bytes.
            unsafe { buf.set_len(buf.len() + r as usize) };
            return Ok(r as usize);
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// Reads at least one byte (or the end of the stream), waiting for
/// readability only when the socket is empty. While waiting, an empty `buf`
/// is released so idle connections hold no read buffer.
pub async fn read_some(
    stream: &TcpStream,
    buf: &mut bytes::BytesMut,
    min_spare: usize,
) -> io::Result<usize> {
    loop {
        match recv_into(stream.as_raw_fd(), buf, min_spare) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if buf.is_empty() {
                    *buf = bytes::BytesMut::new();
                }
                stream.readable(false).await?;
            }
            other => return other,
        }
    }
}

/// Yields to the other tasks of the shard once, so one busy connection
/// cannot starve the rest.
pub async fn yield_now() {
    let mut yielded = false;
    std::future::poll_fn(|cx| {
        if yielded {
            std::task::Poll::Ready(())
        } else {
            yielded = true;
            cx.waker().wake_by_ref();
            std::task::Poll::Pending
        }
    })
    .await
}

/// Prepares an accepted socket: non-blocking (reads and writes are direct
/// system calls that must never block the shard) and no Nagle delay (the
/// shard corks frames itself).
pub fn prepare_socket(stream: &TcpStream) {
    let fd = stream.as_raw_fd();
    // SAFETY: fcntl on an fd we own.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        if flags >= 0 && flags & libc::O_NONBLOCK == 0 {
            libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK);
        }
    }
    let _ = stream.set_nodelay(true);
}

/// After the last frame was queued: waits (bounded) for the peer to finish,
/// reading and discarding, so that closing does not reset the connection
/// before the peer has read our last frame.
pub async fn linger(conn: &Conn, deadline: std::time::Duration) {
    let mut scratch = bytes::BytesMut::new();
    let _ = monoio::time::timeout(deadline, async {
        while !conn.is_closed() {
            scratch.clear();
            match read_some(&conn.stream, &mut scratch, 4096).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    })
    .await;
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
            offset_of!(Conn, deferred) + 16,
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
