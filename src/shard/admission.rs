//! Who may connect: the whole server's connection count and the count per
//! client address, decided once at accept and shared by every shard.
//!
//! The counts live here, behind atomics and (only when a per-address
//! limit is set) one small lock taken at accept and at close — never on
//! a message's path. An address is counted by its IPv4 address, or by the
//! /64 prefix of an IPv6 one (one host usually holds a whole /64).

use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use ahash::AHashMap;

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
}

/// The server's admission counts.
#[derive(Debug)]
pub struct Admission {
    max_total: usize,
    max_per_source: usize,
    total: AtomicUsize,
    per_source: Mutex<AHashMap<Source, u32>>,
}

impl Admission {
    /// Limits of `max_total` connections in all and `max_per_source` per
    /// address; 0 turns a limit off.
    pub fn new(max_total: usize, max_per_source: usize) -> Self {
        Self {
            max_total,
            max_per_source,
            total: AtomicUsize::new(0),
            per_source: Mutex::new(AHashMap::new()),
        }
    }

    /// Counts a new connection from `source`, or says why it may not come
    /// in. Every admitted connection must be [`Admission::release`]d.
    pub fn admit(&self, source: Source) -> Result<(), Refusal> {
        let before = self.total.fetch_add(1, Ordering::Relaxed);
        if self.max_total > 0 && before >= self.max_total {
            self.total.fetch_sub(1, Ordering::Relaxed);
            return Err(Refusal::Server);
        }
        if self.max_per_source > 0 {
            let mut map = self.per_source.lock().unwrap_or_else(|e| e.into_inner());
            let n = map.entry(source).or_insert(0);
            if *n as usize >= self.max_per_source {
                drop(map);
                self.total.fetch_sub(1, Ordering::Relaxed);
                return Err(Refusal::PerSource);
            }
            *n += 1;
        }
        Ok(())
    }

    /// A connection admitted from `source` has closed.
    pub fn release(&self, source: Source) {
        self.total.fetch_sub(1, Ordering::Relaxed);
        if self.max_per_source > 0 {
            let mut map = self.per_source.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(n) = map.get_mut(&source) {
                *n -= 1;
                if *n == 0 {
                    map.remove(&source);
                }
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
        let a = Admission::new(3, 2);
        assert_eq!(a.admit(src("10.0.0.1")), Ok(()));
        assert_eq!(a.admit(src("10.0.0.1")), Ok(()));
        assert_eq!(a.admit(src("10.0.0.1")), Err(Refusal::PerSource));
        assert_eq!(a.admit(src("10.0.0.2")), Ok(()));
        assert_eq!(a.admit(src("10.0.0.3")), Err(Refusal::Server));
        assert_eq!((a.connections(), a.sources()), (3, 2));
        a.release(src("10.0.0.1"));
        assert_eq!(a.admit(src("10.0.0.3")), Ok(()));
        for ip in ["10.0.0.1", "10.0.0.2", "10.0.0.3"] {
            a.release(src(ip));
        }
        assert_eq!((a.connections(), a.sources()), (0, 0));
    }

    #[test]
    fn off_means_unlimited() {
        let a = Admission::new(0, 0);
        for _ in 0..1000 {
            a.admit(src("127.0.0.1")).unwrap();
        }
        assert_eq!((a.connections(), a.sources()), (1000, 0));
    }

    #[test]
    fn ipv6_counts_by_its_64_and_mapped_v4_as_v4() {
        assert_eq!(src("2001:db8::1"), src("2001:db8::ffff:1"));
        assert_ne!(src("2001:db8::1"), src("2001:db8:0:1::1"));
        assert_eq!(src("::ffff:10.0.0.1"), src("10.0.0.1"));
        assert_ne!(src("10.0.0.1"), src("10.0.0.2"));
    }
}
