//! Connections and the write side: registering, queueing within each
//! connection's bound, the flusher that writes a turn's dirty connections
//! at once, and waiting for a full socket.

use std::io;
use std::rc::Rc;
use std::task::Poll;

use bytes::Bytes;

use crate::conn::order::{Frame, UNRESERVED};
use crate::conn::queue::{Flushed, Queued, Sent};
use crate::conn::sendring::Outcome;
use crate::conn::{Conn, Kind};
use crate::proto::chat::close::SLOW_CONSUMER;
use crate::proto::chat::{self, ApiError};
use crate::proto::ws::{self, text_frame};
use crate::shard::wire;

use super::{park, Shard};

/// Replies up to this size are copied into the connection's own frame
/// rather than queued as a frame of their own.
const SMALL_REPLY: usize = 64;

impl Shard {
    /// A fresh connection id.
    pub fn next_conn_id(&self) -> u64 {
        let n = self.next_conn.get();
        self.next_conn.set(n + 1);
        wire::conn_id(self.id, n)
    }

    /// Starts tracking an accepted, upgraded connection.
    pub fn register(&self, conn: &Rc<Conn>) {
        match conn.kind {
            Kind::Resp => self.stats.conns_resp.inc(),
            Kind::Ws | Kind::Echo => self.stats.conns_ws.inc(),
        }
        let held = park::Held::new(conn.clone());
        self.conns.borrow_mut().insert(conn.id, held);
    }

    /// Forgets a connection: leaves its rooms, shuts its socket.
    pub fn unregister(&self, conn: &Rc<Conn>) {
        conn.shut_down();
        self.leave_all(conn);
        self.shutdown_progress();
        let held = self.conns.borrow_mut().remove(&conn.id);
        if let Some(held) = held {
            self.unpark_gone(held);
            match conn.kind {
                Kind::Resp => self.stats.conns_resp.sub(1),
                Kind::Ws | Kind::Echo => self.stats.conns_ws.sub(1),
            }
        }
    }

    /// Open connections on this shard.
    pub fn conn_count(&self) -> usize {
        self.conns.borrow().len()
    }

    /// Queues a frame to a connection; closes it if it is a slow consumer.
    pub fn send(&self, conn: &Rc<Conn>, frame: Bytes) {
        self.send_shared(conn, Frame::from(frame));
    }

    /// `:n\r\n`, shared when `n` is small.
    pub fn integer_reply(&self, n: u32) -> Frame {
        match self.integers.get(n as usize) {
            Some(frame) => frame.clone(),
            None => Frame::from(crate::proto::resp::encode::integer_frame(i64::from(n))),
        }
    }

    /// Queues a frame other connections may share.
    pub(super) fn send_shared(&self, conn: &Rc<Conn>, frame: Frame) {
        self.queued(conn, conn.push(frame));
    }

    /// Queues the `len` bytes `write` adds straight into the connection's
    /// own frame (see [`Conn::append`]).
    pub(super) fn send_own(&self, conn: &Rc<Conn>, len: usize, write: impl FnOnce(&mut Vec<u8>)) {
        self.queued(conn, conn.append(len, write));
    }

    /// What follows queueing: a flush this turn, or closing a slow consumer.
    fn queued(&self, conn: &Rc<Conn>, queued: Queued) {
        match queued {
            Queued::Yes => self.mark_dirty(conn),
            Queued::Closed => {}
            Queued::OverLimit => self.slow_consumer(conn),
        }
    }

    /// Queues a chat JSON reply (WebSocket text frame).
    pub fn reply_json(&self, conn: &Rc<Conn>, json: &[u8]) {
        self.send(conn, text_frame(json));
    }

    /// Queues a chat error reply and counts it.
    pub fn reply_error(&self, conn: &Rc<Conn>, id: Option<&str>, err: &ApiError) {
        self.stats.error(err.code.into());
        self.reply_json(conn, &chat::error(id, err.code.as_str(), &err.message));
    }

    /// Puts a reply in the place `ticket` reserved (see [`Conn::defer`]),
    /// or queues it if it reserved none ([`UNRESERVED`]).
    pub fn fulfil(&self, conn: &Rc<Conn>, ticket: u32, frame: Frame) {
        if ticket == UNRESERVED {
            // Answered in order as it comes, and the connection's alone: a
            // small reply is copied into its own frame, so a pipelined
            // batch of replies leaves as one buffer.
            if frame.len() <= SMALL_REPLY {
                self.send_own(conn, frame.len(), |out| out.extend_from_slice(&frame));
            } else {
                self.send_shared(conn, frame);
            }
        } else if conn.fulfil(ticket, frame) {
            self.mark_dirty(conn);
        }
    }

