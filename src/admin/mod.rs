//! The admin HTTP surface: `/stats` (JSON), `/metrics` (Prometheus text) and
//! `/healthz`, served from threads of their own so that nothing on a
//! shard's hot path ever waits for an operator.
//!
//! - `mod.rs`: the listener and the routes.
//! - [`http`]: reading a request head, writing a response.
//! - [`stats`]: the documents, from the shards' counters.
//! - [`dashboard`]: the live dashboard page at `/`, drawn from `/stats`.
//!
//! Each connection is served on a short-lived thread of its own, at most
//! [`MAX_CONCURRENT`] at once (more get a 503 at once), each read and write
//! bounded by [`IO_TIMEOUT`]: a slow client delays only itself.

pub mod dashboard;
pub mod http;
pub mod stats;

use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::shard::stats::ShardStats;
use http::Response;

/// Admin connections served at once.
pub const MAX_CONCURRENT: usize = 64;

/// How long one read or write on an admin connection may take.
pub const IO_TIMEOUT: Duration = Duration::from_secs(2);

/// What the admin threads know about the server.
pub struct Admin {
    /// One entry per shard, by id.
    pub shards: Vec<Arc<ShardStats>>,
    /// When the server started.
    pub started: Instant,
    /// The bearer token every route but `/healthz` and `/readyz` needs,
    /// if set.
    pub token: Option<String>,
    /// Cluster mode: `/readyz` also needs every shard's Redis links up.
    pub clustered: bool,
}

/// Counts a connection being served for as long as it lives.
struct Serving(Arc<AtomicUsize>);

impl Drop for Serving {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Admin {
    fn uptime_s(&self) -> u64 {
        self.started.elapsed().as_secs()
    }

    fn respond(&self, path: &str) -> Response {
        if let Some(page) = dashboard::page(path) {
            return page;
        }
        let shards = &self.shards;
        match path {
            "/stats" => {
                let body = stats::stats(shards, self.started.elapsed()).to_string() + "\n";
                Response::new(200, "application/json", body.into_bytes())
            }
            "/metrics" => Response::new(
                200,
                "text/plain; version=0.0.4",
                stats::metrics(shards, self.uptime_s()).into_bytes(),
            ),
            "/healthz" if stats::healthy(shards) => Response::text(200, "ok\n"),
            "/healthz" => Response::text(503, "a shard has not answered within 1 s\n"),
            "/readyz" => match stats::ready(shards, self.clustered) {
                Ok(()) => Response::text(200, "ready\n"),
                Err(why) => Response::text(503, &format!("{why}\n")),
            },
            _ => Response::text(
                404,
                "not found: try / (the dashboard), /stats, /metrics, /healthz or /readyz\n",
            ),
        }
    }

    /// True when the request may see `path`: `/healthz` and `/readyz`
    /// always (load balancers), and the dashboard's files (they hold no
    /// data: a browser cannot send a bearer header when it loads a page,
    /// and the page sends the token to `/stats` itself); the rest with the
    /// admin token when one is set.
    fn authorized(&self, req: &http::Request) -> bool {
        let Some(token) = &self.token else {
            return true;
        };
        if req.path == "/healthz" || req.path == "/readyz" || dashboard::is_page(&req.path) {
            return true;
        }
        let given = req
            .authorization
            .as_deref()
            .and_then(|h| h.strip_prefix("Bearer "))
            .unwrap_or("");
        // Compared in time that does not depend on where they differ.
        given.len() == token.len()
            && given
                .bytes()
                .zip(token.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    }

    fn handle(&self, mut stream: TcpStream) {
        let _ = stream.set_read_timeout(Some(IO_TIMEOUT));
        let _ = stream.set_write_timeout(Some(IO_TIMEOUT));
        let (response, head_only) = match http::read_request(&mut stream) {
            Ok(req) if !self.authorized(&req) => {
                let mut r = Response::text(
                    401,
                    "this route needs Authorization: Bearer <admin_token>\n",
                );
                r.headers
                    .push(("WWW-Authenticate", "Bearer realm=\"ringcast\"".into()));
                (r, false)
            }
            Ok(req) if req.method == "GET" || req.method == "HEAD" => {
                (self.respond(&req.path), req.method == "HEAD")
            }
            Ok(_) => (Response::text(405, "only GET\n"), false),
            Err(Some(response)) => (response, false),
            Err(None) => return,
        };
        let _ = response.write(&mut stream, head_only);
    }

    /// Serves requests until the process ends.
    pub fn serve(self, listener: TcpListener) {
        let admin = Arc::new(self);
        let serving = Arc::new(AtomicUsize::new(0));
        for stream in listener.incoming() {
            let mut stream = match stream {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "admin accept failed");
                    std::thread::sleep(Duration::from_millis(100));
                    continue;
                }
            };
            if serving.fetch_add(1, Ordering::Relaxed) >= MAX_CONCURRENT {
                serving.fetch_sub(1, Ordering::Relaxed);
                let _ = stream.set_write_timeout(Some(IO_TIMEOUT));
                let busy = Response::text(503, "too many admin requests at once\n");
                let _ = busy.write(&mut stream, false);
                continue;
            }
            let guard = Serving(serving.clone());
            let admin = admin.clone();
            let spawned = std::thread::Builder::new()
                .name("admin-conn".into())
                .stack_size(256 * 1024)
                .spawn(move || {
                    let _guard = guard;
                    admin.handle(stream);
                });
            if let Err(e) = spawned {
                tracing::warn!(error = %e, "cannot start an admin thread");
            }
        }
    }
}
