//! Cluster mode against a real `redis-server` (Debian's package) and real
//! nodes: three ringcast processes with two shards each, on loopback.
//! Every test starts its own Redis on a free port; without redis-server
//! installed they say so and skip (and fail under CI, which installs it).

mod common;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use futures_util::StreamExt;
use serde_json::{json, Value};

/// A redis-server of the test's own.
struct Redis {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
    aof: bool,
}

impl Redis {
    /// Starts one, with the append-only file (fsync always) when `aof`.
    fn start(aof: bool) -> Option<Redis> {
        if !have_tool("redis-server", "redis-server") {
            return None;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir =
            std::env::temp_dir().join(format!("ringcast-redis-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut r = Redis {
            child: None,
            port,
            dir,
            aof,
        };
        r.spawn();
        Some(r)
    }

    fn spawn(&mut self) {
        let port = self.port.to_string();
        let child = Command::new("redis-server")
            .args(["--port", &port, "--bind", "127.0.0.1", "--save", ""])
            .args(["--appendonly", if self.aof { "yes" } else { "no" }])
            .args(["--appendfsync", "always", "--daemonize", "no"])
            .arg("--dir")
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server");
        self.child = Some(child);
        let deadline = Instant::now() + WAIT;
        loop {
            if let Ok(mut c) = redis::Client::open(self.url()).and_then(|c| c.get_connection()) {
                if redis::cmd("PING").query::<String>(&mut c).is_ok() {
                    return;
                }
            }
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL, as a crash.
    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn query<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> T {
        let mut c = redis::Client::open(self.url())
            .unwrap()
            .get_connection()
            .unwrap();
        cmd.query(&mut c).unwrap()
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A node of the cluster on `redis`, ready (its `/readyz` answers 200).
async fn node(redis: &Redis, extra: &[&str]) -> Server {
    let url = redis.url();
    let mut args = vec![
        "--cluster-redis",
        &url,
        "--cluster-presence-ttl-ms",
        "1500",
        "--cluster-position-check-ms",
        "300",
        "--cluster-reconnect-max-ms",
        "200",
    ];
    args.extend_from_slice(extra);
    let server = Server::start(&args);
    wait_ready(&server).await;
    server
}

/// Waits until `/readyz` says the node can serve requests that need Redis.
async fn wait_ready(server: &Server) {
    let deadline = Instant::now() + WAIT;
    loop {
        if server.admin_get("/readyz").await.0 == 200 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "node not ready: {:?}",
            server.admin_get("/readyz").await
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// What a member saw: messages by seq, in the order they came.
#[derive(Default, Debug)]
struct Seen {
    order: Vec<(u64, String)>,
    epoch: Option<String>,
}

impl Seen {
    fn take(&mut self, m: &Value) {
        assert_eq!(m["op"], "message", "{m}");
        self.order
            .push((m["seq"].as_u64().unwrap(), text_of(&m["data"])));
        self.epoch.get_or_insert_with(|| m["room"].to_string());
    }

    fn last(&self) -> u64 {
        self.order.last().map_or(0, |m| m.0)
    }

    /// Seqs strictly increasing by one from `from`.
    fn assert_gap_free(&self, from: u64, who: &str) {
        for (i, (seq, _)) in self.order.iter().enumerate() {
            assert_eq!(
                *seq,
                from + i as u64,
                "{who}: seq out of order or repeated at {i}: {:?}",
                &self.order[i.saturating_sub(3)..(i + 3).min(self.order.len())]
            );
        }
    }
}

fn text_of(data: &Value) -> String {
    match data {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Receives `n` messages (skipping presence, typing and oks).
async fn collect(c: &mut Client, seen: &mut Seen, n: usize) {
    while seen.order.len() < n {
        let v = c.recv().await;
        if v["op"] == "message" {
            seen.take(&v);
        }
    }
}

#[tokio::test]
async fn every_member_on_every_node_gets_every_message_once_in_one_order() {
    let Some(redis) = Redis::start(false) else {
        return;
    };
    let nodes = [
        node(&redis, &[]).await,
        node(&redis, &[]).await,
        node(&redis, &[]).await,
    ];
    let mut members = Vec::new();
    for (i, n) in nodes.iter().enumerate() {
        for j in 0..3 {
            let mut c = Client::connect(n, &format!("m{i}{j}")).await;
            c.join("all").await;
            members.push(c);
        }
    }
    // A RESP subscriber on every node, with the redis crate.
    let mut subs = Vec::new();
    for n in &nodes {
        let client = redis::Client::open(format!("redis://{}", n.resp)).unwrap();
        let mut ps = client.get_async_pubsub().await.unwrap();
        ps.subscribe("all").await.unwrap();
        subs.push(ps);
    }
    const EACH: usize = 40;
    // Publishers on every node: a WebSocket member and a RESP client each.
    let mut resp_pubs = Vec::new();
    for n in &nodes {
        let c = redis::Client::open(format!("redis://{}", n.resp)).unwrap();
        resp_pubs.push(c.get_multiplexed_async_connection().await.unwrap());
    }
    let mut tasks = Vec::new();
    for (i, mut conn) in resp_pubs.into_iter().enumerate() {
        tasks.push(tokio::spawn(async move {
            for k in 0..EACH {
                let _: i64 = redis::cmd("PUBLISH")
                    .arg("all")
                    .arg(format!("resp-{i}-{k}"))
                    .query_async(&mut conn)
                    .await
                    .unwrap();
            }
        }));
    }
    for i in 0..3 {
        let burst: Vec<Value> = (0..EACH)
            .map(|k| json!({"op":"publish","room":"all","data":format!("ws-{i}-{k}")}))
            .collect();
        members[i * 3].send_burst(burst).await;
    }
    for t in tasks {
        t.await.unwrap();
    }
    let total = EACH * 6;
    let mut views = Vec::new();
    for (i, c) in members.iter_mut().enumerate() {
        let mut seen = Seen::default();
        collect(c, &mut seen, total).await;
        seen.assert_gap_free(1, &format!("member {i}"));
        views.push(seen.order);
    }
    for v in &views[1..] {
        assert_eq!(v, &views[0], "every member sees one and the same order");
    }
    let mut all: Vec<&String> = views[0].iter().map(|(_, d)| d).collect();
    all.sort();
    all.dedup();
    assert_eq!(all.len(), total, "every message exactly once");
    // Each publisher's messages keep their order.
    for prefix in ["ws-0-", "resp-1-", "ws-2-"] {
        let mine: Vec<usize> = views[0]
            .iter()
            .filter_map(|(_, d)| d.strip_prefix(prefix).map(|k| k.parse().unwrap()))
            .collect();
        assert_eq!(mine, (0..EACH).collect::<Vec<_>>(), "{prefix} in order");
    }
    // RESP subscribers get the same order.
    let want: Vec<&String> = views[0].iter().map(|(_, d)| d).collect();
    for ps in &mut subs {
        let mut stream = ps.on_message();
        let mut got = Vec::new();
        while got.len() < total {
            let m = tokio::time::timeout(WAIT, stream.next())
                .await
                .unwrap()
                .unwrap();
            let payload: String = m.get_payload().unwrap();
            // WebSocket publishes reach RESP as their JSON data.
            got.push(serde_json::from_str::<String>(&payload).unwrap_or(payload));
        }
        let got: Vec<&String> = got.iter().collect();
        assert_eq!(got, want, "RESP sees the same order");
    }
    let keys: Vec<String> = redis.query(redis::cmd("KEYS").arg("ringcast:{all}:*"));
    assert!(keys.contains(&"ringcast:{all}:hist".to_owned()), "{keys:?}");
}

/// The next text message, or `None` when the connection ended.
async fn next_or_end(c: &mut Client) -> Option<Value> {
    use tokio_tungstenite::tungstenite::Message;
    loop {
        match tokio::time::timeout(WAIT, c.ws.next())
            .await
            .expect("timed out")
        {
            Some(Ok(Message::Text(t))) => return Some(serde_json::from_str(&t).unwrap()),
            Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return None,
            Some(Ok(_)) => {}
        }
    }
}

/// Joins `room` with `since` and `epoch`; the ok.
async fn rejoin(c: &mut Client, room: &str, since: u64, epoch: &Value) -> Value {
    c.send(json!({"op":"join","room":room,"id":"rj","since":since,"epoch":epoch}))
        .await;
    loop {
        let v = c.recv().await;
        if v["op"] == "ok" && v["id"] == "rj" {
            return v;
        }
        assert_ne!(v["op"], "error", "{v}");
    }
}

/// Publishes `data` and waits for its answer: the ok or the error.
async fn publish_and_wait(c: &mut Client, room: &str, data: &str) -> Value {
    c.send(json!({"op":"publish","room":room,"data":data,"id":data}))
        .await;
    loop {
        let v = c.recv().await;
        if v["id"] == data {
            return v;
        }
    }
}

/// A join's ok says `recovered` only when it is false.
fn recovered(ok: &Value) -> bool {
    assert_eq!(ok["op"], "ok", "{ok}");
    ok.get("recovered") != Some(&json!(false))
}

/// Sends SIGKILL to a node: a crash, no goodbye.
fn crash(server: &Server) {
    // SAFETY: signalling a child process of ours.
    unsafe { libc::kill(server.pid() as i32, libc::SIGKILL) };
}

#[tokio::test]
async fn a_crashed_nodes_clients_recover_exactly_what_they_missed_on_another_node() {
    let Some(redis) = Redis::start(false) else {
        return;
    };
    let a = node(&redis, &[]).await;
    let b = node(&redis, &[]).await;
    let c = node(&redis, &[]).await;
    let mut reader = Client::connect(&c, "reader").await;
    let ok = reader.join("r").await;
    let epoch = ok["epoch"].clone();
    assert!(epoch.is_string(), "the join carries the room's epoch: {ok}");
    let mut publisher = Client::connect(&a, "pub").await;
    publisher.join("r").await;
    const TOTAL: usize = 120;
    let publishing = tokio::spawn(async move {
        for k in 0..TOTAL {
            let ok = publish_and_wait(&mut publisher, "r", &format!("m{k}")).await;
            assert_eq!(ok["op"], "ok", "{ok}");
        }
        publisher
    });
    let mut seen = Seen::default();
    collect(&mut reader, &mut seen, 30).await;
    crash(&c);
    // What was already on its way is lost with the connection.
    while let Some(v) = next_or_end(&mut reader).await {
        if v["op"] == "message" {
            seen.take(&v);
        }
    }
    let mut reader = Client::connect(&b, "reader").await;
    let ok = rejoin(&mut reader, "r", seen.last(), &epoch).await;
    assert!(recovered(&ok), "{ok}");
    assert_eq!(ok["epoch"], epoch);
    collect(&mut reader, &mut seen, TOTAL).await;
    seen.assert_gap_free(1, "reader");
    let data: Vec<String> = seen.order.iter().map(|(_, d)| d.clone()).collect();
    assert_eq!(
        data,
        (0..TOTAL).map(|k| format!("m{k}")).collect::<Vec<_>>()
    );
    publishing.await.unwrap();
}

#[tokio::test]
async fn killed_pubsub_connections_lose_nothing() {
    let Some(redis) = Redis::start(false) else {
        return;
    };
    let a = node(&redis, &[]).await;
    let b = node(&redis, &[]).await;
    let mut on_a = Client::connect(&a, "on-a").await;
    on_a.join("k").await;
    let mut on_b = Client::connect(&b, "on-b").await;
    on_b.join("k").await;
    let mut publisher = Client::connect(&a, "pub").await;
    publisher.join("k").await;
    const TOTAL: usize = 200;
    let publishing = tokio::spawn(async move {
        for k in 0..TOTAL {
            publisher
                .send(json!({"op":"publish","room":"k","data":format!("m{k}")}))
                .await;
            if k % 10 == 9 {
                // Paced, so the kill lands mid-traffic.
                let ok = publish_and_wait(&mut publisher, "k", &format!("p{k}")).await;
                assert_eq!(ok["op"], "ok", "{ok}");
            }
        }
    });
    let mut seen_b = Seen::default();
    collect(&mut on_b, &mut seen_b, 40).await;
    let killed: i64 = redis.query(redis::cmd("CLIENT").arg("KILL").arg("TYPE").arg("pubsub"));
    assert!(
        killed >= 2,
        "both nodes' subscriber links (the room's home shard on each) ({killed}): {}",
        redis.query::<String>(redis::cmd("CLIENT").arg("LIST"))
    );
    publishing.await.unwrap();
    let total = TOTAL + TOTAL / 10;
    collect(&mut on_b, &mut seen_b, total).await;
    seen_b.assert_gap_free(1, "on-b");
    let mut seen_a = Seen::default();
    collect(&mut on_a, &mut seen_a, total).await;
    seen_a.assert_gap_free(1, "on-a");
    assert_eq!(seen_a.order, seen_b.order);
    let reconnects: u64 = [&a, &b]
        .iter()
        .map(|n| async move {
            per_shard(&n.stats().await, "redis_reconnects")
                .iter()
                .sum::<u64>()
        })
        .collect::<futures_util::stream::FuturesOrdered<_>>()
        .collect::<Vec<u64>>()
        .await
        .iter()
        .sum();
    assert!(
        reconnects >= 2,
        "both subscriber links came back ({reconnects})"
    );
}

/// Waits until `/readyz` says the node cannot serve requests that need
/// Redis.
async fn wait_unready(server: &Server) {
    let deadline = Instant::now() + WAIT;
    while server.admin_get("/readyz").await.0 != 503 {
        assert!(Instant::now() < deadline, "node still ready");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Redis goes away and comes back (`aof`: with its data); the errors while
/// it is gone, and what members get.
async fn redis_restart(aof: bool) -> Option<(Vec<Value>, Seen, Value, Value)> {
    let mut redis = Redis::start(aof)?;
    let a = node(&redis, &[]).await;
    let b = node(&redis, &[]).await;
    let mut member = Client::connect(&b, "member").await;
    let first = member.join("x").await;
    let mut publisher = Client::connect(&a, "pub").await;
    publisher.join("x").await;
    let mut acked = Vec::new();
    for k in 0..20 {
        let d = format!("before{k}");
        assert_eq!(publish_and_wait(&mut publisher, "x", &d).await["op"], "ok");
        acked.push(d);
    }
    redis.kill();
    wait_unready(&a).await;
    wait_unready(&b).await;
    // Clear errors while it is gone; nothing acknowledged.
    let refused = publish_and_wait(&mut publisher, "x", "while-down").await;
    assert_eq!(
        (&refused["op"], &refused["code"]),
        (&json!("error"), &json!("unavailable")),
        "{refused}"
    );
    publisher
        .send(json!({"op":"join","room":"elsewhere","id":"j2"}))
        .await;
    let e = publisher.recv_op("error").await;
    assert_eq!(e["code"], "unavailable", "{e}");
    let mut resp = redis::Client::open(format!("redis://{}", a.resp))
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let r: redis::RedisResult<i64> = redis::cmd("PUBLISH")
        .arg("x")
        .arg("resp-down")
        .query_async(&mut resp)
        .await;
    let err = r.unwrap_err();
    assert_eq!(err.code(), Some("TRYAGAIN"), "{err}");
    // The connections stayed up.
    member.send(json!({"op":"ping","id":"alive"})).await;
    redis.spawn();
    wait_ready(&a).await;
    wait_ready(&b).await;
    for k in 0..20 {
        let d = format!("after{k}");
        assert_eq!(publish_and_wait(&mut publisher, "x", &d).await["op"], "ok");
        acked.push(d);
    }
    // The member gets every acknowledged message (and any reset) in order.
    let mut seen = Seen::default();
    let mut events = Vec::new();
    let last = acked.last().unwrap().clone();
    while seen.order.last().map(|m| &m.1) != Some(&last) {
        let v = member.recv().await;
        match v["op"].as_str() {
            Some("message") => seen.take(&v),
            Some("reset") | Some("gap") => events.push(v),
            _ => {}
        }
    }
    for d in &acked {
        assert_eq!(
            seen.order.iter().filter(|(_, x)| x == d).count(),
            1,
            "{d} exactly once"
        );
    }
    // A rejoin on the other node with what the member had.
    let mut again = Client::connect(&a, "again").await;
    let ok = rejoin(&mut again, "x", 20, &first["epoch"]).await;
    Some((events, seen, first, ok))
}

#[tokio::test]
async fn redis_restarted_with_its_data_keeps_continuity() {
    let Some((events, seen, first, ok)) = redis_restart(true).await else {
        return;
    };
    assert!(events.is_empty(), "no reset: {events:?}");
    seen.assert_gap_free(1, "member");
    assert_eq!(ok["epoch"], first["epoch"]);
    assert!(recovered(&ok), "{ok}");
}

#[tokio::test]
async fn redis_restarted_empty_tells_members_the_epoch_changed() {
    let Some((events, seen, first, ok)) = redis_restart(false).await else {
        return;
    };
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["op"], "reset");
    assert_ne!(events[0]["epoch"], first["epoch"]);
    // Seqs start again at 1 of the new epoch after the reset.
    let before: Vec<u64> = seen.order.iter().take(20).map(|m| m.0).collect();
    assert_eq!(before, (1..=20).collect::<Vec<_>>());
    let after: Vec<u64> = seen.order.iter().skip(20).map(|m| m.0).collect();
    assert_eq!(after, (1..=after.len() as u64).collect::<Vec<_>>());
    assert!(!recovered(&ok), "{ok}");
    assert_eq!(ok["epoch"], events[0]["epoch"]);
}

/// `members` until it lists exactly `want`; what else came meanwhile
/// goes to `skipped`.
async fn members_become(
    c: &mut Client,
    room: &str,
    want: &[&str],
    skipped: &mut Vec<Value>,
) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        c.send(json!({"op":"members","room":room,"id":"mm"})).await;
        let v = loop {
            let v = c.recv().await;
            if v["id"] == "mm" {
                break v;
            }
            skipped.push(v);
        };
        if v["users"] == json!(want) {
            return v;
        }
        assert!(Instant::now() < deadline, "members stayed {v}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn members_and_presence_span_nodes_and_a_crashed_nodes_members_expire() {
    let Some(redis) = Redis::start(false) else {
        return;
    };
    let nodes = [
        node(&redis, &[]).await,
        node(&redis, &[]).await,
        node(&redis, &[]).await,
    ];
    let mut ann = Client::connect(&nodes[0], "ann").await;
    ann.join("p").await;
    let mut bob = Client::connect(&nodes[1], "bob").await;
    bob.join("p").await;
    let mut cy = Client::connect(&nodes[2], "cy").await;
    cy.join("p").await;
    // Ann hears the others arrive, from their nodes.
    let mut arrived = Vec::new();
    while arrived.len() < 2 {
        let v = ann.recv_op("presence").await;
        let events = v
            .get("events")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_else(|| vec![v.clone()]);
        for e in events {
            if e["event"] == "join" {
                arrived.push(e["user"].as_str().unwrap().to_owned());
            }
        }
    }
    arrived.sort();
    assert_eq!(arrived, ["bob", "cy"]);
    let all = members_become(&mut ann, "p", &["ann", "bob", "cy"], &mut Vec::new()).await;
    assert_eq!(all["count"], 3);
    // Typing crosses nodes too.
    bob.send(json!({"op":"typing","room":"p","state":true}))
        .await;
    let t = ann.recv_op("typing").await;
    assert_eq!(t["user"], "bob");
    // Cy's node dies: within the lease, cy is gone from the cluster.
    crash(&nodes[2]);
    let started = Instant::now();
    let mut skipped = Vec::new();
    members_become(&mut ann, "p", &["ann", "bob"], &mut skipped).await;
    let is_cy_leaving =
        |v: &Value| v["op"] == "presence" && v["user"] == "cy" && v["event"] == "leave";
    let left = match skipped.into_iter().find(is_cy_leaving) {
        Some(v) => v,
        None => loop {
            let v = ann.recv_op("presence").await;
            if is_cy_leaving(&v) {
                break v;
            }
        },
    };
    assert_eq!(left["room"], "p");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    drop(cy);
}

#[tokio::test]
async fn a_node_without_cluster_redis_needs_no_redis() {
    let server = Server::start(&[]);
    assert_eq!(server.admin_get("/readyz").await.0, 200);
    let stats = server.stats().await;
    assert_eq!(per_shard(&stats, "redis_links_up"), [0, 0]);
    let mut a = Client::connect(&server, "a").await;
    let ok = a.join("solo").await;
    assert!(ok["epoch"].is_string());
    assert_eq!(per_shard(&server.stats().await, "redis_commands"), [0, 0]);
}

#[tokio::test]
async fn a_node_whose_redis_is_unreachable_serves_with_clear_errors() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let url = format!("redis://{closed}");
    let server = Server::start(&["--cluster-redis", &url, "--cluster-reconnect-max-ms", "200"]);
    let (status, body) = server.admin_get("/readyz").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("redis"), "{body}");
    assert_eq!(
        server.admin_get("/healthz").await.0,
        200,
        "the shards answer"
    );
    let mut c = Client::connect(&server, "c").await;
    c.send(json!({"op":"join","room":"r","id":1})).await;
    let e = c.recv_main().await;
    assert_eq!(
        (&e["op"], &e["code"]),
        (&json!("error"), &json!("unavailable")),
        "{e}"
    );
    c.send(json!({"op":"ping","id":2})).await;
    assert_eq!(c.recv_main().await["op"], "pong", "the connection stays");
}

#[tokio::test]
async fn scripts_flushed_from_redis_are_loaded_again() {
    let Some(redis) = Redis::start(false) else {
        return;
    };
    let a = node(&redis, &["--shards", "1"]).await;
    let mut c = Client::connect(&a, "c").await;
    c.join("s").await;
    assert_eq!(publish_and_wait(&mut c, "s", "one").await["op"], "ok");
    let _: String = redis.query(redis::cmd("SCRIPT").arg("FLUSH"));
    // At most the publish that found the scripts gone fails; the link
    // reconnects and loads them.
    let second = publish_and_wait(&mut c, "s", "two").await;
    if second["op"] == "error" {
        assert_eq!(second["code"], "unavailable", "{second}");
        wait_ready(&a).await;
    }
    let deadline = Instant::now() + WAIT;
    loop {
        let v = publish_and_wait(&mut c, "s", "three").await;
        if v["op"] == "ok" {
            break;
        }
        assert!(Instant::now() < deadline, "{v}");
        wait_ready(&a).await;
    }
    assert!(
        per_shard(&a.stats().await, "redis_reconnects")[0] >= 1,
        "the command link came back"
    );
}
