//! RESP front end: sans-IO request parsing and reply encoding for the
//! Redis pub/sub-compatible subset that ringcast speaks on raw TCP, so that
//! redis-cli, redis-py, the Rust `redis` crate and redis-benchmark work as is.
//!
//! # Layout
//! - [`parse`]: [`parse_command`] (or a per-connection [`Parser`]) takes one
//!   request off the front of a read buffer, as a [`Command`], or reports a
//!   [`RespError`].
//! - [`encode`]: replies and pub/sub pushes in RESP2 or RESP3 ([`Proto`]),
//!   byte-for-byte what Redis 7.2 sends.
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

pub mod encode;
pub mod parse;

pub use encode::Proto;
pub use parse::{parse_command, Command, CommandSub, Parser, RespError};

#[cfg(test)]
mod tests {
    use super::parse::{string2ll, MAX_INLINE};
    use super::*;
    use bytes::{Bytes, BytesMut};

    const MAX_BULK: usize = 1 << 20;

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    fn bs(v: &[&str]) -> Vec<Bytes> {
        v.iter().map(|s| b(s)).collect()
    }

    /// A request as clients send it: an array of bulk strings.
    fn mb(args: &[&[u8]]) -> Vec<u8> {
        let mut out = format!("*{}\r\n", args.len()).into_bytes();
        for a in args {
            out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            out.extend_from_slice(a);
            out.extend_from_slice(b"\r\n");
        }
        out
    }

    fn parse(input: &[u8]) -> Result<Option<Command>, RespError> {
        parse_command(&mut BytesMut::from(input), MAX_BULK)
    }

    /// Parses exactly one command that uses all of `input`.
    fn one(input: &[u8]) -> Command {
        let mut buf = BytesMut::from(input);
        let cmd = parse_command(&mut buf, MAX_BULK).unwrap().unwrap();
        assert!(buf.is_empty(), "left over: {buf:?}");
        cmd
    }

    /// Parses the words as both a multibulk and an inline request.
    fn both(words: &[&str]) -> Command {
        let raw: Vec<&[u8]> = words.iter().map(|w| w.as_bytes()).collect();
        let multi = one(&mb(&raw));
        let inline = one(format!("{}\r\n", words.join(" ")).as_bytes());
        assert_eq!(multi, inline, "{words:?}");
        multi
    }

    fn err_text(words: &[&str]) -> String {
        both(words).error_text().expect("an error variant")
    }

    #[test]
    fn each_command() {
        use Command as C;
        let cases: Vec<(&[&str], Command)> = vec![
            (&["PING"], C::Ping(None)),
            (&["PING", "hi"], C::Ping(Some(b("hi")))),
            (&["ECHO", "x"], C::Echo(b("x"))),
            (&["SUBSCRIBE", "a", "b"], C::Subscribe(bs(&["a", "b"]))),
            (&["UNSUBSCRIBE"], C::Unsubscribe(vec![])),
            (&["UNSUBSCRIBE", "a"], C::Unsubscribe(bs(&["a"]))),
            (&["PSUBSCRIBE", "r.*"], C::PSubscribe(bs(&["r.*"]))),
            (&["PUNSUBSCRIBE"], C::PUnsubscribe(vec![])),
            (
                &["PUNSUBSCRIBE", "a*", "b*"],
                C::PUnsubscribe(bs(&["a*", "b*"])),
            ),
            (
                &["PUBLISH", "c", "m"],
                C::Publish {
                    channel: b("c"),
                    payload: b("m"),
                },
            ),
            (
                &["HELLO"],
                C::Hello {
                    proto: None,
                    setname: None,
                },
            ),
            (
                &["HELLO", "2"],
                C::Hello {
                    proto: Some(Proto::Resp2),
                    setname: None,
                },
            ),
            (
                &["HELLO", "3", "AUTH", "u", "p", "SETNAME", "n"],
                C::Hello {
                    proto: Some(Proto::Resp3),
                    setname: Some(b("n")),
                },
            ),
            (&["CLIENT", "SETNAME", "me"], C::ClientSetName(b("me"))),
            (&["CLIENT", "GETNAME"], C::ClientGetName),
            (&["CLIENT", "ID"], C::ClientId),
            (&["CLIENT", "INFO"], C::ClientInfo),
            (
                &["CLIENT", "SETINFO", "LIB-NAME", "redis-py"],
                C::ClientOther("setinfo".into()),
            ),
            (
                &["CLIENT", "NO-EVICT", "on"],
                C::ClientOther("no-evict".into()),
            ),
            (&["SELECT", "0"], C::Select(0)),
            (&["COMMAND"], C::Command(CommandSub::List)),
            (&["COMMAND", "DOCS"], C::Command(CommandSub::Docs)),
            (&["COMMAND", "DOCS", "get"], C::Command(CommandSub::Docs)),
            (&["COMMAND", "COUNT"], C::Command(CommandSub::Count)),
            (
                &["COMMAND", "INFO", "a", "b"],
                C::Command(CommandSub::Info(2)),
            ),
            (&["QUIT"], C::Quit),
            (&["RESET"], C::Reset),
            (&["INFO"], C::Info(vec![])),
            (&["INFO", "server"], C::Info(bs(&["server"]))),
        ];
        for (words, want) in cases {
            assert_eq!(both(words), want, "{words:?}");
            assert_eq!(want.error_text(), None);
        }
    }

