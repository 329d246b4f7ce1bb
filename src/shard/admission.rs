//! Who may connect: the whole server's connection count, and per client
//! address its connections and how fast it starts WebSocket handshakes,
//! decided once at accept and shared by every shard.
//!
//! The counts live here, behind atomics and (only when a per-address
//! limit is set) one small lock taken at accept and at close — never on
//! a message's path. An address is counted by its IPv4 address, or by the
//! /64 prefix of an IPv6 one (one host usually holds a whole /64).

use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use ahash::AHashMap;

use crate::access::rate::Bucket;

/// A client address as counted: IPv4 whole, IPv6 by its /64.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Source(u64);

impl From<IpAddr> for Source {
    fn from(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(v4) => Source((1 << 63) | u64::from(u32::from(v4))),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Source::from(IpAddr::V4(v4)),
                None => Source((u128::from(v6) >> 64) as u64 & !(1 << 63)),
            },
        }
    }
}

/// Why a connection was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The server holds `max_connections` already.
    Server,
    /// This address holds `max_connections_per_ip` already.
    PerSource,
    /// This address starts handshakes faster than
    /// `limits.handshakes_per_ip_per_s`.
    Rate,
}

/// One address's account.
#[derive(Debug, Default)]
struct Account {
    conns: u32,
    handshakes: Bucket,
}

/// The server's admission counts.
#[derive(Debug)]
pub struct Admission {
    max_total: usize,
    max_per_source: usize,
    handshake_rate: u32,
    total: AtomicUsize,
    per_source: Mutex<AHashMap<Source, Account>>,
    started: Instant,
}

impl Admission {
    /// Limits of `max_total` connections in all, `max_per_source` per
    /// address, and `handshake_rate` WebSocket handshakes per second per
    /// address (twice that at once); 0 turns a limit off.
    pub fn new(max_total: usize, max_per_source: usize, handshake_rate: u32) -> Self {
        Self {
            max_total,
            max_per_source,
            handshake_rate,
            total: AtomicUsize::new(0),
            per_source: Mutex::new(AHashMap::new()),
            started: Instant::now(),
        }
    }

    /// True when addresses are accounted for.
    fn per_address(&self) -> bool {
        self.max_per_source > 0 || self.handshake_rate > 0
    }

    /// Counts a new connection from `source` (a WebSocket `handshake` also
    /// against the handshake rate), or says why it may not come in. Every
    /// admitted connection must be [`Admission::release`]d.
    pub fn admit(&self, source: Source, handshake: bool) -> Result<(), Refusal> {
        let before = self.total.fetch_add(1, Ordering::Relaxed);
        if self.max_total > 0 && before >= self.max_total {
            self.total.fetch_sub(1, Ordering::Relaxed);
            return Err(Refusal::Server);
        }
        if self.per_address() {
            let mut map = self.per_source.lock().unwrap_or_else(|e| e.into_inner());
            let account = map.entry(source).or_default();
            let verdict =
                if self.max_per_source > 0 && account.conns as usize >= self.max_per_source {
                    Err(Refusal::PerSource)
                } else if handshake {
                    let now = u64::try_from(self.started.elapsed().as_micros()).unwrap_or(u64::MAX);
                    let rate = self.handshake_rate;
                    account
                        .handshakes
                        .take(now, rate, rate.saturating_mul(2))
                        .map_err(|_| Refusal::Rate)
                } else {
                    Ok(())
                };
            match verdict {
                Ok(()) => account.conns += 1,
                Err(why) => {
                    if account.conns == 0 && self.handshake_rate == 0 {
                        map.remove(&source);
                    }
                    drop(map);
                    self.total.fetch_sub(1, Ordering::Relaxed);
                    return Err(why);
                }
            }
        }
        Ok(())
    }

    /// A connection admitted from `source` has closed.
    pub fn release(&self, source: Source) {
        self.total.fetch_sub(1, Ordering::Relaxed);
        if self.per_address() {
            let mut map = self.per_source.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(account) = map.get_mut(&source) {
                account.conns -= 1;
                // An address with no connection keeps its handshake account
                // while the account still says something (a rate in force).
                if account.conns == 0 && self.handshake_rate == 0 {
                    map.remove(&source);
                }
            }
            if map.len() > 4096 && self.handshake_rate > 0 {
                map.retain(|_, a| a.conns > 0);
            }
        }
    }

    /// Connections admitted and not yet released.
    pub fn connections(&self) -> usize {
        self.total.load(Ordering::Relaxed)
    }

    /// Addresses with a connection (0 unless a per-address limit is set).
    pub fn sources(&self) -> usize {
        self.per_source.lock().map_or(0, |m| m.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn src(s: &str) -> Source {
        Source::from(s.parse::<IpAddr>().unwrap())
    }

    #[test]
    fn limits_in_all_and_per_address() {
        let a = Admission::new(3, 2, 0);
        assert_eq!(a.admit(src("10.0.0.1"), true), Ok(()));
        assert_eq!(a.admit(src("10.0.0.1"), true), Ok(()));
        assert_eq!(a.admit(src("10.0.0.1"), true), Err(Refusal::PerSource));
        assert_eq!(a.admit(src("10.0.0.2"), true), Ok(()));
        assert_eq!(a.admit(src("10.0.0.3"), true), Err(Refusal::Server));
        assert_eq!((a.connections(), a.sources()), (3, 2));
        a.release(src("10.0.0.1"));
        assert_eq!(a.admit(src("10.0.0.3"), true), Ok(()));
        for ip in ["10.0.0.1", "10.0.0.2", "10.0.0.3"] {
            a.release(src(ip));
        }
        assert_eq!((a.connections(), a.sources()), (0, 0));
    }

    #[test]
    fn off_means_unlimited() {
        let a = Admission::new(0, 0, 0);
        for _ in 0..1000 {
            a.admit(src("127.0.0.1"), true).unwrap();
        }
        assert_eq!((a.connections(), a.sources()), (1000, 0));
    }

    #[test]
    fn handshakes_per_address_per_second() {
        let a = Admission::new(0, 0, 5);
        // A burst of twice the rate, then no more until time passes.
        for _ in 0..10 {
            assert_eq!(a.admit(src("10.0.0.1"), true), Ok(()));
        }
        assert_eq!(a.admit(src("10.0.0.1"), true), Err(Refusal::Rate));
        assert_eq!(a.admit(src("10.0.0.2"), true), Ok(()), "per address");
        assert_eq!(
            a.admit(src("10.0.0.1"), false),
            Ok(()),
            "RESP is not a handshake"
        );
        assert_eq!(a.connections(), 12);
    }

    #[test]
    fn ipv6_counts_by_its_64_and_mapped_v4_as_v4() {
        assert_eq!(src("2001:db8::1"), src("2001:db8::ffff:1"));
        assert_ne!(src("2001:db8::1"), src("2001:db8:0:1::1"));
        assert_eq!(src("::ffff:10.0.0.1"), src("10.0.0.1"));
        assert_ne!(src("10.0.0.1"), src("10.0.0.2"));
    }
}
