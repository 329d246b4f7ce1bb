//! Sans-IO request parsing: multibulk (`*N\r\n$L\r\n...`) and inline (`PING\r\n`)
//! framing, then mapping the argument vector onto [`Command`].
//!
//! Framing follows Redis 7's `processMultibulkBuffer` / `processInlineBuffer`
//! (`networking.c`) closely, including its leniencies (the two bytes after a
//! bulk payload or a length line's `\r` are skipped, not checked) and its exact
//! error texts, so clients see the replies they would get from Redis.

use std::ops::Range;

use bytes::{Buf, Bytes, BytesMut};

use super::encode::Proto;

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

/// Which form of `COMMAND` was sent; [`super::encode::command_reply`] answers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommandSub {
    /// `COMMAND` or `COMMAND LIST ...`: an empty array.
    List,
    /// `COMMAND DOCS [name ...]`: an empty map (redis-cli then uses its built-in hints).
    Docs,
    /// `COMMAND COUNT`: the number of commands ringcast implements.
    Count,
    /// `COMMAND INFO name...` with that many names: one null per name.
    Info(usize),
}

/// One parsed request. Payloads from multibulk requests are zero-copy slices
/// of the read buffer (they keep its allocation alive: copy anything stored
/// for long, such as channel names kept in a subscription table).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `PING [message]`.
    Ping(Option<Bytes>),
    /// `ECHO message`.
    Echo(Bytes),
    /// `SUBSCRIBE channel [channel ...]` (at least one).
    Subscribe(Vec<Bytes>),
    /// `UNSUBSCRIBE [channel ...]`; empty means all channels.
    Unsubscribe(Vec<Bytes>),
    /// `PSUBSCRIBE pattern [pattern ...]` (at least one).
    PSubscribe(Vec<Bytes>),
    /// `PUNSUBSCRIBE [pattern ...]`; empty means all patterns.
    PUnsubscribe(Vec<Bytes>),
    /// `PUBLISH channel message`.
    Publish {
        /// Channel name.
        channel: Bytes,
        /// Message payload.
        payload: Bytes,
    },
    /// `HELLO [protover [AUTH user pass] [SETNAME name]]`, already validated
    /// (protover 2 or 3, name checked). AUTH is accepted and ignored.
    Hello {
        /// Requested protocol; `None` keeps the current one.
        proto: Option<Proto>,
        /// Client name to set; an empty name clears it.
        setname: Option<Bytes>,
    },
    /// `CLIENT SETNAME name`, name validated; an empty name clears it.
    ClientSetName(Bytes),
    /// `CLIENT GETNAME`.
    ClientGetName,
    /// `CLIENT ID`.
    ClientId,
    /// `CLIENT INFO`.
    ClientInfo,
    /// `CLIENT SETINFO|NO-EVICT|NO-TOUCH ...` that client libraries send on
    /// connect; carries the lowercased subcommand. Reply `+OK`.
    ClientOther(String),
    /// `SELECT index`, the index parsed (range not checked: Redis replies
    /// `-ERR DB index is out of range` for one it lacks).
    Select(i64),
    /// `COMMAND [DOCS|COUNT|INFO|LIST ...]`.
    Command(CommandSub),
    /// `QUIT`: reply `+OK` and close.
    Quit,
    /// `RESET`: leave pub/sub, back to RESP2, reply `+RESET`.
    Reset,
    /// `INFO [section ...]`.
    Info(Vec<Bytes>),
    /// A blank inline line or `*0`/`*-1`: send nothing.
    Empty,
    /// Right command, wrong argument count; carries Redis's lowercased full
    /// name (`"subscribe"`, `"client|setname"`). See [`Command::error_text`].
    WrongArity(String),
    /// Not a command ringcast knows. `name` as sent, `args_preview` as
    /// Redis builds it (`'a' 'b' `). See [`Command::error_text`].
    Unknown {
        /// Command name as sent (lossy UTF-8, at most 128 bytes).
        name: String,
        /// Quoted leading arguments, each followed by a space.
        args_preview: String,
    },
    /// A known command with bad arguments; carries the error text without the
    /// leading `-` (e.g. `NOPROTO unsupported protocol version`).
    Rejected(String),
}

