//! Sans-IO request parsing: multibulk (`*N\r\n$L\r\n...`) and inline (`PING\r\n`)
//! framing; [`super::command`] maps the argument vector onto a [`Command`].
//!
//! Framing follows Redis 7's `processMultibulkBuffer` / `processInlineBuffer`
//! (`networking.c`) closely, including its leniencies (the two bytes after a
//! bulk payload or a length line's `\r` are skipped, not checked) and its exact
//! error texts, so clients see the replies they would get from Redis.

use std::ops::Range;

use bytes::{Buf, Bytes, BytesMut};

use super::command::Command;
use super::inline::split_args;
use super::number::string2ll;

/// Longest inline line, or multibulk/bulk length line, before `RespError` (Redis's
/// `PROTO_INLINE_MAX_SIZE`).
pub const MAX_INLINE: usize = 64 * 1024;

/// Largest element count accepted in a request's `*N` header.
pub const MAX_MULTIBULK: i64 = 1024 * 1024;

/// Elements pre-allocated for an argument vector, whatever `*N` claims.
const PREALLOC_ARGS: usize = 16;

/// A framing error. The connection is out of sync after it: write
/// [`RespError::reply`] and close, as Redis does. `buf` is left untouched.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RespError {
    /// `*N` with N not an integer or above [`MAX_MULTIBULK`].
    #[error("invalid multibulk length")]
    InvalidMultibulkLength,
    /// `$L` with L not an integer, negative, or above `max_bulk`.
    #[error("invalid bulk length")]
    InvalidBulkLength,
    /// An element of a multibulk request that is not a bulk string; carries
    /// the byte found instead of `$` (escaped by `Display`, raw in `reply`).
    #[error("expected '$', got '{}'", char::from(*.0).escape_default())]
    ExpectedBulk(u8),
    /// No `\r` within [`MAX_INLINE`] bytes of a `*` header.
    #[error("too big mbulk count string")]
    TooBigMultibulkCount,
    /// No `\r` within [`MAX_INLINE`] bytes of a `$` header.
    #[error("too big bulk count string")]
    TooBigBulkCount,
    /// An inline line longer than [`MAX_INLINE`].
    #[error("too big inline request")]
    TooBigInline,
    /// An inline line with an unterminated quote, or a closing quote not
    /// followed by a space.
    #[error("unbalanced quotes in request")]
    UnbalancedQuotes,
    /// An incomplete request holds more than the query buffer limit (its
    /// bytes plus what the parser keeps of its elements), as Redis's
    /// `client-query-buffer-limit`.
    #[error("query buffer limit of {0} bytes reached")]
    QueryBufferLimit(usize),
}

impl RespError {
    /// The exact error line Redis sends, e.g.
    /// `-ERR Protocol error: invalid bulk length\r\n`.
    pub fn reply(&self) -> Bytes {
        let mut out = Vec::with_capacity(64);
        out.extend_from_slice(b"-ERR Protocol error: ");
        match self {
            // Raw byte, as Redis's `%c`; CR/LF become spaces like in all its errors.
            RespError::ExpectedBulk(b) => {
                let b = if matches!(b, b'\r' | b'\n') { b' ' } else { *b };
                out.extend_from_slice(b"expected '$', got '");
                out.push(b);
                out.push(b'\'');
            }
            other => out.extend_from_slice(other.to_string().as_bytes()),
        }
        out.extend_from_slice(b"\r\n");
        Bytes::from(out)
    }
}

/// Consumes one complete request from the front of `buf`.
///
/// `Ok(None)`: incomplete, nothing consumed; call again when more bytes
/// arrive. Lengths are checked as soon as their header line is complete, so
/// a `$L` above `max_bulk`, a `*N` above [`MAX_MULTIBULK`] or a line longer
/// than [`MAX_INLINE`] fails before its body is buffered. On `Err` nothing is
/// consumed and the caller should send [`RespError::reply`] and close.
///
/// Stateless: an incomplete request is re-scanned (headers only) on the next
/// call. [`Parser`] remembers how far it got instead.
pub fn parse_command(buf: &mut BytesMut, max_bulk: usize) -> Result<Option<Command>, RespError> {
    Parser::default().parse(buf, max_bulk)
}