    fn mark_dirty(&self, conn: &Rc<Conn>) {
        if !conn.dirty.replace(true) {
            let mut dirty = self.dirty.borrow_mut();
            dirty.push(conn.clone());
            if dirty.len() == 1 {
                self.dirty_since_us.set(self.now_us());
                if let Some(w) = self.flush_waker.borrow_mut().take() {
                    w.wake();
                }
            }
        }
    }

    /// Closes a connection whose outbound queue passed its bound: drops
    /// what it had queued, tries to tell it why, and shuts it down without
    /// waiting, so its memory is freed whatever the client does.
    pub fn slow_consumer(&self, conn: &Rc<Conn>) {
        if conn.is_closing() {
            return;
        }
        self.stats.slow_consumer_closes.inc();
        tracing::debug!(
            conn = conn.id,
            queued = conn.queued(),
            "closing slow consumer"
        );
        let last = match conn.kind {
            Kind::Resp => {
                Bytes::from_static(b"-ERR slow consumer: outbound queue limit reached\r\n")
            }
            Kind::Ws | Kind::Echo => {
                ws::close_frame(SLOW_CONSUMER, "slow consumer: outbound queue limit reached")
            }
        };
        self.close_now(conn, Some(last));
    }

    /// Closes a connection that is not listening: what it had queued and
    /// not started to send is dropped, `last` goes if the socket takes it
    /// at once, then the socket is shut without waiting, so its memory is
    /// freed whatever the client does.
    pub(super) fn close_now(&self, conn: &Rc<Conn>, last: Option<Bytes>) {
        conn.abandon_queue(last);
        let (_, n) = conn.flush();
        self.stats.bytes_out.add(n as u64);
        conn.shut_down();
    }

    /// Writes one connection's queue now.
    pub fn flush(self: &Rc<Self>, conn: &Rc<Conn>) {
        let (res, n) = conn.flush();
        self.stats.bytes_out.add(n as u64);
        self.stats.writes.inc();
        match res {
            Flushed::All => {}
            Flushed::Blocked => self.wait_writable(conn),
            Flushed::Failed => conn.shut_down(),
        }
    }

    /// The socket buffer is full: a task waits for room and writes the rest.
    fn wait_writable(self: &Rc<Self>, conn: &Rc<Conn>) {
        if conn.blocked.replace(true) {
            return;
        }
        let node = self.clone();
        let conn = conn.clone();
        monoio::spawn(async move {
            while !conn.is_closed() {
                if conn.stream.writable(false).await.is_err() {
                    conn.shut_down();
                    break;
                }
                let (res, n) = conn.flush();
                node.stats.bytes_out.add(n as u64);
                node.stats.writes.inc();
                match res {
                    Flushed::Blocked => continue,
                    Flushed::All => break,
                    Flushed::Failed => {
                        conn.shut_down();
                        break;
                    }
                }
            }
            conn.blocked.set(false);
            node.shutdown_progress();
        });
    }

    /// Finishes a connection after its batched send.
    /// A send the kernel took and never completed: what of it left is
    /// unknown, so nothing of the connection's queue may be sent again (the
    /// peer would get bytes twice or a broken frame), and the kernel may
    /// still read the frames. The connection is closed and its frames are
    /// kept for the life of the process (this only follows a broken ring).
    fn lost(&self, conn: &Rc<Conn>) {
        self.stats.send_errors.inc();
        conn.quarantine();
        conn.shut_down();
    }

    /// `r` is the send ring's result for it: bytes written, or -errno.
    fn sent(self: &Rc<Self>, conn: &Rc<Conn>, r: i32, want: usize) {
        let r = usize::try_from(r).map_err(|_| io::Error::from_raw_os_error(-r));
        let sent = conn.sent(r, want);
        let bytes = match sent {
            Sent::All => want,
            Sent::Part(n) => n,
            _ => 0,
        };
        self.stats.bytes_out.add(bytes as u64);
        match sent {
            // More than one batch entry's worth was queued: write the rest now.
            Sent::All if !conn.drained() => self.flush(conn),
            Sent::All => {}
            Sent::Part(_) | Sent::Again => self.wait_writable(conn),
            Sent::Retry => self.flush(conn),
            Sent::Failed => conn.shut_down(),
        }
    }

