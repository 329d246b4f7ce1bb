//! The HTTP/1.1 opening handshake (RFC 6455 §4.2), sans IO.
//!
//! [`parse_request`] parses the request head with `httparse` and separates
//! two kinds of failure: a byte stream that is not HTTP at all (or is too
//! large) is an `Err` and the connection should just be answered and
//! closed, while a well-formed HTTP request that is not a valid WebSocket
//! upgrade still yields a [`Request`] whose `upgrade` field carries the
//! reason. That lets the caller route first (unknown path → 404) and only
//! then report the upgrade problem (400, or 426 for the version).
//!
//! No subprotocols or extensions are negotiated: `Sec-WebSocket-Protocol`
//! and `Sec-WebSocket-Extensions` are ignored, so permessage-deflate is
//! never enabled.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use sha1::{Digest, Sha1};

/// Largest accepted request head (request line + headers + blank line).
pub const MAX_REQUEST_HEAD: usize = 8192;

/// Most headers accepted in one request.
const MAX_HEADERS: usize = 64;

/// The GUID appended to the client key (RFC 6455 §1.3).
const WS_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// Why a request could not be parsed or is not a valid WebSocket upgrade.
/// The `Display` text is suitable as a plain-text response body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeError {
    /// The request head did not end within [`MAX_REQUEST_HEAD`] bytes.
    #[error("request header block larger than 8192 bytes")]
    TooLarge,
    /// More request headers than this server accepts.
    #[error("too many request headers")]
    TooManyHeaders,
    /// The bytes are not a valid HTTP/1.x request head.
    #[error("malformed HTTP request: {0}")]
    Malformed(&'static str),
    /// The method is not GET.
    #[error("WebSocket upgrade requires the GET method")]
    MethodNotGet,
    /// The request is not HTTP/1.1.
    #[error("WebSocket upgrade requires HTTP/1.1")]
    NotHttp11,
    /// No `Host` header.
    #[error("missing Host header")]
    MissingHost,
    /// No `Upgrade` header containing the `websocket` token.
    #[error("missing or invalid Upgrade header (expected \"websocket\")")]
    NotWebSocketUpgrade,
    /// No `Connection` header containing the `upgrade` token.
    #[error("missing or invalid Connection header (expected \"Upgrade\")")]
    MissingConnectionUpgrade,
    /// `Sec-WebSocket-Version` missing or not 13.
    #[error("unsupported or missing Sec-WebSocket-Version (only 13 is supported)")]
    UnsupportedVersion,
    /// No `Sec-WebSocket-Key` header.
    #[error("missing Sec-WebSocket-Key header")]
    MissingKey,
    /// `Sec-WebSocket-Key` repeated or not the base64 encoding of 16 bytes.
    #[error("invalid Sec-WebSocket-Key (must be base64 of 16 bytes, sent once)")]
    InvalidKey,
}

impl HandshakeError {
    /// HTTP status to answer with: 431 for oversized heads, 426 for an
    /// unsupported WebSocket version (send it with the headers from
    /// [`extra_headers`](Self::extra_headers)), 400 otherwise.
    pub fn status(&self) -> u16 {
        match self {
            Self::TooLarge | Self::TooManyHeaders => 431,
            Self::UnsupportedVersion => 426,
            _ => 400,
        }
    }

    /// Headers the error response must carry (`Sec-WebSocket-Version: 13`
    /// for a version mismatch, RFC 6455 §4.4).
    pub fn extra_headers(&self) -> &'static [(&'static str, &'static str)] {
        match self {
            Self::UnsupportedVersion => &[("Sec-WebSocket-Version", "13")],
            _ => &[],
        }
    }

    /// The complete HTTP error response: [`status`](Self::status), the
    /// message as body and [`extra_headers`](Self::extra_headers).
    pub fn to_response(&self) -> Vec<u8> {
        http_response(self.status(), &self.to_string(), self.extra_headers())
    }
}

/// A parsed request head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The request method, e.g. `GET`.
    pub method: String,
    /// The request target up to (not including) `?`, not percent-decoded.
    pub path: String,
    /// The raw query string after `?`, if there was a `?`.
    pub query: Option<String>,
    /// `Ok` with the `Sec-WebSocket-Accept` value if this is a valid
    /// WebSocket upgrade, otherwise the first reason it is not.
    pub upgrade: Result<String, HandshakeError>,
    /// The `Origin` header (browsers send the page's), if any.
    pub origin: Option<String>,
}

