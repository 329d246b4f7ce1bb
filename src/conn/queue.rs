//! The outbound queue: queueing frames within the connection's bound, in
//! reply order, and writing them out.

use std::collections::VecDeque;
use std::io;
use std::os::fd::RawFd;

use bytes::Bytes;

use super::order::Frame;
use super::order::UNRESERVED;
use super::sendring::{Outgoing, IOV_BATCH, SEND_FLAGS};
use super::Conn;

/// Queue slots a room member's empty queue keeps rather than freeing (16
/// frames, 128 bytes): enough for a burst without reallocating every turn.
const KEEP_QUEUE: usize = 16;

/// What a connection's own frame starts with room for (it grows as bytes
/// are added, and goes once written).
const OWN_START: usize = 512;

/// An own frame grows to this at most; past it bytes go to a new one. A
/// lagging reader's backlog is then held in frames of this size rather
/// than one buffer that doubles (up to twice the backlog, and a copy of
/// all of it at each doubling).
const OWN_MAX: usize = 64 * 1024;

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

impl Conn {
    fn head_written(&self) -> usize {
        self.head_written.get() as usize
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
        match self.deferred.take() {
            Some(mut owed) if !owed.is_empty() => {
                owed.wait(frame);
                self.deferred.set(Some(owed));
            }
            _ => self.out.borrow_mut().push_back(frame),
        }
        Queued::Yes
    }

    /// Queues the `len` bytes `write` adds, written straight into the
    /// connection's own frame at the end of the queue (a new one if the
    /// queue does not end in one). Bytes behind replies still owed get a
    /// frame of their own, which waits with the others.
    pub fn append(&self, len: usize, write: impl FnOnce(&mut Vec<u8>)) -> Queued {
        if self.closing.get() || self.closed.get() {
            return Queued::Closed;
        }
        if self.owes() {
            let mut bytes = Vec::with_capacity(len);
            write(&mut bytes);
            return self.push(Frame::own(bytes));
        }
        let queued = self.queued.get() + len;
        if queued > self.limit as usize {
            return Queued::OverLimit;
        }
        self.queued.set(queued);
        let mut out = self.out.borrow_mut();
        let open = self.tail_open(&out);
        match out.back_mut().filter(|_| open).and_then(Frame::own_mut) {
            Some(own) if own.len() + len <= OWN_MAX => {
                let before = own.len();
                write(own);
                debug_assert_eq!(own.len() - before, len, "append: wrong length");
            }
            _ => {
                let mut bytes = Vec::with_capacity(len.max(OWN_START));
                write(&mut bytes);
                debug_assert_eq!(bytes.len(), len, "append: wrong length");
                out.push_back(Frame::own(bytes));
            }
        }
        Queued::Yes
    }

    /// True when the queue ends in the connection's own frame, which
    /// [`Conn::append`] adds to without allocating.
    pub fn has_own_tail(&self) -> bool {
        let out = self.out.borrow();
        self.tail_open(&out) && out.back().is_some_and(Frame::is_own)
    }

    /// True unless the last frame is a head frame partly written, which is
    /// not added to: the part gone would stay allocated for as long as
    /// bytes kept coming.
    fn tail_open(&self, out: &VecDeque<Frame>) -> bool {
        out.len() > 1 || self.head_written() == 0
    }

    /// The next ticket number (never [`UNRESERVED`]).
    pub fn ticket(&self) -> u32 {
        let mut t = self.tickets.get().wrapping_add(1);
        if t == UNRESERVED {
            t = 1;
        }
        self.tickets.set(t);
        t
    }

    /// Reserves the place of a reply that will be known later; returns the
    /// ticket to [`Conn::fulfil`] it with.
    pub fn defer(&self) -> u32 {
        let ticket = self.ticket();
        let mut owed = self.deferred.take().unwrap_or_default();
        owed.reserve(ticket);
        self.deferred.set(Some(owed));
        ticket
    }

