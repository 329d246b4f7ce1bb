//! WebSocket protocol conformance at the byte level, against the real server.
//!
//! The handshake and framing tests talk over a raw `tokio::net::TcpStream`:
//! they send exact bytes (hand-built, masked client frames) and assert on the
//! exact bytes that come back (status lines, close frames and their codes,
//! the end of the TCP stream). The chat-level error tests use
//! tokio-tungstenite through `common::Client`. Each test also checks that
//! the `/stats` error counter of the right kind moved on the shard that owns
//! the connection.

mod common;

use common::*;
use futures_util::SinkExt;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

/// The sample key of RFC 6455 §1.3 and its accept value.
const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

// ----- raw HTTP --------------------------------------------------------------

/// A parsed HTTP response.
struct HttpResponse {
    status: u16,
    head: String,
    body: String,
}

impl HttpResponse {
    fn header(&self, name: &str) -> Option<String> {
        self.head.lines().skip(1).find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
    }
}

/// Sends `request` as is and reads the whole response (the server closes
/// the connection after an error response).
async fn http_exchange(server: &Server, request: &[u8]) -> HttpResponse {
    let mut s = TcpStream::connect(server.ws).await.unwrap();
    s.write_all(request).await.unwrap();
    // Read to the end of the stream. A server that closes with part of an
    // oversized request unread makes the kernel send a reset after the
    // response, so a reset once the response is complete also ends it.
    let mut buf = Vec::new();
    tokio::time::timeout(WAIT, async {
        loop {
            let mut chunk = [0u8; 4096];
            match s.read(&mut chunk).await {
                Ok(0) => break,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset && !buf.is_empty() => {
                    break
                }
                Err(e) => panic!("reading the response: {e}"),
            }
        }
    })
    .await
    .expect("the server did not close after its error response");
    let text = String::from_utf8(buf).expect("a UTF-8 response");
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no end of head in {text:?}"));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head:?}"));
    assert!(head.starts_with("HTTP/1.1 "), "{head:?}");
    let resp = HttpResponse {
        status,
        head: head.to_string(),
        body: body.to_string(),
    };
    if let Some(len) = resp.header("Content-Length") {
        assert_eq!(
            len.parse::<usize>().unwrap(),
            resp.body.len(),
            "Content-Length vs body: {text:?}"
        );
    }
    resp
}

/// An upgrade request for `target` built from the standard header lines
/// minus any whose name is in `drop`, plus `extra` lines.
fn upgrade_request(method_line: &str, drop: &[&str], extra: &[&str]) -> Vec<u8> {
    let std_headers = [
        ("Host", "127.0.0.1".to_string()),
        ("Upgrade", "websocket".to_string()),
        ("Connection", "Upgrade".to_string()),
        ("Sec-WebSocket-Key", KEY.to_string()),
        ("Sec-WebSocket-Version", "13".to_string()),
    ];
    let mut s = format!("{method_line}\r\n");
    for (name, value) in std_headers.iter().filter(|(n, _)| !drop.contains(n)) {
        s.push_str(&format!("{name}: {value}\r\n"));
    }
    for line in extra {
        s.push_str(line);
        s.push_str("\r\n");
    }
    s.push_str("\r\n");
    s.into_bytes()
}

/// Sum of one error kind over all shards.
fn errors_total(stats: &Value, kind: &str) -> u64 {
    stats["shards"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            s["errors"][kind]
                .as_u64()
                .unwrap_or_else(|| panic!("no errors.{kind} in {s}"))
        })
        .sum()
}

// ----- raw WebSocket -----------------------------------------------------------

/// A raw WebSocket connection after a successful upgrade.
struct Raw {
    s: TcpStream,
    buf: Vec<u8>,
    shard: u64,
}

/// One server frame.
#[derive(Debug)]
struct Frame {
    b0: u8,
    payload: Vec<u8>,
}

impl Frame {
    fn opcode(&self) -> u8 {
        self.b0 & 0x0F
    }
    fn close_code(&self) -> u16 {
        assert_eq!(self.opcode(), 0x8, "expected a close frame, got {self:?}");
        assert!(
            self.payload.len() >= 2,
            "close frame without a code: {self:?}"
        );
        u16::from_be_bytes([self.payload[0], self.payload[1]])
    }
    fn text(&self) -> Value {
        assert_eq!(self.b0, 0x81, "expected a final text frame, got {self:?}");
        serde_json::from_slice(&self.payload).unwrap()
    }
}

