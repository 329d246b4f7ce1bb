//! The codec's tests: requests fed through the parser as clients send
//! them, checked against Redis's own behaviour and against the
//! `redis-protocol` crate as a reference.

mod commands;
mod framing;

use bytes::{Bytes, BytesMut};

use super::*;

pub(super) const MAX_BULK: usize = 1 << 20;

pub(super) fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

pub(super) fn bs(v: &[&str]) -> Vec<Bytes> {
    v.iter().map(|s| b(s)).collect()
}

/// A request as clients send it: an array of bulk strings (written by the
/// encoder the cluster link sends its commands to Redis with).
pub(super) fn mb(args: &[&[u8]]) -> Vec<u8> {
    let mut out = BytesMut::new();
    super::reply::command(&mut out, args);
    out.to_vec()
}

pub(super) fn parse(input: &[u8]) -> Result<Option<Command>, RespError> {
    parse_command(&mut BytesMut::from(input), MAX_BULK)
}

/// Parses exactly one command that uses all of `input`.
pub(super) fn one(input: &[u8]) -> Command {
    let mut buf = BytesMut::from(input);
    let cmd = parse_command(&mut buf, MAX_BULK).unwrap().unwrap();
    assert!(buf.is_empty(), "left over: {buf:?}");
    cmd
}

/// Parses the words as both a multibulk and an inline request.
pub(super) fn both(words: &[&str]) -> Command {
    let raw: Vec<&[u8]> = words.iter().map(|w| w.as_bytes()).collect();
    let multi = one(&mb(&raw));
    let inline = one(format!("{}\r\n", words.join(" ")).as_bytes());
    assert_eq!(multi, inline, "{words:?}");
    multi
}

pub(super) fn err_text(words: &[&str]) -> String {
    both(words).error_text().expect("an error variant")
}
