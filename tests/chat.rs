//! The chat protocol end to end: real server, two shards, tokio-tungstenite
//! clients.

mod common;

use common::*;
use serde_json::{json, Value};

#[tokio::test]
async fn welcome_join_publish_and_ack() {
    let server = Server::start(&[]);
    let mut a = Client::connect(&server, "ann").await;
    let ok = a.join("lobby").await;
    assert_eq!(ok["seq"], 0);
    assert_eq!(ok["id"], "j");
    let epoch = ok["epoch"].as_str().expect("an epoch").to_string();
    assert_eq!(epoch.len(), 16, "{ok}");
    a.send(json!({"op":"publish","room":"lobby","data":{"text":"hello", "n": [1, 2]},"id":42}))
        .await;
    // The ack and the delivery both come; the delivery carries seq, user, ts.
    let mut got_ack = false;
    let mut got_msg = false;
    while !(got_ack && got_msg) {
        let v = a.recv().await;
        match v["op"].as_str().unwrap() {
            "ok" => {
                assert_eq!(
                    v,
                    json!({"op":"ok","id":42,"room":"lobby","seq":1,"epoch":epoch})
                );
                got_ack = true;
            }
            "message" => {
                assert_eq!(v["seq"], 1);
                assert_eq!(v["user"], "ann");
                assert_eq!(v["data"], json!({"text":"hello","n":[1,2]}));
                assert!(v["ts"].as_u64().unwrap() > 1_600_000_000_000);
                got_msg = true;
            }
            other => panic!("unexpected {other}: {v}"),
        }
    }
    a.send(json!({"op":"ping","id":"p"})).await;
    assert_eq!(a.recv().await, json!({"op":"pong","id":"p"}));
}

#[tokio::test]
async fn members_on_different_shards_see_each_other() {
    let server = Server::start(&[]);
    let mut clients = clients_on_every_shard(&server, 2, 1, "x").await;
    for c in clients.iter_mut() {
        c.join("cross").await;
    }
    let (s0, s1) = (clients[0].shard, clients[1].shard);
    assert_ne!(s0, s1, "one client per shard");
    clients[0]
        .send(json!({"op":"publish","room":"cross","data":"from first"}))
        .await;
    clients[1]
        .send(json!({"op":"publish","room":"cross","data":"from second"}))
        .await;
    for c in clients.iter_mut() {
        let mut seen = Vec::new();
        while seen.len() < 2 {
            let v = c.recv_op("message").await;
            seen.push((
                v["seq"].as_u64().unwrap(),
                v["data"].as_str().unwrap().to_string(),
            ));
        }
        assert_eq!(seen.iter().map(|s| s.0).collect::<Vec<_>>(), vec![1, 2]);
    }
}

/// Several publishers on both shards send 1,200 messages into one room
/// with 60 members spread over the shards, without waiting for acks. Every
/// member must get every message exactly once, seq 1..=1200 in order, and
/// all members the same sequence.
#[tokio::test]
async fn ordering_and_no_loss_across_shards() {
    ordering_and_no_loss(&[]).await;
}

/// The same on epoll shards, which write with `sendmsg` rather than batched
/// io_uring sends.
#[tokio::test]
async fn ordering_and_no_loss_on_epoll_shards() {
    ordering_and_no_loss(&["--force-epoll"]).await;
}

