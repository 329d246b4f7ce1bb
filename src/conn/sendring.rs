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

/// What became of one item's send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The kernel completed it: bytes written, or a negative errno.
    Done(i32),
    /// It was never handed to the kernel: nothing of it was written.
    NotSent,
    /// The kernel took it but its completion was never seen (the ring
    /// failed): some bytes may have gone, and the kernel may still read
    /// the buffers it points at.
    Lost,
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
    /// The items of the current batch in the order their entries were
    /// pushed.
    order: Vec<usize>,
    /// Test hook: the next submit reports an error after the kernel took
    /// the entries, as a real failure part-way through an enter would.
    #[cfg(test)]
    fail_after_submit: bool,
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
        Ok(Self {
            ring,
            slots,
            order: Vec::with_capacity(ENTRIES as usize),
            #[cfg(test)]
            fail_after_submit: false,
        })
    }

    /// Items one call to [`SendRing::send`] takes at most.
    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// Writes what each of `items` (at most [`SendRing::capacity`], each
    /// once) has queued, with one `io_uring_enter`. `out[i]` is what became
    /// of the send of `items[i]` and the bytes it offered; an item with
    /// nothing queued gets `(Done(0), 0)`. Returns the number of sends
    /// submitted.
    ///
    /// On an error every entry the kernel took is waited for, so `out`
    /// says exactly which sends completed ([`Outcome::Done`]), which never
    /// left ([`Outcome::NotSent`], safe to write another way) and which are
    /// unknown ([`Outcome::Lost`]: close that connection, and keep its
    /// buffers alive). The ring must not be used after an error: entries
    /// the kernel did not take are still in it.
    pub fn send<T: Outgoing>(
        &mut self,
        items: &[Rc<T>],
        out: &mut Vec<(Outcome, usize)>,
    ) -> io::Result<usize> {
        debug_assert!(items.len() <= self.slots.len());
        out.clear();
        out.resize(items.len(), (Outcome::Done(0), 0));
        self.order.clear();
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
                self.order.push(i);
                pushed += 1;
            }
        }
        if pushed == 0 {
            return Ok(0);
        }
        let failed = loop {
            match self.submit() {
                Ok(_) => break None,
                Err(e)
                    if matches!(
                        e.raw_os_error(),
                        Some(libc::EINTR | libc::EAGAIN | libc::EBUSY)
                    ) => {}
                Err(e) => break Some(e),
            }
        };
        // The kernel takes entries in the order they were pushed: after an
        // error, those still in the queue were never sent. Those it took
        // count as lost until their completions are seen.
        let taken = if failed.is_some() {
            // SAFETY: as for the submission queue above.
            pushed - unsafe { self.ring.submission_shared() }.len().min(pushed)
        } else {
            pushed
        };
        for (k, &i) in self.order.iter().enumerate() {
            let outcome = if k < taken {
                Outcome::Lost
            } else {
                Outcome::NotSent
            };
            out[i] = (outcome, self.slots[i].want);
        }
        let mut reaped = 0;
        let mut wait_failed = None;
        while reaped < taken {
            // SAFETY: as for the submission queue above.
            for cqe in unsafe { self.ring.completion_shared() } {
                let i = cqe.user_data() as usize;
                out[i] = (Outcome::Done(cqe.result()), self.slots[i].want);
                reaped += 1;
            }
            if reaped < taken {
                // MSG_DONTWAIT sends complete inside the enter; this only
                // runs if a kernel handed one to a worker thread instead.
                match self.ring.submit_and_wait(taken - reaped) {
                    Ok(_) => {}
                    Err(e) if e.raw_os_error() == Some(libc::EINTR) => {}
                    Err(e) => {
                        wait_failed = Some(e);
                        break;
                    }
                }
            }
        }
        match failed.or(wait_failed) {
            Some(e) => Err(e),
            None => Ok(pushed),
        }
    }

    fn submit(&mut self) -> io::Result<usize> {
        let n = self.ring.submit()?;
        #[cfg(test)]
        if std::mem::take(&mut self.fail_after_submit) {
            return Err(io::Error::from_raw_os_error(libc::EFAULT));
        }
        Ok(n)
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

    /// A ring, or a visible note that this host has no io_uring.
    fn ring_or_skip(test: &str) -> Option<SendRing> {
        match SendRing::new() {
            Ok(ring) => Some(ring),
            Err(e) => {
                eprintln!("SKIPPED {test}: this host cannot set up io_uring ({e})");
                None
            }
        }
    }

    /// What the ring sends in the tests: bytes to one end of a socket pair.
    struct Bytes2(RawFd, Vec<u8>);

    impl Outgoing for Bytes2 {
        fn fd(&self) -> RawFd {
            self.0
        }
        fn fixed(&self) -> bool {
            false
        }
        fn gather(&self, iov: &mut [libc::iovec]) -> (usize, usize) {
            if self.1.is_empty() {
                return (0, 0);
            }
            iov[0] = libc::iovec {
                iov_base: self.1.as_ptr() as *mut libc::c_void,
                iov_len: self.1.len(),
            };
            (1, self.1.len())
        }
    }

    /// A ring that fails after the kernel took the sends still reports
    /// each send's true outcome, so the caller never sends the same bytes
    /// again: every peer gets its bytes exactly once.
    #[test]
    fn after_a_failure_each_send_says_what_became_of_it() {
        let Some(mut ring) = ring_or_skip("after_a_failure_each_send_says_what_became_of_it")
        else {
            return;
        };
        let pairs: Vec<(UnixStream, UnixStream)> =
            (0..3).map(|_| UnixStream::pair().unwrap()).collect();
        let items: Vec<Rc<Bytes2>> = pairs
            .iter()
            .enumerate()
            .map(|(i, (a, _))| Rc::new(Bytes2(a.as_raw_fd(), vec![b'a' + i as u8; 100])))
            .chain([Rc::new(Bytes2(pairs[0].0.as_raw_fd(), Vec::new()))])
            .collect();
        ring.fail_after_submit = true;
        let mut out = Vec::new();
        assert!(ring.send(&items, &mut out).is_err());
        assert_eq!(out[..3], [(Outcome::Done(100), 100); 3], "{out:?}");
        assert_eq!(
            out[3],
            (Outcome::Done(0), 0),
            "nothing queued, nothing sent"
        );
        for (i, (_, b)) in pairs.iter().enumerate() {
            b.set_nonblocking(true).unwrap();
            let mut got = Vec::new();
            let mut buf = [0u8; 512];
            while let Ok(n) = (&*b).read(&mut buf) {
                got.extend_from_slice(&buf[..n]);
            }
            assert_eq!(got, vec![b'a' + i as u8; 100], "exactly once");
        }
    }

    /// The file table keeps a registered socket open after its fd closes;
    /// unregistering releases it. This is why `Conn` unregisters on drop.
    #[test]
    fn the_file_table_holds_a_socket_until_unregistered() {
        let Some(ring) = ring_or_skip("the_file_table_holds_a_socket_until_unregistered") else {
            return;
        };
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
