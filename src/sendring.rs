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
//! Each socket is also registered in the ring's file table, at the index of
//! its fd number, so a send skips the per-call file lookup and reference
//! count (`fget`/`fput`, 3–4% of a fan-out profile). The table holds a
//! reference to the socket: a connection unregisters before its fd closes
//! ([`unregister`], from `Conn`'s drop), or the socket would stay open.
//!
//! The ring is the shard's own, separate from the runtime's, and used only
//! here. Where io_uring cannot be set up (epoll shards, old kernels,
//! seccomp), [`SendRing::new`] fails and the shard writes with `sendmsg`.

use std::cell::Cell;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::rc::Rc;

use io_uring::{opcode, squeue, types, IoUring};

use crate::conn::{Conn, Sent, IOV_BATCH, SEND_FLAGS};

/// Entries per submission (and the most connections written per enter).
const ENTRIES: u32 = 512;

/// Most file table slots (the kernel's own bound on fixed files).
const MAX_SLOTS: u64 = 1 << 20;

/// `IORING_REGISTER_FILES_UPDATE`.
const REGISTER_FILES_UPDATE: libc::c_uint = 6;

/// `struct io_uring_files_update`.
#[repr(C)]
struct FilesUpdate {
    offset: u32,
    resv: u32,
    fds: u64,
}

thread_local! {
    /// This shard's send ring fd and file table size, while it has one.
    static TABLE: Cell<(RawFd, u32)> = const { Cell::new((-1, 0)) };
}

/// Puts `fd` in this shard's file table at index `fd`, so the fd it refers
/// to is `fd` and sends skip the file lookup. False when the shard has no
/// table or `fd` does not fit; then sends use the plain fd.
pub fn register(fd: RawFd) -> bool {
    update(fd, fd)
}

/// Takes `fd` out of this shard's file table. Must run before `fd` closes.
pub fn unregister(fd: RawFd) {
    update(fd, -1);
}

fn update(slot: RawFd, fd: RawFd) -> bool {
    let (ring, size) = TABLE.get();
    if ring < 0 || slot < 0 || slot as u32 >= size {
        return false;
    }
    let fds = [fd];
    let up = FilesUpdate {
        offset: slot as u32,
        resv: 0,
        fds: fds.as_ptr() as u64,
    };
    // SAFETY: `up` and `fds` outlive the call; `ring` is this thread's live
    // send ring (the table is cleared when the ring is dropped).
    let r = unsafe {
        libc::syscall(
            libc::SYS_io_uring_register,
            ring,
            REGISTER_FILES_UPDATE,
            &up as *const FilesUpdate,
            1,
        )
    };
    r == 1
}

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
        // One slot per possible fd number; without a table, sends use fds.
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes into `lim`.
        let size = if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0 {
            lim.rlim_cur.min(MAX_SLOTS) as u32
        } else {
            0
        };
        if size > 0 && ring.submitter().register_files_sparse(size).is_ok() {
            TABLE.set((ring.as_raw_fd(), size));
        } else {
            tracing::debug!("no io_uring file table; sends look up fds");
        }
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
                let mut sqe = prepare(types::Fd(conn.fd()), slot, n);
                if conn.fixed() {
                    // Registered at the index of its fd number.
                    sqe = sqe.flags(squeue::Flags::FIXED_FILE);
                }
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

impl Drop for SendRing {
    fn drop(&mut self) {
        // The table goes with the ring; later unregisters are no-ops.
        TABLE.set((-1, 0));
    }
}

/// A send of the `n` iovecs gathered in `slot`: `Send` for one frame,
/// `SendMsg` for more.
fn prepare(fd: types::Fd, slot: &mut Slot, n: usize) -> squeue::Entry {
    if n == 1 {
        opcode::Send::new(fd, slot.iov[0].iov_base as *const u8, slot.want as u32)
            .flags(SEND_FLAGS)
            .build()
    } else {
        slot.msg.msg_iov = slot.iov.as_mut_ptr();
        slot.msg.msg_iovlen = n;
        opcode::SendMsg::new(fd, &slot.msg)
            .flags(SEND_FLAGS as u32)
            .build()
    }
}

#[cfg(test)]
mod tests {
    use std::io::{ErrorKind, Read};
    use std::os::unix::net::UnixStream;

    use super::*;

    /// The file table keeps a registered socket open after its fd closes;
    /// unregistering releases it. This is why `Conn` unregisters on drop.
    #[test]
    fn the_file_table_holds_a_socket_until_unregistered() {
        let ring = SendRing::new().expect("io_uring send ring");
        let (a, mut b) = UnixStream::pair().unwrap();
        b.set_nonblocking(true).unwrap();
        let fd = a.as_raw_fd();
        assert!(register(fd), "fd {fd} fits the table");
        drop(a);
        let mut buf = [0u8; 8];
        let err = b.read(&mut buf).unwrap_err();
        assert_eq!(
            err.kind(),
            ErrorKind::WouldBlock,
            "still open via the table"
        );
        unregister(fd);
        assert_eq!(b.read(&mut buf).unwrap(), 0, "end of stream once released");
        drop(ring);
        assert!(!register(0), "no table without a ring");
    }
}