    /// Puts the reply for `ticket` in its place and moves every reply that
    /// is now due into the outbound queue. Returns true if any moved.
    pub fn fulfil(&self, ticket: u32, frame: Frame) -> bool {
        if self.is_closing() {
            return false;
        }
        let Some(mut owed) = self.deferred.take() else {
            return false;
        };
        let len = frame.len();
        let filled = owed.fill(ticket, frame);
        let moved = filled && owed.release(&mut self.out.borrow_mut());
        if filled {
            self.queued.set(self.queued.get() + len);
        }
        if !owed.is_empty() {
            self.deferred.set(Some(owed));
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
            self.out.borrow_mut().push_back(Frame::from(frame));
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

    /// Closes the queue and gives up its frames without freeing them: for
    /// a send whose fate is unknown, whose buffers the kernel may still read.
    pub fn quarantine(&self) {
        self.closing.set(true);
        let frames = std::mem::take(&mut *self.out.borrow_mut());
        self.queued.set(0);
        self.head_written.set(0);
        std::mem::forget(frames);
    }

    /// True while a reply is still owed (its home has not answered).
    pub fn owes(&self) -> bool {
        let owed = self.deferred.take();
        let owes = owed.as_ref().is_some_and(|o| !o.is_empty());
        self.deferred.set(owed);
        owes
    }

    /// Bytes waiting to be written.
    pub fn queued(&self) -> usize {
        self.queued.get()
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
            let r = usize::try_from(r).map_err(|_| io::Error::last_os_error());
            match self.sent(r, want) {
                Sent::All => total += want,
                Sent::Part(w) => return (Flushed::Blocked, total + w),
                Sent::Again => return (Flushed::Blocked, total),
                Sent::Retry => {}
                Sent::Failed => return (Flushed::Failed, total),
            }
        }
    }

    /// Accounts for a send of `want` bytes that wrote `r` bytes or failed.
    pub fn sent(&self, r: io::Result<usize>, want: usize) -> Sent {
        let written = match r {
            Ok(n) => n,
            Err(e) => {
                return match e.kind() {
                    io::ErrorKind::WouldBlock => Sent::Again,
                    io::ErrorKind::Interrupted => Sent::Retry,
                    _ => Sent::Failed,
                }
            }
        };
        self.wrote(written);
        if written < want {
            Sent::Part(written)
        } else {
            Sent::All
        }
    }
}

impl Outgoing for Conn {
    fn fd(&self) -> RawFd {
        self.fd
    }

    fn fixed(&self) -> bool {
        self.fixed
    }

    fn gather(&self, iov: &mut [libc::iovec]) -> (usize, usize) {
        Conn::gather(self, iov)
    }
}

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

#[cfg(test)]
mod tests {
    use std::io::Read;
    use std::os::fd::AsRawFd;

    use super::*;
    use crate::conn::Kind;

    fn buffer_size(fd: RawFd, opt: libc::c_int, size: libc::c_int) {
        // SAFETY: setsockopt reads an int from a live local.
        let r = unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                opt,
                (&size as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        assert_eq!(r, 0, "setsockopt");
    }

    /// A reader slower than the bytes coming: the connection's own frame
    /// is partly written turn after turn. The part written must go as it
    /// goes, so what the queue holds stays near what is left to send (not
    /// everything ever sent through it).
    #[test]
    fn bytes_written_are_given_back_while_more_keep_coming() {
        let mut rt = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .build()
            .unwrap();
        rt.block_on(async {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let mut peer = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
            let (ours, _) = listener.accept().unwrap();
            // A small send buffer keeps every flush partial. The peer keeps
            // its default receive buffer and reads all that came each round:
            // a window closed on a buffer below the loopback MSS opens again
            // only on a zero-window probe, hundreds of milliseconds later.
            buffer_size(ours.as_raw_fd(), libc::SO_SNDBUF, 4096);
            ours.set_nonblocking(true).unwrap();
            peer.set_nonblocking(true).unwrap();
            let stream = monoio::net::TcpStream::from_std(ours).unwrap();
            let conn = Conn::new(1, stream, Kind::Resp, "u".into(), 1 << 20, 0);
            const BACKLOG: usize = 64 * 1024;
            let (mut sent, mut received, mut partial) = (0usize, 0usize, 0);
            let mut buf = [0u8; 8192];
            for round in 0..3000 {
                while conn.queued() < BACKLOG {
                    let q = conn.append(1000, |out| out.resize(out.len() + 1000, b'x'));
                    assert_eq!(q, Queued::Yes);
                    sent += 1000;
                }
                assert_ne!(conn.flush().0, Flushed::Failed);
                partial += usize::from(conn.head_written() > 0);
                // Everything that arrived is read, so the peer's window
                // stays open and only our send buffer limits a flush.
                loop {
                    match peer.read(&mut buf) {
                        Ok(0) => panic!("round {round}: the connection closed"),
                        Ok(n) => received += n,
                        Err(e) => {
                            assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
                            break;
                        }
                    }
                }
                let out = conn.out.borrow();
                assert!(
                    out.iter().all(|f| f.len() <= OWN_MAX),
                    "round {round}: a frame past OWN_MAX"
                );
                let held: usize = out.iter().map(|f| f.len()).sum();
                drop(out);
                assert!(
                    held <= 2 * BACKLOG + 1000,
                    "round {round}: {held} bytes held for {} queued",
                    conn.queued()
                );
            }
            assert!(
                received > 16 * BACKLOG,
                "only {received} of {sent} bytes went"
            );
            assert!(
                partial > 100,
                "the head was partly written in {partial} rounds"
            );
        });
    }
}
