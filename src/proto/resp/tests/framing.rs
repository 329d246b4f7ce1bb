//! Framing: multibulk and inline requests, split points, bounds, errors.

use bytes::{Bytes, BytesMut};

use super::*;
use crate::proto::resp::number::string2ll;
use crate::proto::resp::parse::MAX_INLINE;

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
fn an_incomplete_request_is_held_only_up_to_the_query_limit() {
    let mut p = Parser::default().limit_query(10_000);
    // Many small elements: the bytes stay small, what is kept of them not.
    let mut buf = BytesMut::from(&b"*1000000\r\n"[..]);
    let mut err = None;
    for _ in 0..2000 {
        buf.extend_from_slice(b"$0\r\n\r\n");
        if let Err(e) = p.parse(&mut buf, MAX_BULK) {
            err = Some(e);
            break;
        }
    }
    assert_eq!(err, Some(RespError::QueryBufferLimit(10_000)));
    // One big element arriving in pieces.
    let mut p = Parser::default().limit_query(10_000);
    let mut buf = BytesMut::from(&b"*1\r\n$65536\r\n"[..]);
    assert_eq!(p.parse(&mut buf, MAX_BULK), Ok(None));
    buf.extend_from_slice(&[b'x'; 9_000]);
    assert_eq!(p.parse(&mut buf, MAX_BULK), Ok(None));
    buf.extend_from_slice(&[b'x'; 1_000]);
    let e = p.parse(&mut buf, MAX_BULK).unwrap_err();
    assert_eq!(
        e.reply(),
        &b"-ERR Protocol error: query buffer limit of 10000 bytes reached\r\n"[..]
    );
    // A complete request bigger than the limit is fine when it arrives whole.
    let mut p = Parser::default().limit_query(100);
    let mut buf = BytesMut::from(&mb(&[b"ECHO", &[b'z'; 500]])[..]);
    assert!(p.parse(&mut buf, MAX_BULK).unwrap().is_some());
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
    let Some(Command::Publish { channel, payload }) = parse_command(&mut buf, MAX_BULK).unwrap()
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
        let frame = BytesFrame::Array(args.iter().cloned().map(BytesFrame::BulkString).collect());
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

#[test]
fn publish_in_place_agrees_with_the_parser_or_declines() {
    let cases: Vec<Vec<u8>> = vec![
        mb(&[b"PUBLISH", b"room", b"hello"]),
        mb(&[b"publish", b"r", b""]),
        mb(&[b"PuBlIsH", b"r", b"\r\n\x00\xff binary"]),
        mb(&[b"PUBLISH", b"r"]),
        mb(&[b"PUBLISH", b"r", b"a", b"b"]),
        mb(&[b"SUBSCRIBE", b"r", b"x"]),
        b"PUBLISH r x\r\n".to_vec(),
        b"*3\r\n$7\r\nPUBLISH\r\n$1\r\nr\r\n$01\r\nx\r\n".to_vec(),
        b"*3\r\n$7\r\nPUBLISH\r\n$1\r\nr\r\n$-1\r\n".to_vec(),
        b"*3\r\n$7\r\nPUBLISH\r\n$1\r\nrX\n$1\r\nx\r\n".to_vec(),
    ];
    for case in &cases {
        for cut in 0..=case.len() {
            let part = &case[..cut];
            if let Some((ch, payload, used)) = publish_in_place(part, MAX_BULK) {
                // Whatever the fast path takes, the parser reads the same.
                let mut buf = BytesMut::from(part);
                let cmd = parse_command(&mut buf, MAX_BULK).unwrap().unwrap();
                assert_eq!(
                    cmd,
                    Command::Publish {
                        channel: Bytes::copy_from_slice(&part[ch]),
                        payload: Bytes::copy_from_slice(&part[payload]),
                    },
                    "{part:?}"
                );
                assert_eq!(used, part.len() - buf.len(), "{part:?}");
            }
        }
    }
    let whole = mb(&[b"PUBLISH", b"room", b"hello"]);
    assert!(publish_in_place(&whole, MAX_BULK).is_some());
    assert!(
        publish_in_place(&whole, 4).is_none(),
        "over max_bulk: the parser refuses it"
    );
    let mut two = whole.clone();
    two.extend_from_slice(&whole);
    assert_eq!(publish_in_place(&two, MAX_BULK).unwrap().2, whole.len());
}
