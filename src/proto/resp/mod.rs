//! RESP front end: sans-IO request parsing and reply encoding for the
//! Redis pub/sub-compatible subset that ringcast speaks on raw TCP, so that
//! redis-cli, redis-py, the Rust `redis` crate and redis-benchmark work as is.
//!
//! # Layout
//! - [`parse`]: [`parse_command`] (or a per-connection [`Parser`]) takes one
//!   request off the front of a read buffer, or reports a [`RespError`];
//!   [`inline`] splits an inline line into arguments.
//! - [`command`]: maps the arguments onto a [`Command`], with Redis's arity
//!   rules and error texts.
//! - [`encode`]: replies and pub/sub pushes in RESP2 or RESP3 ([`Proto`],
//!   from [`version`]), byte-for-byte what Redis 7.2 sends.
//! - [`number`]: integers as Redis reads them.
//! - [`reply`]: the other direction, for ringcast's own link to Redis in
//!   cluster mode: replies and pushes parsed, commands encoded.
//!
//! # Commands
//! `PING`, `ECHO`, `SUBSCRIBE`, `UNSUBSCRIBE`, `PSUBSCRIBE`, `PUNSUBSCRIBE`,
//! `PUBLISH`, `HELLO`, `CLIENT SETNAME|GETNAME|ID|INFO|SETINFO|NO-EVICT|NO-TOUCH`,
//! `SELECT`, `COMMAND [DOCS|COUNT|INFO|LIST]`, `QUIT`, `RESET`, `INFO`.
//! Names are case-insensitive. Argument counts and arguments are checked here,
//! so a wrong request arrives as [`Command::WrongArity`], [`Command::Unknown`]
//! or [`Command::Rejected`], whose [`Command::error_text`] is Redis's exact
//! wording. Anything else is `Unknown`, as Redis answers unknown commands.
//!
//! # Requests
//! Clients send requests as arrays of bulk strings in RESP2 framing, also after
//! `HELLO 3` (RESP3 only changes replies), so that is the one request grammar.
//! A request not starting with `*` is an inline command, a line as typed into
//! telnet or `nc` (`SUBSCRIBE "my room" b`), split with Redis's quoting rules.
//!
//! [`parse_command`] is stateless: on incomplete input it consumes nothing and
//! the next call re-scans the request's headers (bulk bodies are skipped by
//! length, not scanned). For a request with many elements arriving over many
//! reads that is quadratic, so connections should keep a [`Parser`], which
//! resumes where it stopped (as Redis does). Bounds are checked as soon as a
//! header line is complete, before its body is buffered: bulk length vs.
//! `max_bulk`, element count vs. [`parse::MAX_MULTIBULK`] (Redis 7 allows up to
//! `INT_MAX`; a million is plenty for `SUBSCRIBE`), and
//! header and inline lines vs. [`parse::MAX_INLINE`]. The caller should still
//! cap its read buffer (Redis's `client-query-buffer-limit`).
//!
//! Multibulk arguments are `Bytes` slices of the read buffer (no copy). They
//! share its allocation: copy what is kept for long (subscribed channel names).
//! Inline arguments are copied (quoting rewrites them anyway).
//!
//! # Why not `redis-protocol` for decoding
//! The product design names `redis-protocol` (v6) as the RESP codec. Its
//! decoder was tried for requests and does not fit a server facing untrusted
//! clients:
//! - No early bound: `*1\r\n$999999999999\r\n` decodes to `Ok(None)` (wait for
//!   more), so a client can make the server buffer without limit.
//! - It recurses per nesting level: 200 000 copies of `*1\r\n` (800 KB) blow
//!   the stack and abort the process.
//! - It accepts any frame type inside a request, while Redis requires bulk
//!   strings (`Protocol error: expected '$', got ':'`), and its errors carry
//!   none of Redis's texts that clients and tests expect.
//! - It re-parses the whole frame into a tree on every call; a request needs
//!   only a flat list of byte ranges.
//!
//! Checking bounds before calling it would mean walking every header, which is
//! the whole parser, so framing follows Redis's own `networking.c` instead.
//! `redis-protocol` stays as the reference decoder in the tests: requests it
//! encodes must parse to the same arguments, and every reply encoded here must
//! decode with it. Note: with `default-features = false` its `resp3` feature
//! needs `std` (or `hashbrown`) to compile.
//!
//! # Identity
//! The `HELLO` reply says `server: redis`, `version: 7.2.0`: client libraries
//! gate behaviour on these fields. ringcast is Redis-compatible for this
//! pub/sub subset only.

pub mod command;
pub mod encode;
pub mod inline;
pub mod number;
pub mod parse;
pub mod reply;
pub mod version;

pub use command::{Command, CommandSub};
pub use parse::{parse_command, publish_in_place, Parser, RespError};
pub use version::Proto;

#[cfg(test)]
mod tests;
