//! A counting RESP subscriber for `resp-publish`: it subscribes to one
//! channel and counts the `message` pushes it reads, without printing
//! them. `redis-cli SUBSCRIBE` writing every message to a file could not
//! keep up with a server publishing 550k+ messages/s on the core it shares
//! with redis-benchmark, and was closed as a slow consumer by any server
//! fast enough (its 32 MiB budget filled in a second); this costs a read
//! per 256 KiB and a byte search.

use std::io::{Read, Write};
use std::net::{SocketAddrV4, TcpStream};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use memchr::memmem;

/// What every `message` push carries after its array header (RESP2 and 3).
const MARK: &[u8] = b"$7\r\nmessage\r\n";

/// Subscribes to `channel` at `addr`, prints `subscribed` once confirmed,
/// then counts messages until `count` arrived, the server closed the
/// connection, or nothing came for `idle`. Prints the count (and why it
/// stopped if short) and returns it.
pub fn run(addr: SocketAddrV4, channel: &str, count: u64, idle: Duration) -> Result<u64> {
    let mut s = TcpStream::connect(addr).with_context(|| format!("connecting to {addr}"))?;
    let cmd = format!(
        "*2\r\n$9\r\nSUBSCRIBE\r\n${}\r\n{channel}\r\n",
        channel.len()
    );
    s.write_all(cmd.as_bytes())?;
    s.set_read_timeout(Some(idle))?;
    let mut buf = vec![0u8; 256 * 1024];
    // The tail of the last read, where a mark may have been cut in two.
    let keep = MARK.len() - 1;
    let mut held = 0;
    let mut got = 0u64;
    let mut subscribed = false;
    let finder = memmem::Finder::new(MARK);
    let stop = loop {
        if got >= count {
            break None;
        }
        let n = match s.read(&mut buf[held..]) {
            Ok(0) => break Some("the server closed the connection"),
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                break Some("nothing came for the idle timeout")
            }
            Err(e) => return Err(e).context("reading"),
        };
        let data = &buf[..held + n];
        if !subscribed {
            if memmem::find(data, b"subscribe\r\n").is_none() {
                held += n;
                if held == buf.len() {
                    bail!("no subscribe confirmation in {} bytes", held);
                }
                continue;
            }
            subscribed = true;
            println!("subscribed");
            std::io::stdout().flush()?;
        }
        got += finder.find_iter(data).count() as u64;
        let tail = data.len().min(keep);
        let start = data.len() - tail;
        buf.copy_within(start..start + tail, 0);
        held = tail;
    };
    match stop {
        None => println!("{got}"),
        Some(why) => println!("{got} ({why})"),
    }
    Ok(got)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    /// Messages cut anywhere between reads are each counted once, and a
    /// server that closes early is reported short.
    #[test]
    fn counts_messages_cut_across_reads() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let std::net::SocketAddr::V4(addr) = listener.local_addr().unwrap() else {
            unreachable!()
        };
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut req = [0u8; 64];
            let _ = s.read(&mut req).unwrap();
            let mut out = b"*3\r\n$9\r\nsubscribe\r\n$1\r\nc\r\n:1\r\n".to_vec();
            for i in 0..1000 {
                let p = format!("m{i}");
                out.extend_from_slice(
                    format!("*3\r\n$7\r\nmessage\r\n$1\r\nc\r\n${}\r\n{p}\r\n", p.len()).as_bytes(),
                );
            }
            // Writes of 1 to 13 bytes, so marks are cut at every offset.
            let mut at = 0;
            for k in 0.. {
                let end = (at + 1 + k % 13).min(out.len());
                s.write_all(&out[at..end]).unwrap();
                s.flush().unwrap();
                at = end;
                if at == out.len() {
                    break;
                }
            }
        });
        let got = run(addr, "c", 1001, Duration::from_secs(5)).unwrap();
        server.join().unwrap();
        assert_eq!(
            got, 1000,
            "all counted once; short of 1001 as the server closed"
        );
    }
}
