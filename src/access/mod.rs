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
    /// Rooms a room token let it into, beyond its grants, with their `exp`.
    pub room_passes: Vec<(Box<str>, u64)>,
    /// When its token expires, Unix seconds (0: never).
    pub expires: u64,
    /// The token's `info`: compact JSON shown with the user.
    pub info: Option<Box<str>>,
    /// Publishes and typing events.
    pub publishes: Bucket,
    /// Joins and leaves.
    pub joins: Bucket,
    /// Since when (µs) every request it sent was refused by a rate limit.
    pub limited_since: Option<u64>,
}

impl Access {
    fn passed(&self, room: &str) -> bool {
        self.room_passes.iter().any(|(r, _)| &**r == room)
    }

    /// May it join `room` (and so receive its messages)?
    pub fn may_join(&self, room: &str) -> bool {
        self.grants.as_ref().is_none_or(|g| g.rooms.allows(room)) || self.passed(room)
    }

    /// May it read `room`'s history and members?
    pub fn may_read(&self, room: &str) -> bool {
        self.may_join(room)
    }

    /// May it publish or send typing events into `room`?
    pub fn may_publish(&self, room: &str) -> bool {
        self.grants.as_ref().is_none_or(|g| g.publish.allows(room)) || self.passed(room)
    }

    /// A request refused by a rate limit at `now_us`; true when that has
    /// gone on for `close_after_us` (then the connection should go).
    pub fn limited(&mut self, now_us: u64, close_after_us: u64) -> bool {
        let since = *self.limited_since.get_or_insert(now_us);
        close_after_us > 0 && now_us - since >= close_after_us
    }

    /// A request got through: the refusals in a row end.
    pub fn unlimited(&mut self) {
        self.limited_since = None;
    }
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
        a.room_passes.push(("secret".into(), 0));
        assert!(a.may_join("secret") && a.may_publish("secret"));
        assert!(
            Access::default().may_publish("anything"),
            "no grants: anything"
        );
    }

    #[test]
    fn refused_in_a_row_for_long_enough_means_close() {
        let mut a = Access::default();
        assert!(!a.limited(1_000, 10_000));
        assert!(!a.limited(5_000, 10_000));
        assert!(a.limited(11_000, 10_000));
        a.unlimited();
        assert!(!a.limited(12_000, 10_000));
        assert!(!a.limited(100_000, 0), "0: never");
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