/// Names of the commands ringcast implements (the `COMMAND COUNT` reply).
pub const COMMAND_NAMES: &[&str] = &[
    "ping",
    "echo",
    "subscribe",
    "unsubscribe",
    "psubscribe",
    "punsubscribe",
    "publish",
    "hello",
    "client",
    "select",
    "command",
    "quit",
    "reset",
    "info",
];

impl Command {
    /// For the error-only variants (`WrongArity`, `Unknown`, `Rejected`) the
    /// text to pass to [`super::encode::error`], exactly as Redis words it.
    pub fn error_text(&self) -> Option<String> {
        match self {
            Command::WrongArity(name) => Some(format!(
                "ERR wrong number of arguments for '{name}' command"
            )),
            Command::Unknown { name, args_preview } => Some(format!(
                "ERR unknown command '{name}', with args beginning with: {args_preview}"
            )),
            Command::Rejected(text) => Some(text.clone()),
            _ => None,
        }
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
#[derive(Debug, Default)]
pub struct Parser {
    /// Bytes of the pending multibulk request validated so far (0: none).
    scanned: usize,
    /// Elements of the pending request not yet received.
    left: usize,
    /// Byte ranges of the elements received.
    ranges: Vec<Range<usize>>,
}

impl Parser {
    /// Same contract as [`parse_command`].
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

/// Redis's `string2ll`: optional `-`, no `+`, no leading zeros, no spaces.
pub(crate) fn string2ll(s: &[u8]) -> Option<i64> {
    if s == b"0" {
        return Some(0);
    }
    let (neg, digits) = match s.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, s),
    };
    match digits.first() {
        Some(b'1'..=b'9') if digits.len() < 20 => {}
        _ => return None,
    }
    let mut v: u64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
    }
    if neg {
        0i64.checked_sub_unsigned(v)
    } else {
        i64::try_from(v).ok()
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

/// C `isspace` in the C locale.
fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

fn hex_val(b: u8) -> Option<u8> {
    char::from(b)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

/// Redis's `sdssplitargs`: blanks separate arguments; `"..."` supports
/// `\n \r \t \b \a \xHH` and `\<c>` escapes; `'...'` supports `\'`. A closing
/// quote must be followed by a blank or the end. `None`: unbalanced quotes.
/// Like the C code (which sees a C string) the line ends at a NUL byte.
fn split_args(line: &[u8]) -> Option<Vec<Bytes>> {
    let line = match line.iter().position(|&b| b == 0) {
        Some(i) => line.get(..i).unwrap_or_default(),
        None => line,
    };
    let at = |i: usize| line.get(i).copied().unwrap_or(0);
    let mut args = Vec::new();
    let mut p = 0;
    loop {
        while at(p) != 0 && is_space(at(p)) {
            p += 1;
        }
        if at(p) == 0 {
            return Some(args);
        }
        let mut cur = Vec::new();
        let (mut inq, mut insq) = (false, false);
        loop {
            let c = at(p);
            if inq {
                let hex = (at(p + 1) == b'x')
                    .then(|| Some(hex_val(at(p + 2))? * 16 + hex_val(at(p + 3))?))
                    .flatten();
                match (c, hex) {
                    (b'\\', Some(byte)) => {
                        cur.push(byte);
                        p += 3;
                    }
                    (b'\\', None) if at(p + 1) != 0 => {
                        p += 1;
                        cur.push(match at(p) {
                            b'n' => b'\n',
                            b'r' => b'\r',
                            b't' => b'\t',
                            b'b' => 0x08,
                            b'a' => 0x07,
                            other => other,
                        });
                    }
                    (b'"', _) => {
                        if at(p + 1) != 0 && !is_space(at(p + 1)) {
                            return None;
                        }
                        p += 1;
                        break;
                    }
                    (0, _) => return None,
                    _ => cur.push(c),
                }
            } else if insq {
                if c == b'\\' && at(p + 1) == b'\'' {
                    p += 1;
                    cur.push(b'\'');
                } else if c == b'\'' {
                    if at(p + 1) != 0 && !is_space(at(p + 1)) {
                        return None;
                    }
                    p += 1;
                    break;
                } else if c == 0 {
                    return None;
                } else {
                    cur.push(c);
                }
            } else {
                match c {
                    b' ' | b'\n' | b'\r' | b'\t' | 0 => {
                        if c != 0 {
                            p += 1;
                        }
                        break;
                    }
                    b'"' => inq = true,
                    b'\'' => insq = true,
                    _ => cur.push(c),
                }
            }
            if at(p) != 0 {
                p += 1;
            }
        }
        args.push(Bytes::from(cur));
    }
}

/// Redis's `arity`: positive means exactly, negative means at least.
fn arity_ok(argc: usize, arity: isize) -> bool {
    let want = arity.unsigned_abs();
    if arity >= 0 {
        argc == want
    } else {
        argc >= want
    }
}

/// At most 128 bytes of `b` as lossy UTF-8 with CR/LF mapped to spaces
/// (Redis's `%.128s` plus the newline scrubbing of its error replies).
fn show(b: &[u8]) -> String {
    let b = b.get(..128).unwrap_or(b);
    String::from_utf8_lossy(b).replace(['\r', '\n'], " ")
}

/// Redis's `validateClientName`: printable ASCII without spaces.
fn valid_client_name(name: &[u8]) -> bool {
    name.iter().all(|&c| (b'!'..=b'~').contains(&c))
}

const BAD_NAME: &str = "ERR Client names cannot contain spaces, newlines or special characters.";

impl Command {
    /// Maps an argument vector (name first) onto a command.
    fn from_args(mut args: Vec<Bytes>) -> Command {
        if args.is_empty() {
            return Command::Empty;
        }
        let name = args.remove(0);
        let argc = args.len() + 1;
        let mut lower = [0u8; 12];
        let key = match lower.get_mut(..name.len()) {
            Some(k) => {
                k.copy_from_slice(&name);
                k.make_ascii_lowercase();
                &*k
            }
            None => &[][..],
        };
        let (full, arity): (&str, isize) = match key {
            b"ping" => ("ping", -1),
            b"echo" => ("echo", 2),
            b"subscribe" => ("subscribe", -2),
            b"unsubscribe" => ("unsubscribe", -1),
            b"psubscribe" => ("psubscribe", -2),
            b"punsubscribe" => ("punsubscribe", -1),
            b"publish" => ("publish", 3),
            b"hello" => ("hello", -1),
            b"client" => ("client", -2),
            b"select" => ("select", 2),
            b"command" => ("command", -1),
            b"quit" => ("quit", -1),
            b"reset" => ("reset", 1),
            b"info" => ("info", -1),
            _ => return unknown(&name, &args),
        };
        if !arity_ok(argc, arity) || (full == "ping" && argc > 2) {
            return Command::WrongArity(full.to_owned());
        }
        match full {
            "hello" => return hello(&args),
            "client" => return client(&name, &args),
            "command" => return command(&name, &args),
            _ => {}
        }
        let mut it = args.into_iter();
        match full {
            "ping" => Command::Ping(it.next()),
            "echo" => Command::Echo(it.next().unwrap_or_default()),
            "subscribe" => Command::Subscribe(it.collect()),
            "unsubscribe" => Command::Unsubscribe(it.collect()),
            "psubscribe" => Command::PSubscribe(it.collect()),
            "punsubscribe" => Command::PUnsubscribe(it.collect()),
            "publish" => Command::Publish {
                channel: it.next().unwrap_or_default(),
                payload: it.next().unwrap_or_default(),
            },
            "select" => match it.next().as_deref().and_then(string2ll) {
                Some(db) if i32::try_from(db).is_ok() => Command::Select(db),
                _ => Command::Rejected("ERR value is not an integer or out of range".into()),
            },
            "quit" => Command::Quit,
            "reset" => Command::Reset,
            _ => Command::Info(it.collect()),
        }
    }
}

/// The `Unknown` variant with Redis's argument preview: `'arg' ` per argument
/// while the preview is under 128 bytes, each cut to what is left of 128.
fn unknown(name: &[u8], args: &[Bytes]) -> Command {
    let mut preview = Vec::new();
    for arg in args {
        if preview.len() >= 128 {
            break;
        }
        let room = 128 - preview.len();
        // `%.*s` stops at a NUL.
        let arg = arg.split(|&b| b == 0).next().unwrap_or_default();
        preview.push(b'\'');
        preview.extend_from_slice(arg.get(..room).unwrap_or(arg));
        preview.extend_from_slice(b"' ");
    }
    let name = name.split(|&b| b == 0).next().unwrap_or_default();
    Command::Unknown {
        name: show(name),
        args_preview: String::from_utf8_lossy(&preview).replace(['\r', '\n'], " "),
    }
}

fn hello(args: &[Bytes]) -> Command {
    let mut proto = None;
    let mut setname = None;
    let mut rest = args;
    if let Some((ver, tail)) = args.split_first() {
        proto = match string2ll(ver) {
            Some(2) => Some(Proto::Resp2),
            Some(3) => Some(Proto::Resp3),
            Some(_) => return Command::Rejected("NOPROTO unsupported protocol version".into()),
            None => {
                let msg = "ERR Protocol version is not an integer or out of range";
                return Command::Rejected(msg.into());
            }
        };
        rest = tail;
    }
    while let Some((opt, tail)) = rest.split_first() {
        match tail {
            [_user, _pass, more @ ..] if opt.eq_ignore_ascii_case(b"auth") => rest = more,
            [name, more @ ..] if opt.eq_ignore_ascii_case(b"setname") => {
                if !valid_client_name(name) {
                    return Command::Rejected(BAD_NAME.into());
                }
                setname = Some(name.clone());
                rest = more;
            }
            _ => {
                let opt = opt.split(|&b| b == 0).next().unwrap_or_default();
                let msg = format!("ERR Syntax error in HELLO option '{}'", show(opt));
                return Command::Rejected(msg);
            }
        }
    }
    Command::Hello { proto, setname }
}

fn unknown_subcommand(container: &[u8], sub: &[u8]) -> Command {
    let sub = sub.split(|&b| b == 0).next().unwrap_or_default();
    let cmd = show(container).to_ascii_uppercase();
    Command::Rejected(format!(
        "ERR unknown subcommand '{}'. Try {cmd} HELP.",
        show(sub)
    ))
}

/// `CLIENT <sub> ...`; `args` excludes `CLIENT` and has at least one element.
fn client(name: &[u8], args: &[Bytes]) -> Command {
    let Some((sub, rest)) = args.split_first() else {
        return Command::WrongArity("client".into());
    };
    let lower = String::from_utf8_lossy(sub).to_ascii_lowercase();
    let (want, cmd) = match lower.as_str() {
        "setname" => match rest {
            [n] if !valid_client_name(n) => return Command::Rejected(BAD_NAME.into()),
            [n] => (1, Command::ClientSetName(n.clone())),
            _ => (1, Command::Empty),
        },
        "getname" => (0, Command::ClientGetName),
        "id" => (0, Command::ClientId),
        "info" => (0, Command::ClientInfo),
        "setinfo" => (2, Command::ClientOther(lower.clone())),
        "no-evict" | "no-touch" => (1, Command::ClientOther(lower.clone())),
        _ => return unknown_subcommand(name, sub),
    };
    if rest.len() == want {
        cmd
    } else {
        Command::WrongArity(format!("client|{lower}"))
    }
}

/// `COMMAND [<sub> ...]`; `args` excludes `COMMAND`.
fn command(name: &[u8], args: &[Bytes]) -> Command {
    let Some((sub, rest)) = args.split_first() else {
        return Command::Command(CommandSub::List);
    };
    let lower = String::from_utf8_lossy(sub).to_ascii_lowercase();
    match lower.as_str() {
        "docs" => Command::Command(CommandSub::Docs),
        "list" => Command::Command(CommandSub::List),
        "info" => Command::Command(CommandSub::Info(rest.len())),
        "count" if rest.is_empty() => Command::Command(CommandSub::Count),
        "count" => Command::WrongArity("command|count".into()),
        _ => unknown_subcommand(name, sub),
    }
}