/// [`parse_command`] that resumes a partly received multibulk request where
/// the last call stopped, so a request arriving in many reads is scanned once
/// (Redis keeps the same state per client). Keep one per connection and only
/// append to `buf` between calls; a `buf` shorter than what was scanned resets
/// it.
#[derive(Debug)]
pub struct Parser {
    /// Bytes of the pending multibulk request validated so far (0: none).
    scanned: usize,
    /// Elements of the pending request not yet received.
    left: usize,
    /// Byte ranges of the elements received.
    ranges: Vec<Range<usize>>,
    /// The most an incomplete request may hold (see [`Parser::limit_query`]).
    max_query: usize,
}

impl Default for Parser {
    fn default() -> Self {
        Self {
            scanned: 0,
            left: 0,
            ranges: Vec::new(),
            max_query: usize::MAX,
        }
    }
}

impl Parser {
    /// Refuses, with [`RespError::QueryBufferLimit`], an incomplete request
    /// that holds more than `max` bytes: its bytes in the buffer plus the
    /// element ranges kept for it. Without a limit a client could make the
    /// server buffer a million elements of 64 KiB.
    #[must_use]
    pub fn limit_query(mut self, max: usize) -> Self {
        self.max_query = max;
        self
    }

    /// Same contract as [`parse_command`], and the query limit.
    pub fn parse(
        &mut self,
        buf: &mut BytesMut,
        max_bulk: usize,
    ) -> Result<Option<Command>, RespError> {
        if self.scanned > buf.len() {
            self.scanned = 0;
        }
        let args = match buf.first() {
            None => Ok(None),
            Some(b'*') => self.multibulk(buf, max_bulk),
            Some(_) => {
                self.scanned = 0;
                parse_inline(buf)
            }
        };
        if !matches!(args, Ok(None)) {
            self.scanned = 0;
        } else {
            let held = buf.len() + self.ranges.len() * std::mem::size_of::<Range<usize>>();
            if held > self.max_query {
                self.scanned = 0;
                return Err(RespError::QueryBufferLimit(self.max_query));
            }
        }
        Ok(args?.map(Command::from_args))
    }

    /// A `*N` request: all N bulk strings present, else `None`.
    fn multibulk(
        &mut self,
        buf: &mut BytesMut,
        max_bulk: usize,
    ) -> Result<Option<Vec<Bytes>>, RespError> {
        if self.scanned == 0 {
            let Some(cr) = find(buf, 0, b'\r').map_err(|()| RespError::TooBigMultibulkCount)?
            else {
                return Ok(None);
            };
            // Like Redis: the byte after '\r' must be there, but is not checked.
            if cr + 1 >= buf.len() {
                return Ok(None);
            }
            let count = buf
                .get(1..cr)
                .and_then(string2ll)
                .filter(|&n| n <= MAX_MULTIBULK)
                .ok_or(RespError::InvalidMultibulkLength)?;
            let Ok(count) = usize::try_from(count) else {
                buf.advance(cr + 2); // `*-1`: an empty request, ignored.
                return Ok(Some(Vec::new()));
            };
            self.scanned = cr + 2;
            self.left = count;
            self.ranges.clear();
            self.ranges.reserve(count.min(PREALLOC_ARGS));
        }
        while self.left > 0 {
            let pos = self.scanned;
            let Some(cr) = find(buf, pos, b'\r').map_err(|()| RespError::TooBigBulkCount)? else {
                return Ok(None);
            };
            if cr + 1 >= buf.len() {
                return Ok(None);
            }
            match buf.get(pos) {
                Some(b'$') => {}
                Some(&b) => return Err(RespError::ExpectedBulk(b)),
                None => return Ok(None),
            }
            let len = buf
                .get(pos + 1..cr)
                .and_then(string2ll)
                .and_then(|l| usize::try_from(l).ok())
                .filter(|&l| l <= max_bulk)
                .ok_or(RespError::InvalidBulkLength)?;
            let start = cr + 2;
            // `len <= max_bulk` but `max_bulk` may be huge: no overflow.
            let end = start.checked_add(len).ok_or(RespError::InvalidBulkLength)?;
            match end.checked_add(2) {
                Some(next) if next <= buf.len() => self.scanned = next,
                _ => return Ok(None),
            }
            self.ranges.push(start..end);
            self.left -= 1;
        }
        let frame = buf.split_to(self.scanned).freeze();
        let args = self.ranges.drain(..).map(|r| frame.slice(r)).collect();
        // Do not keep a huge request's worth of ranges for the connection's life.
        self.ranges.shrink_to(4 * PREALLOC_ARGS);
        Ok(Some(args))
    }
}

