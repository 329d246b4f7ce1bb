//! Per-shard counters.
//!
//! Each shard owns one [`ShardStats`] and is the only writer of it; the admin
//! thread only reads. Writes are a plain load and store (no locked
//! instruction) because there is one writer; reads may see a counter a few
//! nanoseconds old, which is all a stats endpoint needs.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::proto::chat::Code;

/// A counter with a single writer.
#[derive(Default, Debug)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds `n`. Only the owning shard may call this.
    #[inline]
    pub fn add(&self, n: u64) {
        let v = self.0.load(Ordering::Relaxed);
        self.0.store(v.wrapping_add(n), Ordering::Relaxed);
    }

    /// Adds one.
    #[inline]
    pub fn inc(&self) {
        self.add(1);
    }

    /// Subtracts `n` (for gauges).
    #[inline]
    pub fn sub(&self, n: u64) {
        let v = self.0.load(Ordering::Relaxed);
        self.0.store(v.wrapping_sub(n), Ordering::Relaxed);
    }

    /// Sets the value (for gauges).
    #[inline]
    pub fn set(&self, n: u64) {
        self.0.store(n, Ordering::Relaxed);
    }

    /// Reads the value.
    #[inline]
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// The kinds of protocol error counted separately.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// A WebSocket handshake that was refused (400/404/426).
    BadHandshake,
    /// A WebSocket frame that broke RFC 6455 (close 1002).
    BadFrame,
    /// Invalid UTF-8 in a text message (close 1007).
    BadUtf8,
    /// A message over the size limit (close 1009 or payload_too_large).
    TooLarge,
    /// A request that was not JSON or lacked fields.
    BadJson,
    /// An unknown `op`.
    UnknownOp,
    /// A room name that breaks the naming rules.
    InvalidRoom,
    /// Joining more rooms than allowed, or a full room.
    Limit,
    /// Typing/leave in a room the connection is not in.
    NotMember,
    /// A RESP protocol error or unknown command.
    Resp,
    /// No token, a token that does not verify, or a wrong password.
    Unauthorized,
    /// A request outside what the token or RESP user allows.
    Forbidden,
    /// A request over a rate limit.
    RateLimited,
    /// A request that needed Redis (cluster mode) while it was unreachable.
    Unavailable,
}

impl ErrorKind {
    /// Every kind, in display order.
    pub const ALL: [ErrorKind; 14] = [
        ErrorKind::BadHandshake,
        ErrorKind::BadFrame,
        ErrorKind::BadUtf8,
        ErrorKind::TooLarge,
        ErrorKind::BadJson,
        ErrorKind::UnknownOp,
        ErrorKind::InvalidRoom,
        ErrorKind::Limit,
        ErrorKind::NotMember,
        ErrorKind::Resp,
        ErrorKind::Unauthorized,
        ErrorKind::Forbidden,
        ErrorKind::RateLimited,
        ErrorKind::Unavailable,
    ];

    /// snake_case name used in /stats and /metrics.
    pub fn name(self) -> &'static str {
        match self {
            ErrorKind::BadHandshake => "bad_handshake",
            ErrorKind::BadFrame => "bad_frame",
            ErrorKind::BadUtf8 => "bad_utf8",
            ErrorKind::TooLarge => "too_large",
            ErrorKind::BadJson => "bad_json",
            ErrorKind::UnknownOp => "unknown_op",
            ErrorKind::InvalidRoom => "invalid_room",
            ErrorKind::Limit => "limit",
            ErrorKind::NotMember => "not_member",
            ErrorKind::Resp => "resp",
            ErrorKind::Unauthorized => "unauthorized",
            ErrorKind::Forbidden => "forbidden",
            ErrorKind::RateLimited => "rate_limited",
            ErrorKind::Unavailable => "unavailable",
        }
    }
}

impl From<Code> for ErrorKind {
    fn from(code: Code) -> Self {
        match code {
            Code::BadJson | Code::BadId => ErrorKind::BadJson,
            Code::UnknownOp => ErrorKind::UnknownOp,
            Code::InvalidRoom => ErrorKind::InvalidRoom,
            Code::PayloadTooLarge => ErrorKind::TooLarge,
            Code::NotMember => ErrorKind::NotMember,
            Code::TooManyRooms | Code::RoomFull => ErrorKind::Limit,
            Code::Forbidden => ErrorKind::Forbidden,
            Code::RateLimited => ErrorKind::RateLimited,
            Code::Unauthorized => ErrorKind::Unauthorized,
            Code::Unavailable => ErrorKind::Unavailable,
        }
    }
}