    #[test]
    fn names_are_case_insensitive() {
        assert_eq!(both(&["pInG"]), Command::Ping(None));
        assert_eq!(both(&["subscribe", "A"]), Command::Subscribe(bs(&["A"])));
        assert_eq!(
            both(&["Client", "sEtNaMe", "x"]),
            Command::ClientSetName(b("x"))
        );
        assert_eq!(
            both(&["hello", "3", "setname", "x"]),
            both(&["HELLO", "3", "SETNAME", "x"])
        );
        assert_eq!(
            both(&["command", "count"]),
            Command::Command(CommandSub::Count)
        );
    }

    #[test]
    fn arity_errors() {
        let cases: &[(&[&str], &str)] = &[
            (&["SUBSCRIBE"], "subscribe"),
            (&["PSUBSCRIBE"], "psubscribe"),
            (&["PING", "a", "b"], "ping"),
            (&["ECHO"], "echo"),
            (&["PUBLISH", "c"], "publish"),
            (&["PUBLISH", "c", "m", "x"], "publish"),
            (&["SELECT"], "select"),
            (&["RESET", "x"], "reset"),
            (&["CLIENT"], "client"),
            (&["CLIENT", "SETNAME"], "client|setname"),
            (&["CLIENT", "ID", "x"], "client|id"),
            (&["CLIENT", "SETINFO", "LIB-NAME"], "client|setinfo"),
            (&["COMMAND", "COUNT", "x"], "command|count"),
        ];
        for (words, name) in cases {
            assert_eq!(both(words), Command::WrongArity(name.to_string()));
            let want = format!("ERR wrong number of arguments for '{name}' command");
            assert_eq!(err_text(words), want);
        }
    }

    #[test]
    fn unknown_command_text_matches_redis() {
        let cmd = both(&["FOO", "a", "b"]);
        assert_eq!(
            cmd,
            Command::Unknown {
                name: "FOO".into(),
                args_preview: "'a' 'b' ".into()
            }
        );
        assert_eq!(
            cmd.error_text().unwrap(),
            "ERR unknown command 'FOO', with args beginning with: 'a' 'b' "
        );
        let text = err_text(&["foo"]);
        assert_eq!(
            text,
            "ERR unknown command 'foo', with args beginning with: "
        );
        // Preview stops once 128 bytes are written; each arg cut to what is left.
        let long = "x".repeat(200);
        let text = err_text(&["nope", "ab", &long, "never"]);
        let want = format!("'ab' '{}' ", "x".repeat(128 - 5));
        assert_eq!(
            text,
            format!("ERR unknown command 'nope', with args beginning with: {want}")
        );
        // Newlines from binary args never reach the reply.
        let cmd = one(&mb(&[b"x\r\ny", b"a\nb", b"c\0d"]));
        assert_eq!(
            cmd.error_text().unwrap(),
            "ERR unknown command 'x  y', with args beginning with: 'a b' 'c' "
        );
        assert!(matches!(one(&mb(&[b""])), Command::Unknown { .. }));
    }

