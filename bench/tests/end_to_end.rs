//! End-to-end: the generator against real servers on loopback, checking that
//! the JSON record's counts are exact (publishes × members = deliveries, none
//! lost, duplicated or out of order). Counts only: nothing here depends on
//! how fast the machine is.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Kills the server when the test ends, however it ends.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_listening(port: u16, server: &mut Server) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Ok(Some(status)) = server.0.try_wait() {
            panic!("server exited early: {status}");
        }
        assert!(Instant::now() < deadline, "nothing listening on {port}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs a small fixed scenario and returns the record.
fn run_scenario(target: &str, port: u16, extra: &[&str]) -> serde_json::Value {
    run_scenario_at(target, &format!("127.0.0.1:{port}"), extra)
}

/// As [`run_scenario`], against `addr` (several, comma-separated: the nodes
/// of a cluster).
fn run_scenario_at(target: &str, addr: &str, extra: &[&str]) -> serde_json::Value {
    let out = std::env::temp_dir().join(format!(
        "rcb-e2e-{target}-{}-{}.json",
        std::process::id(),
        addr.replace([':', ',', '.'], "_")
    ));
    let status = Command::new(env!("CARGO_BIN_EXE_ringcast-bench"))
        .args([
            "run",
            "--target",
            target,
            "--addr",
            addr,
            "--scenario",
            "e2e",
        ])
        .args(["--rooms", "3", "--publishers", "6"])
        .args(if extra.contains(&"--connections") {
            &[][..]
        } else {
            &["--members", "5"][..]
        })
        .args(["--rate", "60", "--size", "120"])
        .args([
            "--warmup",
            "0.2",
            "--duration",
            "1",
            "--drain",
            "10",
            "--connect-timeout",
            "15",
            "--quiet",
        ])
        .args(extra)
        .arg("--out")
        .arg(&out)
        .stdout(Stdio::null())
        .status()
        .expect("run ringcast-bench");
    assert!(status.success(), "generator failed against {target}");
    let rec: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    std::fs::remove_file(&out).ok();
    rec
}

fn check_exact(rec: &serde_json::Value, members: u64) {
    let n = |k: &str| {
        rec[k]
            .as_u64()
            .unwrap_or_else(|| panic!("{k} missing in {rec}"))
    };
    assert_eq!(n("connections"), 15, "{rec}");
    let published = n("published");
    assert!(published >= 60, "published {published}");
    assert_eq!(n("expected"), published * members, "{rec}");
    assert_eq!(n("delivered"), published * members, "{rec}");
    for k in [
        "lost",
        "duplicated",
        "reordered",
        "seq_anomalies",
        "unparsed",
        "server_errors",
        "publish_skipped",
        "disconnects",
    ] {
        assert_eq!(n(k), 0, "{k} in {rec}");
    }
    assert!(n("latency_samples") > 0);
}

#[test]
fn exact_counts_against_the_ceiling_server() {
    let port = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_ringcast-bench"))
        .args([
            "ceiling",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--entries",
            "256",
        ])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut server = Server(child);
    wait_listening(port, &mut server);
    let rec = run_scenario("ceiling", port, &[]);
    check_exact(&rec, 5);
}

/// Finds the ringcast binary: `RINGCAST_BIN`, then the workspace's target
/// directories, else builds it.
fn ringcast_bin() -> PathBuf {
    if let Ok(p) = std::env::var("RINGCAST_BIN") {
        return PathBuf::from(p);
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf();
    let mut dirs = vec![];
    if let Ok(t) = std::env::var("CARGO_TARGET_DIR") {
        dirs.push(PathBuf::from(t));
    }
    dirs.push(root.join("target"));
    for d in &dirs {
        for profile in ["release", "debug"] {
            let p = d.join(profile).join("ringcast");
            if p.exists() {
                return p;
            }
        }
    }
    let status = Command::new(env!("CARGO"))
        .args(["build", "--bin", "ringcast"])
        .current_dir(&root)
        .status()
        .expect("run cargo build --bin ringcast");
    assert!(status.success(), "cargo build --bin ringcast failed");
    dirs[0].join("debug").join("ringcast")
}

fn start_ringcast(shards: u32) -> (Server, u16, u16) {
    start_ringcast_with(shards, &[])
}

fn start_ringcast_with(shards: u32, flags: &[&str]) -> (Server, u16, u16) {
    let (ws, resp, admin) = (free_port(), free_port(), free_port());
    let child = Command::new(ringcast_bin())
        .args(["serve", "--shards", &shards.to_string()])
        .args(flags)
        .args([
            "--ws",
            &format!("127.0.0.1:{ws}"),
            "--resp",
            &format!("127.0.0.1:{resp}"),
        ])
        .args(["--admin", &format!("127.0.0.1:{admin}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start ringcast");
    let mut server = Server(child);
    wait_listening(ws, &mut server);
    wait_listening(resp, &mut server);
    (server, ws, resp)
}

#[test]
fn exact_counts_against_ringcast_ws_and_resp() {
    for shards in [1, 2] {
        let (_server, ws, resp) = start_ringcast(shards);
        let rec = run_scenario("ringcast-ws", ws, &["--shards", &shards.to_string()]);
        check_exact(&rec, 5);
        // Over RESP, publishers use connections of their own: 15 members + 6 publishers.
        let rec = run_scenario("ringcast-resp", resp, &[]);
        let n = |k: &str| rec[k].as_u64().unwrap();
        assert_eq!(n("connections"), 21, "{rec}");
        assert_eq!(n("delivered"), n("published") * 5, "{rec}");
        assert_eq!(
            (n("lost"), n("duplicated"), n("reordered")),
            (0, 0, 0),
            "{rec}"
        );
        if shards == 2 {
            // Every room's members on its home shard: counts stay exact even
            // though rooms fill unevenly (connections land on shards at random).
            let rec = run_scenario(
                "ringcast-ws",
                ws,
                &[
                    "--shards",
                    "2",
                    "--shard-local",
                    "--connections",
                    "24",
                    "--local-members",
                    "5",
                ],
            );
            let n = |k: &str| rec[k].as_u64().unwrap();
            assert_eq!(n("connections"), 24, "{rec}");
            assert!(n("expected") > 0, "{rec}");
            assert_eq!(n("delivered"), n("expected"), "{rec}");
            let bad = (
                n("lost"),
                n("duplicated"),
                n("reordered"),
                n("seq_anomalies"),
            );
            assert_eq!(bad, (0, 0, 0, 0), "{rec}");
        }
    }
}

fn test_key(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/keys")
        .join(name)
        .to_string_lossy()
        .into_owned()
}

/// An idle run of `n` sockets with `extra`; the record, or `None` when the
/// generator failed (no socket became ready).
fn idle_run(port: u16, n: u32, extra: &[&str]) -> Option<serde_json::Value> {
    let out = std::env::temp_dir().join(format!("rcb-e2e-idle-{}-{port}.json", std::process::id()));
    std::fs::remove_file(&out).ok();
    let status = Command::new(env!("CARGO_BIN_EXE_ringcast-bench"))
        .args([
            "run",
            "--target",
            "ringcast-ws",
            "--addr",
            &format!("127.0.0.1:{port}"),
        ])
        .args([
            "--scenario",
            "storm",
            "--rooms",
            "0",
            "--idle",
            "--duration",
            "0.2",
        ])
        .args([
            "--connections",
            &n.to_string(),
            "--connect-rate",
            "0",
            "--connect-timeout",
            "15",
        ])
        .args(["--quiet"])
        .args(extra)
        .arg("--out")
        .arg(&out)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("run ringcast-bench");
    let rec = status
        .success()
        .then(|| serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap());
    std::fs::remove_file(&out).ok();
    rec
}

#[test]
fn exact_counts_with_jwt_tokens() {
    const SECRET: &str = "e2e-secret-0123456789abcdef0123456789";
    let public = test_key("ec_pub.pem");
    let private = test_key("ec.pem");
    let (_server, ws, _) = start_ringcast_with(
        1,
        &[
            "--auth-mode",
            "jwt",
            "--auth-hmac-secret",
            SECRET,
            "--auth-public-key-file",
            &public,
            "--auth-algorithms",
            "HS256,ES256",
        ],
    );
    // HS256 in the URL, ES256 in the first frame: counts exact either way.
    let rec = run_scenario("ringcast-ws", ws, &["--token-hs256-secret", SECRET]);
    check_exact(&rec, 5);
    assert!(
        rec["auth"].as_str().unwrap().contains("HS256 via query"),
        "{rec}"
    );
    let rec = run_scenario(
        "ringcast-ws",
        ws,
        &["--token-es256-key", &private, "--token-via", "frame"],
    );
    check_exact(&rec, 5);
    // Idle sockets are ready on their welcome: every good token counts...
    let rec = idle_run(ws, 20, &["--token-hs256-secret", SECRET]).expect("idle with tokens");
    assert_eq!(rec["connect"]["ready"].as_u64(), Some(20), "{rec}");
    assert_eq!(rec["connect"]["errors"].as_u64(), Some(0), "{rec}");
    assert!(
        rec["connect"]["server_cpu_us_per_connect"]
            .as_f64()
            .is_some(),
        "{rec}"
    );
    // ...and a refused one is an error, not a connection.
    assert!(
        idle_run(
            ws,
            20,
            &["--token-hs256-secret", "not-the-secret-0123456789abcdef"]
        )
        .is_none(),
        "tokens signed with the wrong secret were accepted"
    );
}

/// True when redis-server is installed; without it the cluster test says so
/// and skips, except under CI (`RINGCAST_CI`), which installs it.
fn have_redis_server() -> bool {
    let found = Command::new("redis-server")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        assert!(
            std::env::var_os("RINGCAST_CI").is_none(),
            "redis-server is not installed, and CI must run this test (Debian package redis-server)"
        );
        eprintln!("SKIPPED: redis-server is not installed (Debian package redis-server)");
    }
    found
}

/// Waits until `want` clients (besides the probe) are connected to Redis.
fn wait_redis_clients(port: u16, want: usize) {
    use std::io::{Read, Write};
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.write_all(b"CLIENT LIST\r\n").unwrap();
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 8192];
        // One bulk string: "$LEN\r\n" then LEN bytes and "\r\n".
        while let Ok(n) = s.read(&mut buf) {
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&got);
            if let Some((len, rest)) = text.strip_prefix('$').and_then(|t| t.split_once("\r\n")) {
                if rest.len() >= len.parse::<usize>().unwrap_or(usize::MAX) {
                    break;
                }
            }
        }
        let clients = String::from_utf8_lossy(&got).matches("id=").count();
        if clients > want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{clients} clients on Redis, want {want} + 1"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Two ringcast nodes in cluster mode on one Redis, every room's members and
/// publishers spread over both: every delivery arrives once, in the room's
/// one order, and the record sums both nodes and reads Redis's CPU.
#[test]
fn exact_counts_across_two_cluster_nodes() {
    if !have_redis_server() {
        return;
    }
    let rport = free_port();
    let redis = Command::new("redis-server")
        .args(["--port", &rport.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start redis-server");
    let mut redis = Server(redis);
    wait_listening(rport, &mut redis);
    let url = format!("redis://127.0.0.1:{rport}");
    let (a, wa, _) = start_ringcast_with(1, &["--cluster-redis", &url]);
    let (b, wb, _) = start_ringcast_with(1, &["--cluster-redis", &url]);
    // Each node's shard: a command link and a subscriber link.
    wait_redis_clients(rport, 4);
    let pids = format!("{},{}", a.0.id(), b.0.id());
    let rec = run_scenario_at(
        "ringcast-ws",
        &format!("127.0.0.1:{wa},127.0.0.1:{wb}"),
        &[
            "--server-pid",
            &pids,
            "--redis-pid",
            &redis.0.id().to_string(),
            "--redis-addr",
            &format!("127.0.0.1:{rport}"),
        ],
    );
    check_exact(&rec, 5);
    assert_eq!(rec["nodes"].as_u64(), Some(2), "{rec}");
    assert_eq!(
        rec["server_pids"].as_array().map(Vec::len),
        Some(2),
        "{rec}"
    );
    assert_eq!(
        rec["redis_pid"].as_u64(),
        Some(redis.0.id() as u64),
        "{rec}"
    );
    for k in ["redis_cpu_us_per_publish", "redis_sched_us_per_publish"] {
        assert!(rec[k].as_f64().is_some_and(|v| v >= 0.0), "{k} in {rec}");
    }
    // INFO commandstats over the window: each publish is one script call
    // (the sequencing script) on the real Redis.
    let cmds = rec["redis_commands"].as_array().expect("redis_commands");
    let calls = |name: &str| {
        cmds.iter()
            .find(|c| c["command"] == name)
            .and_then(|c| c["calls_per_publish"].as_f64())
    };
    let evalsha = calls("evalsha").unwrap_or(0.0);
    assert!(
        (0.9..=1.1).contains(&evalsha),
        "evalsha per publish {evalsha}: {rec}"
    );
}
