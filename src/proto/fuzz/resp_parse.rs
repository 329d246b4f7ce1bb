//! Fuzzes the RESP request parser.
//!
//! Input: the first byte picks a chunk size (1..=32), the rest is a client
//! byte stream fed that many bytes at a time, parsing all complete commands
//! after each chunk, as the connection loop does; once with the resuming
//! `Parser`, once with the stateless `parse_command`. Asserts: no panic;
//! every command consumes input, `Ok(None)` and `Err` consume nothing; every
//! error reply is one Redis protocol error line; and the commands (and final
//! error) are the same whether the stream came whole or in chunks, resumed
//! or re-scanned.

use crate::proto::resp::{parse_command, Command, Parser, RespError};
use bytes::BytesMut;

/// Small enough that the fuzzer reaches the bulk length bound.
const MAX_BULK: usize = 4096;

/// Feeds `stream` in `chunk`-byte pieces; returns the commands parsed and the
/// error that stopped parsing, if any.
fn run(stream: &[u8], chunk: usize, resume: bool) -> (Vec<Command>, Option<RespError>) {
    let mut parser = Parser::default();
    let mut buf = BytesMut::new();
    let mut commands = Vec::new();
    for piece in stream.chunks(chunk) {
        buf.extend_from_slice(piece);
        loop {
            let before = buf.len();
            let parsed = if resume {
                parser.parse(&mut buf, MAX_BULK)
            } else {
                parse_command(&mut buf, MAX_BULK)
            };
            match parsed {
                Ok(Some(cmd)) => {
                    assert!(buf.len() < before, "a command must consume input");
                    if let Some(text) = cmd.error_text() {
                        assert!(!text.contains(['\r', '\n']), "error text breaks framing");
                    }
                    commands.push(cmd);
                }
                Ok(None) => {
                    assert_eq!(buf.len(), before, "incomplete input must not be consumed");
                    break;
                }
                Err(err) => {
                    assert_eq!(buf.len(), before, "errors must not consume input");
                    let reply = err.reply();
                    assert!(reply.starts_with(b"-ERR Protocol error: "));
                    assert!(reply.ends_with(b"\r\n"));
                    assert_eq!(reply.iter().filter(|&&b| b == b'\n').count(), 1);
                    return (commands, Some(err));
                }
            }
        }
    }
    (commands, None)
}

/// Checks one input; panics when a property is broken.
pub fn check(data: &[u8]) {
    let Some((&selector, stream)) = data.split_first() else {
        return;
    };
    let chunk = usize::from(selector % 32) + 1;
    let whole = run(stream, stream.len().max(1), false);
    assert_eq!(run(stream, chunk, true), whole, "resumed parse differs");
    assert_eq!(run(stream, chunk, false), whole, "chunked parse differs");
}