async fn ordering_and_no_loss(extra: &[&str]) {
    const MEMBERS_PER_SHARD: usize = 30;
    const PUBLISHERS_PER_SHARD: usize = 2;
    const PER_PUBLISHER: usize = 300;
    let server = Server::start(extra);
    let mut members = clients_on_every_shard(&server, 2, MEMBERS_PER_SHARD, "m").await;
    for m in members.iter_mut() {
        m.join("big").await;
    }
    let mut publishers = clients_on_every_shard(&server, 2, PUBLISHERS_PER_SHARD, "p").await;
    let total = publishers.len() * PER_PUBLISHER;
    let mut tasks = Vec::new();
    for (pi, mut p) in publishers.drain(..).enumerate() {
        tasks.push(tokio::spawn(async move {
            for i in 0..PER_PUBLISHER {
                p.send(json!({"op":"publish","room":"big","data":{"p":pi,"i":i}}))
                    .await;
            }
            let mut acks = Vec::new();
            while acks.len() < PER_PUBLISHER {
                let v = p.recv_op("ok").await;
                acks.push(v["seq"].as_u64().unwrap());
            }
            acks
        }));
    }
    let mut readers = Vec::new();
    for mut m in members.drain(..) {
        readers.push(tokio::spawn(async move {
            let mut seq_data: Vec<(u64, Value)> = Vec::with_capacity(total);
            while seq_data.len() < total {
                let v = m.recv_op("message").await;
                seq_data.push((v["seq"].as_u64().unwrap(), v["data"].clone()));
            }
            seq_data
        }));
    }
    let mut all_acks: Vec<u64> = Vec::new();
    for t in tasks {
        let acks = t.await.unwrap();
        assert!(
            acks.windows(2).all(|w| w[0] < w[1]),
            "one publisher's acks rise"
        );
        all_acks.extend(acks);
    }
    all_acks.sort_unstable();
    assert_eq!(
        all_acks,
        (1..=total as u64).collect::<Vec<_>>(),
        "every publish acked once"
    );
    let mut first: Option<Vec<(u64, Value)>> = None;
    for r in readers {
        let got = r.await.unwrap();
        let seqs: Vec<u64> = got.iter().map(|x| x.0).collect();
        assert_eq!(
            seqs,
            (1..=total as u64).collect::<Vec<_>>(),
            "gap-free, no duplicates, in order"
        );
        // Each publisher's own messages arrive in the order it sent them.
        for pi in 0..(2 * PUBLISHERS_PER_SHARD) {
            let is: Vec<u64> = got
                .iter()
                .filter(|x| x.1["p"] == pi)
                .map(|x| x.1["i"].as_u64().unwrap())
                .collect();
            assert_eq!(is, (0..PER_PUBLISHER as u64).collect::<Vec<_>>());
        }
        match &first {
            None => first = Some(got),
            Some(f) => assert_eq!(f, &got, "every member sees the same sequence"),
        }
    }
}

/// A room's sequence restarts when the room is dropped (here: evicted
/// once nobody is in it); a client that saw seq 5 of the old sequence is
/// told it did not recover, with the new epoch, and gets none of the new
/// sequence's seqs as if they were the ones it missed.
#[tokio::test]
async fn recovery_across_a_restarted_sequence_says_so() {
    let server = Server::start(&["--shards", "1", "--retained-bytes", "1"]);
    let mut a = Client::connect(&server, "a").await;
    let mut b = Client::connect(&server, "b").await;
    let old = a.join("ep").await["epoch"].clone();
    for i in 0..5 {
        b.send(json!({"op":"publish","room":"ep","data":i})).await;
        b.recv_op("ok").await;
    }
    for want in 1..=5 {
        assert_eq!(a.recv_op("message").await["seq"], want);
    }
    a.send(json!({"op":"leave","room":"ep","id":"l"})).await;
    assert_eq!(a.recv_main().await["id"], "l");
    // Any other room's message pushes the memberless "ep" out.
    b.send(json!({"op":"publish","room":"other","data":0,"id":"o"}))
        .await;
    while b.recv_op("ok").await["id"] != "o" {}
    let stats = server.stats().await;
    assert!(
        stats["node"]["rooms_evicted"].as_u64().unwrap() >= 1,
        "{stats}"
    );
    let new = b.join("ep").await["epoch"].clone();
    assert_ne!(old, new, "a new sequence, a new epoch");
    for i in 0..6 {
        b.send(json!({"op":"publish","room":"ep","data":i,"id":i}))
            .await;
        b.recv_op("ok").await;
    }
    a.send(json!({"op":"join","room":"ep","since":5,"epoch":old,"id":"r"}))
        .await;
    let ok = a.recv_main().await;
    assert_eq!(
        ok,
        json!({"op":"ok","id":"r","room":"ep","seq":6,"epoch":new,"recovered":false})
    );
    // Nothing of the new sequence is passed off as what it missed: the
    // next message is a live one.
    b.send(json!({"op":"publish","room":"ep","data":"live"}))
        .await;
    let m = a.recv_main().await;
    assert_eq!(
        (m["seq"].as_u64(), m["data"].as_str()),
        (Some(7), Some("live")),
        "{m}"
    );
    // Ahead of the sequence, with no epoch: not recovered either.
    let mut c = Client::connect(&server, "c").await;
    c.send(json!({"op":"join","room":"ep","since":500,"id":"x"}))
        .await;
    let ok = c.recv_main().await;
    assert_eq!(ok["recovered"], false, "{ok}");
    // The history of a room says which sequence it is of.
    c.send(json!({"op":"history","room":"ep","since":6,"id":"h"}))
        .await;
    let h = c.recv_op("history").await;
    assert_eq!(h["epoch"], new, "{h}");
}

