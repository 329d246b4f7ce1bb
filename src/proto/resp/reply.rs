//! Sans-IO reply parsing, for the side of RESP where ringcast is the client
//! (its link to Redis in cluster mode): one reply taken off the front of a
//! read buffer, its strings `Bytes` slices of that buffer (no copy).
//!
//! Every RESP2 type and the RESP3 types a server sends unasked (`>` pushes,
//! `_` null, `#` booleans, `,` doubles as text, `%` maps as flat arrays, `~`
//! sets as arrays) are read; attributes (`|`, sent only when asked for) are
//! not. Bounds: a bulk string at most `max_bulk` bytes, an aggregate at
//! most [`MAX_ELEMENTS`] elements and [`MAX_DEPTH`] levels deep, a line at
//! most [`super::parse::MAX_INLINE`]; past one, the connection is out of sync
//! and must be closed. Incomplete input consumes nothing; the scan that
//! finds a reply complete is iterative, so a hostile peer cannot exhaust the
//! stack.

use bytes::{Bytes, BytesMut};

use super::number::string2ll;
use super::parse::MAX_INLINE;

/// The most elements one aggregate may claim.
pub const MAX_ELEMENTS: i64 = 1 << 20;
/// The deepest nesting read (Redis replies nest two or three levels).
pub const MAX_DEPTH: usize = 16;

/// One reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `+OK`.
    Simple(Bytes),
    /// `-ERR ...`: the whole line after `-`.
    Error(Bytes),
    /// `:42`.
    Int(i64),
    /// `$5 hello`; `None` is the null bulk (`$-1`, or RESP3 `_`).
    Bulk(Option<Bytes>),
    /// `*N` or `>N` (a push) or `%N` (a map, flattened); `None` is `*-1`.
    Array(Option<Vec<Reply>>),
}

impl Reply {
    /// The bytes of a simple or bulk string.
    pub fn bytes(&self) -> Option<&Bytes> {
        match self {
            Reply::Simple(b) | Reply::Bulk(Some(b)) => Some(b),
            _ => None,
        }
    }

    /// An integer, or a string holding one.
    pub fn int(&self) -> Option<i64> {
        match self {
            Reply::Int(n) => Some(*n),
            Reply::Simple(b) | Reply::Bulk(Some(b)) => string2ll(b),
            _ => None,
        }
    }

    /// The elements of an array.
    pub fn array(&self) -> Option<&[Reply]> {
        match self {
            Reply::Array(Some(v)) => Some(v),
            _ => None,
        }
    }

    /// The text of an error reply.
    pub fn error(&self) -> Option<&[u8]> {
        match self {
            Reply::Error(e) => Some(e),
            _ => None,
        }
    }

    /// Whether this is the null bulk or null array.
    pub fn is_null(&self) -> bool {
        matches!(self, Reply::Bulk(None) | Reply::Array(None))
    }
}

/// The peer broke the protocol; close the connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplyError {
    /// A type byte that is not RESP.
    #[error("unexpected byte {0:#04x} where a reply starts")]
    UnknownType(u8),
    /// A length that is not a number, negative (other than -1), or too big.
    #[error("bad length")]
    BadLength,
    /// A line past the inline limit, or a number line that is not one.
    #[error("bad line")]
    BadLine,
    /// Nested more than [`MAX_DEPTH`] levels.
    #[error("nested too deep")]
    TooDeep,
}

/// The line starting at `at`, without its `\r\n`, and where the next
/// begins; `None` when it is not all here yet.
fn line(buf: &[u8], at: usize) -> Result<Option<(&[u8], usize)>, ReplyError> {
    let rest = &buf[at..];
    match memchr_cr(rest) {
        Some(i) if i + 1 < rest.len() => Ok(Some((&rest[..i], at + i + 2))),
        Some(_) => Ok(None),
        None if rest.len() > MAX_INLINE => Err(ReplyError::BadLine),
        None => Ok(None),
    }
}

fn memchr_cr(b: &[u8]) -> Option<usize> {
    b.iter().position(|&c| c == b'\r')
}

