//! Test harness: starts the real `ringcast` binary on ephemeral loopback
//! ports and connects real clients (tokio-tungstenite, the redis crate).
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// How long any single expected event may take before a test fails.
pub const WAIT: Duration = Duration::from_secs(20);

/// A running server.
pub struct Server {
    child: Option<Child>,
    /// WebSocket address.
    pub ws: SocketAddr,
    /// RESP address.
    pub resp: SocketAddr,
    /// Admin HTTP address.
    pub admin: SocketAddr,
}

impl Server {
    /// Starts `ringcast serve --shards 2` (unless `extra` names another
    /// count) on ephemeral ports plus `extra` flags.
    pub fn start(extra: &[&str]) -> Server {
        let (server, mut stderr) = Self::start_with(extra, None);
        // The server's log goes to the test's output.
        std::thread::spawn(move || std::io::copy(&mut stderr, &mut std::io::stderr()));
        server
    }

    /// Like [`Server::start`], with the open-files limit (soft and hard) set
    /// to `nofile` when given; returns the server's stderr too.
    pub fn start_with(extra: &[&str], nofile: Option<u64>) -> (Server, std::process::ChildStderr) {
        let shards = if extra.contains(&"--shards") {
            None
        } else {
            Some(["--shards", "2"])
        };
        let mut args = vec![
            "serve",
            "--ws",
            "127.0.0.1:0",
            "--resp",
            "127.0.0.1:0",
            "--admin",
            "127.0.0.1:0",
            "--log",
            "warn",
        ];
        args.extend(shards.iter().flatten());
        // Tests drive far more traffic than a person: the rate limits are
        // off unless a test sets them.
        for flag in ["--limits-publish-rate", "--limits-join-rate"] {
            if !extra.contains(&flag) {
                args.extend([flag, "0"]);
            }
        }
        args.extend_from_slice(extra);
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_ringcast"));
        cmd.args(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(n) = nofile {
            use std::os::unix::process::CommandExt;
            // SAFETY: setrlimit is async-signal-safe; it runs in the child
            // between fork and exec.
            unsafe {
                cmd.pre_exec(move || {
                    let lim = libc::rlimit {
                        rlim_cur: n,
                        rlim_max: n,
                    };
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let mut child = cmd.spawn().expect("start ringcast");
        let stderr = child.stderr.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read the listening line");
        let field = |name: &str| -> SocketAddr {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(&format!("{name}=")))
                .unwrap_or_else(|| panic!("no {name}= in {line:?}"))
                .parse()
                .unwrap()
        };
        let server = Server {
            ws: field("ws"),
            resp: field("resp"),
            admin: field("admin"),
            child: Some(child),
        };
        (server, stderr)
    }

    /// Sends SIGTERM and waits for the process to exit.
    pub fn stop(mut self) -> ExitStatus {
        let mut child = self.child.take().unwrap();
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "server did not exit after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// `GET path` on the admin port: (status, body).
    pub async fn admin_get(&self, path: &str) -> (u16, String) {
        http_get(self.admin, path).await
    }

    /// `/stats` as JSON.
    pub async fn stats(&self) -> Value {
        let (status, body) = self.admin_get("/stats").await;
        assert_eq!(status, 200, "{body}");
        serde_json::from_str(&body).unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A plain HTTP/1.1 GET.
pub async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(WAIT, s.read_to_end(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&buf).to_string();
    let status = text.split_whitespace().nth(1).unwrap().parse().unwrap();
    let body = text
        .split_once("\r\n\r\n")
        .map(|x| x.1.to_string())
        .unwrap_or_default();
    (status, body)
}

/// A WebSocket chat client.
pub struct Client {
    /// The stream.
    pub ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    /// The shard it landed on (from the welcome).
    pub shard: u64,
    /// Its user name.
    pub user: String,
}

impl Client {
    /// Connects to `/ws?user=NAME` and reads the welcome.
    pub async fn connect(server: &Server, user: &str) -> Client {
        let url = format!("ws://{}/ws?user={user}", server.ws);
        let (ws, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("connect");
        Self::welcomed(ws, user).await
    }

    /// Like [`Client::connect`], with a small socket receive buffer, so
    /// what it does not read stays queued at the server.
    pub async fn connect_small_buffer(server: &Server, user: &str) -> Client {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        let stream = socket.connect(server.ws).await.unwrap();
        let url = format!("ws://{}/ws?user={user}", server.ws);
        let (ws, _) = tokio_tungstenite::client_async(url, MaybeTlsStream::Plain(stream))
            .await
            .expect("connect");
        Self::welcomed(ws, user).await
    }

    async fn welcomed(ws: WebSocketStream<MaybeTlsStream<TcpStream>>, user: &str) -> Client {
        let mut c = Client {
            ws,
            shard: 0,
            user: user.into(),
        };
        let welcome = c.recv().await;
        assert_eq!(welcome["op"], "welcome", "{welcome}");
        assert_eq!(welcome["user"], user);
        c.shard = welcome["shard"].as_u64().unwrap();
        c
    }

    /// Sends a JSON request.
    pub async fn send(&mut self, v: Value) {
        self.ws.send(Message::Text(v.to_string())).await.unwrap();
    }

    /// Receives the next JSON message.
    pub async fn recv(&mut self) -> Value {
        loop {
            let msg = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("timed out waiting for a message")
                .expect("stream ended")
                .expect("websocket error");
            match msg {
                Message::Text(t) => return serde_json::from_str(&t).unwrap(),
                Message::Ping(_) | Message::Pong(_) => continue,
                other => panic!("unexpected {other:?}"),
            }
        }
    }

    /// Receives until a message with `"op": op` arrives, skipping others
    /// (presence and typing events).
    pub async fn recv_op(&mut self, op: &str) -> Value {
        loop {
            let v = self.recv().await;
            if v["op"] == op {
                return v;
            }
        }
    }

    /// Receives the next message that is not a presence or typing event.
    pub async fn recv_main(&mut self) -> Value {
        loop {
            let v = self.recv().await;
            if v["op"] != "presence" && v["op"] != "typing" {
                return v;
            }
        }
    }

    /// Joins a room and waits for the ok; returns it.
    pub async fn join(&mut self, room: &str) -> Value {
        self.send(serde_json::json!({"op":"join","room":room,"id":"j"}))
            .await;
        let ok = self.recv_main().await;
        assert_eq!(ok["op"], "ok", "{ok}");
        assert_eq!(ok["room"], room);
        ok
    }
}

/// True when the command-line tool `name` is installed. When it is not, the
/// test that needs it says so and skips; under CI (`RINGCAST_CI` set,
/// where `.ci/run` installs the tools) it fails instead, so a missing tool
/// can never pass for a working feature.
pub fn have_tool(name: &str, package: &str) -> bool {
    let found = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {name}"))
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            std::env::var_os("RINGCAST_CI").is_none(),
            "{name} is not installed, and CI must run this test (Debian package {package})"
        );
        eprintln!("SKIPPED: {name} is not installed (Debian package {package})");
    }
    found
}

impl Client {
    /// Sends many requests in one write (the server reads them in one go).
    pub async fn send_burst(&mut self, requests: impl IntoIterator<Item = Value>) {
        for r in requests {
            self.ws.feed(Message::Text(r.to_string())).await.unwrap();
        }
        self.ws.flush().await.unwrap();
    }
}

/// Connects clients until at least `per_shard` are on each of `shards`
/// shards (the kernel spreads connections by hash), returning them all.
pub async fn clients_on_every_shard(
    server: &Server,
    shards: u64,
    per_shard: usize,
    prefix: &str,
) -> Vec<Client> {
    let mut out: Vec<Client> = Vec::new();
    let mut n = 0;
    while (0..shards).any(|s| out.iter().filter(|c| c.shard == s).count() < per_shard) {
        assert!(n < 2000, "could not get clients on every shard");
        let c = Client::connect(server, &format!("{prefix}{n}")).await;
        n += 1;
        if out.iter().filter(|x| x.shard == c.shard).count() < per_shard {
            out.push(c);
        }
    }
    out
}

/// Sums a per-shard counter from /stats.
pub fn per_shard(stats: &Value, field: &str) -> Vec<u64> {
    stats["shards"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s[field].as_u64().unwrap())
        .collect()
}

/// One shard's protocol-error counter of `kind` from /stats.
pub fn errors_of(stats: &Value, shard: u64, kind: &str) -> u64 {
    stats["shards"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["shard"].as_u64() == Some(shard))
        .unwrap_or_else(|| panic!("no shard {shard} in {stats}"))["errors"][kind]
        .as_u64()
        .unwrap_or_else(|| panic!("no errors.{kind} in {stats}"))
}

/// A request as clients send it: an array of bulk strings.
pub fn mb(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out
}
