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
//! Sockets are registered in the ring's file table ([`super::files`]), so a
//! send names the table slot instead of the fd.
//!
//! The ring is the shard's own, separate from the runtime's, and used only
//! here. Where io_uring cannot be set up (epoll shards, old kernels,
//! seccomp), [`SendRing::new`] fails and the shard writes with `sendmsg`.
//! The ring knows nothing of connections: it sends what an [`Outgoing`]
//! points it at and reports each result.

use std::io;
use std::os::fd::RawFd;
use std::rc::Rc;

use io_uring::{opcode, squeue, types, IoUring};

use super::files;

/// Entries per submission (and the most connections written per enter).
const ENTRIES: u32 = 512;

/// Most file table slots (the kernel's own bound on fixed files).
const MAX_SLOTS: u64 = 1 << 20;

/// Most iovecs per send.
pub const IOV_BATCH: usize = 64;

/// Flags of every send: never block, and a peer reset is an error rather
/// than SIGPIPE.
pub const SEND_FLAGS: libc::c_int = libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL;

/// What the ring needs of something it writes.
pub trait Outgoing {
    /// The socket.
    fn fd(&self) -> RawFd;
    /// Registered in the file table at the index of its fd.
    fn fixed(&self) -> bool;
    /// Points `iov` at the bytes to send, oldest first; returns how many
    /// entries it filled and their total length (zero entries: nothing to
    /// send). The bytes must stay put until the send's result is reported.
    fn gather(&self, iov: &mut [libc::iovec]) -> (usize, usize);
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
    /// Shared with the file table, which updates it through its submitter.
    ring: Rc<IoUring>,
    /// Boxed so the addresses handed to the kernel stay put.
    slots: Box<[Slot]>,
}

impl SendRing {
    /// A ring of [`ENTRIES`] entries with a file table sized to the fd
    /// limit, or why io_uring is unavailable.
    pub fn new() -> io::Result<Self> {
        let ring = IoUring::builder()
            .setup_single_issuer()
            .setup_coop_taskrun()
            .build(ENTRIES)
            .or_else(|_| IoUring::new(ENTRIES))?;
        let ring = Rc::new(ring);
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
            files::install(&ring, size);
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

    /// Items one call to [`SendRing::send`] takes at most.
    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// Writes what each of `items` (at most [`SendRing::capacity`], each
    /// once) has queued, with one `io_uring_enter`. `out[i]` is the send of
    /// `items[i]`: the kernel's result (bytes written, or a negative errno)
    /// and the bytes offered; an item with nothing queued gets `(0, 0)`.
    /// Returns the number of sends submitted. After an error the results
    /// of the sends that completed are in `out`; the rest were not written.
    pub fn send<T: Outgoing>(
        &mut self,
        items: &[Rc<T>],
        out: &mut Vec<(i32, usize)>,
    ) -> io::Result<usize> {
        debug_assert!(items.len() <= self.slots.len());
        out.clear();
        out.resize(items.len(), (0, 0));
        let mut pushed = 0;
        {
            // SAFETY: the shard's thread is the only user of this ring, and
            // no other submission queue handle is alive (the file table
            // only uses the submitter).
            let mut sq = unsafe { self.ring.submission_shared() };
            for (i, item) in items.iter().enumerate() {
                let slot = &mut self.slots[i];
                let (n, want) = item.gather(&mut slot.iov);
                slot.want = want;
                if n == 0 {
                    continue;
                }
                let mut sqe = prepare(types::Fd(item.fd()), slot, n);
                if item.fixed() {
                    // Registered at the index of its fd number.
                    sqe = sqe.flags(squeue::Flags::FIXED_FILE);
                }
                // SAFETY: the entry points at `slot` (boxed, not touched
                // again until its completion is reaped below) and at bytes
                // the item keeps in place until its result is reported.
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
            // SAFETY: as for the submission queue above.
            for cqe in unsafe { self.ring.completion_shared() } {
                let i = cqe.user_data() as usize;
                out[i] = (cqe.result(), self.slots[i].want);
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
        files::uninstall();
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
    use std::os::fd::AsRawFd;
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
        assert!(files::register(fd), "fd {fd} fits the table");
        drop(a);
        let mut buf = [0u8; 8];
        let err = b.read(&mut buf).unwrap_err();
        assert_eq!(
            err.kind(),
            ErrorKind::WouldBlock,
            "still open via the table"
        );
        assert!(files::unregister(fd).unwrap());
        assert_eq!(b.read(&mut buf).unwrap(), 0, "end of stream once released");
        drop(ring);
        assert!(!files::register(0), "no table without a ring");
    }
}
