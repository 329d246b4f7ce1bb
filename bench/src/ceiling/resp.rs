//! The ceiling's RESP side: just enough Redis for redis-benchmark and
//! redis-cli. `PUBLISH` copies one pre-encoded `message` push into every
//! subscriber's corked output and answers with their number; `SUBSCRIBE`
//! and `PING` answer as Redis does; anything else is an error reply. No
//! sequence, no history, no reply ordering across threads: the kernel's
//! cost of the same reads and writes, plus a parse.

use super::Hub;

/// Requests longer than this close the connection.
const MAX_REQUEST: usize = 1 << 20;
/// Unsent bytes a subscriber may have before its messages are dropped
/// (and counted): Redis's pubsub `client-output-buffer-limit`, 32 MB.
const SUBSCRIBER_CAP: usize = 32 << 20;

/// A command's first three arguments, how many it has, and the bytes it
/// took.
type Command<'a> = ([&'a [u8]; 3], usize, usize);

/// One complete command at the start of `buf`. `Some(None)`: incomplete;
/// `None`: not RESP.
fn command(buf: &[u8]) -> Option<Option<Command<'_>>> {
    fn line(buf: &[u8], at: usize) -> Option<Option<(usize, usize)>> {
        let Some(end) = memchr::memchr(b'\r', &buf[at.min(buf.len())..]) else {
            return Some(None);
        };
        let end = at + end;
        let n = std::str::from_utf8(&buf[at..end]).ok()?.parse().ok()?;
        Some(Some((n, end + 2)))
    }
    if buf.is_empty() {
        return Some(None);
    }
    if buf[0] != b'*' {
        return None;
    }
    let Some((n, mut at)) = line(buf, 1)? else {
        return Some(None);
    };
    let mut args: [&[u8]; 3] = [&[]; 3];
    for i in 0..n {
        if at >= buf.len() {
            return Some(None);
        }
        if buf[at] != b'$' {
            return None;
        }
        let Some((len, start)) = line(buf, at + 1)? else {
            return Some(None);
        };
        if start + len + 2 > buf.len() {
            return Some(None);
        }
        if let Some(arg) = args.get_mut(i) {
            *arg = &buf[start..start + len];
        }
        at = start + len + 2;
    }
    Some(Some((args, n, at)))
}

fn bulk(out: &mut Vec<u8>, b: &[u8]) {
    out.push(b'$');
    out.extend_from_slice(b.len().to_string().as_bytes());
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(b);
    out.extend_from_slice(b"\r\n");
}

/// Handles received bytes; returns how many were used, or `None` to close.
pub(super) fn handle(hub: &mut Hub, slot: usize, buf: &[u8]) -> Option<usize> {
    let mut at = 0;
    loop {
        let Some((args, n, used)) = command(&buf[at..])? else {
            if at > 0 {
                // Replies were corked: one send at the end of the turn.
                hub.dirty.push(slot);
            }
            return (buf.len() - at <= MAX_REQUEST).then_some(at);
        };
        at += used;
        let name = args[0].to_ascii_uppercase();
        match (&name[..], n) {
            (b"PUBLISH", 3) => {
                let id = hub.room(args[1]);
                hub.frame.clear();
                hub.frame.extend_from_slice(b"*3\r\n$7\r\nmessage\r\n");
                bulk(&mut hub.frame, args[1]);
                bulk(&mut hub.frame, args[2]);
                let receivers = hub.fan_out(id, SUBSCRIBER_CAP);
                let c = hub.conns[slot].as_mut()?;
                c.out.push(b':');
                c.out.extend_from_slice(receivers.to_string().as_bytes());
                c.out.extend_from_slice(b"\r\n");
            }
            (b"SUBSCRIBE", 2) => {
                let id = hub.room(args[1]);
                let c = hub.join(slot, id)?;
                c.out.extend_from_slice(b"*3\r\n$9\r\nsubscribe\r\n");
                bulk(&mut c.out, args[1]);
                c.out
                    .extend_from_slice(format!(":{}\r\n", c.rooms.len()).as_bytes());
            }
            (b"PING", 1) => hub.conns[slot]
                .as_mut()?
                .out
                .extend_from_slice(b"+PONG\r\n"),
            _ => hub.conns[slot]
                .as_mut()?
                .out
                .extend_from_slice(b"-ERR the ceiling knows PUBLISH, SUBSCRIBE and PING\r\n"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_framed_and_partial_ones_wait() {
        let two = b"*3\r\n$7\r\nPUBLISH\r\n$2\r\nch\r\n$5\r\nhello\r\n*1\r\n$4\r\nPING\r\n";
        let (args, n, used) = command(two).unwrap().unwrap();
        assert_eq!((args, n), ([&b"PUBLISH"[..], b"ch", b"hello"], 3));
        let (args, n, rest) = command(&two[used..]).unwrap().unwrap();
        assert_eq!((args[0], n, used + rest), (&b"PING"[..], 1, two.len()));
        for cut in 0..used {
            assert_eq!(command(&two[..cut]), Some(None), "{cut}");
        }
        assert_eq!(command(b"PING\r\n"), None);
    }
}
