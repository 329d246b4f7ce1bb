//! One shard's connection to Redis, on the shard's own runtime: no shared
//! client, no lock, no helper thread.
//!
//! A [`Link`] is either a command link (requests and replies, matched in
//! order) or a subscriber link (`SUBSCRIBE`, then pushes). Commands given
//! to [`Link::send`] during one turn of the shard's loop are written
//! together by the link's writer task when the turn yields: one `send` for
//! the lot (pipelining). Each command carries a value of the caller's type
//! `P`, handed back with its reply, or with [`Down`] if the connection
//! fails first: every command is answered exactly once.
//!
//! [`Link::run`] connects, logs in (`AUTH`, `SELECT`), names the client,
//! loads the scripts (command links), and then reads until the connection
//! fails; then it waits (exponential backoff with jitter, at most
//! `reconnect_max`) and connects again, until [`Link::stop`].

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::io;
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::task::{Poll, Waker};
use std::time::Duration;

use bytes::BytesMut;
use monoio::io::AsyncWriteRentExt;
use monoio::net::TcpStream;

use super::scripts::SCRIPTS;
use super::target::Target;
use crate::conn::io::{prepare_socket, read_some};
use crate::proto::resp::reply::{command, parse_reply, Reply};

/// Bytes of commands a link holds unwritten before it refuses more.
pub const MAX_UNWRITTEN: usize = 16 << 20;

/// The connection failed before the reply came; the command may or may
/// not have run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Down;

/// Which kind of link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Requests and replies.
    Commands,
    /// Subscriptions and the messages they bring.
    Subscriber,
}

/// What a link tells its owner.
pub trait Handler<P> {
    /// The reply to a command (or [`Down`]).
    fn on_reply(&self, p: P, reply: Result<Reply, Down>);
    /// Something a subscriber link received: a message, a (un)subscribe
    /// confirmation, a pong.
    fn on_push(&self, reply: Reply);
    /// Connected and ready (`true`), or lost (`false`, with why).
    fn on_state(&self, role: Role, up: bool, why: &str);
}

/// Timings of a link.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// Connecting (and logging in) gives up after this.
    pub connect_timeout: Duration,
    /// The longest wait between attempts.
    pub reconnect_max: Duration,
}

/// One connection to Redis, reconnected when it fails.
pub struct Link<P> {
    role: Role,
    name: String,
    target: Rc<Target>,
    timing: Timing,
    /// The bulk strings a reply may hold, at most.
    max_bulk: usize,
    up: Cell<bool>,
    /// Commands not yet written.
    out: RefCell<BytesMut>,
    /// What each command sent or queued on this connection is for, oldest
    /// first (command links).
    pending: RefCell<VecDeque<P>>,
    writer: RefCell<Option<Waker>>,
    /// Bumped when a connection ends, so its writer stops.
    generation: Cell<u64>,
    stopped: Cell<bool>,
    /// The socket of the live connection (-1: none), for [`Link::stop`].
    fd: Cell<i32>,
    /// Times a connection was made after the first.
    pub reconnects: Cell<u64>,
    /// Commands sent.
    pub commands: Cell<u64>,
}