/// Where the reply starting at 0 ends, if it is complete.
fn scan(buf: &[u8], max_bulk: usize) -> Result<Option<usize>, ReplyError> {
    // Elements still to read at each open aggregate.
    let mut open: Vec<i64> = Vec::new();
    let mut at = 0;
    loop {
        let Some(&ty) = buf.get(at) else {
            return Ok(None);
        };
        let Some((body, next)) = line(buf, at + 1)? else {
            return Ok(None);
        };
        at = next;
        let mut children = 0;
        match ty {
            b'+' | b'-' | b':' | b'_' | b'#' | b',' | b'(' => {}
            b'$' | b'=' | b'!' => {
                let n = string2ll(body).ok_or(ReplyError::BadLength)?;
                if n >= 0 {
                    let n = usize::try_from(n).map_err(|_| ReplyError::BadLength)?;
                    if n > max_bulk {
                        return Err(ReplyError::BadLength);
                    }
                    if buf.len() < at + n + 2 {
                        return Ok(None);
                    }
                    at += n + 2;
                } else if n != -1 {
                    return Err(ReplyError::BadLength);
                }
            }
            b'*' | b'>' | b'~' | b'%' => {
                let n = string2ll(body).ok_or(ReplyError::BadLength)?;
                if !(-1..=MAX_ELEMENTS).contains(&n) {
                    return Err(ReplyError::BadLength);
                }
                children = if ty == b'%' { n.max(0) * 2 } else { n.max(0) };
            }
            other => return Err(ReplyError::UnknownType(other)),
        }
        if children > 0 {
            if open.len() == MAX_DEPTH {
                return Err(ReplyError::TooDeep);
            }
            open.push(children);
            continue;
        }
        // One value done: close every aggregate it completes.
        loop {
            match open.last_mut() {
                None => return Ok(Some(at)),
                Some(left) => {
                    *left -= 1;
                    if *left > 0 {
                        break;
                    }
                    open.pop();
                }
            }
        }
    }
}

/// Builds the reply at `*at` of `buf` (known complete, and at most
/// [`MAX_DEPTH`] deep, by [`scan`]: the recursion is bounded).
fn build(buf: &Bytes, at: &mut usize) -> Reply {
    let ty = buf[*at];
    let start = *at + 1;
    let cr = start + memchr_cr(&buf[start..]).unwrap_or(0);
    let body = buf.slice(start..cr);
    *at = cr + 2;
    match ty {
        b'+' => Reply::Simple(body),
        b'-' | b'!' => {
            if ty == b'!' {
                let n = string2ll(&body).unwrap_or(0) as usize;
                let e = buf.slice(*at..*at + n);
                *at += n + 2;
                return Reply::Error(e);
            }
            Reply::Error(body)
        }
        b':' => Reply::Int(string2ll(&body).unwrap_or(0)),
        b'_' => Reply::Bulk(None),
        b'#' | b',' | b'(' => Reply::Simple(body),
        b'$' | b'=' => match string2ll(&body).unwrap_or(-1) {
            -1 => Reply::Bulk(None),
            n => {
                let n = n as usize;
                let s = buf.slice(*at..*at + n);
                *at += n + 2;
                Reply::Bulk(Some(s))
            }
        },
        _ => match string2ll(&body).unwrap_or(-1) {
            -1 => Reply::Array(None),
            n => {
                let n = if ty == b'%' { n * 2 } else { n } as usize;
                let mut v = Vec::with_capacity(n.min(1024));
                for _ in 0..n {
                    v.push(build(buf, at));
                }
                Reply::Array(Some(v))
            }
        },
    }
}

/// Takes one complete reply off the front of `buf`; `Ok(None)` when it is
/// not all here yet (nothing consumed).
pub fn parse_reply(buf: &mut BytesMut, max_bulk: usize) -> Result<Option<Reply>, ReplyError> {
    let Some(end) = scan(buf, max_bulk)? else {
        return Ok(None);
    };
    let bytes = buf.split_to(end).freeze();
    let mut at = 0;
    Ok(Some(build(&bytes, &mut at)))
}