/// Parses an HTTP request head from the start of `buf`.
///
/// Returns `Ok(None)` while the head is incomplete, and
/// `Ok(Some((request, n)))` once it is, where `n` is the length of the head
/// (the bytes after it, if any, already belong to the WebSocket stream).
/// An upgrade problem in a well-formed request is reported in
/// [`Request::upgrade`], not as an `Err`.
///
/// # Errors
///
/// [`HandshakeError::TooLarge`] once [`MAX_REQUEST_HEAD`] bytes have arrived
/// without the end of the head (or the head ends beyond it),
/// [`HandshakeError::TooManyHeaders`], or [`HandshakeError::Malformed`] if
/// the bytes are not an HTTP/1.x request. Answer with
/// [`HandshakeError::to_response`] and close.
pub fn parse_request(buf: &[u8]) -> Result<Option<(Request, usize)>, HandshakeError> {
    let window = &buf[..buf.len().min(MAX_REQUEST_HEAD)];
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let consumed = match req.parse(window) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() >= MAX_REQUEST_HEAD => {
            return Err(HandshakeError::TooLarge)
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(HandshakeError::TooManyHeaders),
        Err(e) => return Err(HandshakeError::Malformed(describe(e))),
    };
    let method = req.method.unwrap_or_default().to_owned();
    let target = req.path.unwrap_or_default();
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p.to_owned(), Some(q.to_owned())),
        None => (target.to_owned(), None),
    };
    let upgrade = check_upgrade(&method, req.version, req.headers);
    let origin = req
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("origin"))
        .map(|h| String::from_utf8_lossy(h.value).into_owned());
    Ok(Some((
        Request {
            method,
            path,
            query,
            upgrade,
            origin,
        },
        consumed,
    )))
}

fn describe(e: httparse::Error) -> &'static str {
    match e {
        httparse::Error::HeaderName => "invalid header name",
        httparse::Error::HeaderValue => "invalid header value",
        httparse::Error::NewLine => "invalid line ending",
        httparse::Error::Status => "invalid status",
        httparse::Error::Token => "invalid token",
        httparse::Error::TooManyHeaders => "too many headers",
        httparse::Error::Version => "invalid HTTP version",
    }
}

/// Checks the upgrade requirements in RFC 6455 §4.2.1 order.
fn check_upgrade(
    method: &str,
    version: Option<u8>,
    headers: &[httparse::Header<'_>],
) -> Result<String, HandshakeError> {
    if method != "GET" {
        return Err(HandshakeError::MethodNotGet);
    }
    if version != Some(1) {
        return Err(HandshakeError::NotHttp11);
    }
    let values = |name: &'static str| {
        headers
            .iter()
            .filter(move |h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value.trim_ascii())
    };
    if values("Host").next().is_none() {
        return Err(HandshakeError::MissingHost);
    }
    if !values("Upgrade").any(|v| has_token(v, b"websocket")) {
        return Err(HandshakeError::NotWebSocketUpgrade);
    }
    if !values("Connection").any(|v| has_token(v, b"upgrade")) {
        return Err(HandshakeError::MissingConnectionUpgrade);
    }
    let mut versions = values("Sec-WebSocket-Version").peekable();
    if versions.peek().is_none() || !versions.all(|v| v == b"13") {
        return Err(HandshakeError::UnsupportedVersion);
    }
    let mut keys = values("Sec-WebSocket-Key");
    let key = keys.next().ok_or(HandshakeError::MissingKey)?;
    if keys.next().is_some() || !is_valid_key(key) {
        return Err(HandshakeError::InvalidKey);
    }
    // `is_valid_key` accepted only base64 characters, which are ASCII.
    let key = std::str::from_utf8(key).map_err(|_| HandshakeError::InvalidKey)?;
    Ok(accept_key(key))
}

/// Whether a comma-separated header value contains `token`
/// (ASCII case-insensitive).
fn has_token(value: &[u8], token: &[u8]) -> bool {
    value
        .split(|&b| b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token))
}

/// A key must be the canonical base64 of exactly 16 bytes (24 characters).
fn is_valid_key(key: &[u8]) -> bool {
    let mut out = [0u8; 18];
    key.len() == 24 && STANDARD.decode_slice(key, &mut out) == Ok(16)
}

/// Computes `Sec-WebSocket-Accept` for a client's `Sec-WebSocket-Key`:
/// base64(SHA-1(key ++ GUID)).
pub fn accept_key(key: &str) -> String {
    let mut sha = Sha1::new();
    sha.update(key.as_bytes());
    sha.update(WS_GUID.as_bytes());
    STANDARD.encode(sha.finalize())
}

