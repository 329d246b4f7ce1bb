//! The shard's sweep: every period it advances the shard's coarse clock
//! and looks at each connection once — pinging WebSocket clients that
//! have been quiet, closing those that stay quiet after a ping, those that
//! owe a token past `auth.timeout_ms` and those whose token expired,
//! taking connections out of rooms whose room token expired, and closing
//! idle RESP clients. One task and one pass per shard, rather than
//! a timer per connection: an idle connection costs two clock readings.

use std::rc::Rc;
use std::time::Duration;

use crate::access::expired;
use crate::conn::io::yield_now;
use crate::conn::order::Frame;
use crate::conn::{Conn, Kind};
use crate::proto::chat::close::{PING_TIMEOUT, TOKEN_EXPIRED, UNAUTHORIZED};
use crate::proto::ws::{self, OpCode};
use crate::shard::stats::unix_ms;

use super::Shard;

/// What the sweep found a connection due for.
enum Due {
    Ping,
    PingTimeout,
    Idle,
    /// No token within `auth.timeout_ms`.
    NoToken,
    /// Its token's `exp` (+ `auth.leeway_s`) passed without a refresh.
    Expired,
    /// A room token's `exp` (+ `auth.leeway_s`) passed: out of that room.
    RoomPass,
}

/// Connections the sweep acts on before it lets the shard's other work
/// run: a sweep that finds thousands due (pings, above all) would
/// otherwise hold every delivery behind all of their sends.
const DUE_PER_TURN: usize = 256;

/// How long a WebSocket connection may be quiet before it is pinged:
/// `interval`, except before the first thing it sends (or its first pong),
/// when it is between half of `interval` and all of it, spread by the
/// connection's id. Connections that arrived together (a reconnect wave, a
/// restart) would otherwise be pinged, and answer, in the same sweep every
/// interval: 9,000 at once held deliveries for up to 60 ms. Once each has
/// answered at its own moment, the full interval keeps them apart. A dead
/// peer is still found within `interval` + the ping timeout.
fn ping_after(interval: u64, conn: &Conn) -> u64 {
    if conn.heard() != conn.opened() {
        return interval;
    }
    let half = interval / 2;
    // Fibonacci hashing: consecutive ids land far apart.
    let spread = (conn.id.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) % (half + 1);
    interval - spread
}

impl Shard {
    /// The sweep period: a quarter of the shortest timeout in use, within
    /// 50 ms and 1 s (the clock's resolution follows it).
    fn sweep_period(&self) -> Duration {
        let cfg = &self.cfg;
        let shortest = [
            cfg.ping_interval_ms,
            if cfg.ping_interval_ms > 0 {
                cfg.ping_timeout_ms
            } else {
                0
            },
            cfg.resp_idle_timeout_ms,
            if self.authority.tokens_required() {
                cfg.auth.timeout_ms
            } else {
                0
            },
        ]
        .into_iter()
        .filter(|&ms| ms > 0)
        .min()
        .unwrap_or(1000);
        Duration::from_millis((shortest / 4).clamp(50, 1000))
    }

    /// Advances the clock to now.
    fn tick(&self) -> u32 {
        let ms = self.started.elapsed().as_millis();
        let now = u32::try_from(ms).unwrap_or(u32::MAX).max(1);
        self.clock.set(now);
        now
    }

    /// What `conn` is due for at `now` (`unix_s`, Unix seconds), if anything.
    fn due(&self, conn: &Conn, now: u32, unix_s: u64) -> Option<Due> {
        let cfg = &self.cfg;
        let since = |t: u32| u64::from(now.wrapping_sub(t));
        if conn.kind == Kind::Ws && self.authority.tokens_required() {
            let leeway = cfg.auth.leeway_s;
            let expires = conn.with_access(|a| {
                a.as_ref()
                    .map(|a| (a.expires, a.passes_expired(unix_s, leeway)))
            });
            match expires {
                // From the connect, not from what it last sent: pings and
                // pongs must not keep a connection without a token.
                None if since(conn.opened()) >= cfg.auth.timeout_ms => return Some(Due::NoToken),
                // With the leeway the token was verified with: one that
                // came in just past its `exp` is not closed at once.
                Some((exp, _)) if expired(exp, leeway, unix_s) => return Some(Due::Expired),
                Some((_, true)) => return Some(Due::RoomPass),
                _ => {}
            }
        }
        match conn.kind {
            Kind::Ws if cfg.ping_interval_ms > 0 => match conn.pinged() {
                Some(at) if since(at) >= cfg.ping_timeout_ms => Some(Due::PingTimeout),
                Some(_) => None,
                None if since(conn.heard()) >= ping_after(cfg.ping_interval_ms, conn) => {
                    Some(Due::Ping)
                }
                None => None,
            },
            Kind::Resp if cfg.resp_idle_timeout_ms > 0 => {
                // Subscribers wait for messages, not to talk: as in Redis,
                // the timeout is for connections subscribed to nothing.
                let idle = conn.rooms.borrow().is_empty()
                    && since(conn.heard()) >= cfg.resp_idle_timeout_ms;
                idle.then_some(Due::Idle)
            }
            _ => None,
        }
    }

    /// Runs the sweep until the shard stops.
    pub(super) async fn run_sweep(self: Rc<Self>) {
        let period = self.sweep_period();
        let ping = Frame::from(ws::encode_frame(OpCode::Ping, b""));
        let mut due: Vec<(Rc<Conn>, Due)> = Vec::new();
        loop {
            monoio::time::sleep(period).await;
            let now = self.tick();
            let unix_s = unix_ms() / 1000;
            due.extend(
                self.conns
                    .borrow()
                    .values()
                    .map(|h| &h.conn)
                    .filter(|c| !c.is_closing())
                    .filter_map(|c| Some((c.clone(), self.due(c, now, unix_s)?))),
            );
            for (n, (conn, what)) in due.drain(..).enumerate() {
                if n > 0 && n % DUE_PER_TURN == 0 {
                    yield_now().await;
                }
                // One may have closed while the shard ran.
                if conn.is_closing() {
                    continue;
                }
                match what {
                    Due::Ping => {
                        conn.pinged_at(now);
                        self.send_shared(&conn, ping.clone());
                    }
                    Due::PingTimeout => {
                        self.stats.ping_timeouts.inc();
                        self.close_now(&conn, Some(ws::close_frame(PING_TIMEOUT, "ping timeout")));
                    }
                    Due::Idle => {
                        self.stats.idle_closes.inc();
                        self.close_now(&conn, None);
                    }
                    Due::NoToken => {
                        self.stats
                            .error(crate::shard::stats::ErrorKind::Unauthorized);
                        let last = ws::close_frame(UNAUTHORIZED, "no token within auth.timeout_ms");
                        self.close_now(&conn, Some(last));
                    }
                    Due::Expired => {
                        self.stats.token_expiries.inc();
                        let last = ws::close_frame(TOKEN_EXPIRED, "token expired");
                        self.close_now(&conn, Some(last));
                    }
                    Due::RoomPass => self.enforce_access(&conn, unix_s),
                }
            }
        }
    }
}