#[tokio::test]
async fn join_with_since_recovers_exactly_the_missed_messages() {
    let server = Server::start(&[]);
    let mut clients = clients_on_every_shard(&server, 2, 1, "r").await;
    let mut p = clients.pop().unwrap();
    let mut m = clients.pop().unwrap();
    let epoch = m.join("rec").await["epoch"].clone();
    p.join("rec").await;
    for i in 0..3 {
        p.send(json!({"op":"publish","room":"rec","data":i})).await;
    }
    for want in 1..=3 {
        assert_eq!(m.recv_op("message").await["seq"], want);
    }
    m.send(json!({"op":"leave","room":"rec","id":1})).await;
    assert_eq!(m.recv_main().await, json!({"op":"ok","id":1,"room":"rec"}));
    for i in 3..8 {
        p.send(json!({"op":"publish","room":"rec","data":i})).await;
    }
    // Wait until all five were sequenced (the publisher's acks).
    let mut last = 0;
    while last < 8 {
        last = p.recv_op("ok").await["seq"].as_u64().unwrap();
    }
    m.send(json!({"op":"join","room":"rec","since":3,"epoch":epoch,"id":2}))
        .await;
    let ok = m.recv_main().await;
    assert_eq!(
        ok,
        json!({"op":"ok","id":2,"room":"rec","seq":8,"epoch":epoch})
    );
    for want in 4..=8 {
        let v = m.recv_main().await;
        assert_eq!(
            (v["op"].as_str(), v["seq"].as_u64()),
            (Some("message"), Some(want))
        );
        assert_eq!(v["data"], want - 1);
    }
    p.send(json!({"op":"publish","room":"rec","data":"live"}))
        .await;
    let v = m.recv_main().await;
    assert_eq!(
        (v["seq"].as_u64(), v["data"].as_str()),
        (Some(9), Some("live"))
    );
}