    #[test]
    fn argument_errors() {
        assert_eq!(
            err_text(&["HELLO", "4"]),
            "NOPROTO unsupported protocol version"
        );
        assert_eq!(
            err_text(&["HELLO", "1"]),
            "NOPROTO unsupported protocol version"
        );
        let not_int = "ERR Protocol version is not an integer or out of range";
        assert_eq!(err_text(&["HELLO", "three"]), not_int);
        assert_eq!(
            err_text(&["HELLO", "3", "FOO"]),
            "ERR Syntax error in HELLO option 'FOO'"
        );
        assert_eq!(
            err_text(&["HELLO", "3", "AUTH", "u"]),
            "ERR Syntax error in HELLO option 'AUTH'"
        );
        let bad_name = "ERR Client names cannot contain spaces, newlines or special characters.";
        assert_eq!(
            one(&mb(&[b"HELLO", b"3", b"SETNAME", b"a b"]))
                .error_text()
                .unwrap(),
            bad_name
        );
        assert_eq!(
            one(&mb(&[b"CLIENT", b"SETNAME", b"a\nb"]))
                .error_text()
                .unwrap(),
            bad_name
        );
        assert_eq!(
            one(b"CLIENT SETNAME ''\r\n"),
            Command::ClientSetName(Bytes::new())
        );
        assert_eq!(
            err_text(&["CLIENT", "KILL", "x"]),
            "ERR unknown subcommand 'KILL'. Try CLIENT HELP."
        );
        assert_eq!(
            err_text(&["command", "foo"]),
            "ERR unknown subcommand 'foo'. Try COMMAND HELP."
        );
        let not_int = "ERR value is not an integer or out of range";
        assert_eq!(err_text(&["SELECT", "x"]), not_int);
        assert_eq!(err_text(&["SELECT", "4294967296"]), not_int);
        assert_eq!(both(&["SELECT", "-1"]), Command::Select(-1));
    }

    #[test]
    fn empty_requests_are_consumed() {
        for input in [&b"*0\r\n"[..], b"*-1\r\n", b"\r\n", b"\n", b"  \t \r\n"] {
            assert_eq!(one(input), Command::Empty, "{input:?}");
        }
    }

    #[test]
    fn every_split_point_gives_none_then_the_command() {
        let inputs: Vec<Vec<u8>> = vec![
            mb(&[b"PUBLISH", b"room:1", b"hello\r\nworld"]),
            mb(&[b"subscribe", b"a", b"", b"c"]),
            mb(&[b"PING"]),
            b"PUBLISH \"my room\" 'it\\'s'\r\n".to_vec(),
            b"SUBSCRIBE a b\n".to_vec(),
            b"*0\r\n".to_vec(),
        ];
        for input in &inputs {
            let want = parse(input).unwrap();
            assert!(want.is_some());
            for split in 0..input.len() {
                let mut buf = BytesMut::from(&input[..split]);
                assert_eq!(parse_command(&mut buf, MAX_BULK), Ok(None), "split {split}");
                assert_eq!(buf.len(), split, "nothing consumed on None");
                buf.extend_from_slice(&input[split..]);
                assert_eq!(parse_command(&mut buf, MAX_BULK).unwrap(), want);
                assert!(buf.is_empty());
            }
            // Byte by byte, stateless and resuming.
            let mut parser = Parser::default();
            let (mut buf, mut resumed) = (BytesMut::new(), BytesMut::new());
            for (i, &byte) in input.iter().enumerate() {
                buf.extend_from_slice(&[byte]);
                resumed.extend_from_slice(&[byte]);
                let got = parse_command(&mut buf, MAX_BULK).unwrap();
                assert_eq!(got.is_some(), i + 1 == input.len());
                assert_eq!(parser.parse(&mut resumed, MAX_BULK).unwrap(), got);
                if got.is_some() {
                    assert_eq!(got, want);
                }
            }
        }
    }

