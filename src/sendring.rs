//! Batched sends: one `io_uring_enter` writes every dirty connection of a
//! turn.
//!
//! A fan-out turn leaves hundreds of connections with a frame or two queued.
//! Written with one `sendmsg` each, every delivery pays a system call entry
//! and exit, a `msghdr` copy and an iovec import; here each connection gets a
//! submission queue entry pointing at its queued frames, and a single
//! `io_uring_enter` issues them all. The sends carry `MSG_DONTWAIT`, so the
//! kernel runs each one inline and completes it at once, with a byte count
//! or `EAGAIN`, instead of parking it: by the time `io_uring_enter` returns,
//! every completion is on the ring and no frame is borrowed past the call.
//!
//! The ring is the shard's own, separate from the runtime's, and used only
//! here. Where io_uring cannot be set up (epoll shards, old kernels,
//! seccomp), [`SendRing::new`] fails and the shard writes with `sendmsg`.

use std::io;
use std::rc::Rc;

use io_uring::{opcode, types, IoUring};

use crate::conn::{Conn, Sent, IOV_BATCH, SEND_FLAGS};

/// Entries per submission (and the most connections written per enter).
const ENTRIES: u32 = 512;

/// One connection's part of a batch: its iovecs and, when it has more than
/// one frame queued, the `msghdr` that points at them.
struct Slot {
    iov: [libc::iovec; IOV_BATCH],
    msg: libc::msghdr,
    want: usize,
}

/// A shard's send ring with the iovec space of a full batch.
pub struct SendRing {
    ring: IoUring,
    /// Boxed so the addresses handed to the kernel stay put.
    slots: Box<[Slot]>,
}

impl SendRing {
    /// A ring of [`ENTRIES`] entries, or why io_uring is unavailable.
    pub fn new() -> io::Result<Self> {
        let ring = IoUring::builder()
            .setup_single_issuer()
            .setup_coop_taskrun()
            .build(ENTRIES)
            .or_else(|_| IoUring::new(ENTRIES))?;
        let empty = libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0,
        };
        let slots = (0..ENTRIES)
            .map(|_| Slot {
                iov: [empty; IOV_BATCH],
                // SAFETY: an all-zero msghdr is a valid empty one.
                msg: unsafe { std::mem::zeroed() },
                want: 0,
            })
            .collect();
        Ok(Self { ring, slots })
    }

    /// Connections one call to [`SendRing::send`] takes at most.
    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// Writes the queues of `conns` (at most [`SendRing::capacity`], none
    /// closed, each once) with one `io_uring_enter`. `out[i]` says how the
    /// send of `conns[i]` went and how many bytes it wrote; a connection
    /// whose queue was empty gets `(Sent::All, 0)`. Returns the number of
    /// sends submitted. After an error the queues account for every send
    /// that completed; the rest were not written.
    pub fn send(&mut self, conns: &[Rc<Conn>], out: &mut Vec<(Sent, usize)>) -> io::Result<usize> {
        debug_assert!(conns.len() <= self.slots.len());
        out.clear();
        out.resize(conns.len(), (Sent::All, 0));
        let mut pushed = 0;
        {
            let mut sq = self.ring.submission();
            for (i, conn) in conns.iter().enumerate() {
                let slot = &mut self.slots[i];
                let (n, want) = conn.gather(&mut slot.iov);
                slot.want = want;
                if n == 0 {
                    continue;
                }
                let fd = types::Fd(conn.fd());
                let sqe = if n == 1 {
                    opcode::Send::new(fd, slot.iov[0].iov_base as *const u8, want as u32)
                        .flags(SEND_FLAGS)
                        .build()
                } else {
                    slot.msg.msg_iov = slot.iov.as_mut_ptr();
                    slot.msg.msg_iovlen = n;
                    opcode::SendMsg::new(fd, &slot.msg)
                        .flags(SEND_FLAGS as u32)
                        .build()
                };
                // SAFETY: the entry points at `slot` (boxed, not touched
                // again until its completion is reaped below) and at frames
                // the connection's queue owns; nothing can change that
                // queue before this function returns.
                unsafe {
                    sq.push(&sqe.user_data(i as u64))
                        .expect("a batch never exceeds the ring");
                }
                pushed += 1;
            }
        }
        if pushed == 0 {
            return Ok(0);
        }
        loop {
            match self.ring.submit() {
                Ok(_) => break,
                Err(e)
                    if matches!(
                        e.raw_os_error(),
                        Some(libc::EINTR | libc::EAGAIN | libc::EBUSY)
                    ) => {}
                Err(e) => return Err(e),
            }
        }
        let mut reaped = 0;
        while reaped < pushed {
            for cqe in self.ring.completion() {
                let i = cqe.user_data() as usize;
                let want = self.slots[i].want;
                let sent = conns[i].sent(i64::from(cqe.result()), want);
                let bytes = match sent {
                    Sent::All => want,
                    Sent::Part(n) => n,
                    _ => 0,
                };
                out[i] = (sent, bytes);
                reaped += 1;
            }
            if reaped < pushed {
                // MSG_DONTWAIT sends complete inside the enter; this only
                // runs if a kernel handed one to a worker thread instead.
                match self.ring.submit_and_wait(pushed - reaped) {
                    Ok(_) => {}
                    Err(e) if e.raw_os_error() == Some(libc::EINTR) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(pushed)
    }
}
