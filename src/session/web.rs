//! The WebSocket port's pages: the chat page at `GET /` and the client
//! library at `GET /ringcast.js`, so that a browser pointed at the server
//! has a working chat with nothing else installed.
//!
//! The files live in `clients/` and are embedded in the binary
//! (`include_bytes!`): nothing is read from disk at run time and there is
//! no build step. Every response carries a strict Content-Security-Policy
//! (the page runs only its own scripts and connects only to WebSockets),
//! an `ETag` computed at compile time and `Cache-Control: no-cache`, so a
//! browser revalidates (a `304`, no body) and picks up a new binary's files
//! at once. One request per connection (`Connection: close`).

use std::os::fd::AsRawFd;
use std::time::Duration;

use monoio::net::TcpStream;

use crate::proto::ws;
use crate::shard::Shard;

/// What the pages may do: load their own scripts and styles, open
/// WebSockets, nothing else (no inline script, no other origin, no frames).
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    connect-src 'self' ws: wss:; img-src 'self' data:; base-uri 'none'; \
    form-action 'none'; frame-ancestors 'none'";

/// An embedded file.
struct Asset {
    /// The request path that serves it.
    path: &'static str,
    /// Its `Content-Type`.
    content_type: &'static str,
    /// Its bytes.
    body: &'static [u8],
    /// FNV-1a of the bytes: the `ETag`.
    etag: u64,
    /// Any origin may load it (`Access-Control-Allow-Origin: *`): the
    /// library, so that a page elsewhere can `import()` it.
    shared: bool,
}

macro_rules! asset {
    ($path:literal, $type:expr, $file:literal, $shared:expr) => {{
        const BODY: &[u8] = include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/", $file));
        Asset {
            path: $path,
            content_type: $type,
            body: BODY,
            etag: fnv1a(BODY),
            shared: $shared,
        }
    }};
}

const HTML: &str = "text/html; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";

/// The pages, by path.
const ASSETS: &[Asset] = &[
    asset!("/", HTML, "clients/chat/index.html", false),
    asset!("/app.js", JS, "clients/chat/app.js", false),
    asset!("/style.css", CSS, "clients/chat/style.css", false),
    asset!("/ringcast.js", JS, "clients/js/ringcast.js", true),
];

const fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut i = 0;
    while i < bytes.len() {
        hash ^= bytes[i] as u64;
        hash = hash.wrapping_mul(0x0100_0000_01b3);
        i += 1;
    }
    hash
}

/// The response to `req` when its path is a page, `None` otherwise (the
/// request is then a WebSocket upgrade, or a 404). `head` is the request
/// head as it arrived, for `If-None-Match`.
pub fn page(req: &ws::Request, head: &[u8]) -> Option<Vec<u8>> {
    let asset = ASSETS.iter().find(|a| a.path == req.path)?;
    let head_only = match req.method.as_str() {
        "GET" => false,
        "HEAD" => true,
        _ => {
            return Some(ws::http_response(
                405,
                "this path takes GET or HEAD\n",
                &[("Allow", "GET, HEAD")],
            ))
        }
    };
    let etag = format!("\"{:016x}\"", asset.etag);
    let fresh = if_none_match(head)
        .is_some_and(|tags| tags.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    let status = if fresh { "304 Not Modified" } else { "200 OK" };
    let mut out = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {}\r\nContent-Length: {}\r\nETag: {etag}\r\n\
         Cache-Control: no-cache\r\nContent-Security-Policy: {CSP}\r\n\
         X-Content-Type-Options: nosniff\r\nReferrer-Policy: no-referrer\r\n\
         {}Connection: close\r\n\r\n",
        asset.content_type,
        if fresh { 0 } else { asset.body.len() },
        if asset.shared {
            "Access-Control-Allow-Origin: *\r\n"
        } else {
            ""
        },
    )
    .into_bytes();
    if !head_only && !fresh {
        out.extend_from_slice(asset.body);
    }
    Some(out)
}

/// The `If-None-Match` header of a complete request head.
fn if_none_match(head: &[u8]) -> Option<String> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut req = httparse::Request::new(&mut headers);
    req.parse(head).ok()?;
    req.headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("if-none-match"))
        .map(|h| String::from_utf8_lossy(h.value).into_owned())
}

