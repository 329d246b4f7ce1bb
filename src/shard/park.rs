//! Parking idle connections: a WebSocket connection that has nothing to
//! read and no partial message gives up its task; the shard watches its
//! socket instead, and starts a new task when the client sends again (or
//! the socket is shut down). An idle connection then costs its state and
//! its kernel socket, not a task with a suspended read loop in it.
//!
//! The sockets are watched with one epoll set per shard (one-shot entries:
//! a socket reports once, then is re-armed when it parks again); the shard
//! waits for the set itself through its runtime like for any socket, so
//! this works the same on io_uring and on epoll. Writes to a parked
//! connection need no task: the flusher writes them.

use std::io;
use std::os::fd::{FromRawFd, RawFd};
use std::rc::Rc;

use crate::conn::io::yield_now;
use crate::conn::Conn;

use super::admission::Source;
use super::{Admitted, Resume, Shard};

/// A connection as its shard holds it (in `conns`, by id) and, while it
/// is parked, its place in the admission counts and what starts its task
/// again: 24 bytes in the map an open connection is in anyway, where a
/// second map of parked ones cost 75 bytes a connection with its slack.
pub(super) struct Held {
    pub(super) conn: Rc<Conn>,
    parked: Option<(Source, Resume)>,
}

impl Held {
    pub(super) fn new(conn: Rc<Conn>) -> Self {
        Self { conn, parked: None }
    }
}

/// One shard's parked connections.
pub(super) struct Parking {
    epoll: RawFd,
    /// The epoll set as the runtime waits for it (a second descriptor of
    /// it: the runtime's socket type is how it waits for any descriptor).
    waiter: Rc<monoio::net::TcpStream>,
}

/// Events taken per `epoll_wait`.
const EVENTS: usize = 256;

impl Parking {
    /// A parking lot for this shard's runtime (call on the shard thread).
    pub(super) fn new() -> io::Result<Self> {
        // SAFETY: plain system calls; the descriptors are ours.
        let epoll = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if epoll < 0 {
            return Err(io::Error::last_os_error());
        }
        let dup = unsafe { libc::fcntl(epoll, libc::F_DUPFD_CLOEXEC, 0) };
        if dup < 0 {
            let e = io::Error::last_os_error();
            unsafe { libc::close(epoll) };
            return Err(e);
        }
        // SAFETY: `dup` is an open descriptor we own; the std type only
        // carries it into the runtime, which polls it for readability.
        let std = unsafe { std::net::TcpStream::from_raw_fd(dup) };
        let waiter = Rc::new(monoio::net::TcpStream::from_std(std)?);
        Ok(Self { epoll, waiter })
    }
}

impl Drop for Parking {
    fn drop(&mut self) {
        // SAFETY: our descriptor.
        unsafe { libc::close(self.epoll) };
    }
}

impl Shard {
    /// Parks a connection whose task found nothing to read: its task may
    /// end, and `resume` starts a new one when the socket is readable. Gives
    /// the connection back when it cannot be parked (no parking here, or
    /// the kernel refused): its task then waits as before.
    pub fn park(
        admitted: Admitted,
        conn: Rc<Conn>,
        resume: Resume,
    ) -> Result<(), (Admitted, Rc<Conn>)> {
        let shard = Rc::clone(&admitted);
        let parking = shard.parking.borrow();
        let Some(p) = parking.as_ref() else {
            return Err((admitted, conn));
        };
        let mut conns = shard.conns.borrow_mut();
        let Some(held) = conns.get_mut(&conn.id) else {
            return Err((admitted, conn));
        };
        let mut ev = libc::epoll_event {
            events: (libc::EPOLLIN | libc::EPOLLRDHUP | libc::EPOLLONESHOT) as u32,
            u64: conn.id,
        };
        let fd = conn.fd();
        // Re-arm (the usual case), else add: one call either way after the
        // first park.
        // SAFETY: epoll_ctl on our set and the connection's open socket.
        let mut r = unsafe { libc::epoll_ctl(p.epoll, libc::EPOLL_CTL_MOD, fd, &mut ev) };
        if r < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::ENOENT) {
            r = unsafe { libc::epoll_ctl(p.epoll, libc::EPOLL_CTL_ADD, fd, &mut ev) };
        }
        if r < 0 {
            return Err((admitted, conn));
        }
        held.parked = Some((admitted.park(), resume));
        shard.stats.parked.inc();
        Ok(())
    }

    /// Takes a connection out of parking, if it is parked: its place in
    /// the admission counts, and what starts its task again.
    fn take_parked(&self, held: &mut Held) -> Option<(Source, Resume)> {
        let parked = held.parked.take()?;
        self.stats.parked.sub(1);
        Some(parked)
    }

    /// [`Self::take_parked`], with the connection and its place as its
    /// task takes them.
    fn unpark(self: &Rc<Self>, held: &mut Held) -> Option<(Admitted, Resume, Rc<Conn>)> {
        let (source, resume) = self.take_parked(held)?;
        Some((
            Admitted::resume(self.clone(), source),
            resume,
            held.conn.clone(),
        ))
    }

    /// A connection forgotten while parked (it has no task to do it):
    /// its place in the admission counts is given back.
    pub(super) fn unpark_gone(&self, mut held: Held) {
        if let Some((source, _)) = self.take_parked(&mut held) {
            self.admission.release(source);
        }
    }

    /// Sets up parking (on the shard's thread); without it connections
    /// keep their tasks.
    pub(super) fn start_parking(self: &Rc<Self>) {
        match Parking::new() {
            Ok(p) => {
                *self.parking.borrow_mut() = Some(p);
                monoio::spawn(self.clone().run_parking());
            }
            Err(e) => {
                tracing::warn!(shard = self.id, error = %e, "cannot park idle connections; each keeps its task")
            }
        }
    }

    /// Starts the task of each parked connection whose socket is readable.
    async fn run_parking(self: Rc<Self>) {
        let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; EVENTS];
        loop {
            let waiter = match self.parking.borrow().as_ref() {
                Some(p) => p.waiter.clone(),
                None => return,
            };
            if waiter.readable(false).await.is_err() {
                tracing::warn!(shard = self.id, "waiting on parked connections failed");
                return;
            }
            loop {
                let n = {
                    let parking = self.parking.borrow();
                    let Some(p) = parking.as_ref() else { return };
                    // SAFETY: `events` has room for EVENTS entries.
                    unsafe { libc::epoll_wait(p.epoll, events.as_mut_ptr(), EVENTS as i32, 0) }
                };
                if n <= 0 {
                    break;
                }
                let full = n as usize == EVENTS;
                let woken: Vec<_> = {
                    let mut conns = self.conns.borrow_mut();
                    events[..n as usize]
                        .iter()
                        .filter_map(|e| self.unpark(conns.get_mut(&{ e.u64 })?))
                        .collect()
                };
                for (admitted, resume, conn) in woken {
                    resume(admitted, conn);
                }
                if !full {
                    break;
                }
                // Let the tasks just started, and everything else ready,
                // run before the next batch: thousands of sockets readable
                // at once (pongs to a sweep's pings) are then not all
                // ahead of the shard's deliveries.
                yield_now().await;
            }
        }
    }

    /// At shutdown: every parked connection's task is started again, to
    /// see the connection close.
    pub(super) fn unpark_all(self: &Rc<Self>) {
        let all: Vec<_> = {
            let mut conns = self.conns.borrow_mut();
            conns
                .values_mut()
                .filter_map(|held| self.unpark(held))
                .collect()
        };
        for (admitted, resume, conn) in all {
            resume(admitted, conn);
        }
    }
}