    #[test]
    fn parser_resumes_a_large_request() {
        let names: Vec<Vec<u8>> = (0..50_000)
            .map(|i| format!("room{i}").into_bytes())
            .collect();
        let mut args: Vec<&[u8]> = vec![b"SUBSCRIBE"];
        args.extend(names.iter().map(|n| n.as_slice()));
        let mut wire = mb(&args);
        wire.extend_from_slice(b"PING\r\n");
        let (mut parser, mut buf, mut got) = (Parser::default(), BytesMut::new(), vec![]);
        for chunk in wire.chunks(1000) {
            buf.extend_from_slice(chunk);
            while let Some(cmd) = parser.parse(&mut buf, MAX_BULK).unwrap() {
                got.push(cmd);
            }
        }
        let want = Command::Subscribe(names.into_iter().map(Bytes::from).collect());
        assert_eq!(got, [want, Command::Ping(None)]);
        assert!(buf.is_empty());
        // A buffer that shrank behind its back resets it.
        let mut parser = Parser::default();
        let mut buf = BytesMut::from(&mb(&[b"PUBLISH", b"room", b"m"])[..27]);
        assert_eq!(parser.parse(&mut buf, MAX_BULK), Ok(None));
        let mut other = BytesMut::from(&b"*1\r\n$4\r\nPING\r\n"[..]);
        assert_eq!(
            parser.parse(&mut other, MAX_BULK),
            Ok(Some(Command::Ping(None)))
        );
        // An error resets it too.
        let mut buf = BytesMut::from(&b"*2\r\n$4\r\nECHO\r\n:"[..]);
        assert_eq!(parser.parse(&mut buf, MAX_BULK), Ok(None));
        buf.extend_from_slice(b"1\r\n");
        assert_eq!(
            parser.parse(&mut buf, MAX_BULK),
            Err(RespError::ExpectedBulk(b':'))
        );
        let mut buf = BytesMut::from(&b"PING\r\n"[..]);
        assert_eq!(
            parser.parse(&mut buf, MAX_BULK),
            Ok(Some(Command::Ping(None)))
        );
    }

    #[test]
    fn pipelined_commands() {
        let mut input = mb(&[b"SUBSCRIBE", b"a"]);
        input.extend_from_slice(b"PING\r\n");
        input.extend_from_slice(&mb(&[b"PUBLISH", b"a", b"m"]));
        input.extend_from_slice(b"\r\n");
        input.extend_from_slice(&mb(&[b"PING", b"x"])[..7]); // partial tail
        let mut buf = BytesMut::from(&input[..]);
        let mut got = vec![];
        while let Some(cmd) = parse_command(&mut buf, MAX_BULK).unwrap() {
            got.push(cmd);
        }
        let publish = Command::Publish {
            channel: b("a"),
            payload: b("m"),
        };
        let want = [
            Command::Subscribe(bs(&["a"])),
            Command::Ping(None),
            publish,
            Command::Empty,
        ];
        assert_eq!(got, want);
        assert_eq!(&buf[..], &mb(&[b"PING", b"x"])[..7]);
    }

    #[test]
    fn inline_quoting_like_sdssplitargs() {
        let publish = |c: &[u8], p: &[u8]| Command::Publish {
            channel: Bytes::copy_from_slice(c),
            payload: Bytes::copy_from_slice(p),
        };
        assert_eq!(
            one(b"PUBLISH \"my room\" hi\r\n"),
            publish(b"my room", b"hi")
        );
        assert_eq!(
            one(b"publish 'a b' \"x\\x41\\n\\t\\\"\\q\"\r\n"),
            publish(b"a b", b"xA\n\t\"q")
        );
        assert_eq!(one(b"PUBLISH 'it\\'s' \"\"\n"), publish(b"it's", b""));
        assert_eq!(one(b"PUBLISH a\"b c\" e\r\n"), publish(b"ab c", b"e"));
        assert_eq!(one(b"  PUBLISH\t a  b  \r\n"), publish(b"a", b"b"));
        assert_eq!(one(b"PUBLISH a b\0ignored\r\n"), publish(b"a", b"b"));
        assert_eq!(one(b"ECHO \"\\x4\"\r\n"), Command::Echo(b("x4")));
        for bad in [
            &b"ECHO \"abc\r\n"[..],
            b"ECHO 'abc\r\n",
            b"ECHO \"a\"b\r\n",
            b"ECHO 'a'b\n",
            b"ECHO \"a\\\n",
        ] {
            assert_eq!(parse(bad), Err(RespError::UnbalancedQuotes), "{bad:?}");
        }
    }

