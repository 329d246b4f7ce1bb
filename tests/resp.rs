//! The RESP (Redis pub/sub subset) front end, driven by real Redis clients:
//! the `redis` crate (multiplexed RESP2/RESP3 connections and the RESP2
//! pub/sub connection), `redis-cli` when installed, and raw bytes for the
//! exact wire format. Also WebSocket ↔ RESP interop in one room.

mod common;

use common::*;
use futures_util::{SinkExt, StreamExt};
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, PushKind, Value as RValue};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

fn url(server: &Server) -> String {
    format!("redis://{}/", server.resp)
}

async fn conn(server: &Server) -> MultiplexedConnection {
    let client = redis::Client::open(url(server)).unwrap();
    tokio::time::timeout(WAIT, client.get_multiplexed_async_connection())
        .await
        .expect("connect in time")
        .expect("connect")
}

async fn pubsub(server: &Server) -> redis::aio::PubSub {
    let client = redis::Client::open(url(server)).unwrap();
    tokio::time::timeout(WAIT, client.get_async_pubsub())
        .await
        .expect("connect in time")
        .expect("connect")
}

async fn query<T: redis::FromRedisValue>(
    c: &mut MultiplexedConnection,
    cmd: &redis::Cmd,
) -> redis::RedisResult<T> {
    tokio::time::timeout(WAIT, cmd.query_async(c))
        .await
        .expect("reply in time")
}

/// `CLIENT INFO` says which shard the connection lives on.
async fn shard_of(c: &mut MultiplexedConnection) -> u64 {
    let info: String = query(c, redis::cmd("CLIENT").arg("INFO")).await.unwrap();
    info.split_whitespace()
        .find_map(|w| w.strip_prefix("shard="))
        .unwrap_or_else(|| panic!("no shard= in {info:?}"))
        .parse()
        .unwrap()
}

/// Next message on a RESP2 pub/sub connection: (channel, payload).
async fn next_msg(ps: &mut redis::aio::PubSub) -> (String, Vec<u8>) {
    let msg = tokio::time::timeout(WAIT, ps.on_message().next())
        .await
        .expect("timed out waiting for a pub/sub message")
        .expect("pub/sub stream ended");
    (
        msg.get_channel_name().to_string(),
        msg.get_payload_bytes().to_vec(),
    )
}

// ----- raw bytes ---------------------------------------------------------------

/// A raw RESP connection for byte-exact assertions.
struct Raw {
    s: TcpStream,
}

impl Raw {
    async fn connect(server: &Server) -> Raw {
        Raw {
            s: TcpStream::connect(server.resp).await.unwrap(),
        }
    }

    async fn send(&mut self, args: &[&[u8]]) {
        self.s.write_all(&mb(args)).await.unwrap();
    }

    /// Reads exactly `want.len()` bytes and compares.
    async fn expect(&mut self, want: &[u8]) {
        let mut got = vec![0u8; want.len()];
        tokio::time::timeout(WAIT, self.s.read_exact(&mut got))
            .await
            .unwrap_or_else(|_| panic!("timed out waiting for {:?}", String::from_utf8_lossy(want)))
            .unwrap_or_else(|e| panic!("{e} waiting for {:?}", String::from_utf8_lossy(want)));
        assert_eq!(String::from_utf8_lossy(&got), String::from_utf8_lossy(want));
    }

    async fn expect_eof(&mut self) {
        let mut rest = Vec::new();
        tokio::time::timeout(WAIT, self.s.read_to_end(&mut rest))
            .await
            .expect("the server did not close the connection")
            .expect("read to EOF");
        assert!(
            rest.is_empty(),
            "unexpected bytes before EOF: {:?}",
            String::from_utf8_lossy(&rest)
        );
    }
}

// ----- commands ----------------------------------------------------------------

