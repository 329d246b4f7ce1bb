//! The NATS client protocol lines a subscriber sees inside WebSocket frames:
//! `INFO`, `MSG subject sid [reply] len` + payload, `PING` (must be answered),
//! `PONG` (answers our `PING`, which confirms the `SUB`), `+OK`, `-ERR`.

use crate::scan::Scanner;
use crate::target::{ProtoError, ProtoState, Sink};
use crate::wsframe::{self, op};

/// Consumes whole protocol units from the stream bytes in `buf`; returns the bytes used.
pub fn feed(
    sc: &Scanner,
    buf: &[u8],
    st: &mut ProtoState,
    out: &mut Vec<u8>,
    sink: &mut impl Sink,
) -> Result<usize, ProtoError> {
    let mut at = 0;
    while at < buf.len() {
        let Some(nl) = memchr::memchr(b'\n', &buf[at..]) else {
            if buf.len() - at > 1 << 16 {
                return Err(ProtoError::Invalid);
            }
            return Ok(at);
        };
        let eol = at + nl;
        let head = buf[at..eol].strip_suffix(b"\r").unwrap_or(&buf[at..eol]);
        let after = eol + 1;
        if head.starts_with(b"MSG ") {
            let len_field = head.rsplit(|&b| b == b' ').next().unwrap_or(b"");
            if len_field.is_empty() || !len_field.iter().all(u8::is_ascii_digit) {
                return Err(ProtoError::Invalid);
            }
            let len = len_field
                .iter()
                .fold(0usize, |v, &c| v * 10 + (c - b'0') as usize);
            if buf.len() < after + len + 2 {
                return Ok(at);
            }
            match sc.stamp(&buf[after..after + len]) {
                Some(s) => sink.delivery(s, None),
                None => sink.unparsed(),
            }
            at = after + len + 2;
            continue;
        }
        if head == b"PING" {
            let m = next_mask(st);
            wsframe::encode_masked(out, op::BINARY, b"PONG\r\n", m);
        } else if head == b"PONG" {
            sink.joined(None);
        } else if head.starts_with(b"-ERR") {
            sink.error();
        } else if !(head.starts_with(b"INFO") || head.starts_with(b"+OK") || head.is_empty()) {
            return Err(ProtoError::Invalid);
        }
        at = after;
    }
    Ok(at)
}

fn next_mask(st: &mut ProtoState) -> [u8; 4] {
    st.rng = st.rng.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
    st.rng.to_ne_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scan::Stamp;

    #[derive(Default)]
    struct Rec(Vec<Stamp>, u32);
    impl Sink for Rec {
        fn delivery(&mut self, s: Stamp, _: Option<u64>) {
            self.0.push(s);
        }
        fn unparsed(&mut self) {}
        fn joined(&mut self, _: Option<u64>) {
            self.1 += 1;
        }
        fn error(&mut self) {}
    }

    #[test]
    fn msg_ping_pong_and_split_units() {
        let sc = Scanner::new();
        let data = br#"{"p":1,"c":2,"t":3,"x":"yy"}"#;
        let mut buf = b"INFO {\"server_id\":\"x\"}\r\nPONG\r\nPING\r\n".to_vec();
        buf.extend_from_slice(format!("MSG r1 1 {}\r\n", data.len()).as_bytes());
        buf.extend_from_slice(data);
        buf.extend_from_slice(b"\r\n");
        let mut st = ProtoState::default();
        let mut out = Vec::new();
        let mut r = Rec::default();
        assert_eq!(feed(&sc, &buf, &mut st, &mut out, &mut r), Ok(buf.len()));
        assert_eq!((r.0.len(), r.1), (1, 1));
        assert!(!out.is_empty(), "PING answered");
        let msg_at = buf.len() - data.len() - 2 - 13;
        for cut in msg_at + 1..buf.len() {
            let mut r = Rec::default();
            assert_eq!(
                feed(&sc, &buf[..cut], &mut st, &mut Vec::new(), &mut r),
                Ok(msg_at),
                "cut {cut}"
            );
        }
    }
}
