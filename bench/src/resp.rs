//! The RESP replies a pub/sub client sees: `*3 message CHANNEL PAYLOAD`
//! pushes, `subscribe` confirmations, integer replies to `PUBLISH`, errors.

use crate::scan::Scanner;
use crate::target::{ProtoError, Sink};

/// Reads one CRLF-terminated line starting at `at`: its content and the offset after it.
#[inline]
fn line(buf: &[u8], at: usize) -> Option<(&[u8], usize)> {
    let end = memchr::memchr(b'\n', &buf[at..])? + at;
    if end == at || buf[end - 1] != b'\r' {
        return None;
    }
    Some((&buf[at..end - 1], end + 1))
}

#[inline]
fn int(b: &[u8]) -> Result<i64, ProtoError> {
    let (neg, d) = match b.first() {
        Some(b'-') => (true, &b[1..]),
        _ => (false, b),
    };
    if d.is_empty() || d.len() > 18 || !d.iter().all(u8::is_ascii_digit) {
        return Err(ProtoError::Invalid);
    }
    let v = d.iter().fold(0i64, |v, &c| v * 10 + (c - b'0') as i64);
    Ok(if neg { -v } else { v })
}

/// Consumes whole replies from `buf`; returns the bytes used.
pub fn feed(sc: &Scanner, buf: &[u8], sink: &mut impl Sink) -> Result<usize, ProtoError> {
    let mut at = 0;
    while at < buf.len() {
        let Some((head, mut next)) = line(buf, at) else {
            if buf.len() - at > 1 << 16 {
                return Err(ProtoError::Invalid);
            }
            return Ok(at);
        };
        match head.first() {
            Some(b'*') => {
                let n = int(&head[1..])?;
                let mut first: &[u8] = &[];
                let mut last: &[u8] = &[];
                for i in 0..n.max(0) {
                    let Some((h, after)) = line(buf, next) else {
                        return Ok(at);
                    };
                    match h.first() {
                        Some(b'$') => {
                            let len = int(&h[1..])?;
                            if len < 0 {
                                next = after;
                                continue;
                            }
                            let end = after + len as usize;
                            if buf.len() < end + 2 {
                                return Ok(at);
                            }
                            if i == 0 {
                                first = &buf[after..end];
                            }
                            last = &buf[after..end];
                            next = end + 2;
                        }
                        Some(b':') => next = after,
                        _ => return Err(ProtoError::Invalid),
                    }
                }
                if first.eq_ignore_ascii_case(b"message") {
                    match sc.stamp(last) {
                        Some(s) => sink.delivery(s, None),
                        None => sink.unparsed(),
                    }
                } else if first.eq_ignore_ascii_case(b"subscribe") {
                    sink.joined(None);
                }
            }
            Some(b'+') if head == b"+PONG" => sink.joined(None),
            Some(b':') | Some(b'+') => {}
            Some(b'-') => sink.error(),
            _ => return Err(ProtoError::Invalid),
        }
        at = next;
    }
    Ok(at)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scan::Stamp;

    #[derive(Default)]
    struct Rec(Vec<Stamp>, u32, u32);
    impl Sink for Rec {
        fn delivery(&mut self, s: Stamp, _: Option<u64>) {
            self.0.push(s);
        }
        fn unparsed(&mut self) {}
        fn joined(&mut self, _: Option<u64>) {
            self.1 += 1;
        }
        fn error(&mut self) {
            self.2 += 1;
        }
    }

    #[test]
    fn pushes_replies_and_partials() {
        let sc = Scanner::new();
        let data = br#"{"p":4,"c":9,"t":100,"x":""}"#;
        let mut buf = b"*3\r\n$9\r\nsubscribe\r\n$2\r\nr1\r\n:1\r\n:5\r\n+OK\r\n+PONG\r\n".to_vec();
        buf.extend_from_slice(
            format!("*3\r\n$7\r\nmessage\r\n$2\r\nr1\r\n${}\r\n", data.len()).as_bytes(),
        );
        buf.extend_from_slice(data);
        buf.extend_from_slice(b"\r\n-ERR nope\r\n");
        let mut r = Rec::default();
        assert_eq!(feed(&sc, &buf, &mut r), Ok(buf.len()));
        assert_eq!((r.0.len(), r.1, r.2), (1, 2, 1));
        assert_eq!(
            r.0[0],
            Stamp {
                publisher: 4,
                counter: 9,
                sent_ns: 100
            }
        );
        // Every cut inside the message push leaves it whole for later.
        let start = memchr::memmem::find(&buf, b"*3\r\n$7\r\nmessage").unwrap();
        for cut in start + 1..buf.len() - 12 {
            let mut r = Rec::default();
            let used = feed(&sc, &buf[..cut], &mut r).unwrap();
            assert!(used <= start, "cut {cut} used {used}");
            assert_eq!(r.0.len(), 0);
        }
    }

    #[test]
    fn garbage_is_invalid() {
        let sc = Scanner::new();
        assert_eq!(
            feed(&sc, b"hello\r\n", &mut Rec::default()),
            Err(ProtoError::Invalid)
        );
        assert_eq!(
            feed(&sc, b"*x\r\n", &mut Rec::default()),
            Err(ProtoError::Invalid)
        );
    }
}