    #[test]
    fn protocol_errors_and_replies() {
        let long = |prefix: &[u8]| [prefix, &[b'1'; MAX_INLINE + 1][..]].concat();
        let cases: Vec<(Vec<u8>, RespError, &str)> = vec![
            (
                b"*x\r\n".to_vec(),
                RespError::InvalidMultibulkLength,
                "invalid multibulk length",
            ),
            (
                b"*\r\n".to_vec(),
                RespError::InvalidMultibulkLength,
                "invalid multibulk length",
            ),
            (
                b"*01\r\n".to_vec(),
                RespError::InvalidMultibulkLength,
                "invalid multibulk length",
            ),
            (
                b"*+1\r\n".to_vec(),
                RespError::InvalidMultibulkLength,
                "invalid multibulk length",
            ),
            (
                b"*1048577\r\n".to_vec(),
                RespError::InvalidMultibulkLength,
                "invalid multibulk length",
            ),
            (
                b"*1\r\n$-1\r\n".to_vec(),
                RespError::InvalidBulkLength,
                "invalid bulk length",
            ),
            (
                b"*1\r\n$x\r\n".to_vec(),
                RespError::InvalidBulkLength,
                "invalid bulk length",
            ),
            (
                b"*1\r\n$1 \r\n".to_vec(),
                RespError::InvalidBulkLength,
                "invalid bulk length",
            ),
            (
                b"*1\r\n:1\r\n".to_vec(),
                RespError::ExpectedBulk(b':'),
                "expected '$', got ':'",
            ),
            (
                b"*2\r\n$1\r\na\r\n*1\r\n".to_vec(),
                RespError::ExpectedBulk(b'*'),
                "expected '$', got '*'",
            ),
            (
                b"*1\r\n\r\n".to_vec(),
                RespError::ExpectedBulk(b'\r'),
                "expected '$', got ' '",
            ),
            (
                long(b"*"),
                RespError::TooBigMultibulkCount,
                "too big mbulk count string",
            ),
            (
                long(b"*1\r\n$"),
                RespError::TooBigBulkCount,
                "too big bulk count string",
            ),
            (
                long(b"PING "),
                RespError::TooBigInline,
                "too big inline request",
            ),
            (
                b"ECHO \"a\r\n".to_vec(),
                RespError::UnbalancedQuotes,
                "unbalanced quotes in request",
            ),
        ];
        for (input, err, msg) in cases {
            let mut buf = BytesMut::from(&input[..]);
            assert_eq!(parse_command(&mut buf, MAX_BULK), Err(err.clone()), "{msg}");
            assert_eq!(buf.len(), input.len(), "nothing consumed on error");
            let reply = format!("-ERR Protocol error: {msg}\r\n");
            assert_eq!(err.reply(), Bytes::from(reply), "{msg}");
        }
        assert_eq!(
            RespError::ExpectedBulk(b'\n').to_string(),
            "expected '$', got '\\n'"
        );
        // Just under the limits: keep waiting.
        assert_eq!(parse(&[b'a'; MAX_INLINE]), Ok(None));
        assert_eq!(
            parse(&[b"*", &[b'1'; MAX_INLINE - 1][..]].concat()),
            Ok(None)
        );
    }

    #[test]
    fn bounds_fail_before_the_body_is_buffered() {
        let head = mb(&[b"PUBLISH", b"ch"]);
        let head = [&b"*3"[..], &head[2..]].concat();
        let with = |len: usize| [&head[..], format!("${len}\r\n").as_bytes()].concat();
        assert_eq!(
            parse_command(&mut BytesMut::from(&with(1024)[..]), 1024),
            Ok(None)
        );
        assert_eq!(
            parse_command(&mut BytesMut::from(&with(1025)[..]), 1024),
            Err(RespError::InvalidBulkLength)
        );
        let huge = b"*1\r\n$99999999999999999999\r\n";
        assert_eq!(
            parse_command(&mut BytesMut::from(&huge[..]), usize::MAX),
            Err(RespError::InvalidBulkLength)
        );
        let max = format!("*1\r\n${}\r\n", i64::MAX);
        assert_eq!(
            parse_command(&mut BytesMut::from(max.as_bytes()), usize::MAX),
            Ok(None)
        );
        assert_eq!(parse(b"*1048576\r\n"), Ok(None));
        assert_eq!(
            parse(b"*1048577\r\n"),
            Err(RespError::InvalidMultibulkLength)
        );
        // A bulk of exactly max_bulk is accepted.
        let exact = mb(&[b"ECHO", &[b'z'; 64]]);
        let got = parse_command(&mut BytesMut::from(&exact[..]), 64).unwrap();
        assert_eq!(got, Some(Command::Echo(Bytes::from(vec![b'z'; 64]))));
    }