/// The `101 Switching Protocols` response completing the handshake.
pub fn response_101(accept: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {accept}\r\n\r\n"
    )
    .into_bytes()
}

/// A complete plain-text HTTP/1.1 response that closes the connection.
/// CR and LF are removed from `extra_headers` so they cannot inject lines.
pub fn http_response(status: u16, body: &str, extra_headers: &[(&str, &str)]) -> Vec<u8> {
    let mut head = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: text/plain; charset=utf-8\r\n\
         Content-Length: {}\r\nConnection: close\r\n",
        reason_phrase(status),
        body.len()
    );
    let clean = |s: &str| s.replace(['\r', '\n'], "");
    for (name, value) in extra_headers {
        head.push_str(&clean(name));
        head.push_str(": ");
        head.push_str(&clean(value));
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    let mut out = head.into_bytes();
    out.extend_from_slice(body.as_bytes());
    out
}

fn reason_phrase(status: u16) -> &'static str {
    match status {
        101 => "Switching Protocols",
        200 => "OK",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Content Too Large",
        426 => "Upgrade Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

/// The first value of `name` in a query string, percent- and
/// `+`-decoded (`application/x-www-form-urlencoded` rules).
pub fn query_param(query: &str, name: &str) -> Option<String> {
    form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

    fn request(lines: &[&str]) -> Vec<u8> {
        let mut s = lines.join("\r\n");
        s.push_str("\r\n\r\n");
        s.into_bytes()
    }

    fn good() -> Vec<&'static str> {
        vec![
            "GET /ws?room=lobby%20one&name=a+b HTTP/1.1",
            "Host: example.com",
            "Upgrade: websocket",
            "Connection: keep-alive, Upgrade",
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
            "Sec-WebSocket-Version: 13",
            "Sec-WebSocket-Extensions: permessage-deflate",
        ]
    }

    fn upgrade_of(lines: &[&str]) -> Result<String, HandshakeError> {
        let (req, _) = parse_request(&request(lines)).unwrap().unwrap();
        req.upgrade
    }

    /// `good()` with the header starting with `prefix` replaced (or
    /// removed when `with` is None).
    fn edit(prefix: &str, with: Option<&'static str>) -> Vec<&'static str> {
        let mut lines = good();
        let i = lines.iter().position(|l| l.starts_with(prefix)).unwrap();
        match with {
            Some(l) => lines[i] = l,
            None => {
                lines.remove(i);
            }
        }
        lines
    }

    #[test]
    fn rfc_accept_key() {
        assert_eq!(accept_key(KEY), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }

    #[test]
    fn valid_upgrade() {
        let mut bytes = request(&good());
        let head_len = bytes.len();
        bytes.extend_from_slice(&[0x81, 0x80, 1, 2, 3, 4]);
        let (req, n) = parse_request(&bytes).unwrap().unwrap();
        assert_eq!(n, head_len);
        assert_eq!(req.method, "GET");
        assert_eq!(req.path, "/ws");
        assert_eq!(req.query.as_deref(), Some("room=lobby%20one&name=a+b"));
        assert_eq!(req.upgrade, Ok("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=".to_owned()));
        let q = req.query.unwrap();
        assert_eq!(query_param(&q, "room").as_deref(), Some("lobby one"));
        assert_eq!(query_param(&q, "name").as_deref(), Some("a b"));
        assert_eq!(query_param(&q, "missing"), None);
    }

    #[test]
    fn header_names_and_tokens_are_case_insensitive() {
        let lines = [
            "GET / HTTP/1.1",
            "host: h",
            "upgrade: foo, WebSocket",
            "connection: UPGRADE",
            "sec-websocket-key:   dGhlIHNhbXBsZSBub25jZQ==  ",
            "sec-websocket-version: 13",
        ];
        assert!(upgrade_of(&lines).is_ok());
    }

    #[test]
    fn incomplete_request() {
        let bytes = request(&good());
        for end in 0..bytes.len() {
            assert_eq!(parse_request(&bytes[..end]), Ok(None), "prefix {end}");
        }
    }

    #[test]
    fn oversize_request() {
        let mut bytes = b"GET / HTTP/1.1\r\nX-Pad: ".to_vec();
        bytes.resize(MAX_REQUEST_HEAD - 1, b'a');
        assert_eq!(parse_request(&bytes), Ok(None));
        bytes.push(b'a');
        assert_eq!(parse_request(&bytes), Err(HandshakeError::TooLarge));
        // Complete, but the head ends past the limit.
        bytes.extend_from_slice(b"\r\n\r\n");
        assert_eq!(parse_request(&bytes), Err(HandshakeError::TooLarge));
        assert_eq!(HandshakeError::TooLarge.status(), 431);
    }

    #[test]
    fn too_many_headers() {
        let mut s = String::from("GET / HTTP/1.1\r\n");
        for i in 0..=MAX_HEADERS {
            s.push_str(&format!("X-{i}: v\r\n"));
        }
        s.push_str("\r\n");
        assert_eq!(
            parse_request(s.as_bytes()),
            Err(HandshakeError::TooManyHeaders)
        );
    }

    #[test]
    fn not_http() {
        let r = parse_request(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03");
        assert!(matches!(r, Err(HandshakeError::Malformed(_))), "{r:?}");
        let r = parse_request(b"GET / HTTP/1.1\r\nBad Header\r\n\r\n");
        assert!(matches!(r, Err(HandshakeError::Malformed(_))), "{r:?}");
    }

    #[test]
    fn each_bad_upgrade_reason() {
        use HandshakeError::*;
        let cases: Vec<(Vec<&str>, HandshakeError)> = vec![
            (edit("GET", Some("POST /ws HTTP/1.1")), MethodNotGet),
            (edit("GET", Some("GET /ws HTTP/1.0")), NotHttp11),
            (edit("Host", None), MissingHost),
            (edit("Upgrade", None), NotWebSocketUpgrade),
            (edit("Upgrade", Some("Upgrade: h2c")), NotWebSocketUpgrade),
            (
                edit("Upgrade", Some("Upgrade: websocket2")),
                NotWebSocketUpgrade,
            ),
            (edit("Connection", None), MissingConnectionUpgrade),
            (
                edit("Connection", Some("Connection: keep-alive")),
                MissingConnectionUpgrade,
            ),
            (edit("Sec-WebSocket-Version", None), UnsupportedVersion),
            (
                edit("Sec-WebSocket-Version", Some("Sec-WebSocket-Version: 8")),
                UnsupportedVersion,
            ),
            (edit("Sec-WebSocket-Key", None), MissingKey),
            (
                edit("Sec-WebSocket-Key", Some("Sec-WebSocket-Key: not-base64!!")),
                InvalidKey,
            ),
            // 15 bytes of base64.
            (
                edit(
                    "Sec-WebSocket-Key",
                    Some("Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAA"),
                ),
                InvalidKey,
            ),
            // 17 bytes.
            (
                edit(
                    "Sec-WebSocket-Key",
                    Some("Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAAA="),
                ),
                InvalidKey,
            ),
        ];
        for (lines, expected) in cases {
            assert_eq!(upgrade_of(&lines), Err(expected.clone()), "{lines:?}");
            assert_eq!(
                expected.status(),
                if expected == UnsupportedVersion {
                    426
                } else {
                    400
                }
            );
        }
        let mut dup = good();
        dup.push("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==");
        assert_eq!(upgrade_of(&dup), Err(InvalidKey));
    }

    #[test]
    fn plain_get_still_routes() {
        let (req, _) = parse_request(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(req.path, "/health");
        assert_eq!(req.query, None);
        assert_eq!(req.upgrade, Err(HandshakeError::NotWebSocketUpgrade));
    }

    #[test]
    fn responses() {
        let r = String::from_utf8(response_101("abc=")).unwrap();
        assert_eq!(
            r,
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: abc=\r\n\r\n"
        );
        let r = String::from_utf8(http_response(
            404,
            "no such path",
            &[("X-A", "1\r\nEvil: y")],
        ))
        .unwrap();
        assert!(r.starts_with("HTTP/1.1 404 Not Found\r\n"));
        assert!(r.contains("Content-Type: text/plain; charset=utf-8\r\n"));
        assert!(r.contains("Content-Length: 12\r\nConnection: close\r\n"));
        assert!(r.contains("X-A: 1Evil: y\r\n"));
        assert!(r.ends_with("\r\n\r\nno such path"));
        let r = String::from_utf8(HandshakeError::UnsupportedVersion.to_response()).unwrap();
        assert!(r.starts_with("HTTP/1.1 426 Upgrade Required\r\n"));
        assert!(r.contains("Sec-WebSocket-Version: 13\r\n"));
    }
}