impl<P: 'static> Link<P> {
    /// A link named `name` (its Redis client name) to `target`, not yet
    /// connected: spawn [`Link::run`].
    pub fn new(
        role: Role,
        name: String,
        target: Rc<Target>,
        timing: Timing,
        max_bulk: usize,
    ) -> Rc<Self> {
        Rc::new(Self {
            role,
            name,
            target,
            timing,
            max_bulk,
            up: Cell::new(false),
            out: RefCell::new(BytesMut::new()),
            pending: RefCell::new(VecDeque::new()),
            writer: RefCell::new(None),
            generation: Cell::new(0),
            stopped: Cell::new(false),
            fd: Cell::new(-1),
            reconnects: Cell::new(0),
            commands: Cell::new(0),
        })
    }

    /// Whether the connection is up (commands are taken).
    pub fn is_up(&self) -> bool {
        self.up.get()
    }

    /// Commands written or queued and not yet answered.
    pub fn in_flight(&self) -> usize {
        self.pending.borrow().len()
    }

    /// Queues a command; its reply comes to the handler with `p`. When the
    /// link is down nothing is queued and `p` comes back.
    pub fn send(&self, args: &[&[u8]], p: P) -> Result<(), P> {
        self.send_with(|out| command(out, args), p)
    }

    /// [`Link::send`] with the command written by `write` (one command).
    /// Also refused while [`MAX_UNWRITTEN`] bytes wait to be written (Redis
    /// is not reading).
    pub fn send_with(&self, write: impl FnOnce(&mut BytesMut), p: P) -> Result<(), P> {
        if !self.up.get() || self.out.borrow().len() > MAX_UNWRITTEN {
            return Err(p);
        }
        write(&mut self.out.borrow_mut());
        if self.role == Role::Commands {
            self.pending.borrow_mut().push_back(p);
        }
        self.commands.set(self.commands.get() + 1);
        if let Some(w) = self.writer.borrow_mut().take() {
            w.wake();
        }
        Ok(())
    }

    /// Drops the connection and makes a new one (after `NOSCRIPT`: the
    /// new connection loads the scripts again).
    pub fn restart(&self) {
        let fd = self.fd.get();
        if fd >= 0 {
            // SAFETY: as in `stop`.
            unsafe { libc::shutdown(fd, libc::SHUT_RDWR) };
        }
    }

    /// Stops reconnecting and closes the connection.
    pub fn stop(&self) {
        self.stopped.set(true);
        let fd = self.fd.get();
        if fd >= 0 {
            // SAFETY: shutting down (not closing) the live socket; its
            // reader sees the end and winds the connection up.
            unsafe { libc::shutdown(fd, libc::SHUT_RDWR) };
        }
    }

    /// Connects, serves the connection until it fails, and again, until
    /// stopped.
    pub async fn run<H: Handler<P> + 'static>(self: Rc<Self>, handler: Rc<H>) {
        let mut attempt: u32 = 0;
        let mut ever_up = false;
        let mut logged_down = false;
        while !self.stopped.get() {
            match monoio::time::timeout(self.timing.connect_timeout, self.connect()).await {
                Ok(Ok((stream, buf))) => {
                    if ever_up {
                        self.reconnects.set(self.reconnects.get() + 1);
                    }
                    ever_up = true;
                    logged_down = false;
                    attempt = 0;
                    let why = self.serve(stream, buf, &*handler).await;
                    if !self.stopped.get() {
                        tracing::warn!(link = %self.name, redis = %self.target.redacted(), "lost the connection to redis: {why}");
                    }
                }
                Ok(Err(e)) => {
                    if !logged_down {
                        tracing::warn!(link = %self.name, redis = %self.target.redacted(), "cannot reach redis: {e}; retrying");
                        logged_down = true;
                    }
                    handler.on_state(self.role, false, &e.to_string());
                }
                Err(_) => {
                    if !logged_down {
                        tracing::warn!(link = %self.name, redis = %self.target.redacted(), "connecting to redis timed out; retrying");
                        logged_down = true;
                    }
                    handler.on_state(self.role, false, "connect timed out");
                }
            }
            if self.stopped.get() {
                break;
            }
            monoio::time::sleep(backoff(attempt, self.timing.reconnect_max)).await;
            attempt = attempt.saturating_add(1);
        }
    }

    /// Connects, logs in, names the client and loads the scripts: a
    /// connection ready for commands, and what was read past the
    /// handshake's replies.
    async fn connect(&self) -> io::Result<(TcpStream, BytesMut)> {
        let addr = std::net::ToSocketAddrs::to_socket_addrs(&self.target.addr)?
            .next()
            .ok_or_else(|| io::Error::other("the redis host has no address"))?;
        let mut stream = TcpStream::connect_addr(addr).await?;
        // Keepalive after 5 s idle, and unacknowledged data for 10 s drops
        // the connection: a vanished Redis is found within seconds.
        prepare_socket(&stream, 5, 10_000);
        let mut hello = BytesMut::new();
        let mut expect: Vec<Option<&str>> = Vec::new();
        match (&self.target.user, &self.target.password) {
            (Some(u), Some(p)) => command(&mut hello, &[b"AUTH", u.as_bytes(), p.as_bytes()]),
            (None, Some(p)) => command(&mut hello, &[b"AUTH", p.as_bytes()]),
            _ => {}
        }
        if self.target.password.is_some() {
            expect.push(None);
        }
        if self.target.db != 0 {
            command(
                &mut hello,
                &[b"SELECT", self.target.db.to_string().as_bytes()],
            );
            expect.push(None);
        }
        command(&mut hello, &[b"CLIENT", b"SETNAME", self.name.as_bytes()]);
        expect.push(None);
        if self.role == Role::Commands {
            for s in SCRIPTS.iter() {
                command(&mut hello, &[b"SCRIPT", b"LOAD", s.text.as_bytes()]);
                expect.push(Some(&s.sha));
            }
        }
        let (r, _) = stream.write_all(hello.freeze()).await;
        r?;
        let mut buf = BytesMut::with_capacity(4096);
        for want in expect {
            let reply = loop {
                match parse_reply(&mut buf, self.max_bulk) {
                    Ok(Some(r)) => break r,
                    Ok(None) => {
                        if read_some(&stream, &mut buf, 4096).await? == 0 {
                            return Err(io::Error::other("redis closed the connection"));
                        }
                    }
                    Err(e) => return Err(io::Error::other(format!("bad reply from redis: {e}"))),
                }
            };
            if let Some(e) = reply.error() {
                return Err(io::Error::other(String::from_utf8_lossy(e).into_owned()));
            }
            if let Some(sha) = want {
                if reply.bytes().map(|b| &b[..]) != Some(sha.as_bytes()) {
                    return Err(io::Error::other("SCRIPT LOAD answered another SHA-1"));
                }
            }
        }
        Ok((stream, buf))
    }

    /// Serves a ready connection until it fails; says why.
    async fn serve<H: Handler<P>>(
        self: &Rc<Self>,
        stream: TcpStream,
        mut buf: BytesMut,
        handler: &H,
    ) -> String {
        let stream = Rc::new(stream);
        let generation = self.generation.get();
        self.fd.set(stream.as_raw_fd());
        self.up.set(true);
        handler.on_state(self.role, true, "");
        monoio::spawn(self.clone().write_loop(stream.clone(), generation));
        let why = 'conn: loop {
            loop {
                match parse_reply(&mut buf, self.max_bulk) {
                    Ok(Some(reply)) => self.dispatch(reply, handler),
                    Ok(None) => break,
                    Err(e) => break 'conn format!("bad reply: {e}"),
                }
            }
            match read_some(&stream, &mut buf, 64 * 1024).await {
                Ok(0) => break "redis closed the connection".to_owned(),
                Ok(_) => {}
                Err(e) => break e.to_string(),
            }
        };
        self.up.set(false);
        self.fd.set(-1);
        self.generation.set(generation + 1);
        self.out.borrow_mut().clear();
        if let Some(w) = self.writer.borrow_mut().take() {
            w.wake();
        }
        // SAFETY: shutting down a socket we own; the writer sees it fail.
        unsafe { libc::shutdown(stream.as_raw_fd(), libc::SHUT_RDWR) };
        // Every command still owed an answer gets one.
        loop {
            let p = self.pending.borrow_mut().pop_front();
            match p {
                Some(p) => handler.on_reply(p, Err(Down)),
                None => break,
            }
        }
        handler.on_state(self.role, false, &why);
        why
    }

    fn dispatch<H: Handler<P>>(&self, reply: Reply, handler: &H) {
        match self.role {
            Role::Subscriber => handler.on_push(reply),
            Role::Commands => {
                let p = self.pending.borrow_mut().pop_front();
                match p {
                    Some(p) => handler.on_reply(p, Ok(reply)),
                    None => {
                        tracing::warn!(link = %self.name, "a reply from redis nobody asked for")
                    }
                }
            }
        }
    }

    /// Writes what [`Link::send`] queued, all of it at once, until the
    /// connection of `generation` ends.
    async fn write_loop(self: Rc<Self>, stream: Rc<TcpStream>, generation: u64) {
        loop {
            let batch = std::future::poll_fn(|cx| {
                if self.generation.get() != generation {
                    return Poll::Ready(None);
                }
                let mut out = self.out.borrow_mut();
                if out.is_empty() {
                    *self.writer.borrow_mut() = Some(cx.waker().clone());
                    Poll::Pending
                } else {
                    Poll::Ready(Some(out.split().freeze()))
                }
            })
            .await;
            let Some(batch) = batch else { return };
            let mut at = 0;
            while at < batch.len() {
                // SAFETY: a non-blocking send from a buffer we hold.
                let n = unsafe {
                    libc::send(
                        stream.as_raw_fd(),
                        batch[at..].as_ptr() as *const libc::c_void,
                        batch.len() - at,
                        libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
                    )
                };
                if n >= 0 {
                    at += n as usize;
                    continue;
                }
                let e = io::Error::last_os_error();
                match e.kind() {
                    io::ErrorKind::Interrupted => {}
                    io::ErrorKind::WouldBlock => {
                        if stream.writable(false).await.is_err()
                            || self.generation.get() != generation
                        {
                            return;
                        }
                    }
                    _ => {
                        // The reader finds the connection dead and answers
                        // what is pending.
                        // SAFETY: shutting down a socket we own.
                        unsafe { libc::shutdown(stream.as_raw_fd(), libc::SHUT_RDWR) };
                        return;
                    }
                }
            }
        }
    }
}

/// How long to wait before attempt `attempt` (0 = the first retry): 100 ms
/// doubling up to `max`, each wait a random half to all of it, so shards
/// and nodes that lost Redis together do not come back together.
pub fn backoff(attempt: u32, max: Duration) -> Duration {
    let full = Duration::from_millis(100)
        .saturating_mul(1u32 << attempt.min(16))
        .min(max);
    full.mul_f64(0.5 + fastrand::f64() * 0.5)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_its_bound_with_jitter() {
        let max = Duration::from_secs(5);
        for attempt in 0..40 {
            let d = backoff(attempt, max);
            let full = Duration::from_millis(100 << attempt.min(6)).min(max);
            assert!(d >= full / 2 && d <= full, "{attempt}: {d:?}");
        }
        assert!(backoff(30, max) >= Duration::from_millis(2500));
    }
}
