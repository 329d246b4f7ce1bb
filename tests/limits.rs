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