    /// A client stopped sending (its side of the stream ended) while it is
    /// still owed replies or has frames queued: they are still sent, for at
    /// most `deadline`, as Redis answers a pipeline a client half-closed.
    pub async fn finish(&self, conn: &Rc<Conn>, deadline: std::time::Duration) {
        let done = std::future::poll_fn(|cx| {
            if conn.is_closed() || (!conn.owes() && conn.queued() == 0) {
                return Poll::Ready(());
            }
            self.finishing.borrow_mut().push(cx.waker().clone());
            Poll::Pending
        });
        let _ = monoio::time::timeout(deadline, done).await;
    }

    /// The flusher: after the tasks of a turn have queued their frames,
    /// writes each dirty connection once — all of them with one
    /// `io_uring_enter` where the shard has a send ring.
    pub async fn run_flusher(self: Rc<Self>) {
        loop {
            std::future::poll_fn(|cx| {
                if self.dirty.borrow().is_empty() {
                    *self.flush_waker.borrow_mut() = Some(cx.waker().clone());
                    Poll::Pending
                } else {
                    Poll::Ready(())
                }
            })
            .await;
            self.flush_dirty();
        }
    }

    /// Flushes now, from inside a turn, when the oldest frame queued in it
    /// has waited [`FLUSH_AFTER_US`]: a turn that reads thousands of ready
    /// connections would otherwise hold every delivery until its end
    /// (3,000 reads of ~10 µs are 30 ms). Called where a task finished a
    /// piece of work and holds no borrow of the shard's queues.
    pub fn flush_if_due(self: &Rc<Self>) {
        if self.dirty.borrow().is_empty() {
            return;
        }
        if self.now_us().saturating_sub(self.dirty_since_us.get()) >= FLUSH_AFTER_US {
            self.flush_dirty();
        }
    }

    /// Writes every dirty connection.
    fn flush_dirty(self: &Rc<Self>) {
        let mut scratch = self.flush_scratch.take();
        let FlushScratch {
            batch,
            ready,
            results,
        } = &mut scratch;
        std::mem::swap(batch, &mut *self.dirty.borrow_mut());
        let mut ring = self.send_ring.borrow_mut();
        for conn in batch.drain(..) {
            conn.dirty.set(false);
            if conn.blocked.get() {
                continue;
            }
            if ring.is_some() && !conn.is_closed() {
                ready.push(conn);
            } else {
                self.flush(&conn);
            }
        }
        let mut rest = &ready[..];
        while !rest.is_empty() {
            let Some(r) = ring.as_mut() else {
                rest.iter().for_each(|conn| self.flush(conn));
                break;
            };
            let (chunk, tail) = rest.split_at(rest.len().min(r.capacity()));
            rest = tail;
            let sent = r.send(chunk, results);
            if let Ok(entries) = sent {
                self.stats.send_batches.inc();
                self.stats.writes.add(entries as u64);
            }
            for (conn, &(outcome, want)) in chunk.iter().zip(results.iter()) {
                match outcome {
                    Outcome::Done(r) => self.sent(conn, r, want),
                    // Nothing of it left: another way is safe.
                    Outcome::NotSent => self.flush(conn),
                    Outcome::Lost => self.lost(conn),
                }
            }
            if let Err(e) = sent {
                tracing::warn!(shard = self.id, error = %e, "io_uring sends failed; writing with sendmsg from now on");
                *ring = None;
            }
        }
        drop(ring);
        ready.clear();
        self.flush_scratch.set(scratch);
        for w in std::mem::take(&mut *self.finishing.borrow_mut()) {
            w.wake();
        }
    }
}

/// How long a busy turn may hold a queued frame before it flushes, in µs.
///
/// A bound of time, not of connections: a shard that falls behind (a
/// stall, a burst) catches up by writing each connection once for many
/// frames, and that needs a turn's sends to cover many publishes. Flushing
/// every 256 dirty connections (about nine publishes in rooms of 30) took
/// that away: in seed-3000 on a host where it loads the core fully, a
/// backlog that formed never drained (p50 0.4-0.7 s, p99 0.9-1.3 s in
/// every one of six runs) where 5 ms, or no bound at all, kept p99 at
/// 62-80 ms; 2 ms was as bad as 256 connections.
pub(super) const FLUSH_AFTER_US: u64 = 5_000;

/// The flusher's buffers, kept between flushes.
#[derive(Default)]
pub(super) struct FlushScratch {
    batch: Vec<Rc<Conn>>,
    ready: Vec<Rc<Conn>>,
    results: Vec<(Outcome, usize)>,
}
