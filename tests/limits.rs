//! Running out of file descriptors: the server backs off, keeps serving the
//! connections it has, and accepts again once descriptors are free.

mod common;

use std::io::{BufRead, BufReader};

use common::*;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const UPGRADE: &[u8] =
    b"GET /ws?user=late HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

#[tokio::test]
async fn fd_exhaustion_backs_off_and_recovers() {
    let (server, stderr) = Server::start_with(&["--shards", "1"], Some(48));
    // Watch the log for the back-off warning.
    let (warned_tx, warned_rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let mut tx = Some(warned_tx);
        for line in BufReader::new(stderr).lines() {
            let line = line.unwrap_or_default();
            eprintln!("{line}");
            if line.contains("out of file descriptors") {
                if let Some(tx) = tx.take() {
                    let _ = tx.send(line);
                }
            }
        }
    });
    // 48 descriptors: the server's own (12 for one shard: stdio, rings,
    // listeners, admin, signals) leave room for about 36 connections. 10
    // chat clients plus 30 raw sockets exhaust them; the raw ones' upgrades
    // wait in the listen backlog while accept() fails, and all 30 fit once
    // the 10 chat clients are gone.
    let mut early = Vec::new();
    for i in 0..10 {
        early.push(Client::connect(&server, &format!("e{i}")).await);
    }
    let mut late = Vec::new();
    for _ in 0..30 {
        let mut s = tokio::net::TcpStream::connect(server.ws).await.unwrap();
        s.write_all(UPGRADE).await.unwrap();
        late.push(s);
    }
    let warning = tokio::time::timeout(WAIT, warned_rx)
        .await
        .expect("no back-off warning")
        .unwrap();
    assert!(
        warning.contains("existing connections keep being served"),
        "{warning}"
    );
    // The connections it has still work, end to end.
    early[0].join("still").await;
    early[1].join("still").await;
    early[0]
        .send(json!({"op":"publish","room":"still","data":"alive"}))
        .await;
    assert_eq!(early[1].recv_op("message").await["data"], "alive");
    // Free descriptors: every waiting client is then accepted and welcomed.
    drop(early);
    for s in late.iter_mut() {
        let mut got = Vec::new();
        let mut buf = [0u8; 1024];
        while !String::from_utf8_lossy(&got).contains("\"op\":\"welcome\"") {
            let n = tokio::time::timeout(WAIT, s.read(&mut buf))
                .await
                .expect("never accepted")
                .unwrap();
            assert!(n > 0, "closed: {}", String::from_utf8_lossy(&got));
            got.extend_from_slice(&buf[..n]);
        }
    }
    let stats = server.stats().await;
    assert!(
        stats["node"]["accept_fd_exhausted"].as_u64().unwrap() >= 1,
        "{stats}"
    );
}

/// Connects to `to` from the loopback address `from` (any of 127/8).
async fn connect_from(from: &str, to: std::net::SocketAddr) -> tokio::net::TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(format!("{from}:0").parse().unwrap()).unwrap();
    socket.connect(to).await.unwrap()
}

/// The first 12 bytes the server answers an upgrade with.
async fn upgrade_status(s: &mut tokio::net::TcpStream) -> String {
    s.write_all(UPGRADE).await.unwrap();
    let mut head = [0u8; 12];
    tokio::time::timeout(WAIT, s.read_exact(&mut head))
        .await
        .unwrap()
        .unwrap();
    String::from_utf8_lossy(&head).into_owned()
}

#[tokio::test]
async fn connections_per_address_are_limited_and_freed() {
    let server = Server::start(&["--max-connections-per-ip", "3"]);
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut s = connect_from("127.0.0.1", server.ws).await;
        assert_eq!(upgrade_status(&mut s).await, "HTTP/1.1 101");
        held.push(s);
    }
    // A fourth from the same address is answered 503 before it says
    // anything; another address still gets in.
    let mut fourth = connect_from("127.0.0.1", server.ws).await;
    let mut head = vec![0u8; 12];
    tokio::time::timeout(WAIT, fourth.read_exact(&mut head))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&head, b"HTTP/1.1 503");
    let mut other = connect_from("127.0.0.2", server.ws).await;
    assert_eq!(upgrade_status(&mut other).await, "HTTP/1.1 101");
    let stats = server.stats().await;
    assert_eq!(stats["node"]["conns_refused"], 1, "{stats}");
    // A place frees when a connection goes.
    drop(held.pop());
    let mut again = None;
    for _ in 0..100 {
        let mut s = connect_from("127.0.0.1", server.ws).await;
        let mut head = [0u8; 12];
        let refused = tokio::time::timeout(
            std::time::Duration::from_millis(200),
            s.read_exact(&mut head),
        )
        .await;
        if refused.is_err() {
            assert_eq!(upgrade_status(&mut s).await, "HTTP/1.1 101");
            again = Some(s);
            break;
        }
    }
    assert!(again.is_some(), "the freed place is given again");
}

#[tokio::test]
async fn an_idle_resp_client_is_closed_and_a_subscriber_is_not() {
    let server = Server::start(&["--resp-idle-timeout-ms", "300"]);
    let mut idle = tokio::net::TcpStream::connect(server.resp).await.unwrap();
    let mut sub = tokio::net::TcpStream::connect(server.resp).await.unwrap();
    sub.write_all(b"SUBSCRIBE quiet\r\n").await.unwrap();
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(WAIT, sub.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert!(buf[..n].starts_with(b"*3\r\n$9\r\nsubscribe"));
    // The idle one is closed (EOF) within the timeout and a sweep.
    let mut rest = Vec::new();
    tokio::time::timeout(WAIT, idle.read_to_end(&mut rest))
        .await
        .expect("closed")
        .unwrap();
    let stats = server.stats().await;
    assert_eq!(stats["node"]["idle_closes"], 1, "{stats}");
    // The subscriber, as quiet, still answers.
    sub.write_all(b"PING\r\n").await.unwrap();
    let n = tokio::time::timeout(WAIT, sub.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&buf[..n], b"*2\r\n$4\r\npong\r\n$0\r\n\r\n");
}

/// Accepted sockets carry TCP keepalive (seen in `ss -o` as a keepalive
/// timer on the server's side of the connection).
#[tokio::test]
async fn accepted_sockets_have_keepalive() {
    if !have_tool("ss", "iproute2") {
        return;
    }
    let server = Server::start(&["--tcp-keepalive-s", "77"]);
    let c = Client::connect(&server, "k").await;
    let port = server.ws.port();
    let out = std::process::Command::new("ss")
        .args([
            "-tnoH",
            "state",
            "established",
            &format!("( sport = :{port} )"),
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("keepalive"), "{text}");
    drop(c);
}