impl Parser {
    /// True when no request is partly scanned (a [`publish_in_place`]
    /// check may go first).
    pub fn is_idle(&self) -> bool {
        self.scanned == 0
    }
}

/// A complete `PUBLISH channel payload` at the front of `buf`, written the
/// way clients write it (`*3`, `$7`, `PUBLISH` in any case, `\r\n` after
/// each line and bulk): where its channel and payload are and how long the
/// request is. The hot command read in place, with no allocation; anything
/// else, incomplete or unusual (including bounds: a bulk over `max_bulk`)
/// is `None`, for [`Parser::parse`] to read (or refuse) as usual.
pub fn publish_in_place(
    buf: &[u8],
    max_bulk: usize,
) -> Option<(Range<usize>, Range<usize>, usize)> {
    const HEAD: &[u8] = b"*3\r\n$7\r\n";
    let rest = buf.strip_prefix(HEAD)?;
    if !rest.get(..9)?.eq_ignore_ascii_case(b"PUBLISH\r\n") {
        return None;
    }
    let mut at = HEAD.len() + 9;
    let bulk = |at: &mut usize| -> Option<Range<usize>> {
        let line = buf.get(*at..)?;
        if line.first() != Some(&b'$') {
            return None;
        }
        let cr = line.iter().take(24).position(|&b| b == b'\r')?;
        let len = usize::try_from(string2ll(&line[1..cr])?).ok()?;
        if len > max_bulk || line.get(cr + 1) != Some(&b'\n') {
            return None;
        }
        let start = *at + cr + 2;
        let end = start.checked_add(len)?;
        if buf.get(end..end + 2)? != b"\r\n" {
            return None;
        }
        *at = end + 2;
        Some(start..end)
    };
    let channel = bulk(&mut at)?;
    let payload = bulk(&mut at)?;
    Some((channel, payload, at))
}

/// Index of the first `delim` at or after `start`, `Ok(None)` if absent, or
/// `Err(())` once the line is longer than [`MAX_INLINE`].
fn find(buf: &[u8], start: usize, delim: u8) -> Result<Option<usize>, ()> {
    let rest = buf.get(start..).unwrap_or_default();
    let window = rest.get(..MAX_INLINE + 1).unwrap_or(rest);
    match window.iter().position(|&b| b == delim) {
        Some(i) => Ok(Some(start + i)),
        None if rest.len() > MAX_INLINE => Err(()),
        None => Ok(None),
    }
}

/// An inline request: one line, split like `sdssplitargs`.
fn parse_inline(buf: &mut BytesMut) -> Result<Option<Vec<Bytes>>, RespError> {
    let Some(nl) = find(buf, 0, b'\n').map_err(|()| RespError::TooBigInline)? else {
        return Ok(None);
    };
    let line = buf.get(..nl).unwrap_or_default();
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let args = split_args(line).ok_or(RespError::UnbalancedQuotes)?;
    buf.advance(nl + 1);
    Ok(Some(args))
}
