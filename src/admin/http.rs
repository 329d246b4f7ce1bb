//! The admin port's HTTP/1.1: a request head parsed with `httparse`, one
//! response, then the connection closes.

use std::io::{self, Read, Write};
use std::net::TcpStream;

/// Largest request head accepted.
const MAX_HEAD: usize = 8192;

/// Most request headers accepted.
const MAX_HEADERS: usize = 32;

/// A parsed request: what the admin routes look at.
#[derive(Debug, PartialEq, Eq)]
pub struct Request {
    /// `GET`, `HEAD`, ...
    pub method: String,
    /// The path, without the query.
    pub path: String,
    /// The query string, if any.
    pub query: Option<String>,
    /// The `Authorization` header, if any.
    pub authorization: Option<String>,
}

/// Why a request could not be read; `None` means the peer went away or
/// timed out, and gets no answer.
pub fn read_request(stream: &mut TcpStream) -> Result<Request, Option<Response>> {
    let mut buf = vec![0u8; MAX_HEAD];
    let mut len = 0;
    loop {
        match stream.read(&mut buf[len..]) {
            Ok(0) | Err(_) => return Err(None),
            Ok(n) => len += n,
        }
        match parse(&buf[..len]) {
            Ok(Some(req)) => return Ok(req),
            Ok(None) if len < buf.len() => {}
            Ok(None) => {
                return Err(Some(Response::text(
                    431,
                    "request header block too large\n",
                )))
            }
            Err(why) => return Err(Some(Response::text(400, &format!("bad request: {why}\n")))),
        }
    }
}

/// Parses a complete request head, or `None` if more bytes are needed.
pub fn parse(bytes: &[u8]) -> Result<Option<Request>, httparse::Error> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    if req.parse(bytes)?.is_partial() {
        return Ok(None);
    }
    let target = req.path.unwrap_or("/");
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, Some(q.to_string())),
        None => (target, None),
    };
    let authorization = req
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("authorization"))
        .map(|h| String::from_utf8_lossy(h.value).into_owned());
    Ok(Some(Request {
        method: req.method.unwrap_or("").to_string(),
        path: path.to_string(),
        query,
        authorization,
    }))
}

/// A response to write.
#[derive(Debug)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// `Content-Type`.
    pub content_type: &'static str,
    /// Extra headers.
    pub headers: Vec<(&'static str, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Response {
    /// A plain-text response.
    pub fn text(status: u16, body: &str) -> Self {
        Self::new(
            status,
            "text/plain; charset=utf-8",
            body.as_bytes().to_vec(),
        )
    }

    /// A response with a body of `content_type`.
    pub fn new(status: u16, content_type: &'static str, body: Vec<u8>) -> Self {
        Self {
            status,
            content_type,
            headers: Vec::new(),
            body,
        }
    }

    /// Writes the response; without the body for `HEAD`.
    pub fn write(&self, stream: &mut TcpStream, head_only: bool) -> io::Result<()> {
        let mut out = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n",
            self.status,
            reason(self.status),
            self.content_type,
            self.body.len()
        )
        .into_bytes();
        for (name, value) in &self.headers {
            out.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
        }
        out.extend_from_slice(b"\r\n");
        if !head_only {
            out.extend_from_slice(&self.body);
        }
        stream.write_all(&out)
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_heads_in_pieces() {
        let head = b"GET /stats?x=1 HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer t\r\n\r\n";
        for cut in 0..head.len() {
            assert_eq!(parse(&head[..cut]).unwrap(), None, "cut {cut}");
        }
        let req = parse(head).unwrap().unwrap();
        assert_eq!(req.method, "GET");
        assert_eq!(req.path, "/stats");
        assert_eq!(req.query.as_deref(), Some("x=1"));
        assert_eq!(req.authorization.as_deref(), Some("Bearer t"));
        assert!(parse(b"GET / HTTP/1.1\r\nBad Header\r\n\r\n").is_err());
    }
}
