//! A one-off check that the cluster's Redis answers, for the start-up log
//! and `ringcast doctor`: connect, log in, `PING`, with a deadline. Plain
//! blocking I/O, never on a shard.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use bytes::BytesMut;

use super::target::Target;
use crate::proto::resp::reply::{command, parse_reply};

/// How long Redis took to answer `PING`, or why it did not.
pub fn probe(target: &Target, timeout: Duration) -> Result<Duration, String> {
    let started = Instant::now();
    let addr = target
        .addr
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {}: {e}", target.addr))?
        .next()
        .ok_or_else(|| format!("{} has no address", target.addr))?;
    let mut s = TcpStream::connect_timeout(&addr, timeout).map_err(|e| e.to_string())?;
    let left = timeout
        .saturating_sub(started.elapsed())
        .max(Duration::from_millis(1));
    s.set_read_timeout(Some(left)).map_err(|e| e.to_string())?;
    let mut out = BytesMut::new();
    let mut replies = 1;
    match (&target.user, &target.password) {
        (Some(u), Some(p)) => command(&mut out, &[b"AUTH", u.as_bytes(), p.as_bytes()]),
        (None, Some(p)) => command(&mut out, &[b"AUTH", p.as_bytes()]),
        _ => replies = 0,
    }
    command(&mut out, &[b"PING"]);
    replies += 1;
    s.write_all(&out).map_err(|e| e.to_string())?;
    let mut buf = BytesMut::new();
    let mut chunk = [0u8; 4096];
    while replies > 0 {
        match parse_reply(&mut buf, 1 << 20) {
            Ok(Some(r)) => {
                if let Some(e) = r.error() {
                    return Err(String::from_utf8_lossy(e).into_owned());
                }
                replies -= 1;
            }
            Ok(None) => {
                let n = s.read(&mut chunk).map_err(|e| e.to_string())?;
                if n == 0 {
                    return Err("redis closed the connection".into());
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            Err(e) => return Err(format!("not a Redis reply: {e}")),
        }
    }
    Ok(started.elapsed())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_closed_port_is_a_clear_error() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let t = Target::parse(&format!("redis://127.0.0.1:{port}")).unwrap();
        let e = probe(&t, Duration::from_millis(500)).unwrap_err();
        assert!(e.contains("refused"), "{e}");
    }

    #[test]
    fn something_that_is_not_redis_is_named() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (mut c, _) = l.accept().unwrap();
            let _ = c.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n");
        });
        let t = Target::parse(&format!("redis://{addr}")).unwrap();
        let e = probe(&t, Duration::from_secs(2)).unwrap_err();
        assert!(e.contains("not a Redis reply"), "{e}");
        server.join().unwrap();
    }
}