/// One shard's counters and gauges.
#[derive(Default, Debug)]
pub struct ShardStats {
    /// Open WebSocket connections (gauge).
    pub conns_ws: Counter,
    /// Open RESP connections (gauge).
    pub conns_resp: Counter,
    /// Connections accepted since start.
    pub accepted: Counter,
    /// accept() failures for lack of file descriptors.
    pub accept_fd_exhausted: Counter,
    /// Rooms whose home is this shard (gauge).
    pub rooms_homed: Counter,
    /// Memberless rooms dropped to keep retained history within budget.
    pub rooms_evicted: Counter,
    /// Local connection-room memberships (gauge).
    pub memberships: Counter,
    /// Messages published by this shard's clients.
    pub messages_in: Counter,
    /// Messages sequenced by this shard (as a home).
    pub messages_sequenced: Counter,
    /// Frames queued to this shard's connections for room messages.
    pub deliveries: Counter,
    /// Bytes read from clients.
    pub bytes_in: Counter,
    /// Bytes written to clients.
    pub bytes_out: Counter,
    /// Sends to clients: `sendmsg` calls and io_uring send entries.
    pub writes: Counter,
    /// `io_uring_enter` calls that carried a turn's batch of sends.
    pub send_batches: Counter,
    /// Joins and leaves at rooms homed here (each is presence news).
    pub presence_events: Counter,
    /// Of those, events held for a batch because the room had sent
    /// presence within `presence_interval_ms`.
    pub presence_held: Counter,
    /// Frames sent to other shards.
    pub ring_sent: Counter,
    /// Frames received from other shards.
    pub ring_received: Counter,
    /// Sends that found the ring full and were held back.
    pub ring_full: Counter,
    /// Times a reader stopped taking client requests while a shard was
    /// congested.
    pub congestion_pauses: Counter,
    /// Connections closed because a batched send's fate became unknown
    /// (the send ring failed while the kernel held the send).
    pub send_errors: Counter,
    /// Connections closed for exceeding their outbound bound.
    pub slow_consumer_closes: Counter,
    /// WebSocket connections closed for not answering a ping in time.
    pub ping_timeouts: Counter,
    /// RESP connections closed after `resp_idle_timeout_ms` of silence.
    pub idle_closes: Counter,
    /// WebSocket upgrades not finished within `handshake_timeout_ms`.
    pub handshake_timeouts: Counter,
    /// Connections refused at accept (`max_connections`, per-address limits).
    pub conns_refused: Counter,
    /// WebSocket connections closed (4002) when their token expired.
    pub token_expiries: Counter,
    /// Protocol errors, indexed like [`ErrorKind::ALL`].
    pub errors: [Counter; 14],
    /// Unix milliseconds of the shard's last heartbeat.
    pub heartbeat_ms: Counter,
    /// The core the shard is pinned to, plus one (0 = unpinned).
    pub core_plus_one: Counter,
    /// 1 when the shard runs on io_uring, 0 for epoll.
    pub io_uring: Counter,
    /// Idle connections parked without a task (gauge).
    pub parked: Counter,
    /// Cluster mode: this shard's Redis links that are up, 0 to 2 (gauge).
    pub redis_links_up: Counter,
    /// Cluster mode: commands sent to Redis.
    pub redis_commands: Counter,
    /// Cluster mode: Redis error replies, and commands whose connection
    /// failed before their reply.
    pub redis_errors: Counter,
    /// Cluster mode: connections to Redis made again after a loss.
    pub redis_reconnects: Counter,
    /// Cluster mode: fetches that brought messages the room's channel had
    /// not (a gap in seq).
    pub cluster_gap_fills: Counter,
    /// Cluster mode: position checks that found the room ahead of what
    /// this node delivered.
    pub cluster_position_fills: Counter,
    /// Cluster mode: rooms whose sequence restarted in Redis (history
    /// lost), members told.
    pub cluster_epoch_changes: Counter,
    /// Cluster mode: messages gone from Redis before this node delivered
    /// them (trimmed or expired), members told.
    pub cluster_messages_lost: Counter,
    /// Cluster mode: rooms this shard follows on Redis (gauge).
    pub cluster_rooms: Counter,
    /// Cluster mode: frames on a room channel this version does not read.
    pub cluster_frames_dropped: Counter,
}

impl ShardStats {
    /// Counts one protocol error of `kind`.
    pub fn error(&self, kind: ErrorKind) {
        self.errors[kind as usize].inc();
    }
}

/// Milliseconds since the Unix epoch, from the kernel's coarse clock (a
/// memory read, no timer read; a few ms of resolution): for the `ts` of
/// every message.
pub fn unix_ms_coarse() -> u64 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the timespec we pass.
    if unsafe { libc::clock_gettime(libc::CLOCK_REALTIME_COARSE, &mut t) } != 0 {
        return unix_ms();
    }
    t.tv_sec as u64 * 1000 + t.tv_nsec as u64 / 1_000_000
}

/// Milliseconds since the Unix epoch.
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
