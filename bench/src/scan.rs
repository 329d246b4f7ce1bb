//! The generator's payload and the byte scan that reads it back.
//!
//! Every published message carries a small JSON object the generator wrote:
//! `{"p":PUBLISHER,"c":COUNTER,"t":SEND_NS,"x":"padding"}`. Whatever envelope
//! a server wraps around it (ringcast's `message`, socket.io's event array,
//! NATS `MSG`, RESP `message`), the object comes back verbatim, so the receive
//! path finds it with one substring search and reads three integers: no JSON
//! parser on the hot path. `p` identifies the publisher (per-publisher order
//! and loss), `c` is that publisher's counter, `t` the *scheduled* send time.

use memchr::memmem::Finder;

/// The three fields the receive path needs from a delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    /// Global publisher id.
    pub publisher: u32,
    /// The publisher's message counter, from 0, gap-free as sent.
    pub counter: u64,
    /// Scheduled send time, ns on the monotonic clock.
    pub sent_ns: u64,
}

/// Smallest data object [`write_data`] can produce with full-width numbers.
pub const MIN_DATA: usize = 64;

/// Appends the data object for one publish, padded so it is `size` bytes long
/// (or as short as it can be, if `size` is smaller than the fields need).
pub fn write_data(out: &mut Vec<u8>, publisher: u32, counter: u64, sent_ns: u64, size: usize) {
    let start = out.len();
    out.extend_from_slice(b"{\"p\":");
    push_u64(out, publisher as u64);
    out.extend_from_slice(b",\"c\":");
    push_u64(out, counter);
    out.extend_from_slice(b",\"t\":");
    push_u64(out, sent_ns);
    out.extend_from_slice(b",\"x\":\"");
    let used = out.len() - start + 2;
    let pad = size.saturating_sub(used);
    out.resize(out.len() + pad, b'x');
    out.extend_from_slice(b"\"}");
}

/// Appends the decimal digits of `v`.
#[inline]
pub fn push_u64(out: &mut Vec<u8>, mut v: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[i..]);
}

/// Reads decimal digits at the start of `b`: the value and how many bytes it took.
#[inline]
fn digits(b: &[u8]) -> Option<(u64, usize)> {
    let mut v: u64 = 0;
    let mut n = 0;
    while n < b.len() && b[n].is_ascii_digit() && n < 20 {
        v = v.wrapping_mul(10).wrapping_add((b[n] - b'0') as u64);
        n += 1;
    }
    (n > 0).then_some((v, n))
}

/// Precomputed substring searchers; one per worker thread.
pub struct Scanner {
    data: Finder<'static>,
    seq: Finder<'static>,
}

impl Default for Scanner {
    fn default() -> Self {
        Self::new()
    }
}

impl Scanner {
    /// Builds the searchers.
    pub fn new() -> Self {
        Scanner {
            data: Finder::new(b"{\"p\":"),
            seq: Finder::new(b"\"seq\":"),
        }
    }

    /// Finds the generator's data object in a delivery and reads its stamp.
    #[inline]
    pub fn stamp(&self, msg: &[u8]) -> Option<Stamp> {
        let at = self.data.find(msg)? + 5;
        let rest = &msg[at..];
        let (p, n) = digits(rest)?;
        let rest = rest[n..].strip_prefix(b",\"c\":")?;
        let (c, n) = digits(rest)?;
        let rest = rest[n..].strip_prefix(b",\"t\":")?;
        let (t, _) = digits(rest)?;
        Some(Stamp {
            publisher: p as u32,
            counter: c,
            sent_ns: t,
        })
    }

    /// Reads the number after `"seq":` (ringcast's per-room sequence).
    #[inline]
    pub fn seq(&self, msg: &[u8]) -> Option<u64> {
        let at = self.seq.find(msg)? + 6;
        digits(&msg[at..]).map(|(v, _)| v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_object_has_requested_size_and_reads_back() {
        let s = Scanner::new();
        for size in [0usize, 40, 64, 100, 176, 1000] {
            let mut out = Vec::new();
            write_data(&mut out, 4_000_000_000, u64::MAX / 3, 123_456_789_012, size);
            if size >= 90 {
                assert_eq!(out.len(), size);
            }
            let st = s.stamp(&out).unwrap();
            assert_eq!(
                st,
                Stamp {
                    publisher: 4_000_000_000,
                    counter: u64::MAX / 3,
                    sent_ns: 123_456_789_012
                }
            );
        }
    }

    #[test]
    fn finds_stamp_and_seq_inside_envelopes() {
        let s = Scanner::new();
        let mut data = Vec::new();
        write_data(&mut data, 7, 3, 99, 80);
        let d = std::str::from_utf8(&data).unwrap();
        let ringcast = format!(
            r#"{{"op":"message","room":"r1","seq":42,"user":"u1","ts":1700000000000,"data":{d}}}"#
        );
        let sio = format!(r#"42["message",{d}]"#);
        for env in [ringcast.as_str(), sio.as_str(), d] {
            assert_eq!(
                s.stamp(env.as_bytes()).unwrap(),
                Stamp {
                    publisher: 7,
                    counter: 3,
                    sent_ns: 99
                }
            );
        }
        assert_eq!(s.seq(ringcast.as_bytes()), Some(42));
        assert_eq!(s.seq(sio.as_bytes()), None);
    }

    #[test]
    fn rejects_foreign_and_truncated_objects() {
        let s = Scanner::new();
        assert_eq!(s.stamp(br#"{"op":"ok","id":2,"room":"r1","seq":5}"#), None);
        assert_eq!(s.stamp(br#"{"p":1,"c":2"#), None);
        assert_eq!(s.stamp(br#"{"p":,"c":2,"t":3}"#), None);
    }
}
