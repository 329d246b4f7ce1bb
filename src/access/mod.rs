//! Identity and access: who a client is and what it may do, decided once,
//! when it connects, from something it cannot forge (a verified token, a
//! password), and how fast it may act. No I/O: the sessions ask, and each
//! connection carries the answer as its [`Access`]; checking a request
//! costs a lookup at the requester's shard, and nothing per delivery.
//!
//! - [`jwt`]: connection and room tokens.
//! - [`password`]: RESP `AUTH`.
//! - [`grants`]: room patterns.
//! - [`rate`]: rate-limit buckets.

pub mod grants;
pub mod jwt;
pub mod password;
pub mod rate;

use grants::Grants;
use rate::Bucket;

use crate::config::Config;

/// What the server checks clients against, shared by every shard: the
/// token keys (`[auth]`) and the RESP users.
pub struct Authority {
    /// Tokens, in mode `jwt`.
    pub jwt: Option<jwt::Verifier>,
    /// RESP passwords.
    pub resp: password::RespAuth,
}

impl Authority {
    /// From the settings, keys read; what cannot work is an error.
    pub fn new(cfg: &Config) -> anyhow::Result<Self> {
        Ok(Self {
            jwt: jwt::Verifier::new(&cfg.auth, cfg.limits.max_info_bytes)?,
            resp: password::RespAuth::new(&cfg.resp_requirepass, &cfg.resp_users)?,
        })
    }

    /// True when WebSocket clients must present a token first.
    pub fn tokens_required(&self) -> bool {
        self.jwt.is_some()
    }

    /// Reads the token keys again (`SIGHUP`); the old ones stay on error.
    pub fn reload(&self) -> anyhow::Result<()> {
        match &self.jwt {
            Some(v) => v.reload(),
            None => Ok(()),
        }
    }
}

/// What one connection may do, and how fast it has been acting.
#[derive(Debug, Default)]
pub struct Access {
    /// The rooms it may join and read, and publish into; `None` = any.
    pub grants: Option<Grants>,
    /// Rooms a room token let it into, beyond its grants, with the token's
    /// `exp` (0: none). A pass ends at `exp` + leeway (see
    /// [`Access::expire_passes`]) or when the connection leaves the room.
    pub room_passes: Vec<(Box<str>, u64)>,
    /// When its token expires, Unix seconds (0: never).
    pub expires: u64,
    /// The token's `info`: compact JSON shown with the user.
    pub info: Option<Box<str>>,
    /// Publishes and typing events.
    pub publishes: Bucket,
    /// Joins and leaves.
    pub joins: Bucket,
    /// The run of refusals it is in, if any: when (µs) its first and its
    /// latest refusal by a rate limit were.
    pub over_limit: Option<(u64, u64)>,
}

/// A run of refusals ends when this long passes without one (µs). One
/// second is longer than a bucket's interval at any rate (1 / rate), so a
/// client that keeps sending faster than its rate is refused at least once
/// in every such gap, however many of its requests get through.
pub const QUIET_GAP_US: u64 = 1_000_000;

impl Access {
    fn passed(&self, room: &str) -> bool {
        self.room_passes.iter().any(|(r, _)| &**r == room)
    }

    /// A room token let it into `room` until `exp`: the pass replaces one
    /// it had for the room.
    pub fn grant_pass(&mut self, room: &str, exp: u64) {
        match self.room_passes.iter_mut().find(|(r, _)| &**r == room) {
            Some(pass) => pass.1 = exp,
            None => self.room_passes.push((room.into(), exp)),
        }
    }

    /// It left `room`: a room token it joined with is spent.
    pub fn drop_pass(&mut self, room: &str) {
        self.room_passes.retain(|(r, _)| &**r != room);
    }

    /// True when one of its room passes has expired at `unix_s` (see
    /// [`expired`]).
    pub fn passes_expired(&self, unix_s: u64, leeway_s: u64) -> bool {
        self.room_passes
            .iter()
            .any(|(_, exp)| expired(*exp, leeway_s, unix_s))
    }

    /// Drops the room passes that have expired at `unix_s` (see
    /// [`expired`]), returning their rooms.
    pub fn expire_passes(&mut self, unix_s: u64, leeway_s: u64) -> Vec<Box<str>> {
        let mut ended = Vec::new();
        self.room_passes.retain_mut(|(room, exp)| {
            let live = !expired(*exp, leeway_s, unix_s);
            if !live {
                ended.push(std::mem::take(room));
            }
            live
        });
        ended
    }

    /// May its connection token (its grants; no room pass) join `room`?
    pub fn granted_join(&self, room: &str) -> bool {
        self.grants.as_ref().is_none_or(|g| g.rooms.allows(room))
    }

    /// May it join `room` (and so receive its messages)?
    pub fn may_join(&self, room: &str) -> bool {
        self.granted_join(room) || self.passed(room)
    }

    /// May it read `room`'s history and members?
    pub fn may_read(&self, room: &str) -> bool {
        self.may_join(room)
    }

    /// May it publish or send typing events into `room`?
    pub fn may_publish(&self, room: &str) -> bool {
        self.grants.as_ref().is_none_or(|g| g.publish.allows(room)) || self.passed(room)
    }

