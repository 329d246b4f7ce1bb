//! The pages the WebSocket port serves itself: the chat page and the
//! client library.

mod common;

use common::{http_get, Client, Server, WAIT};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpSocket;

/// A raw exchange: the head and the body, read to the end of the stream
/// through a receive buffer smaller than the pages.
async fn fetch(addr: std::net::SocketAddr, head: &str) -> (String, Vec<u8>) {
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(2048).unwrap();
    let mut s = socket.connect(addr).await.unwrap();
    s.write_all(head.replace('\n', "\r\n").as_bytes())
        .await
        .unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(WAIT, s.read_to_end(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let body = buf.split_off(end);
    (String::from_utf8(buf).unwrap(), body)
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(": "))
}

#[tokio::test]
async fn the_chat_page_and_the_library_are_served_whole() {
    let server = Server::start(&[]);
    let (head, body) = fetch(server.ws, "GET / HTTP/1.1\nHost: x\n\n").await;
    assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
    assert_eq!(
        header(&head, "Content-Type"),
        Some("text/html; charset=utf-8")
    );
    assert!(header(&head, "Content-Security-Policy")
        .unwrap()
        .contains("script-src 'self'"));
    assert!(String::from_utf8_lossy(&body).contains("/app.js"));

    let (head, body) = fetch(server.ws, "GET /ringcast.js HTTP/1.1\nHost: x\n\n").await;
    let file = std::fs::read("clients/js/ringcast.js").unwrap();
    assert_eq!(body, file, "{head}");
    assert_eq!(
        header(&head, "Content-Type"),
        Some("text/javascript; charset=utf-8")
    );
    let etag = header(&head, "ETag").unwrap();
    let (again, body) = fetch(
        server.ws,
        &format!("GET /ringcast.js HTTP/1.1\nHost: x\nIf-None-Match: {etag}\n\n"),
    )
    .await;
    assert!(again.starts_with("HTTP/1.1 304"), "{again}");
    assert!(body.is_empty());

    // The chat endpoint is untouched, and pages are not handshake errors.
    let mut c = Client::connect(&server, "ann").await;
    c.join("lobby").await;
    assert_eq!(http_get(server.ws, "/nope").await.0, 404);
    let stats = server.stats().await;
    assert_eq!(stats["node"]["protocol_errors"], 1, "only the 404: {stats}");
}