#[tokio::test]
async fn ping_echo_select() {
    let server = Server::start(&[]);
    let mut c = conn(&server).await;
    let pong: String = query(&mut c, &redis::cmd("PING")).await.unwrap();
    assert_eq!(pong, "PONG");
    let hi: String = query(&mut c, redis::cmd("PING").arg("hi there"))
        .await
        .unwrap();
    assert_eq!(hi, "hi there");
    let echo: Vec<u8> = query(&mut c, redis::cmd("ECHO").arg(&b"bin\x00\xff"[..]))
        .await
        .unwrap();
    assert_eq!(echo, b"bin\x00\xff");
    let ok: String = query(&mut c, redis::cmd("SELECT").arg(0)).await.unwrap();
    assert_eq!(ok, "OK");
    let err = query::<String>(&mut c, redis::cmd("SELECT").arg(1))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("ERR"), "{err}");
    assert_eq!(err.detail(), Some("DB index is out of range"), "{err}");
    // The connection survives the error.
    let pong: String = query(&mut c, &redis::cmd("PING")).await.unwrap();
    assert_eq!(pong, "PONG");
    let shard = shard_of(&mut c).await;
    let stats = server.stats().await;
    assert_eq!(errors_of(&stats, shard, "resp"), 1, "{stats}");
}

