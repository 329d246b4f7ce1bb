//! The broker a cluster's nodes share (Redis): what it did during a
//! measured window, from `INFO commandstats` read before and after it.
//!
//! Commands a Lua script runs (`redis.call`) are counted under their own
//! names as well as under the script's `evalsha`, so a ringcast publish
//! shows as one `evalsha` plus the `hincrby`, `xadd`, `publish`, … inside it.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddrV4, TcpStream};
use std::time::{Duration, Instant};

/// Calls and execution time per command name, cumulative since Redis started.
pub type CommandStats = BTreeMap<String, (u64, u64)>;

/// One command's share of a window, per published message.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CommandShare {
    /// Command name as Redis reports it (`evalsha`, `publish`, `client|setname`, …).
    pub command: String,
    /// Calls in the window per published message.
    pub calls_per_publish: f64,
    /// Redis's own execution time (`usec`) in the window per published message, µs.
    pub usec_per_publish: f64,
}

/// Asks the Redis at `addr` for `INFO commandstats`; `None` if it does not
/// answer within a second.
pub fn commandstats(addr: SocketAddrV4) -> Option<CommandStats> {
    let timeout = Duration::from_secs(1);
    let mut s = TcpStream::connect_timeout(&addr.into(), timeout).ok()?;
    s.set_read_timeout(Some(timeout)).ok()?;
    s.set_write_timeout(Some(timeout)).ok()?;
    s.write_all(b"INFO commandstats\r\n").ok()?;
    let deadline = Instant::now() + timeout;
    let mut got = Vec::with_capacity(4096);
    let mut buf = [0u8; 4096];
    loop {
        if let Some(body) = bulk(&got) {
            return Some(parse(body));
        }
        if Instant::now() >= deadline || got.len() > 1 << 20 {
            return None;
        }
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return None,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
}

/// The payload of a complete RESP bulk string, if `buf` holds one.
fn bulk(buf: &[u8]) -> Option<&str> {
    let rest = buf.strip_prefix(b"$")?;
    let eol = memchr::memmem::find(rest, b"\r\n")?;
    let len: usize = std::str::from_utf8(&rest[..eol]).ok()?.parse().ok()?;
    let body = rest.get(eol + 2..eol + 2 + len)?;
    std::str::from_utf8(body).ok()
}

/// `cmdstat_NAME:calls=N,usec=U,...` lines into a map.
pub fn parse(info: &str) -> CommandStats {
    let mut m = CommandStats::new();
    for l in info.lines() {
        let Some((name, fields)) = l.strip_prefix("cmdstat_").and_then(|l| l.split_once(':'))
        else {
            continue;
        };
        let field = |k: &str| {
            fields
                .split(',')
                .find_map(|f| f.strip_prefix(k)?.strip_prefix('='))
                .and_then(|v| v.trim().parse::<u64>().ok())
        };
        if let (Some(calls), Some(usec)) = (field("calls"), field("usec")) {
            m.insert(name.to_string(), (calls, usec));
        }
    }
    m
}

/// What happened between `before` and `after`, per published message,
/// busiest command (by time) first; commands with no calls are left out.
pub fn shares(before: &CommandStats, after: &CommandStats, published: u64) -> Vec<CommandShare> {
    let p = published.max(1) as f64;
    let mut v: Vec<CommandShare> = after
        .iter()
        .filter_map(|(name, &(calls, usec))| {
            let (c0, u0) = before.get(name).copied().unwrap_or((0, 0));
            let calls = calls.saturating_sub(c0);
            (calls > 0).then(|| CommandShare {
                command: name.clone(),
                calls_per_publish: calls as f64 / p,
                usec_per_publish: usec.saturating_sub(u0) as f64 / p,
            })
        })
        .collect();
    v.sort_by(|a, b| b.usec_per_publish.total_cmp(&a.usec_per_publish));
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    const INFO: &str = "# Commandstats\r\ncmdstat_evalsha:calls=10,usec=300,usec_per_call=30.00,rejected_calls=0,failed_calls=0\r\ncmdstat_publish:calls=4,usec=20,usec_per_call=5.00,rejected_calls=0,failed_calls=0\r\ncmdstat_client|setname:calls=2,usec=3,usec_per_call=1.50,rejected_calls=0,failed_calls=0\r\n";

    #[test]
    fn parses_and_subtracts_per_publish() {
        let after = parse(INFO);
        assert_eq!(after["evalsha"], (10, 300));
        assert_eq!(after["client|setname"], (2, 3));
        let mut before = CommandStats::new();
        before.insert("evalsha".into(), (4, 60));
        before.insert("client|setname".into(), (2, 3));
        let s = shares(&before, &after, 2);
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].command, "evalsha");
        assert_eq!(s[0].calls_per_publish, 3.0);
        assert_eq!(s[0].usec_per_publish, 120.0);
        assert_eq!(s[1].command, "publish");
    }

    #[test]
    fn bulk_reply_must_be_complete() {
        let whole = format!("${}\r\n{INFO}\r\n", INFO.len());
        assert_eq!(bulk(whole.as_bytes()), Some(INFO));
        assert_eq!(bulk(&whole.as_bytes()[..20]), None);
        assert_eq!(bulk(b"-ERR nope\r\n"), None);
    }
}