/// Appends a command, an array of bulk strings, to `out`.
pub fn command(out: &mut BytesMut, args: &[&[u8]]) {
    super::encode::array_header(out, args.len());
    for a in args {
        super::encode::bulk(out, a);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(s: &[u8]) -> Result<Option<Reply>, ReplyError> {
        let mut b = BytesMut::from(s);
        let r = parse_reply(&mut b, 1 << 20);
        if let Ok(Some(_)) = r {
            assert!(b.is_empty(), "all of {s:?} consumed");
        }
        r
    }

    fn bulk(s: &str) -> Reply {
        Reply::Bulk(Some(Bytes::copy_from_slice(s.as_bytes())))
    }

    #[test]
    fn every_type() {
        assert_eq!(one(b"+OK\r\n"), Ok(Some(Reply::Simple("OK".into()))));
        assert_eq!(
            one(b"-NOSCRIPT No matching\r\n").unwrap().unwrap().error(),
            Some(&b"NOSCRIPT No matching"[..])
        );
        assert_eq!(one(b":-7\r\n"), Ok(Some(Reply::Int(-7))));
        assert_eq!(one(b"$-1\r\n"), Ok(Some(Reply::Bulk(None))));
        assert_eq!(one(b"$0\r\n\r\n"), Ok(Some(bulk(""))));
        assert_eq!(one(b"$4\r\na\r\nb\r\n"), Ok(Some(bulk("a\r\nb"))));
        assert_eq!(one(b"*-1\r\n"), Ok(Some(Reply::Array(None))));
        assert_eq!(
            one(b"*3\r\n:1\r\n$8\r\n\x00\x01\x02\x03\x04\x05\x06\x07\r\n*0\r\n"),
            Ok(Some(Reply::Array(Some(vec![
                Reply::Int(1),
                Reply::Bulk(Some(Bytes::from_static(
                    b"\x00\x01\x02\x03\x04\x05\x06\x07"
                ))),
                Reply::Array(Some(vec![])),
            ]))))
        );
        assert_eq!(
            one(b">3\r\n$7\r\nmessage\r\n$1\r\nc\r\n$1\r\np\r\n"),
            Ok(Some(Reply::Array(Some(vec![
                bulk("message"),
                bulk("c"),
                bulk("p")
            ]))))
        );
        assert_eq!(
            one(b"%1\r\n+a\r\n:1\r\n"),
            Ok(Some(Reply::Array(Some(vec![
                Reply::Simple("a".into()),
                Reply::Int(1)
            ]))))
        );
        assert_eq!(one(b"_\r\n"), Ok(Some(Reply::Bulk(None))));
    }

    #[test]
    fn incomplete_consumes_nothing_at_every_cut() {
        let whole = b"*2\r\n*2\r\n$5\r\n1-0\x00x\r\n$1\r\nd\r\n:9\r\n";
        for cut in 0..whole.len() {
            let mut b = BytesMut::from(&whole[..cut]);
            assert_eq!(parse_reply(&mut b, 100), Ok(None), "cut at {cut}");
            assert_eq!(b.len(), cut);
        }
        let mut b = BytesMut::from(&whole[..]);
        b.extend_from_slice(b"+next\r\n");
        assert!(parse_reply(&mut b, 100).unwrap().is_some());
        assert_eq!(
            parse_reply(&mut b, 100),
            Ok(Some(Reply::Simple("next".into())))
        );
    }

    #[test]
    fn bounds_are_errors_not_waits() {
        assert_eq!(one(b"$101\r\n"), Ok(None));
        let mut b = BytesMut::from(&b"$101\r\n"[..]);
        assert_eq!(parse_reply(&mut b, 100), Err(ReplyError::BadLength));
        assert_eq!(one(b"*99999999999\r\n"), Err(ReplyError::BadLength));
        assert_eq!(one(b"$-2\r\n"), Err(ReplyError::BadLength));
        assert_eq!(one(b"?x\r\n"), Err(ReplyError::UnknownType(b'?')));
        let deep = b"*1\r\n".repeat(MAX_DEPTH + 1);
        assert_eq!(one(&deep), Err(ReplyError::TooDeep));
        let long = vec![b'+'; MAX_INLINE + 2];
        assert_eq!(one(&long), Err(ReplyError::BadLine));
    }

    #[test]
    fn commands_are_arrays_of_bulks() {
        let mut out = BytesMut::new();
        command(&mut out, &[b"EVALSHA", b"ab", b"\r\n"]);
        assert_eq!(
            &out[..],
            b"*3\r\n$7\r\nEVALSHA\r\n$2\r\nab\r\n$2\r\n\r\n\r\n"
        );
    }
}