#[tokio::test]
async fn since_older_than_history_says_not_recovered() {
    let server = Server::start(&["--history", "4"]);
    let mut p = Client::connect(&server, "p").await;
    p.join("short").await;
    for i in 0..10 {
        p.send(json!({"op":"publish","room":"short","data":i}))
            .await;
    }
    let mut last = 0;
    while last < 10 {
        last = p.recv_op("ok").await["seq"].as_u64().unwrap();
    }
    let mut m = Client::connect(&server, "m").await;
    m.send(json!({"op":"join","room":"short","since":2})).await;
    let ok = m.recv_main().await;
    assert_eq!(ok["recovered"], false, "{ok}");
    let seqs: Vec<u64> = [
        m.recv_main().await,
        m.recv_main().await,
        m.recv_main().await,
        m.recv_main().await,
    ]
    .iter()
    .map(|v| v["seq"].as_u64().unwrap())
    .collect();
    assert_eq!(seqs, vec![7, 8, 9, 10]);
    m.send(json!({"op":"history","room":"short","since":8,"limit":10,"id":"h"}))
        .await;
    let h = m.recv_main().await;
    assert_eq!(h["op"], "history");
    assert_eq!(h["id"], "h");
    let hs: Vec<u64> = h["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(hs, vec![9, 10]);
}

#[tokio::test]
async fn presence_typing_and_members() {
    let server = Server::start(&[]);
    let mut clients = clients_on_every_shard(&server, 2, 1, "u").await;
    let mut b = clients.pop().unwrap();
    let mut a = clients.pop().unwrap();
    a.join("team").await;
    b.send(json!({"op":"join","room":"team"})).await;
    let p = a.recv_op("presence").await;
    assert_eq!(
        p,
        json!({"op":"presence","room":"team","user":b.user,"event":"join"})
    );
    b.recv_op("ok").await;
    b.send(json!({"op":"typing","room":"team","state":true}))
        .await;
    let t = a.recv_op("typing").await;
    assert_eq!(
        t,
        json!({"op":"typing","room":"team","user":b.user,"state":true})
    );
    a.send(json!({"op":"members","room":"team","id":5})).await;
    let m = a.recv_op("members").await;
    let mut want = vec![a.user.clone(), b.user.clone()];
    want.sort();
    assert_eq!(
        m,
        json!({"op":"members","id":5,"room":"team","users":want,"count":2})
    );
    drop(b);
    let p = a.recv_op("presence").await;
    assert_eq!(p["event"], "leave");
}

/// Joins inside one presence interval reach every member as one frame
/// listing them in order, rather than one frame per join per member.
#[tokio::test]
async fn presence_in_a_burst_is_batched_in_order() {
    let server = Server::start(&["--presence-interval-ms", "3000"]);
    let mut clients = clients_on_every_shard(&server, 2, 2, "p").await;
    let mut a = clients.remove(0);
    // The first event in a quiet room leaves at once (to nobody else yet);
    // the joins after it, within the interval, are held.
    a.join("burst").await;
    for c in clients.iter_mut() {
        c.join("burst").await;
    }
    let want: Vec<Value> = clients
        .iter()
        .map(|c| json!({"user": c.user, "event": "join"}))
        .collect();
    // However the joins fall into intervals (a slow machine may split
    // them), every member gets every event once, in join order, in
    // batches: the same frames each.
    let frames_at = |frames: &[Value]| -> Vec<Value> {
        frames
            .iter()
            .flat_map(|f| match f["events"].as_array() {
                Some(events) => events.clone(),
                None => vec![json!({"user": f["user"], "event": f["event"]})],
            })
            .collect()
    };
    let mut seen = Vec::new();
    while frames_at(&seen).len() < want.len() {
        seen.push(a.recv_op("presence").await);
    }
    assert_eq!(frames_at(&seen), want);
    assert!(
        seen.iter()
            .any(|f| f["events"].as_array().is_some_and(|e| e.len() > 1)),
        "joins within 3 s were batched: {seen:?}"
    );
    // A batch goes to every member, those it lists included (each member
    // sees the frames sent after it joined).
    for c in clients.iter_mut() {
        let batch = seen.last().unwrap();
        loop {
            let f = c.recv_op("presence").await;
            if &f == batch {
                break;
            }
        }
    }
    let stats = server.stats().await;
    let joins = 1 + clients.len() as u64;
    assert_eq!(
        per_shard(&stats, "presence_events").iter().sum::<u64>(),
        joins
    );
    assert_eq!(
        per_shard(&stats, "presence_held").iter().sum::<u64>(),
        joins - 1
    );
}

/// A batch longer than fits `max_payload` leaves as several frames, in order.
#[tokio::test]
async fn presence_batches_are_split_to_fit_max_payload() {
    // 256 bytes of payload: two events (under 128 bytes each) per frame.
    let server = Server::start(&["--presence-interval-ms", "3000", "--max-payload", "256"]);
    let mut clients = clients_on_every_shard(&server, 2, 2, "q").await;
    let mut a = clients.remove(0);
    a.join("split").await;
    for c in clients.iter_mut() {
        c.join("split").await;
    }
    let want: Vec<Value> = clients
        .iter()
        .map(|c| json!({"user": c.user, "event": "join"}))
        .collect();
    let mut got = Vec::new();
    while got.len() < want.len() {
        let f = a.recv_op("presence").await;
        match f["events"].as_array() {
            Some(events) => {
                assert!(events.len() <= 2, "two events fit 256 bytes: {f}");
                assert!(f.to_string().len() <= 256 + 64, "{f}");
                got.extend(events.iter().cloned());
            }
            None => got.push(json!({"user": f["user"], "event": f["event"]})),
        }
    }
    assert_eq!(got, want, "every event once, in order");
}

/// A member that stops reading is closed once its queue passes the bound;
/// a member that keeps reading gets every message.
#[tokio::test]
async fn slow_consumer_is_closed_and_others_keep_receiving() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = Server::start(&["--outbound-limit", "65536", "--max-payload", "8192"]);
    // The slow member: a raw socket that upgrades, joins, then never reads.
    let mut raw = tokio::net::TcpStream::connect(server.ws).await.unwrap();
    raw.write_all(
        b"GET /ws?user=slow HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    .await
    .unwrap();
    let join = br#"{"op":"join","room":"flood"}"#;
    let mut frame = vec![0x81, 0x80 | join.len() as u8, 0, 0, 0, 0];
    frame.extend_from_slice(join);
    raw.write_all(&frame).await.unwrap();
    let mut reader = Client::connect(&server, "reader").await;
    reader.join("flood").await;
    let mut p = Client::connect(&server, "pub").await;
    // Make sure the slow member's join went through before flooding.
    p.send(json!({"op":"members","room":"flood"})).await;
    loop {
        let m = p.recv_op("members").await;
        if m["count"] == 2 {
            break;
        }
        p.send(json!({"op":"members","room":"flood"})).await;
    }
    const N: u64 = 3000;
    let blob = "x".repeat(6000);
    // The reading member reports its progress; the publisher stays at most
    // a few messages ahead of it, so only the member that stopped reading
    // can fall behind.
    let (progress_tx, mut progress) = tokio::sync::watch::channel(0u64);
    let reader_task = tokio::spawn(async move {
        let mut last = 0;
        while last < N {
            let v = reader.recv_op("message").await;
            let seq = v["seq"].as_u64().unwrap();
            assert_eq!(seq, last + 1);
            last = seq;
            let _ = progress_tx.send(last);
        }
        last
    });
    // The publisher's acks are read on their own task so that it is never
    // a slow consumer itself.
    let (mut sender, mut acks_in) = futures_util::StreamExt::split(p.ws);
    let acks = tokio::spawn(async move {
        let mut acks = 0u64;
        while acks < N {
            match futures_util::StreamExt::next(&mut acks_in).await {
                Some(Ok(tokio_tungstenite::tungstenite::Message::Text(t)))
                    if t.contains("\"op\":\"ok\"") =>
                {
                    acks += 1
                }
                Some(Ok(_)) => {}
                other => panic!("publisher stream ended: {other:?}"),
            }
        }
        acks
    });
    for i in 0..N {
        while *progress.borrow() + 4 < i {
            progress.changed().await.unwrap();
        }
        let req = json!({"op":"publish","room":"flood","data":{"i":i,"blob":blob}});
        futures_util::SinkExt::send(
            &mut sender,
            tokio_tungstenite::tungstenite::Message::Text(req.to_string()),
        )
        .await
        .unwrap();
    }
    assert_eq!(tokio::time::timeout(WAIT, acks).await.unwrap().unwrap(), N);
    assert_eq!(reader_task.await.unwrap(), N);
    let stats = server.stats().await;
    assert!(
        stats["node"]["slow_consumer_closes"].as_u64().unwrap() >= 1,
        "{stats}"
    );
    // The slow socket was closed by the server: draining it ends (EOF or reset).
    let mut sink = vec![0u8; 1 << 16];
    let drained = tokio::time::timeout(WAIT, async {
        loop {
            match raw.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(
        drained.is_ok(),
        "the slow consumer's connection was not closed"
    );
}

#[tokio::test]
async fn stats_and_metrics_move_per_shard() {
    let server = Server::start(&[]);
    let before = server.stats().await;
    assert_eq!(before["shards"].as_array().unwrap().len(), 2);
    assert_eq!(before["node"]["deliveries"], 0);
    let mut clients = clients_on_every_shard(&server, 2, 1, "s").await;
    for c in clients.iter_mut() {
        c.join("stat").await;
    }
    clients[0]
        .send(json!({"op":"publish","room":"stat","data":1}))
        .await;
    for c in clients.iter_mut() {
        c.recv_op("message").await;
    }
    let after = server.stats().await;
    assert_eq!(per_shard(&after, "deliveries"), vec![1, 1], "{after}");
    assert_eq!(per_shard(&after, "connections"), vec![1, 1]);
    assert_eq!(after["node"]["messages_in"], 1);
    assert_eq!(after["node"]["memberships"], 2);
    assert!(
        after["node"]["ring_sent"].as_u64().unwrap() >= 1,
        "members on two shards need the ring"
    );
    for s in after["shards"].as_array().unwrap() {
        let driver = s["driver"].as_str().unwrap();
        assert!(["io_uring", "epoll"].contains(&driver));
        // io_uring shards write a turn's sends with one io_uring_enter;
        // epoll shards use sendmsg and count no batches.
        let batches = s["send_batches"].as_u64().unwrap();
        assert_eq!(batches > 0, driver == "io_uring", "{s}");
        assert!(s["writes"].as_u64().unwrap() >= batches, "{s}");
    }
    let (status, metrics) = server.admin_get("/metrics").await;
    assert_eq!(status, 200);
    assert!(
        metrics.contains("ringcast_deliveries_total{shard=\"0\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("ringcast_deliveries_total{shard=\"1\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("# TYPE ringcast_connections_ws gauge"));
    let (status, body) = server.admin_get("/healthz").await;
    assert_eq!((status, body.trim()), (200, "ok"));
    let (status, _) = server.admin_get("/nope").await;
    assert_eq!(status, 404);
}

/// What was queued to a client when the server is told to stop reaches
/// it, in order, before the 1001 close.
#[tokio::test]
async fn graceful_shutdown_delivers_what_was_queued_then_closes() {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    const N: u64 = 2500;
    let server = Server::start(&["--shards", "1", "--outbound-limit", "67108864"]);
    let mut m = Client::connect_small_buffer(&server, "m").await;
    m.join("bye").await;
    let mut p = Client::connect(&server, "p").await;
    let blob = "q".repeat(8000);
    p.send_burst(
        (0..N).map(|i| json!({"op":"publish","room":"bye","data":{"i":i,"b":blob},"id":i})),
    )
    .await;
    let mut acks = 0;
    while acks < N {
        p.recv_op("ok").await;
        acks += 1;
    }
    // 20 MB for a client that has read none of it: most of it is still
    // in the server's queue when the signal comes.
    let status = tokio::task::spawn_blocking(move || server.stop());
    let mut want = 0;
    let code = loop {
        let msg = tokio::time::timeout(WAIT, m.ws.next())
            .await
            .expect("the server sends until the close")
            .expect("stream")
            .expect("websocket");
        match msg {
            Message::Text(t) => {
                let v: Value = serde_json::from_str(&t).unwrap();
                if v["op"] == "message" {
                    assert_eq!(v["data"]["i"], want, "in order, none missing");
                    want += 1;
                }
            }
            Message::Close(frame) => break frame.map(|f| u16::from(f.code)),
            _ => {}
        }
    };
    assert_eq!((want, code), (N, Some(1001)));
    assert!(status.await.unwrap().success());
}

/// With tiny rings and a low congestion threshold, a flood makes the home
/// shard congested: readers pause (counted), nothing is lost, and
/// everyone's requests are taken again once it drains.
#[tokio::test]
async fn congestion_pauses_readers_without_loss() {
    const PER_PUBLISHER: u64 = 2000;
    let server = Server::start(&["--ring-capacity", "16", "--congestion-held-frames", "32"]);
    let mut members = clients_on_every_shard(&server, 2, 2, "cm").await;
    for m in members.iter_mut() {
        m.join("jam").await;
    }
    let publishers = clients_on_every_shard(&server, 2, 1, "cp").await;
    let total = PER_PUBLISHER * publishers.len() as u64;
    let mut tasks = Vec::new();
    for mut p in publishers {
        tasks.push(tokio::spawn(async move {
            p.send_burst((0..PER_PUBLISHER).map(|i| json!({"op":"publish","room":"jam","data":i})))
                .await;
            for _ in 0..PER_PUBLISHER {
                p.recv_op("ok").await;
            }
        }));
    }
    for mut m in members {
        tasks.push(tokio::spawn(async move {
            for want in 1..=total {
                assert_eq!(m.recv_op("message").await["seq"], want);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let stats = server.stats().await;
    assert!(
        stats["node"]["congestion_pauses"].as_u64().unwrap() > 0,
        "no reader ever paused: {stats}"
    );
    // Paused readers were woken: a new request is served.
    let mut c = Client::connect(&server, "after").await;
    c.send(json!({"op":"ping","id":1})).await;
    assert_eq!(c.recv().await, json!({"op":"pong","id":1}));
}

#[tokio::test]
async fn graceful_shutdown_closes_with_1001_and_exits_zero() {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    let server = Server::start(&[]);
    let mut clients = clients_on_every_shard(&server, 2, 1, "g").await;
    let status = tokio::task::spawn_blocking(move || server.stop());
    for c in clients.iter_mut() {
        let frame = loop {
            let msg = tokio::time::timeout(WAIT, c.ws.next())
                .await
                .unwrap()
                .unwrap()
                .unwrap();
            if let Message::Close(frame) = msg {
                break frame;
            }
        };
        let frame = frame.expect("a close frame with a code");
        assert_eq!(u16::from(frame.code), 1001);
    }
    assert!(status.await.unwrap().success());
}

/// History and since-recovery never answer with more than half the
/// connection's outbound bound: history pages with `"more":true`, a cut
/// backlog says `"recovered":false`, and the connection survives.
#[tokio::test]
async fn big_backlogs_are_paged_not_fatal() {
    let server = Server::start(&["--outbound-limit", "40000", "--max-payload", "8192"]);
    let mut p = Client::connect(&server, "p").await;
    p.join("heavy").await;
    let blob = "y".repeat(6000);
    for i in 0..20 {
        p.send(json!({"op":"publish","room":"heavy","data":{"i":i,"blob":blob}}))
            .await;
        while p.recv_op("ok").await["seq"] != i + 1 {}
    }
    let mut m = Client::connect(&server, "m").await;
    let mut since = 0;
    let mut pages = 0;
    loop {
        m.send(json!({"op":"history","room":"heavy","since":since,"limit":100}))
            .await;
        let h = m.recv_op("history").await;
        let seqs: Vec<u64> = h["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["seq"].as_u64().unwrap())
            .collect();
        assert!(!seqs.is_empty(), "{h}");
        assert_eq!(
            seqs,
            (since + 1..=since + seqs.len() as u64).collect::<Vec<_>>()
        );
        since = *seqs.last().unwrap();
        pages += 1;
        if h["more"] != true {
            break;
        }
    }
    assert_eq!(since, 20);
    assert!(pages > 1, "20 × 6 KB cannot fit one 20 KB reply");
    m.send(json!({"op":"join","room":"heavy","since":0,"id":1}))
        .await;
    let ok = m.recv_main().await;
    assert_eq!(
        (ok["op"].as_str(), ok["recovered"].as_bool()),
        (Some("ok"), Some(false)),
        "{ok}"
    );
    let first = m.recv_main().await["seq"].as_u64().unwrap();
    for want in first + 1..=20 {
        assert_eq!(m.recv_main().await["seq"], want);
    }
    m.send(json!({"op":"ping","id":2})).await;
    assert_eq!(m.recv_main().await, json!({"op":"pong","id":2}));
}

/// Rooms nobody is in are dropped, oldest first, once a shard's retained
/// history passes its budget; rooms with members keep theirs.
#[tokio::test]
async fn retained_history_is_bounded_by_evicting_memberless_rooms() {
    let server = Server::start(&[
        "--shards",
        "1",
        "--retained-bytes",
        "100000",
        "--max-payload",
        "8192",
    ]);
    let mut keeper = Client::connect(&server, "k").await;
    keeper.join("kept").await;
    let mut p = Client::connect(&server, "p").await;
    let blob = "z".repeat(4000);
    keeper
        .send(json!({"op":"publish","room":"kept","data":blob}))
        .await;
    keeper.recv_op("ok").await;
    for i in 0..100 {
        p.send(json!({"op":"publish","room":format!("spam-{i}"),"data":blob}))
            .await;
        p.recv_op("ok").await;
    }
    let stats = server.stats().await;
    assert!(
        stats["node"]["rooms_evicted"].as_u64().unwrap() >= 80,
        "{stats}"
    );
    assert!(
        stats["node"]["rooms_homed"].as_u64().unwrap() <= 20,
        "{stats}"
    );
    keeper
        .send(json!({"op":"history","room":"kept","since":0}))
        .await;
    let h = keeper.recv_op("history").await;
    assert_eq!(
        h["messages"].as_array().unwrap().len(),
        1,
        "a room with members keeps its history"
    );
}

/// With tiny rings between the shards, frames wait in the sender's hold
/// queue (counted as ring_full) and still arrive complete and in order.
#[tokio::test]
async fn full_rings_hold_frames_without_loss() {
    const PER_PUBLISHER: u64 = 1500;
    let server = Server::start(&["--ring-capacity", "16"]);
    let mut members = clients_on_every_shard(&server, 2, 3, "f").await;
    for m in members.iter_mut() {
        m.join("tight").await;
    }
    let publishers = clients_on_every_shard(&server, 2, 1, "fp").await;
    let total = PER_PUBLISHER * publishers.len() as u64;
    let mut tasks = Vec::new();
    for mut p in publishers {
        tasks.push(tokio::spawn(async move {
            // One write: the server reads hundreds of publishes in one go
            // and pushes their frames far faster than the room's home
            // takes them off a 16-slot ring.
            p.send_burst(
                (0..PER_PUBLISHER).map(|i| json!({"op":"publish","room":"tight","data":i})),
            )
            .await;
            let mut acks = 0;
            while acks < PER_PUBLISHER {
                p.recv_op("ok").await;
                acks += 1;
            }
        }));
    }
    let mut readers = Vec::new();
    for mut m in members {
        readers.push(tokio::spawn(async move {
            for want in 1..=total {
                assert_eq!(m.recv_op("message").await["seq"], want);
            }
        }));
    }
    for t in tasks.into_iter().chain(readers) {
        t.await.unwrap();
    }
    let stats = server.stats().await;
    assert!(
        stats["node"]["ring_full"].as_u64().unwrap() > 0,
        "rings never filled: {stats}"
    );
}