/// Writes `response` whole, waiting for the socket where it must (a page
/// is larger than a socket buffer may take at once), within the handshake
/// timeout; then ends the connection.
pub async fn send(shard: &Shard, stream: &TcpStream, response: &[u8]) {
    let deadline = Duration::from_millis(shard.cfg.handshake_timeout_ms);
    let fd = stream.as_raw_fd();
    let _ = monoio::time::timeout(deadline, async {
        let mut sent = 0;
        while sent < response.len() {
            let rest = &response[sent..];
            // SAFETY: a non-blocking send from a live buffer on an fd the
            // stream owns.
            let n = unsafe {
                libc::send(
                    fd,
                    rest.as_ptr() as *const libc::c_void,
                    rest.len(),
                    libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
                )
            };
            if n > 0 {
                sent += n as usize;
                shard.stats.bytes_out.add(n as u64);
                continue;
            }
            let err = std::io::Error::last_os_error();
            match err.kind() {
                std::io::ErrorKind::Interrupted => {}
                std::io::ErrorKind::WouldBlock => {
                    if stream.writable(false).await.is_err() {
                        return;
                    }
                }
                _ => return,
            }
        }
    })
    .await;
    // SAFETY: shutting down the write side of an fd the stream owns.
    unsafe { libc::shutdown(fd, libc::SHUT_WR) };
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(head: &str) -> (ws::Request, Vec<u8>) {
        let bytes = head.replace('\n', "\r\n").into_bytes();
        let (req, _) = ws::parse_request(&bytes).unwrap().unwrap();
        (req, bytes)
    }

    fn answer(head: &str) -> Option<String> {
        let (req, bytes) = request(head);
        page(&req, &bytes).map(|r| String::from_utf8(r).unwrap())
    }

    #[test]
    fn serves_each_page_with_its_type_and_policy() {
        for (path, ty, file) in [
            ("/", "text/html", "clients/chat/index.html"),
            ("/app.js", "text/javascript", "clients/chat/app.js"),
            ("/style.css", "text/css", "clients/chat/style.css"),
            ("/ringcast.js", "text/javascript", "clients/js/ringcast.js"),
        ] {
            let r = answer(&format!("GET {path} HTTP/1.1\nHost: x\n\n")).unwrap();
            let (head, body) = r.split_once("\r\n\r\n").unwrap();
            assert!(head.starts_with("HTTP/1.1 200 OK"), "{path}: {head}");
            assert!(head.contains(&format!("Content-Type: {ty}")), "{path}");
            assert!(head.contains("Cache-Control: no-cache"), "{path}");
            assert!(head.contains(&format!("Content-Security-Policy: {CSP}")));
            let on_disk = std::fs::read_to_string(file).unwrap();
            assert_eq!(body, on_disk, "{path} is {file}");
            assert!(head.contains(&format!("Content-Length: {}", on_disk.len())));
            let shared = head.contains("Access-Control-Allow-Origin: *");
            assert_eq!(shared, path == "/ringcast.js", "{path}");
        }
    }

    #[test]
    fn other_paths_are_not_pages() {
        assert!(answer("GET /ws HTTP/1.1\nHost: x\n\n").is_none());
        assert!(answer("GET /index.htm HTTP/1.1\nHost: x\n\n").is_none());
    }

    #[test]
    fn revalidation_head_and_methods() {
        let r = answer("GET /ringcast.js HTTP/1.1\nHost: x\n\n").unwrap();
        let etag = r
            .lines()
            .find_map(|l| l.strip_prefix("ETag: "))
            .unwrap()
            .to_string();
        let again = answer(&format!(
            "GET /ringcast.js HTTP/1.1\nHost: x\nIf-None-Match: W/\"x\", {etag}\n\n"
        ))
        .unwrap();
        assert!(again.starts_with("HTTP/1.1 304 Not Modified"), "{again}");
        assert!(again.ends_with("\r\n\r\n"), "no body");
        let stale = answer("GET /ringcast.js HTTP/1.1\nHost: x\nIf-None-Match: \"0\"\n\n").unwrap();
        assert!(stale.starts_with("HTTP/1.1 200 OK"));
        let head = answer("HEAD / HTTP/1.1\nHost: x\n\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 200 OK") && head.ends_with("\r\n\r\n"));
        let post = answer("POST / HTTP/1.1\nHost: x\nContent-Length: 0\n\n").unwrap();
        assert!(post.starts_with("HTTP/1.1 405") && post.contains("Allow: GET, HEAD"));
    }
}