    /// A request refused by a rate limit at `now_us`. Refusals less than
    /// [`QUIET_GAP_US`] apart are one run, whatever got through between
    /// them; true when the run has lasted `close_after_us` (then the
    /// connection should go; 0: never).
    pub fn limited(&mut self, now_us: u64, close_after_us: u64) -> bool {
        let first = match self.over_limit {
            Some((first, last)) if now_us.saturating_sub(last) < QUIET_GAP_US => first,
            _ => now_us,
        };
        self.over_limit = Some((first, now_us));
        close_after_us > 0 && now_us - first >= close_after_us
    }
}

/// True when a token with `exp` (Unix seconds; 0: none) has expired at
/// `unix_s`, judged as the verifier judges it when the token arrives: good
/// through the second `exp` + `leeway_s`, expired after it. A connection
/// or room token is let in and ended by the same rule.
pub fn expired(exp: u64, leeway_s: u64, unix_s: u64) -> bool {
    exp != 0 && exp.saturating_add(leeway_s) < unix_s
}

/// True when a page of `origin` may open a WebSocket connection: always
/// when `allowed` is empty, or when the request has no `Origin` (not a
/// browser: its token protects it), else only origins listed.
pub fn origin_allowed(allowed: &[String], origin: Option<&str>) -> bool {
    match origin {
        _ if allowed.is_empty() => true,
        None => true,
        Some(o) => allowed.iter().any(|a| {
            a.trim_end_matches('/')
                .eq_ignore_ascii_case(o.trim_end_matches('/'))
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::grants::Patterns;
    use super::*;

    #[test]
    fn grants_and_room_passes() {
        let mut a = Access {
            grants: Some(Grants {
                rooms: Patterns::new(&["lobby", "team:*"]),
                publish: Patterns::new(&["lobby"]),
            }),
            ..Access::default()
        };
        assert!(a.may_join("team:1") && a.may_read("lobby"));
        assert!(!a.may_join("secret"));
        assert!(a.may_publish("lobby") && !a.may_publish("team:1"));
        a.grant_pass("secret", 0);
        assert!(a.may_join("secret") && a.may_publish("secret"));
        a.drop_pass("secret");
        assert!(!a.may_join("secret"), "leaving spends the pass");
        assert!(
            Access::default().may_publish("anything"),
            "no grants: anything"
        );
    }

    #[test]
    fn room_passes_end_at_exp_plus_leeway() {
        let mut a = Access {
            grants: Some(Grants::default()),
            ..Access::default()
        };
        a.grant_pass("a", 1_000);
        a.grant_pass("b", 2_000);
        a.grant_pass("forever", 0);
        a.grant_pass("a", 1_500);
        assert_eq!(a.room_passes.len(), 3, "one pass per room");
        assert!(!a.passes_expired(1_530, 30), "good through exp + leeway");
        assert!(a.expire_passes(1_530, 30).is_empty());
        assert!(a.passes_expired(1_531, 30));
        assert_eq!(a.expire_passes(1_531, 30), vec![Box::from("a")]);
        assert!(!a.may_join("a") && a.may_join("b") && a.may_publish("b"));
        assert_eq!(a.expire_passes(1_000_000, 30), vec![Box::from("b")]);
        assert!(a.may_join("forever"));
        assert!(!a.passes_expired(u64::MAX, 30));
        assert!(!expired(0, 0, u64::MAX) && expired(10, 0, 11) && !expired(u64::MAX, 5, 7));
    }

    #[test]
    fn refused_in_every_second_for_long_enough_means_close() {
        const S: u64 = 1_000_000;
        let close = 10 * S;
        // Refused every 900 ms (requests passing between): one run, closed
        // once it has lasted 10 s.
        let mut a = Access::default();
        let mut t = S;
        while t < S + close {
            assert!(!a.limited(t, close), "at {t}");
            t += 900_000;
        }
        assert!(a.limited(t, close));
        // Refused every 1.1 s: each refusal starts a run of its own.
        let mut b = Access::default();
        for i in 0..30 {
            assert!(!b.limited(S + i * 1_100_000, close));
        }
        // Over the limit once, then again much later: never closed.
        let mut c = Access::default();
        assert!(!c.limited(S, close));
        assert!(!c.limited(S + 20 * S, close));
        assert!(!c.limited(S + 20 * S + 500_000, close));
        // A burst of refusals shorter than the close time.
        let mut d = Access::default();
        assert!(!d.limited(S, 2 * S));
        assert!(!d.limited(S + S / 2, 2 * S));
        assert!(
            !d.limited(2 * S + S / 2, 2 * S),
            "the gap is 1 s: a new run"
        );
        assert!(!d.limited(3 * S + S / 3, 2 * S));
        assert!(!d.limited(4 * S, 2 * S));
        assert!(d.limited(4 * S + S / 2, 2 * S), "2 s since 2.5 s");
        assert!(!Access::default().limited(100 * S, 0), "0: never");
    }

    #[test]
    fn origins() {
        let list = vec!["https://chat.example.com".to_string()];
        assert!(origin_allowed(&list, Some("https://chat.example.com")));
        assert!(origin_allowed(&list, Some("HTTPS://chat.example.com/")));
        assert!(!origin_allowed(&list, Some("https://evil.example")));
        assert!(!origin_allowed(&list, Some("null")), "file:// pages");
        assert!(origin_allowed(&list, None), "not a browser");
        assert!(origin_allowed(&[], Some("null")), "no list: any");
    }
}