/// A masked client frame; `b0` is the whole first byte so tests can set
/// FIN, RSV bits and any opcode.
fn client_frame(b0: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [0x37, 0xfa, 0x21, 0x3d];
    let mut out = vec![b0];
    match payload.len() {
        n if n < 126 => out.push(0x80 | n as u8),
        n if n <= 0xFFFF => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    out
}

impl Raw {
    /// Upgrades `/ws?user=NAME` and reads the welcome.
    async fn connect(server: &Server, user: &str) -> Raw {
        let mut s = TcpStream::connect(server.ws).await.unwrap();
        s.write_all(&upgrade_request(
            &format!("GET /ws?user={user} HTTP/1.1"),
            &[],
            &[],
        ))
        .await
        .unwrap();
        let mut raw = Raw::after_request(s).await;
        let welcome = raw.frame().await.text();
        assert_eq!(welcome["op"], "welcome", "{welcome}");
        assert_eq!(welcome["user"], user, "{welcome}");
        raw.shard = welcome["shard"].as_u64().unwrap();
        raw
    }

    /// Reads and checks the 101 response to an upgrade request already
    /// sent on `s`; what follows the head stays buffered.
    async fn after_request(mut s: TcpStream) -> Raw {
        let mut buf = Vec::new();
        let end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let mut chunk = [0u8; 4096];
            let n = tokio::time::timeout(WAIT, s.read(&mut chunk))
                .await
                .expect("101 in time")
                .unwrap();
            assert!(
                n > 0,
                "closed during the handshake: {:?}",
                String::from_utf8_lossy(&buf)
            );
            buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8(buf[..end].to_vec()).unwrap();
        assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
        let lower = head.to_ascii_lowercase();
        assert!(lower.contains("\r\nupgrade: websocket\r\n"), "{head}");
        assert!(lower.contains("\r\nconnection: upgrade\r\n"), "{head}");
        assert!(
            head.contains(&format!("\r\nSec-WebSocket-Accept: {ACCEPT}\r\n")),
            "{head}"
        );
        buf.drain(..end);
        Raw { s, buf, shard: 0 }
    }

    async fn send(&mut self, bytes: &[u8]) {
        self.s.write_all(bytes).await.unwrap();
    }

    /// Reads one complete server frame; server frames must be unmasked.
    async fn frame(&mut self) -> Frame {
        loop {
            if let Some((frame, used)) = self.parse() {
                self.buf.drain(..used);
                return frame;
            }
            let mut chunk = [0u8; 16384];
            let n = tokio::time::timeout(WAIT, self.s.read(&mut chunk))
                .await
                .expect("timed out waiting for a frame")
                .expect("read a frame");
            assert!(
                n > 0,
                "stream ended while waiting for a frame (have {:02x?})",
                self.buf
            );
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    fn parse(&self) -> Option<(Frame, usize)> {
        let b = &self.buf;
        if b.len() < 2 {
            return None;
        }
        assert_eq!(b[1] & 0x80, 0, "server frames must not be masked");
        let (hlen, len) = match b[1] & 0x7F {
            126 => (
                4,
                u16::from_be_bytes(b.get(2..4)?.try_into().ok()?) as usize,
            ),
            127 => (
                10,
                u64::from_be_bytes(b.get(2..10)?.try_into().ok()?) as usize,
            ),
            n => (2, n as usize),
        };
        let payload = b.get(hlen..hlen + len)?.to_vec();
        Some((Frame { b0: b[0], payload }, hlen + len))
    }

    /// Expects a text frame carrying JSON.
    async fn json(&mut self) -> Value {
        self.frame().await.text()
    }

    async fn send_json(&mut self, v: &Value) {
        self.send(&client_frame(0x81, v.to_string().as_bytes()))
            .await;
    }

    /// Expects a close frame with `code` (skipping nothing: it must be the
    /// next frame), then the end of the TCP stream. Returns the reason.
    async fn expect_close_then_eof(&mut self, code: u16) -> String {
        let f = self.frame().await;
        assert_eq!(f.b0, 0x88, "expected a final close frame, got {f:?}");
        assert_eq!(
            f.close_code(),
            code,
            "close reason {:?}",
            String::from_utf8_lossy(&f.payload[2..])
        );
        let reason = String::from_utf8(f.payload[2..].to_vec()).expect("close reason is UTF-8");
        self.expect_eof().await;
        reason
    }

    /// The server must end the stream: no more bytes, then EOF.
    async fn expect_eof(&mut self) {
        assert!(
            self.buf.is_empty(),
            "bytes after the close frame: {:02x?}",
            self.buf
        );
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout(WAIT, self.s.read(&mut chunk))
            .await
            .expect("the server did not end the TCP stream after its close frame")
            .expect("read EOF");
        assert_eq!(n, 0, "bytes after the close frame: {:02x?}", &chunk[..n]);
    }

    /// A ping with a fresh payload gets a pong with that payload.
    async fn ping_pong(&mut self, payload: &[u8]) {
        self.send(&client_frame(0x89, payload)).await;
        let f = self.frame().await;
        assert_eq!(f.b0, 0x8A, "expected a pong, got {f:?}");
        assert_eq!(f.payload, payload);
    }
}

// ----- handshake ---------------------------------------------------------------

#[tokio::test]
async fn good_upgrade_gets_101_accept_and_welcome() {
    let server = Server::start(&[]);
    let raw = Raw::connect(&server, "alice").await;
    assert!(raw.shard < 2);
}

#[tokio::test]
async fn missing_key_is_400_with_reason() {
    let server = Server::start(&[]);
    let r = http_exchange(
        &server,
        &upgrade_request("GET /ws HTTP/1.1", &["Sec-WebSocket-Key"], &[]),
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.head);
    assert!(
        r.body.contains("Sec-WebSocket-Key"),
        "reason should name the key: {:?}",
        r.body
    );
    let stats = server.stats().await;
    assert_eq!(errors_total(&stats, "bad_handshake"), 1, "{stats}");
}

#[tokio::test]
async fn invalid_key_is_400() {
    let server = Server::start(&[]);
    let r = http_exchange(
        &server,
        &upgrade_request(
            "GET /ws HTTP/1.1",
            &["Sec-WebSocket-Key"],
            &["Sec-WebSocket-Key: not-base64!!"],
        ),
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.head);
    assert!(r.body.contains("Sec-WebSocket-Key"), "{:?}", r.body);
}

#[tokio::test]
async fn bad_version_is_426_with_supported_version() {
    let server = Server::start(&[]);
    let r = http_exchange(
        &server,
        &upgrade_request(
            "GET /ws HTTP/1.1",
            &["Sec-WebSocket-Version"],
            &["Sec-WebSocket-Version: 8"],
        ),
    )
    .await;
    assert_eq!(r.status, 426, "{}", r.head);
    assert_eq!(
        r.header("Sec-WebSocket-Version").as_deref(),
        Some("13"),
        "{}",
        r.head
    );
    assert!(!r.body.trim().is_empty(), "426 without a reason body");
    // A missing version is the same error.
    let r = http_exchange(
        &server,
        &upgrade_request("GET /ws HTTP/1.1", &["Sec-WebSocket-Version"], &[]),
    )
    .await;
    assert_eq!(r.status, 426, "{}", r.head);
    assert_eq!(
        r.header("Sec-WebSocket-Version").as_deref(),
        Some("13"),
        "{}",
        r.head
    );
    let stats = server.stats().await;
    assert_eq!(errors_total(&stats, "bad_handshake"), 2, "{stats}");
}

#[tokio::test]
async fn not_get_is_400() {
    let server = Server::start(&[]);
    let r = http_exchange(
        &server,
        &upgrade_request("POST /ws HTTP/1.1", &[], &["Content-Length: 0"]),
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.head);
    assert!(
        r.body.contains("GET"),
        "reason should say GET is required: {:?}",
        r.body
    );
}

#[tokio::test]
async fn missing_upgrade_headers_are_400() {
    let server = Server::start(&[]);
    for drop in ["Upgrade", "Connection", "Host"] {
        let r = http_exchange(&server, &upgrade_request("GET /ws HTTP/1.1", &[drop], &[])).await;
        assert_eq!(r.status, 400, "without {drop}: {}", r.head);
        assert!(
            r.body.contains(drop),
            "reason should name {drop}: {:?}",
            r.body
        );
    }
    // HTTP/1.0 cannot upgrade.
    let r = http_exchange(&server, &upgrade_request("GET /ws HTTP/1.0", &[], &[])).await;
    assert_eq!(r.status, 400, "{}", r.head);
}

#[tokio::test]
async fn garbage_request_line_is_400() {
    let server = Server::start(&[]);
    for garbage in [
        &b"HELLO THERE\r\n\r\n"[..],
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n",
    ] {
        let r = http_exchange(&server, garbage).await;
        assert_eq!(r.status, 400, "{garbage:02x?}: {}", r.head);
        assert!(!r.body.trim().is_empty(), "400 without a reason body");
    }
    let stats = server.stats().await;
    assert_eq!(errors_total(&stats, "bad_handshake"), 2, "{stats}");
}

#[tokio::test]
async fn unknown_path_is_404() {
    let server = Server::start(&[]);
    let r = http_exchange(&server, &upgrade_request("GET /nope HTTP/1.1", &[], &[])).await;
    assert_eq!(r.status, 404, "{}", r.head);
    assert!(r.body.contains("/nope"), "{:?}", r.body);
}

#[tokio::test]
async fn invalid_user_name_is_400() {
    let server = Server::start(&[]);
    let long = "a".repeat(65);
    for query in [
        "user=",
        "user=a%22b",
        "user=back%5Cslash",
        "user=new%0Aline",
        &format!("user={long}"),
    ] {
        let r = http_exchange(
            &server,
            &upgrade_request(&format!("GET /ws?{query} HTTP/1.1"), &[], &[]),
        )
        .await;
        assert_eq!(r.status, 400, "{query}: {}", r.head);
        assert!(
            r.body.to_lowercase().contains("user"),
            "{query}: {:?}",
            r.body
        );
    }
    // Without `user` the server assigns a name.
    let mut s = TcpStream::connect(server.ws).await.unwrap();
    s.write_all(&upgrade_request("GET /ws HTTP/1.1", &[], &[]))
        .await
        .unwrap();
    // Read the 101 head, then the welcome.
    let mut raw = Raw::after_request(s).await;
    let welcome = raw.json().await;
    assert_eq!(welcome["op"], "welcome");
    assert!(!welcome["user"].as_str().unwrap().is_empty(), "{welcome}");
}

// ----- framing errors ----------------------------------------------------------

#[tokio::test]
async fn unmasked_frame_is_closed_1002() {
    let server = Server::start(&[]);
    let mut raw = Raw::connect(&server, "u").await;
    // "Hi" as a final text frame without the MASK bit.
    raw.send(&[0x81, 0x02, b'H', b'i']).await;
    raw.expect_close_then_eof(1002).await;
    let stats = server.stats().await;
    assert_eq!(errors_of(&stats, raw.shard, "bad_frame"), 1, "{stats}");
}

#[tokio::test]
async fn invalid_utf8_text_is_closed_1007() {
    let server = Server::start(&[]);
    let mut raw = Raw::connect(&server, "u").await;
    raw.send(&client_frame(0x81, b"\xce\xba\xff")).await;
    raw.expect_close_then_eof(1007).await;
    let stats = server.stats().await;
    assert_eq!(errors_of(&stats, raw.shard, "bad_utf8"), 1, "{stats}");
}

#[tokio::test]
async fn invalid_utf8_across_fragments_is_closed_1007() {
    let server = Server::start(&[]);
    let mut raw = Raw::connect(&server, "u").await;
    // A 3-byte code point whose last byte (in the continuation) is not a
    // continuation byte.
    raw.send(&client_frame(0x01, b"{\"op\":\"ping\"\xe2\x82"))
        .await;
    raw.send(&client_frame(0x80, b"(}")).await;
    raw.expect_close_then_eof(1007).await;
}

#[tokio::test]
async fn oversize_frame_is_closed_1009() {
    let server = Server::start(&["--max-payload", "1024"]);
    let mut raw = Raw::connect(&server, "u").await;
    // Limit is max_payload + 4096 = 5120; send 6000.
    raw.send(&client_frame(0x81, &vec![b' '; 6000])).await;
    raw.expect_close_then_eof(1009).await;
    let stats = server.stats().await;
    assert_eq!(errors_of(&stats, raw.shard, "too_large"), 1, "{stats}");
}

#[tokio::test]
async fn oversize_fragmented_message_is_closed_1009() {
    let server = Server::start(&["--max-payload", "1024"]);
    let mut raw = Raw::connect(&server, "u").await;
    // Three fragments of 2000 bytes: each is under the limit, together not.
    raw.send(&client_frame(0x01, &vec![b' '; 2000])).await;
    raw.send(&client_frame(0x00, &vec![b' '; 2000])).await;
    raw.send(&client_frame(0x80, &vec![b' '; 2000])).await;
    raw.expect_close_then_eof(1009).await;
}

#[tokio::test]
async fn reserved_opcode_and_rsv_bits_are_closed_1002() {
    let server = Server::start(&[]);
    for b0 in [0x83u8, 0x8B, 0xC1, 0xA1, 0x91] {
        let mut raw = Raw::connect(&server, "u").await;
        raw.send(&client_frame(b0, b"x")).await;
        let reason = raw.expect_close_then_eof(1002).await;
        assert!(!reason.is_empty(), "b0 {b0:#x}: close without a reason");
    }
    let stats = server.stats().await;
    assert_eq!(errors_total(&stats, "bad_frame"), 5, "{stats}");
}

#[tokio::test]
async fn fragmented_control_frame_is_closed_1002() {
    let server = Server::start(&[]);
    let mut raw = Raw::connect(&server, "u").await;
    // A ping without FIN.
    raw.send(&client_frame(0x09, b"p")).await;
    raw.expect_close_then_eof(1002).await;
    // A control frame longer than 125 bytes.
    let mut raw = Raw::connect(&server, "u").await;
    raw.send(&client_frame(0x89, &[b'p'; 126])).await;
    raw.expect_close_then_eof(1002).await;
}

#[tokio::test]
async fn continuation_without_start_is_closed_1002() {
    let server = Server::start(&[]);
    let mut raw = Raw::connect(&server, "u").await;
    raw.send(&client_frame(0x80, b"x")).await;
    raw.expect_close_then_eof(1002).await;
}

#[tokio::test]
async fn ping_gets_pong_with_the_same_payload() {
    let server = Server::start(&[]);
    let mut raw = Raw::connect(&server, "u").await;
    raw.ping_pong(b"hello-ping \x00\xff").await;
    raw.ping_pong(b"").await;
    raw.ping_pong(&[b'z'; 125]).await;
    // A ping between the fragments of a message is answered at once and the
    // message still completes.
    raw.send(&client_frame(0x01, b"{\"op\":\"pi")).await;
    raw.ping_pong(b"mid").await;
    raw.send(&client_frame(0x80, b"ng\",\"id\":1}")).await;
    assert_eq!(raw.json().await, json!({"op":"pong","id":1}));
}

#[tokio::test]
async fn client_close_1000_is_echoed() {
    let server = Server::start(&[]);
    let mut raw = Raw::connect(&server, "u").await;
    raw.send(&client_frame(0x88, b"\x03\xe8bye")).await;
    raw.expect_close_then_eof(1000).await;
    // A close without a code is answered with 1000 too.
    let mut raw = Raw::connect(&server, "u").await;
    raw.send(&client_frame(0x88, b"")).await;
    raw.expect_close_then_eof(1000).await;
}

#[tokio::test]
async fn invalid_close_code_is_closed_1002() {
    let server = Server::start(&[]);
    let mut raw = Raw::connect(&server, "u").await;
    // 1005 may never be sent on the wire.
    raw.send(&client_frame(0x88, b"\x03\xed")).await;
    raw.expect_close_then_eof(1002).await;
}

#[tokio::test]
async fn payload_too_large_keeps_the_connection() {
    let server = Server::start(&["--max-payload", "1024"]);
    let mut raw = Raw::connect(&server, "u").await;
    // `data` of 2002 bytes: over max_payload, under max_payload + 4096.
    let data = "x".repeat(2000);
    let req = json!({"op":"publish","room":"big","data":data,"id":5});
    raw.send_json(&req).await;
    let err = raw.json().await;
    assert_eq!(err["op"], "error", "{err}");
    assert_eq!(err["code"], "payload_too_large", "{err}");
    assert_eq!(err["id"], 5, "{err}");
    assert!(!err["message"].as_str().unwrap().is_empty(), "{err}");
    // Still open: ping (frame and JSON).
    raw.ping_pong(b"still here").await;
    raw.send_json(&json!({"op":"ping","id":9})).await;
    assert_eq!(raw.json().await, json!({"op":"pong","id":9}));
    // Exactly max_payload bytes of data is fine (1022 + 2 quotes).
    let req = json!({"op":"publish","room":"big","data":"y".repeat(1022),"id":6});
    raw.send_json(&req).await;
    let ok = raw.json().await;
    assert_eq!(ok["op"], "ok", "{ok}");
    assert_eq!(ok["id"], 6, "{ok}");
    let stats = server.stats().await;
    assert_eq!(errors_of(&stats, raw.shard, "too_large"), 1, "{stats}");
}

// ----- chat-level errors (tokio-tungstenite) -------------------------------------

/// Sends `req` as text, expects an error with `code` echoing `id`.
async fn expect_error(c: &mut Client, req: Value, code: &str) -> Value {
    let id = req["id"].clone();
    c.send(req.clone()).await;
    let err = c.recv_main().await;
    assert_eq!(err["op"], "error", "{req} -> {err}");
    assert_eq!(err["code"], code, "{req} -> {err}");
    assert_eq!(err["id"], id, "{req} -> {err}");
    assert!(
        !err["message"].as_str().unwrap_or_default().is_empty(),
        "{err}"
    );
    err
}

/// The connection still answers pings with the id.
async fn still_alive(c: &mut Client) {
    c.send(json!({"op":"ping","id":9})).await;
    assert_eq!(c.recv_main().await, json!({"op":"pong","id":9}));
}

#[tokio::test]
async fn bad_json_and_unknown_op() {
    let server = Server::start(&[]);
    let mut c = Client::connect(&server, "carol").await;
    // Not JSON at all: no id can be echoed.
    c.ws.send(Message::Text("{not json".into())).await.unwrap();
    let err = c.recv_main().await;
    assert_eq!(err["op"], "error", "{err}");
    assert_eq!(err["code"], "bad_json", "{err}");
    assert!(err.get("id").is_none() || err["id"].is_null(), "{err}");
    still_alive(&mut c).await;
    // JSON without an op.
    expect_error(&mut c, json!({"id":4}), "bad_json").await;
    // Publish without data.
    expect_error(
        &mut c,
        json!({"op":"publish","room":"r","id":"p"}),
        "bad_json",
    )
    .await;
    still_alive(&mut c).await;
    expect_error(&mut c, json!({"op":"dance","id":"u1"}), "unknown_op").await;
    still_alive(&mut c).await;
    let stats = server.stats().await;
    assert_eq!(errors_of(&stats, c.shard, "bad_json"), 3, "{stats}");
    assert_eq!(errors_of(&stats, c.shard, "unknown_op"), 1, "{stats}");
}

/// A `data` with a lone surrogate escape, or a number beyond a 64-bit
/// float, would break every strict parser among the room's members: it is
/// refused, and nothing reaches them.
#[tokio::test]
async fn data_with_a_lone_surrogate_is_refused_and_never_delivered() {
    let server = Server::start(&[]);
    let mut p = Client::connect(&server, "poison").await;
    let mut m = Client::connect(&server, "member").await;
    m.join("victims").await;
    // Written by hand: a JSON encoder would not produce them.
    for text in [
        r#"{"op":"publish","room":"victims","data":"\ud30d\ude00","id":"x"}"#,
        r#"{"op":"publish","room":"victims","data":{"n":[1e999]},"id":"x"}"#,
    ] {
        p.ws.send(Message::Text(text.into())).await.unwrap();
        let err = p.recv_main().await;
        assert_eq!(
            (err["code"].as_str(), err["id"].as_str()),
            (Some("bad_json"), Some("x")),
            "{err}"
        );
        still_alive(&mut p).await;
    }
    p.send(json!({"op":"publish","room":"victims","data":"\u{1F600} fine"}))
        .await;
    let msg = m.recv_op("message").await;
    assert_eq!(
        (msg["seq"].as_u64(), msg["data"].as_str()),
        (Some(1), Some("\u{1F600} fine"))
    );
}

#[tokio::test]
async fn invalid_room_names() {
    let server = Server::start(&[]);
    let mut c = Client::connect(&server, "dave").await;
    let long = "r".repeat(129);
    let cases = [
        json!({"op":"join","room":"has space","id":1}),
        json!({"op":"join","room":long,"id":2}),
        json!({"op":"join","room":"","id":3}),
        json!({"op":"publish","room":"bad/slash","data":1,"id":4}),
        json!({"op":"join","id":5}),
    ];
    for req in &cases {
        expect_error(&mut c, req.clone(), "invalid_room").await;
        still_alive(&mut c).await;
    }
    // 128 bytes of every allowed character class is valid.
    let ok_name = format!("{}Az09_.:@-", "a".repeat(119));
    assert_eq!(ok_name.len(), 128);
    c.join(&ok_name).await;
    let stats = server.stats().await;
    assert_eq!(
        errors_of(&stats, c.shard, "invalid_room"),
        cases.len() as u64,
        "{stats}"
    );
}

#[tokio::test]
async fn not_member_for_leave_and_typing() {
    let server = Server::start(&[]);
    let mut c = Client::connect(&server, "erin").await;
    expect_error(
        &mut c,
        json!({"op":"leave","room":"lobby","id":"l1"}),
        "not_member",
    )
    .await;
    still_alive(&mut c).await;
    expect_error(
        &mut c,
        json!({"op":"typing","room":"lobby","state":true,"id":"t1"}),
        "not_member",
    )
    .await;
    still_alive(&mut c).await;
    // After joining, leave works; after leaving, it is an error again.
    c.join("lobby").await;
    c.send(json!({"op":"leave","room":"lobby","id":"l2"})).await;
    let ok = c.recv_main().await;
    assert_eq!(
        (ok["op"].as_str(), ok["id"].as_str()),
        (Some("ok"), Some("l2")),
        "{ok}"
    );
    expect_error(
        &mut c,
        json!({"op":"leave","room":"lobby","id":"l3"}),
        "not_member",
    )
    .await;
    let stats = server.stats().await;
    assert_eq!(errors_of(&stats, c.shard, "not_member"), 3, "{stats}");
}

#[tokio::test]
async fn too_many_rooms() {
    let server = Server::start(&["--max-rooms-per-conn", "2"]);
    let mut c = Client::connect(&server, "frank").await;
    c.join("one").await;
    c.join("two").await;
    expect_error(
        &mut c,
        json!({"op":"join","room":"three","id":33}),
        "too_many_rooms",
    )
    .await;
    still_alive(&mut c).await;
    // Re-joining a room already joined is not a new room.
    c.join("two").await;
    // Leaving one makes room for another.
    c.send(json!({"op":"leave","room":"one","id":"l"})).await;
    assert_eq!(c.recv_main().await["op"], "ok");
    c.join("three").await;
    let stats = server.stats().await;
    assert_eq!(errors_of(&stats, c.shard, "limit"), 1, "{stats}");
}

#[tokio::test]
async fn room_full() {
    let server = Server::start(&["--max-members-per-room", "1"]);
    let mut a = Client::connect(&server, "gina").await;
    let mut b = Client::connect(&server, "hank").await;
    a.join("solo").await;
    expect_error(
        &mut b,
        json!({"op":"join","room":"solo","id":"full"}),
        "room_full",
    )
    .await;
    still_alive(&mut b).await;
    // b is not a member: leaving is an error.
    expect_error(
        &mut b,
        json!({"op":"leave","room":"solo","id":"x"}),
        "not_member",
    )
    .await;
    // The member that got in is unaffected.
    still_alive(&mut a).await;
    let stats = server.stats().await;
    assert_eq!(errors_of(&stats, b.shard, "limit"), 1, "{stats}");
}

// ----- more handshake edges ---------------------------------------------------------

#[tokio::test]
async fn handshake_arriving_byte_by_byte_with_a_frame_behind_it() {
    let server = Server::start(&[]);
    let mut s = TcpStream::connect(server.ws).await.unwrap();
    s.set_nodelay(true).unwrap();
    let req = upgrade_request("GET /ws?user=slow HTTP/1.1", &[], &[]);
    for b in &req[..req.len() - 1] {
        s.write_all(&[*b]).await.unwrap();
        s.flush().await.unwrap();
    }
    // The last byte of the head and a ping request in one write.
    let mut tail = vec![req[req.len() - 1]];
    tail.extend(client_frame(0x81, br#"{"op":"ping","id":"early"}"#));
    s.write_all(&tail).await.unwrap();
    let mut raw = Raw::after_request(s).await;
    assert_eq!(raw.json().await["op"], "welcome");
    assert_eq!(raw.json().await, json!({"op":"pong","id":"early"}));
}

#[tokio::test]
async fn oversized_request_head_is_refused() {
    let server = Server::start(&[]);
    let pad = format!("X-Pad: {}", "a".repeat(9000));
    let r = http_exchange(&server, &upgrade_request("GET /ws HTTP/1.1", &[], &[&pad])).await;
    assert_eq!(r.status, 431, "{}", r.head);
    let stats = server.stats().await;
    assert_eq!(errors_total(&stats, "bad_handshake"), 1, "{stats}");
}

#[tokio::test]
async fn oversize_declared_length_is_closed_1009_from_the_header_alone() {
    let server = Server::start(&["--max-payload", "1024"]);
    let mut raw = Raw::connect(&server, "u").await;
    // A binary frame declaring 2^40 bytes; only the header is sent.
    let mut hdr = vec![0x82, 0x80 | 127];
    hdr.extend_from_slice(&(1u64 << 40).to_be_bytes());
    hdr.extend_from_slice(&[1, 2, 3, 4]);
    raw.send(&hdr).await;
    raw.expect_close_then_eof(1009).await;
}

#[tokio::test]
async fn echo_endpoint_is_off_unless_asked_for() {
    let server = Server::start(&[]);
    let mut s = TcpStream::connect(server.ws).await.unwrap();
    s.write_all(&upgrade_request("GET /echo HTTP/1.1", &[], &[]))
        .await
        .unwrap();
    let mut head = Vec::new();
    tokio::time::timeout(WAIT, s.read_to_end(&mut head))
        .await
        .unwrap()
        .unwrap();
    let head = String::from_utf8_lossy(&head);
    assert!(head.starts_with("HTTP/1.1 404"), "{head}");
    assert!(head.contains("echo = true"), "{head}");
}

#[tokio::test]
async fn echo_endpoint_echoes_text_and_binary() {
    let server = Server::start(&["--echo"]);
    let mut s = TcpStream::connect(server.ws).await.unwrap();
    s.write_all(&upgrade_request("GET /echo HTTP/1.1", &[], &[]))
        .await
        .unwrap();
    let mut raw = Raw::after_request(s).await;
    // No welcome on /echo: the first frame back is the echo.
    raw.send(&client_frame(0x81, "héllo".as_bytes())).await;
    let f = raw.frame().await;
    assert_eq!((f.b0, f.payload.as_slice()), (0x81, "héllo".as_bytes()));
    let big = vec![0xA5u8; 70_000];
    raw.send(&client_frame(0x82, &big)).await;
    let f = raw.frame().await;
    assert_eq!(f.b0, 0x82);
    assert!(f.payload == big, "binary echo differs");
    // Fragmented text comes back as one message.
    raw.send(&client_frame(0x01, b"frag")).await;
    raw.send(&client_frame(0x80, b"mented")).await;
    let f = raw.frame().await;
    assert_eq!((f.b0, f.payload.as_slice()), (0x81, &b"fragmented"[..]));
    raw.send(&client_frame(0x88, b"\x0f\xa0")).await; // 4000
    raw.expect_close_then_eof(4000).await;
}