    #[test]
    fn nesting_is_rejected_not_recursed() {
        let deep = b"*1\r\n".repeat(200_000);
        assert_eq!(parse(&deep), Err(RespError::ExpectedBulk(b'*')));
    }

    #[test]
    fn multibulk_args_are_zero_copy() {
        let input = mb(&[b"PUBLISH", b"room", b"payload"]);
        let mut buf = BytesMut::from(&input[..]);
        let range = buf.as_ptr() as usize..buf.as_ptr() as usize + buf.len();
        let Some(Command::Publish { channel, payload }) =
            parse_command(&mut buf, MAX_BULK).unwrap()
        else {
            panic!("not a publish");
        };
        assert!(range.contains(&(channel.as_ptr() as usize)));
        assert!(range.contains(&(payload.as_ptr() as usize)));
    }

    #[test]
    fn string2ll_matches_redis() {
        for (s, want) in [
            ("0", Some(0)),
            ("-1", Some(-1)),
            ("9223372036854775807", Some(i64::MAX)),
            ("-9223372036854775808", Some(i64::MIN)),
            ("9223372036854775808", None),
            ("-0", None),
            ("00", None),
            ("", None),
            ("-", None),
            ("+1", None),
            (" 1", None),
            ("1x", None),
            ("99999999999999999999", None),
        ] {
            assert_eq!(string2ll(s.as_bytes()), want, "{s:?}");
        }
    }

    /// xorshift64: deterministic pseudo-random numbers for the tests below.
    fn rng(state: &mut u64) -> u64 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *state
    }

    #[test]
    fn requests_encoded_by_redis_protocol_parse_the_same() {
        use redis_protocol::resp2::{encode::extend_encode, types::BytesFrame};
        let mut seed = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..300 {
            let mut args = vec![Bytes::from_static(b"SUBSCRIBE")];
            for _ in 0..=rng(&mut seed) % 5 {
                let len = (rng(&mut seed) % 40) as usize;
                args.push((0..len).map(|_| rng(&mut seed) as u8).collect());
            }
            let frame =
                BytesFrame::Array(args.iter().cloned().map(BytesFrame::BulkString).collect());
            let mut wire = BytesMut::new();
            extend_encode(&mut wire, &frame, false).unwrap();
            wire.extend_from_slice(b"PING\r\n");
            // Feed in random chunks.
            let mut buf = BytesMut::new();
            let mut got = vec![];
            while !wire.is_empty() {
                let n = (1 + rng(&mut seed) % 16).min(wire.len() as u64) as usize;
                buf.extend_from_slice(&wire.split_to(n));
                while let Some(cmd) = parse_command(&mut buf, MAX_BULK).unwrap() {
                    got.push(cmd);
                }
            }
            assert_eq!(
                got,
                [Command::Subscribe(args[1..].to_vec()), Command::Ping(None)]
            );
        }
    }

    #[test]
    fn random_input_never_panics_and_always_progresses() {
        let mut seed = 42;
        let alphabet = b"*$:\r\n0123456789-+ \"'\\xPING";
        for _ in 0..2000 {
            let len = (rng(&mut seed) % 64) as usize;
            let input: Vec<u8> = (0..len)
                .map(|_| alphabet[(rng(&mut seed) % alphabet.len() as u64) as usize])
                .collect();
            let mut buf = BytesMut::from(&input[..]);
            loop {
                let before = buf.len();
                match parse_command(&mut buf, 16) {
                    Ok(Some(_)) => assert!(buf.len() < before, "{input:?}"),
                    Ok(None) | Err(_) => break,
                }
            }
        }
    }
}