#[tokio::test]
async fn client_setname_getname_id() {
    let server = Server::start(&[]);
    let mut c = conn(&server).await;
    let name: String = query(&mut c, redis::cmd("CLIENT").arg("GETNAME"))
        .await
        .unwrap();
    assert!(!name.is_empty(), "a default name is assigned");
    let ok: String = query(&mut c, redis::cmd("CLIENT").arg("SETNAME").arg("worker-1"))
        .await
        .unwrap();
    assert_eq!(ok, "OK");
    let name: String = query(&mut c, redis::cmd("CLIENT").arg("GETNAME"))
        .await
        .unwrap();
    assert_eq!(name, "worker-1");
    let err = query::<String>(&mut c, redis::cmd("CLIENT").arg("SETNAME").arg("has space"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("ERR"), "{err}");
    let name: String = query(&mut c, redis::cmd("CLIENT").arg("GETNAME"))
        .await
        .unwrap();
    assert_eq!(name, "worker-1", "a refused name changes nothing");
    let id1: i64 = query(&mut c, redis::cmd("CLIENT").arg("ID")).await.unwrap();
    let mut c2 = conn(&server).await;
    let id2: i64 = query(&mut c2, redis::cmd("CLIENT").arg("ID"))
        .await
        .unwrap();
    assert!(id1 > 0 && id2 > 0 && id1 != id2, "{id1} {id2}");
    let again: i64 = query(&mut c, redis::cmd("CLIENT").arg("ID")).await.unwrap();
    assert_eq!(id1, again);
}

#[tokio::test]
async fn unknown_command_error() {
    let server = Server::start(&[]);
    let mut c = conn(&server).await;
    let err = query::<RValue>(&mut c, redis::cmd("FOO").arg("a").arg("b"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("ERR"), "{err}");
    let detail = err.detail().unwrap_or_default();
    assert!(
        detail.starts_with("unknown command 'FOO', with args beginning with: 'a' 'b'"),
        "{detail:?}"
    );
    // Wrong arity is an error too, and the connection keeps working.
    let err = query::<RValue>(&mut c, &redis::cmd("PUBLISH"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("ERR"), "{err}");
    assert!(
        err.detail()
            .unwrap_or_default()
            .contains("wrong number of arguments"),
        "{err}"
    );
    let pong: String = query(&mut c, &redis::cmd("PING")).await.unwrap();
    assert_eq!(pong, "PONG");
    let shard = shard_of(&mut c).await;
    let stats = server.stats().await;
    assert_eq!(errors_of(&stats, shard, "resp"), 2, "{stats}");
    // The exact line on the wire.
    let mut raw = Raw::connect(&server).await;
    raw.send(&[b"nope", b"x"]).await;
    raw.expect(b"-ERR unknown command 'nope', with args beginning with: 'x' \r\n")
        .await;
    raw.send(&[b"PING"]).await;
    raw.expect(b"+PONG\r\n").await;
}

#[tokio::test]
async fn invalid_channel_name() {
    let server = Server::start(&[]);
    let mut c = conn(&server).await;
    for bad in [
        &b"has space"[..],
        b"",
        b"slash/no",
        &[b'c'; 129][..],
        b"\xff",
    ] {
        let err = query::<i64>(&mut c, redis::cmd("PUBLISH").arg(bad).arg("x"))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Some("ERR"), "{err}");
        assert!(
            err.detail()
                .unwrap_or_default()
                .contains("invalid channel name"),
            "{bad:?}: {err}"
        );
    }
    // A valid 128-byte name is fine.
    let n: i64 = query(&mut c, redis::cmd("PUBLISH").arg("c".repeat(128)).arg("x"))
        .await
        .unwrap();
    assert_eq!(n, 0);
    // SUBSCRIBE refuses it too, and the connection is not in subscribed mode.
    let mut raw = Raw::connect(&server).await;
    raw.send(&[b"SUBSCRIBE", b"bad name"]).await;
    raw.expect(b"-ERR invalid channel name 'bad name'").await;
    raw.send(&[b"ECHO", b"e"]).await;
    // Skip the rest of the error line, then the echo.
    let mut line = Vec::new();
    loop {
        let mut b = [0u8; 1];
        tokio::time::timeout(WAIT, raw.s.read_exact(&mut b))
            .await
            .unwrap()
            .unwrap();
        line.push(b[0]);
        if line.ends_with(b"\r\n") {
            break;
        }
    }
    raw.expect(b"$1\r\ne\r\n").await;
    let stats = server.stats().await;
    let total: u64 = stats["shards"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["errors"]["invalid_room"].as_u64().unwrap())
        .sum();
    assert_eq!(total, 6, "{stats}");
}

#[tokio::test]
async fn resp2_subscribed_mode_restriction_and_exact_bytes() {
    let server = Server::start(&[]);
    let mut raw = Raw::connect(&server).await;
    raw.send(&[b"SUBSCRIBE", b"a"]).await;
    raw.expect(b"*3\r\n$9\r\nsubscribe\r\n$1\r\na\r\n:1\r\n")
        .await;
    raw.send(&[b"SUBSCRIBE", b"bb"]).await;
    raw.expect(b"*3\r\n$9\r\nsubscribe\r\n$2\r\nbb\r\n:2\r\n")
        .await;
    raw.send(&[b"ECHO", b"x"]).await;
    raw.expect(
        b"-ERR Can't execute 'echo': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context\r\n",
    )
    .await;
    raw.send(&[b"PUBLISH", b"a", b"m"]).await;
    raw.expect(
        b"-ERR Can't execute 'publish': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context\r\n",
    )
    .await;
    // PING in subscribed mode is the two-element array.
    raw.send(&[b"PING"]).await;
    raw.expect(b"*2\r\n$4\r\npong\r\n$0\r\n\r\n").await;
    raw.send(&[b"PING", b"hey"]).await;
    raw.expect(b"*2\r\n$4\r\npong\r\n$3\r\nhey\r\n").await;
    // A message published elsewhere.
    let mut c = conn(&server).await;
    let n: i64 = query(&mut c, redis::cmd("PUBLISH").arg("bb").arg("hello"))
        .await
        .unwrap();
    assert_eq!(n, 1);
    raw.expect(b"*3\r\n$7\r\nmessage\r\n$2\r\nbb\r\n$5\r\nhello\r\n")
        .await;
    // UNSUBSCRIBE without arguments leaves every channel, one reply each.
    raw.send(&[b"UNSUBSCRIBE"]).await;
    let mut got = vec![0u8; 2 * b"*3\r\n$11\r\nunsubscribe\r\n$1\r\na\r\n:1\r\n".len() + 1];
    tokio::time::timeout(WAIT, raw.s.read_exact(&mut got))
        .await
        .unwrap()
        .unwrap();
    let got = String::from_utf8(got).unwrap();
    let a_first = "*3\r\n$11\r\nunsubscribe\r\n$1\r\na\r\n:1\r\n*3\r\n$11\r\nunsubscribe\r\n$2\r\nbb\r\n:0\r\n";
    let bb_first = "*3\r\n$11\r\nunsubscribe\r\n$2\r\nbb\r\n:1\r\n*3\r\n$11\r\nunsubscribe\r\n$1\r\na\r\n:0\r\n";
    assert!(got == a_first || got == bb_first, "{got:?}");
    // Out of subscribed mode: any command again.
    raw.send(&[b"ECHO", b"x"]).await;
    raw.expect(b"$1\r\nx\r\n").await;
    raw.send(&[b"QUIT"]).await;
    raw.expect(b"+OK\r\n").await;
    raw.expect_eof().await;
}

/// Redis answers `SUBSCRIBE c1 c2 …` with one confirmation per channel, in
/// argument order, each carrying the number of channels subscribed so far
/// (1, 2, 3, …). Clients rely on it (redis-cli prints them; libraries match
/// confirmations to requests). Sixteen channels almost surely have homes on
/// both shards.
#[tokio::test]
async fn multi_channel_subscribe_confirms_in_order_with_running_counts() {
    let server = Server::start(&[]);
    let mut raw = Raw::connect(&server).await;
    let names: Vec<String> = (0..16).map(|i| format!("multi-{i}")).collect();
    let mut args: Vec<&[u8]> = vec![b"SUBSCRIBE"];
    args.extend(names.iter().map(|n| n.as_bytes()));
    raw.send(&args).await;
    let mut want = Vec::new();
    for (i, name) in names.iter().enumerate() {
        want.extend_from_slice(
            format!(
                "*3\r\n$9\r\nsubscribe\r\n${}\r\n{name}\r\n:{}\r\n",
                name.len(),
                i + 1
            )
            .as_bytes(),
        );
    }
    raw.expect(&want).await;
    // Every one of them is live once confirmed.
    let mut c = conn(&server).await;
    for name in &names {
        let n: i64 = query(&mut c, redis::cmd("PUBLISH").arg(name).arg("x"))
            .await
            .unwrap();
        assert_eq!(n, 1, "{name}");
    }
}

/// Replies come in request order, as every Redis client expects of a
/// pipeline: a `PUBLISH` answered by another shard (the room's home) must not
/// be overtaken by the reply to a later command answered locally.
#[tokio::test]
async fn pipelined_replies_keep_request_order() {
    let server = Server::start(&[]);
    let names: Vec<String> = (0..16).map(|i| format!("pipe-{i}")).collect();
    // One subscriber on the even channels, so the replies differ (1, 0, 1, …).
    let mut sub = Raw::connect(&server).await;
    for (i, name) in names.iter().enumerate().filter(|(i, _)| i % 2 == 0) {
        sub.send(&[b"SUBSCRIBE", name.as_bytes()]).await;
        let want = format!(
            "*3\r\n$9\r\nsubscribe\r\n${}\r\n{name}\r\n:{}\r\n",
            name.len(),
            i / 2 + 1
        );
        sub.expect(want.as_bytes()).await;
    }
    let mut raw = Raw::connect(&server).await;
    let mut batch = Vec::new();
    let mut want = Vec::new();
    for (i, name) in names.iter().enumerate() {
        batch.extend(mb(&[b"PUBLISH", name.as_bytes(), b"m"]));
        want.extend_from_slice(if i % 2 == 0 { b":1\r\n" } else { b":0\r\n" });
        batch.extend(mb(&[b"PING"]));
        want.extend_from_slice(b"+PONG\r\n");
    }
    batch.extend(mb(&[b"ECHO", b"end"]));
    want.extend_from_slice(b"$3\r\nend\r\n");
    raw.s.write_all(&batch).await.unwrap();
    raw.expect(&want).await;
    // The same through the redis crate's pipeline.
    let mut c = conn(&server).await;
    let mut pipe = redis::pipe();
    for name in &names {
        pipe.cmd("PUBLISH").arg(name).arg("p").cmd("PING");
    }
    let replies: Vec<RValue> = tokio::time::timeout(WAIT, pipe.query_async(&mut c))
        .await
        .unwrap()
        .unwrap();
    for (i, pair) in replies.chunks(2).enumerate() {
        assert_eq!(
            pair[0],
            RValue::Int(if i % 2 == 0 { 1 } else { 0 }),
            "PUBLISH {i}: {replies:?}"
        );
        assert_eq!(
            pair[1],
            RValue::SimpleString("PONG".into()),
            "PING {i}: {replies:?}"
        );
    }
}

/// A SUBSCRIBE overtaken by its UNSUBSCRIBE in the same pipeline is still
/// confirmed, and the replies after it are not held back: for every
/// one-letter room (so both shards are the home of some), in one write.
#[tokio::test]
async fn subscribe_then_unsubscribe_pipelined_answers_every_request() {
    let server = Server::start(&[]);
    let mut raw = Raw::connect(&server).await;
    let mut batch = Vec::new();
    let mut want = Vec::new();
    for c in b'a'..=b'z' {
        let ch = [c];
        batch.extend(mb(&[b"SUBSCRIBE", &ch]));
        batch.extend(mb(&[b"UNSUBSCRIBE", &ch]));
        want.extend(format!("*3\r\n$9\r\nsubscribe\r\n$1\r\n{}\r\n:1\r\n", c as char).bytes());
        want.extend(format!("*3\r\n$11\r\nunsubscribe\r\n$1\r\n{}\r\n:0\r\n", c as char).bytes());
    }
    batch.extend(mb(&[b"PING"]));
    want.extend_from_slice(b"+PONG\r\n");
    raw.s.write_all(&batch).await.unwrap();
    raw.expect(&want).await;
}

/// The same for WebSocket: a join overtaken by a leave and a join
/// repeated before its answer each get their own `ok`.
#[tokio::test]
async fn every_join_is_answered_even_when_overtaken() {
    let server = Server::start(&[]);
    let mut c = Client::connect(&server, "hasty").await;
    for room in ["a", "b", "c", "d", "e", "f"] {
        c.send(json!({"op":"join","room":room,"id":format!("j1-{room}")}))
            .await;
        c.send(json!({"op":"leave","room":room,"id":format!("l-{room}")}))
            .await;
        c.send(json!({"op":"join","room":room,"id":format!("j2-{room}")}))
            .await;
        c.send(json!({"op":"join","room":room,"id":format!("j3-{room}")}))
            .await;
    }
    c.send(json!({"op":"ping","id":"end"})).await;
    let mut ids = std::collections::BTreeSet::new();
    loop {
        let v = c.recv_main().await;
        if v["op"] == "pong" {
            break;
        }
        assert_eq!(v["op"], "ok", "{v}");
        ids.insert(v["id"].as_str().unwrap().to_string());
    }
    // The pong may overtake the joins' answers, which come from the homes.
    while ids.len() < 24 {
        let v = c.recv_main().await;
        assert_eq!(v["op"], "ok", "{v}");
        ids.insert(v["id"].as_str().unwrap().to_string());
    }
    assert_eq!(ids.len(), 24, "{ids:?}");
}

#[tokio::test]
async fn protocol_error_closes_the_connection() {
    let server = Server::start(&[]);
    let mut raw = Raw::connect(&server).await;
    raw.s.write_all(b"*1\r\n$abc\r\n").await.unwrap();
    let mut all = Vec::new();
    tokio::time::timeout(WAIT, raw.s.read_to_end(&mut all))
        .await
        .expect("the server did not close after a protocol error")
        .expect("read to EOF");
    let text = String::from_utf8(all).unwrap();
    assert!(text.starts_with("-ERR Protocol error: "), "{text:?}");
    assert!(
        text.ends_with("\r\n") && text.matches("\r\n").count() == 1,
        "one error line, then EOF: {text:?}"
    );
    let stats = server.stats().await;
    let total: u64 = stats["shards"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["errors"]["resp"].as_u64().unwrap())
        .sum();
    assert_eq!(total, 1, "{stats}");
}

// ----- pub/sub -----------------------------------------------------------------

#[tokio::test]
async fn subscribe_publish_unsubscribe() {
    let server = Server::start(&[]);
    let mut s1 = pubsub(&server).await;
    let mut s2 = pubsub(&server).await;
    let mut p = conn(&server).await;
    // Nobody there yet.
    let n: i64 = query(&mut p, redis::cmd("PUBLISH").arg("chat").arg("m0"))
        .await
        .unwrap();
    assert_eq!(n, 0);
    s1.subscribe("chat").await.unwrap();
    s1.subscribe("side").await.unwrap();
    s2.subscribe("chat").await.unwrap();
    let n: i64 = query(&mut p, redis::cmd("PUBLISH").arg("chat").arg("m1"))
        .await
        .unwrap();
    assert_eq!(n, 2, "PUBLISH returns the number of members");
    assert_eq!(next_msg(&mut s1).await, ("chat".into(), b"m1".to_vec()));
    assert_eq!(next_msg(&mut s2).await, ("chat".into(), b"m1".to_vec()));
    // s1 leaves chat: it gets later messages of side but not of chat.
    s1.unsubscribe("chat").await.unwrap();
    let _: i64 = query(&mut p, redis::cmd("PUBLISH").arg("chat").arg("m2"))
        .await
        .unwrap();
    let n: i64 = query(&mut p, redis::cmd("PUBLISH").arg("side").arg("s1"))
        .await
        .unwrap();
    assert_eq!(n, 1);
    assert_eq!(next_msg(&mut s2).await, ("chat".into(), b"m2".to_vec()));
    assert_eq!(next_msg(&mut s1).await, ("side".into(), b"s1".to_vec()));
    // Binary payloads pass through unchanged.
    let _: i64 = query(
        &mut p,
        redis::cmd("PUBLISH").arg("chat").arg(&b"\x00\xff\r\n"[..]),
    )
    .await
    .unwrap();
    assert_eq!(
        next_msg(&mut s2).await,
        ("chat".into(), b"\x00\xff\r\n".to_vec())
    );
}

#[tokio::test]
async fn hello_3_then_pushes() {
    let server = Server::start(&[]);
    // The redis crate sends HELLO 3 itself for protocol=resp3.
    let client = redis::Client::open(format!("redis://{}/?protocol=resp3", server.resp)).unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let config = AsyncConnectionConfig::new().set_push_sender(tx);
    let mut sub = tokio::time::timeout(
        WAIT,
        client.get_multiplexed_async_connection_with_config(&config),
    )
    .await
    .unwrap()
    .unwrap();
    let hello: RValue = query(&mut sub, redis::cmd("HELLO").arg(3)).await.unwrap();
    let RValue::Map(fields) = &hello else {
        panic!("HELLO 3 should reply with a map: {hello:?}")
    };
    let get = |k: &str| {
        fields
            .iter()
            .find(|(key, _)| *key == RValue::BulkString(k.as_bytes().to_vec()))
            .map(|(_, v)| v.clone())
    };
    assert_eq!(get("proto"), Some(RValue::Int(3)), "{hello:?}");
    assert_eq!(
        get("server"),
        Some(RValue::BulkString(b"redis".to_vec())),
        "{hello:?}"
    );
    // A RESP3 connection may run ordinary commands while subscribed.
    sub.subscribe("news").await.unwrap();
    let pong: String = query(&mut sub, &redis::cmd("PING")).await.unwrap();
    assert_eq!(pong, "PONG");
    let mut p = conn(&server).await;
    let n: i64 = query(&mut p, redis::cmd("PUBLISH").arg("news").arg("extra"))
        .await
        .unwrap();
    assert_eq!(n, 1);
    let push = loop {
        let push = tokio::time::timeout(WAIT, rx.recv())
            .await
            .expect("a push in time")
            .expect("push channel open");
        if push.kind == PushKind::Message {
            break push;
        }
        assert_eq!(push.kind, PushKind::Subscribe, "{push:?}");
    };
    assert_eq!(
        push.data,
        vec![
            RValue::BulkString(b"news".to_vec()),
            RValue::BulkString(b"extra".to_vec())
        ]
    );
    sub.unsubscribe("news").await.unwrap();

    // The same on the wire: HELLO 3 switches replies to RESP3 and messages
    // arrive as `>` pushes.
    let mut raw = Raw::connect(&server).await;
    raw.send(&[b"HELLO", b"3"]).await;
    raw.expect(b"%7\r\n$6\r\nserver\r\n$5\r\nredis\r\n$7\r\nversion\r\n$5\r\n7.2.0\r\n$5\r\nproto\r\n:3\r\n$2\r\nid\r\n:").await;
    let mut rest = Vec::new();
    while !rest.ends_with(b"$7\r\nmodules\r\n*0\r\n") {
        let mut b = [0u8; 1];
        tokio::time::timeout(WAIT, raw.s.read_exact(&mut b))
            .await
            .unwrap()
            .unwrap();
        rest.push(b[0]);
    }
    raw.send(&[b"SUBSCRIBE", b"wire"]).await;
    raw.expect(b">3\r\n$9\r\nsubscribe\r\n$4\r\nwire\r\n:1\r\n")
        .await;
    let n: i64 = query(&mut p, redis::cmd("PUBLISH").arg("wire").arg("w1"))
        .await
        .unwrap();
    assert_eq!(n, 1);
    raw.expect(b">3\r\n$7\r\nmessage\r\n$4\r\nwire\r\n$2\r\nw1\r\n")
        .await;
    raw.send(&[b"PING"]).await;
    raw.expect(b"+PONG\r\n").await;
}

// ----- WebSocket <-> RESP ----------------------------------------------------------

#[tokio::test]
async fn resp_publish_reaches_websocket_members() {
    let server = Server::start(&[]);
    // Members on both shards.
    let mut members = clients_on_every_shard(&server, 2, 1, "w").await;
    for m in members.iter_mut() {
        m.join("mix").await;
    }
    let mut p = conn(&server).await;
    let _: String = query(&mut p, redis::cmd("CLIENT").arg("SETNAME").arg("backend"))
        .await
        .unwrap();
    let n: i64 = query(&mut p, redis::cmd("PUBLISH").arg("mix").arg("hello"))
        .await
        .unwrap();
    assert_eq!(n, members.len() as i64);
    // Not UTF-8: ff 00 80 is "/wCA" in base64.
    let n: i64 = query(
        &mut p,
        redis::cmd("PUBLISH").arg("mix").arg(&b"\xff\x00\x80"[..]),
    )
    .await
    .unwrap();
    assert_eq!(n, members.len() as i64);
    for m in members.iter_mut() {
        let msg = m.recv_op("message").await;
        assert_eq!(msg["room"], "mix", "{msg}");
        assert_eq!(msg["data"], "hello", "{msg}");
        assert_eq!(msg["user"], "backend", "{msg}");
        assert!(msg.get("data_b64").is_none(), "{msg}");
        let seq = msg["seq"].as_u64().unwrap();
        let msg = m.recv_op("message").await;
        assert_eq!(msg["data_b64"], "/wCA", "{msg}");
        assert!(msg.get("data").is_none(), "{msg}");
        assert_eq!(msg["seq"].as_u64().unwrap(), seq + 1, "{msg}");
    }
    // Text that spells a lone surrogate escape, and the bytes of a
    // surrogate (not UTF-8): members' strict parsers (serde_json here)
    // still read every delivery.
    for payload in [&br"\ud30d\ude00"[..], b"\xed\xa0\x80"] {
        let _: i64 = query(&mut p, redis::cmd("PUBLISH").arg("mix").arg(payload))
            .await
            .unwrap();
    }
    for m in members.iter_mut() {
        let msg = m.recv_op("message").await;
        assert_eq!(msg["data"], r"\ud30d\ude00", "{msg}");
        let msg = m.recv_op("message").await;
        assert_eq!(msg["data_b64"], "7aCA", "{msg}");
    }
}

#[tokio::test]
async fn websocket_publish_reaches_resp_subscribers_as_compact_json() {
    let server = Server::start(&[]);
    let mut s = pubsub(&server).await;
    s.subscribe("mix").await.unwrap();
    let mut w = Client::connect(&server, "webby").await;
    // Whitespace in `data` is removed (compact JSON), strings keep quotes.
    w.ws.send(Message::Text(
        r#"{"op":"publish","room":"mix","id":7,"data":{"a": 1, "b" : [ 1 , "x y" ]}}"#.into(),
    ))
    .await
    .unwrap();
    let ok = w.recv_main().await;
    assert_eq!(
        (ok["op"].as_str(), ok["id"].as_u64()),
        (Some("ok"), Some(7)),
        "{ok}"
    );
    assert_eq!(
        next_msg(&mut s).await,
        ("mix".into(), br#"{"a":1,"b":[1,"x y"]}"#.to_vec())
    );
    w.send(json!({"op":"publish","room":"mix","data":"plain"}))
        .await;
    assert_eq!(
        next_msg(&mut s).await,
        ("mix".into(), br#""plain""#.to_vec())
    );
    w.ws.send(Message::Text(
        r#"{"op":"publish","room":"mix","data":{"a": 1}}"#.into(),
    ))
    .await
    .unwrap();
    assert_eq!(
        next_msg(&mut s).await,
        ("mix".into(), br#"{"a":1}"#.to_vec())
    );
}

#[tokio::test]
async fn both_directions_in_one_room() {
    let server = Server::start(&[]);
    let mut s = pubsub(&server).await;
    s.subscribe("both").await.unwrap();
    let mut w = Client::connect(&server, "wendy").await;
    w.join("both").await;
    let mut p = conn(&server).await;
    // RESP -> both the WebSocket member and the RESP subscriber.
    let n: i64 = query(&mut p, redis::cmd("PUBLISH").arg("both").arg("from-resp"))
        .await
        .unwrap();
    assert_eq!(n, 2);
    assert_eq!(
        next_msg(&mut s).await,
        ("both".into(), b"from-resp".to_vec())
    );
    let m = w.recv_op("message").await;
    assert_eq!(m["data"], "from-resp", "{m}");
    // WebSocket -> the RESP subscriber and the publisher itself.
    w.send(json!({"op":"publish","room":"both","data":{"k":[true,null]},"id":"x"}))
        .await;
    assert_eq!(
        next_msg(&mut s).await,
        ("both".into(), br#"{"k":[true,null]}"#.to_vec())
    );
    let m = w.recv_op("message").await;
    assert_eq!(m["data"], json!({"k":[true,null]}), "{m}");
}

// ----- redis-cli -----------------------------------------------------------------

/// Runs `redis-cli` with `args`; None (and a notice) when it is not installed.
async fn redis_cli(server: &Server, args: &[&str]) -> Option<String> {
    let port = server.resp.port().to_string();
    let mut cmd = tokio::process::Command::new("redis-cli");
    cmd.args(["-h", "127.0.0.1", "-p", &port]).args(args);
    let out = match cmd.output().await {
        Ok(out) => out,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            eprintln!("NOTICE: redis-cli is not installed (Debian package redis-tools); skipping the redis-cli checks");
            return None;
        }
        Err(e) => panic!("running redis-cli: {e}"),
    };
    let mut text = String::from_utf8(out.stdout).unwrap();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    Some(text)
}

#[tokio::test]
async fn redis_cli_ping_and_publish() {
    if !have_tool("redis-cli", "redis-tools") {
        return;
    }
    let server = Server::start(&[]);
    let Some(pong) = tokio::time::timeout(WAIT, redis_cli(&server, &["ping"]))
        .await
        .unwrap()
    else {
        return;
    };
    assert_eq!(pong.trim_end(), "PONG");
    let mut w = Client::connect(&server, "listener").await;
    w.join("cli-room").await;
    let n = tokio::time::timeout(
        WAIT,
        redis_cli(&server, &["publish", "cli-room", "from cli"]),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(n.trim_end(), "1");
    let m = w.recv_op("message").await;
    assert_eq!(m["data"], "from cli", "{m}");
    let err = tokio::time::timeout(WAIT, redis_cli(&server, &["set", "k", "v"]))
        .await
        .unwrap()
        .unwrap();
    assert!(err.contains("unknown command"), "{err:?}");
}

#[tokio::test]
async fn inline_commands_and_limits() {
    let server = Server::start(&["--max-payload", "1024"]);
    let mut raw = Raw::connect(&server).await;
    // Typed as into telnet.
    raw.s
        .write_all(b"PING\r\nECHO \"two words\"\r\n")
        .await
        .unwrap();
    raw.expect(b"+PONG\r\n$9\r\ntwo words\r\n").await;
    // Unsupported protocol versions.
    raw.send(&[b"HELLO", b"4"]).await;
    raw.expect(b"-NOPROTO unsupported protocol version\r\n")
        .await;
    // A payload over --max-payload is refused; the connection survives.
    let big = vec![b'x'; 1025];
    raw.send(&[b"PUBLISH", b"room", &big]).await;
    raw.expect(b"-ERR payload too large").await;
    let mut line = Vec::new();
    while !line.ends_with(b"\r\n") {
        let mut b = [0u8; 1];
        tokio::time::timeout(WAIT, raw.s.read_exact(&mut b))
            .await
            .unwrap()
            .unwrap();
        line.push(b[0]);
    }
    raw.send(&[b"PUBLISH", b"room", &big[..1024]]).await;
    raw.expect(b":0\r\n").await;
    // COMMAND DOCS and COMMAND (redis-cli asks at start-up) answer something.
    raw.send(&[b"COMMAND", b"DOCS"]).await;
    raw.expect(b"*0\r\n").await;
    let stats = server.stats().await;
    let total = |k: &str| -> u64 {
        stats["shards"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["errors"][k].as_u64().unwrap())
            .sum()
    };
    assert_eq!(total("too_large"), 1, "{stats}");
    assert_eq!(total("resp"), 1, "{stats}");
}
