//! Identity and access against a real server: tokens minted by the
//! `jsonwebtoken` crate's encoder with keys made by openssl
//! (`tests/keys/`), RESP AUTH with the redis crate and redis-cli, the admin
//! token, rate limits and origins.

mod common;

use std::time::{SystemTime, UNIX_EPOCH};

use common::*;
use futures_util::{SinkExt, StreamExt};
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;

const SECRET: &str = "test-secret-of-enough-length-0123456789";

fn key_path(name: &str) -> String {
    format!("{}/tests/keys/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A token for `claims` signed HS256 with `secret`.
fn hs256(secret: &str, claims: &Value) -> String {
    encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

/// The usual claims: `sub`, an hour to live, some rooms.
fn claims(sub: &str, rooms: &[&str]) -> Value {
    json!({"sub": sub, "exp": now() + 3600, "rooms": rooms})
}

fn jwt_server(extra: &[&str]) -> Server {
    let mut args = vec!["--auth-mode", "jwt", "--auth-hmac-secret", SECRET];
    args.extend_from_slice(extra);
    Server::start(&args)
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn open(server: &Server, query: &str) -> Ws {
    let url = format!("ws://{}/ws{query}", server.ws);
    tokio_tungstenite::connect_async(url)
        .await
        .expect("upgrade")
        .0
}

/// What the server says next: a JSON text, or the close code it sent.
async fn next(ws: &mut Ws) -> Result<Value, u16> {
    loop {
        let msg = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("the server answers")
            .expect("the stream goes on")
            .expect("no websocket error");
        match msg {
            Message::Text(t) => return Ok(serde_json::from_str(&t).unwrap()),
            Message::Close(f) => return Err(f.map_or(1005, |f| u16::from(f.code))),
            _ => {}
        }
    }
}

/// Opens a connection and sends `token` as its first frame: the welcome,
/// or the close code.
async fn log_in(server: &Server, token: &str) -> (Ws, Result<Value, u16>) {
    let mut ws = open(server, "").await;
    ws.send(Message::Text(
        json!({"op":"auth","token":token}).to_string(),
    ))
    .await
    .unwrap();
    let first = next(&mut ws).await;
    (ws, first)
}

/// The reply's error code, or its op when it is no error (`"ok"`, …).
async fn outcome(ws: &mut Ws, req: Value) -> String {
    let v = request(ws, req).await;
    v["code"]
        .as_str()
        .unwrap_or(v["op"].as_str().unwrap())
        .to_string()
}

async fn request(ws: &mut Ws, req: Value) -> Value {
    ws.send(Message::Text(req.to_string())).await.unwrap();
    loop {
        let v = next(ws).await.expect("not closed");
        if v["op"] != "presence" && v["op"] != "typing" && v["op"] != "message" {
            return v;
        }
    }
}

#[tokio::test]
async fn a_valid_hs256_token_is_the_user_and_user_query_is_ignored() {
    let server = jwt_server(&[]);
    let token = hs256(SECRET, &claims("ann", &["lobby"]));
    // First frame.
    let (mut ws, welcome) = log_in(&server, &token).await;
    let welcome = welcome.unwrap();
    assert_eq!(
        (welcome["op"].as_str(), welcome["user"].as_str()),
        (Some("welcome"), Some("ann"))
    );
    // ?token= in the URL, and ?user= trying to be someone else.
    let mut spoof = open(&server, &format!("?user=mallory&token={token}")).await;
    assert_eq!(next(&mut spoof).await.unwrap()["user"], "ann");
    // Messages carry the token's user.
    assert_eq!(
        request(&mut ws, json!({"op":"join","room":"lobby","id":1})).await["op"],
        "ok"
    );
    request(
        &mut spoof,
        json!({"op":"publish","room":"lobby","data":"hi","id":2}),
    )
    .await;
    let msg = loop {
        let v = next(&mut ws).await.unwrap();
        if v["op"] == "message" {
            break v;
        }
    };
    assert_eq!(msg["user"], "ann");
}

#[tokio::test]
async fn rs256_by_pem_and_es256_by_jwks_kid() {
    let rsa = std::fs::read(key_path("rsa.pem")).unwrap();
    let ec = std::fs::read(key_path("ec.pem")).unwrap();
    let pem = key_path("rsa_pub.pem");
    let server = Server::start(&[
        "--auth-mode",
        "jwt",
        "--auth-public-key-file",
        &pem,
        "--auth-algorithms",
        "RS256",
    ]);
    let token = encode(
        &Header::new(Algorithm::RS256),
        &claims("rita", &[]),
        &EncodingKey::from_rsa_pem(&rsa).unwrap(),
    )
    .unwrap();
    assert_eq!(log_in(&server, &token).await.1.unwrap()["user"], "rita");
    let jwks = key_path("jwks.json");
    let server = Server::start(&[
        "--auth-mode",
        "jwt",
        "--auth-jwks-file",
        &jwks,
        "--auth-algorithms",
        "ES256,RS256",
    ]);
    let signed = |alg, kid: &str, sub: &str, key: &EncodingKey| {
        let mut header = Header::new(alg);
        header.kid = Some(kid.into());
        encode(&header, &claims(sub, &[]), key).unwrap()
    };
    let ec_key = EncodingKey::from_ec_pem(&ec).unwrap();
    let token = signed(Algorithm::ES256, "ec-1", "eve", &ec_key);
    assert_eq!(log_in(&server, &token).await.1.unwrap()["user"], "eve");
    let rsa_key = EncodingKey::from_rsa_pem(&rsa).unwrap();
    let token = signed(Algorithm::RS256, "rsa-1", "rob", &rsa_key);
    assert_eq!(log_in(&server, &token).await.1.unwrap()["user"], "rob");
    // A kid the set does not have.
    let token = signed(Algorithm::ES256, "nope", "eve", &ec_key);
    assert_eq!(log_in(&server, &token).await.1, Err(4001));
}

fn b64(v: &Value) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
}

#[tokio::test]
async fn forged_and_unfit_tokens_are_refused() {
    let server = jwt_server(&["--auth-audience", "chat", "--auth-issuer", "backend"]);
    let good = json!({"sub":"ann","exp":now()+3600,"aud":"chat","iss":"backend"});
    assert!(log_in(&server, &hs256(SECRET, &good)).await.1.is_ok());
    // alg: none, no signature.
    let none = format!(
        "{}.{}.",
        b64(&json!({"alg":"none","typ":"JWT"})),
        b64(&good)
    );
    assert_eq!(log_in(&server, &none).await.1, Err(4001), "alg none");
    // A payload changed after signing.
    let token = hs256(SECRET, &good);
    let parts: Vec<&str> = token.split('.').collect();
    let evil = json!({"sub":"admin","exp":now()+3600,"aud":"chat","iss":"backend"});
    let tampered = format!("{}.{}.{}", parts[0], b64(&evil), parts[2]);
    assert_eq!(log_in(&server, &tampered).await.1, Err(4001), "tampered");
    assert_eq!(
        log_in(&server, &hs256("other-secret", &good)).await.1,
        Err(4001),
        "wrong key"
    );
    let mut expired = good.clone();
    expired["exp"] = json!(now() - 3600);
    assert_eq!(
        log_in(&server, &hs256(SECRET, &expired)).await.1,
        Err(4002),
        "expired"
    );
    let mut early = good.clone();
    early["nbf"] = json!(now() + 3600);
    assert_eq!(
        log_in(&server, &hs256(SECRET, &early)).await.1,
        Err(4001),
        "nbf ahead"
    );
    let mut aud = good.clone();
    aud["aud"] = json!("elsewhere");
    assert_eq!(
        log_in(&server, &hs256(SECRET, &aud)).await.1,
        Err(4001),
        "wrong aud"
    );
    let mut iss = good.clone();
    iss["iss"] = json!("mallory");
    assert_eq!(
        log_in(&server, &hs256(SECRET, &iss)).await.1,
        Err(4001),
        "wrong iss"
    );
    let mut nosub = good.clone();
    nosub.as_object_mut().unwrap().remove("sub");
    assert_eq!(
        log_in(&server, &hs256(SECRET, &nosub)).await.1,
        Err(4001),
        "no sub"
    );
    let mut noexp = good.clone();
    noexp.as_object_mut().unwrap().remove("exp");
    assert_eq!(
        log_in(&server, &hs256(SECRET, &noexp)).await.1,
        Err(4001),
        "no exp"
    );
    assert_eq!(log_in(&server, "not.a.token").await.1, Err(4001), "garbage");
    let stats = server.stats().await;
    assert!(errors_total(&stats, "unauthorized") >= 10, "{stats}");
}

fn errors_total(stats: &Value, kind: &str) -> u64 {
    stats["shards"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["errors"][kind].as_u64().unwrap())
        .sum()
}

/// The server has an RSA public key for RS256: an HS256 token "signed"
/// with that public key as its secret finds no HMAC key to be checked with.
#[tokio::test]
async fn no_hs_rs_confusion() {
    let pem = key_path("rsa_pub.pem");
    let server = Server::start(&[
        "--auth-mode",
        "jwt",
        "--auth-public-key-file",
        &pem,
        "--auth-algorithms",
        "RS256",
    ]);
    let public = std::fs::read(&pem).unwrap();
    let forged = encode(
        &Header::new(Algorithm::HS256),
        &claims("admin", &["*"]),
        &EncodingKey::from_secret(&public),
    )
    .unwrap();
    assert_eq!(log_in(&server, &forged).await.1, Err(4001));
}

#[tokio::test]
async fn room_patterns_allow_and_deny() {
    let server = jwt_server(&[]);
    let token = hs256(
        SECRET,
        &json!({"sub":"ann","exp":now()+3600,"rooms":["lobby","team:42:*"],"publish":["team:42:*"]}),
    );
    let (mut ws, w) = log_in(&server, &token).await;
    w.unwrap();
    assert_eq!(
        outcome(&mut ws, json!({"op":"join","room":"lobby","id":1})).await,
        "ok"
    );
    assert_eq!(
        outcome(&mut ws, json!({"op":"join","room":"team:42:dev","id":2})).await,
        "ok"
    );
    assert_eq!(
        outcome(&mut ws, json!({"op":"join","room":"secret","id":3})).await,
        "forbidden"
    );
    // Publish only where `publish` says.
    assert_eq!(
        outcome(
            &mut ws,
            json!({"op":"publish","room":"lobby","data":1,"id":4})
        )
        .await,
        "forbidden"
    );
    assert_eq!(
        outcome(
            &mut ws,
            json!({"op":"publish","room":"team:42:dev","data":1,"id":5})
        )
        .await,
        "ok"
    );
    assert_eq!(
        outcome(
            &mut ws,
            json!({"op":"publish","room":"secret","data":1,"id":6})
        )
        .await,
        "forbidden"
    );
    assert_eq!(
        outcome(&mut ws, json!({"op":"typing","room":"lobby","id":7})).await,
        "forbidden"
    );
    // Reading needs the room's pattern.
    assert_eq!(
        outcome(&mut ws, json!({"op":"history","room":"secret","id":8})).await,
        "forbidden"
    );
    assert_eq!(
        outcome(&mut ws, json!({"op":"members","room":"secret","id":9})).await,
        "forbidden"
    );
    assert_eq!(
        outcome(&mut ws, json!({"op":"history","room":"lobby","id":10})).await,
        "history"
    );
    assert_eq!(
        outcome(&mut ws, json!({"op":"members","room":"team:42:x","id":11})).await,
        "members"
    );
    // The connection stays.
    assert_eq!(
        request(&mut ws, json!({"op":"ping","id":12})).await["op"],
        "pong"
    );
    // A room token for this user and room lets it in.
    let pass = hs256(
        SECRET,
        &json!({"sub":"ann","room":"secret","exp":now()+600}),
    );
    assert_eq!(
        outcome(
            &mut ws,
            json!({"op":"join","room":"secret","token":pass,"id":13})
        )
        .await,
        "ok"
    );
    assert_eq!(
        outcome(
            &mut ws,
            json!({"op":"publish","room":"secret","data":1,"id":14})
        )
        .await,
        "ok"
    );
    // Someone else's room token, or one for another room, does not.
    let other = hs256(SECRET, &json!({"sub":"bob","room":"vault","exp":now()+600}));
    assert_eq!(
        outcome(
            &mut ws,
            json!({"op":"join","room":"vault","token":other,"id":15})
        )
        .await,
        "unauthorized"
    );
    let wrong_room = hs256(
        SECRET,
        &json!({"sub":"ann","room":"secret","exp":now()+600}),
    );
    assert_eq!(
        outcome(
            &mut ws,
            json!({"op":"join","room":"vault","token":wrong_room,"id":16})
        )
        .await,
        "unauthorized"
    );
    let stats = server.stats().await;
    assert!(errors_total(&stats, "forbidden") >= 6, "{stats}");
}

/// What the server sends `ws` up to the reply to `id`: the events before
/// it (presence and messages left out) and the reply.
async fn events_then_reply(ws: &mut Ws, id: &str) -> (Vec<Value>, Value) {
    let mut events = Vec::new();
    loop {
        let v = next(ws).await.expect("not closed");
        if v["id"] == id {
            return (events, v);
        }
        if v["op"] != "presence" && v["op"] != "message" && v["op"] != "typing" {
            events.push(v);
        }
    }
}

/// A room token opens its room until its `exp` (+ leeway): then the
/// connection is taken out of the room, told why, and refused there; and
/// leaving the room spends it.
#[tokio::test]
async fn a_room_token_ends_at_its_exp_and_at_leave() {
    let server = jwt_server(&[
        "--auth-leeway-s",
        "0",
        "--auth-timeout-ms",
        "200",
        "--presence-interval-ms",
        "0",
    ]);
    let (mut ann, w) = log_in(&server, &hs256(SECRET, &claims("ann", &["lobby"]))).await;
    w.unwrap();
    let (mut bob, w) = log_in(&server, &hs256(SECRET, &claims("bob", &["secret"]))).await;
    w.unwrap();
    assert_eq!(
        request(&mut bob, json!({"op":"join","room":"secret","id":1})).await["op"],
        "ok"
    );
    let exp = now() + 2;
    let pass = hs256(SECRET, &json!({"sub":"ann","room":"secret","exp":exp}));
    let joined = request(
        &mut ann,
        json!({"op":"join","room":"secret","token":pass,"id":1}),
    )
    .await;
    assert_eq!(joined["op"], "ok", "{joined}");
    // Another room, its pass as short, renewed by joining again with a
    // longer one before it ends.
    for (i, exp) in [(3, exp), (4, now() + 600)] {
        let renewed = hs256(SECRET, &json!({"sub":"ann","room":"renewed","exp":exp}));
        let joined = request(
            &mut ann,
            json!({"op":"join","room":"renewed","token":renewed,"id":i}),
        )
        .await;
        assert_eq!(joined["op"], "ok", "{joined}");
    }
    let published = request(
        &mut ann,
        json!({"op":"publish","room":"secret","data":"in","id":2}),
    )
    .await;
    assert_eq!(published["op"], "ok", "{published}");
    // At exp the connection is out of the room, and says so.
    let event = loop {
        let v = next(&mut ann).await.expect("not closed");
        if v["op"] == "error" {
            break v;
        }
    };
    assert_eq!(
        (&event["code"], &event["room"], event.get("id")),
        (&json!("forbidden"), &json!("secret"), None),
        "{event}"
    );
    // The same sweep would have ended the other pass: its room stays.
    ann.send(Message::Text(json!({"op":"ping","id":"p"}).to_string()))
        .await
        .unwrap();
    let (events, _) = events_then_reply(&mut ann, "p").await;
    assert!(events.is_empty(), "{events:?}");
    let published = request(
        &mut ann,
        json!({"op":"publish","room":"renewed","data":"still","id":5}),
    )
    .await;
    assert_eq!(published["op"], "ok", "{published}");
    // The home has it leave: the other member sees it go.
    loop {
        let v = next(&mut bob).await.unwrap();
        if v["op"] == "presence" && v["user"] == "ann" && v["event"] == "leave" {
            break;
        }
    }
    for (i, req) in [
        json!({"op":"publish","room":"secret","data":"x"}),
        json!({"op":"history","room":"secret"}),
        json!({"op":"members","room":"secret"}),
        json!({"op":"join","room":"secret"}),
    ]
    .into_iter()
    .enumerate()
    {
        let mut req = req;
        req["id"] = json!(10 + i);
        assert_eq!(outcome(&mut ann, req.clone()).await, "forbidden", "{req}");
    }
    let again = request(
        &mut ann,
        json!({"op":"join","room":"secret","token":pass,"id":20}),
    )
    .await;
    assert_eq!(
        (again["code"].as_str(), again["message"].as_str()),
        (Some("unauthorized"), Some("room token: token expired")),
        "{again}"
    );
    // Leaving spends a room token: back in takes one again.
    let vault = hs256(SECRET, &json!({"sub":"ann","room":"vault","exp":now()+600}));
    let with_token = json!({"op":"join","room":"vault","token":vault,"id":30});
    assert_eq!(outcome(&mut ann, with_token.clone()).await, "ok");
    assert_eq!(
        outcome(&mut ann, json!({"op":"leave","room":"vault","id":31})).await,
        "ok"
    );
    assert_eq!(
        outcome(&mut ann, json!({"op":"join","room":"vault","id":32})).await,
        "forbidden"
    );
    assert_eq!(
        outcome(
            &mut ann,
            json!({"op":"publish","room":"vault","data":1,"id":33})
        )
        .await,
        "forbidden"
    );
    assert_eq!(outcome(&mut ann, with_token).await, "ok");
}

/// A refresh whose `rooms` no longer cover a room the connection is in
/// takes it out of that room, before the refresh's answer.
#[tokio::test]
async fn a_refresh_that_drops_a_room_leaves_it() {
    let server = jwt_server(&["--presence-interval-ms", "0"]);
    let (mut ann, w) = log_in(
        &server,
        &hs256(SECRET, &claims("ann", &["lobby", "team:*"])),
    )
    .await;
    w.unwrap();
    for (i, room) in ["lobby", "team:1", "team:2"].into_iter().enumerate() {
        let ok = request(&mut ann, json!({"op":"join","room":room,"id":i})).await;
        assert_eq!(ok["op"], "ok", "{ok}");
    }
    // A room token keeps the room it is for.
    let pass = hs256(SECRET, &json!({"sub":"ann","room":"dm:1","exp":now()+600}));
    let ok = request(
        &mut ann,
        json!({"op":"join","room":"dm:1","token":pass,"id":"t"}),
    )
    .await;
    assert_eq!(ok["op"], "ok", "{ok}");
    let narrower = hs256(SECRET, &claims("ann", &["lobby"]));
    ann.send(Message::Text(
        json!({"op":"refresh","token":narrower,"id":"r"}).to_string(),
    ))
    .await
    .unwrap();
    let (events, reply) = events_then_reply(&mut ann, "r").await;
    assert_eq!(reply["op"], "ok", "{reply}");
    let mut left: Vec<&str> = events
        .iter()
        .map(|e| {
            assert_eq!(
                (&e["op"], &e["code"]),
                (&json!("error"), &json!("forbidden")),
                "{e}"
            );
            e["room"].as_str().unwrap()
        })
        .collect();
    left.sort();
    assert_eq!(left, ["team:1", "team:2"], "{events:?}");
    assert_eq!(
        outcome(&mut ann, json!({"op":"leave","room":"team:1","id":1})).await,
        "not_member"
    );
    assert_eq!(
        outcome(&mut ann, json!({"op":"leave","room":"dm:1","id":2})).await,
        "ok"
    );
    assert_eq!(
        outcome(
            &mut ann,
            json!({"op":"publish","room":"lobby","data":1,"id":3})
        )
        .await,
        "ok"
    );
}

#[tokio::test]
async fn info_is_shown_with_the_user_and_is_bounded() {
    let server = jwt_server(&[
        "--limits-max-info-bytes",
        "64",
        "--presence-interval-ms",
        "0",
    ]);
    let mut with_info = claims("ann", &["lobby"]);
    with_info["info"] = json!({"name": "Ann", "avatar": "/a.png"});
    let (mut ann, w) = log_in(&server, &hs256(SECRET, &with_info)).await;
    w.unwrap();
    let (mut bob, w) = log_in(&server, &hs256(SECRET, &claims("bob", &["lobby"]))).await;
    w.unwrap();
    let join = json!({"op":"join","room":"lobby","id":1});
    assert_eq!(request(&mut bob, join.clone()).await["op"], "ok");
    assert_eq!(request(&mut ann, join).await["op"], "ok");
    // Bob sees Ann arrive with her info.
    let seen = loop {
        let v = next(&mut bob).await.unwrap();
        if v["op"] == "presence" {
            break v;
        }
    };
    assert_eq!(
        (&seen["user"], &seen["event"], &seen["info"]),
        (
            &json!("ann"),
            &json!("join"),
            &json!({"name": "Ann", "avatar": "/a.png"})
        ),
        "{seen}"
    );
    let members = request(&mut bob, json!({"op":"members","room":"lobby","id":2})).await;
    assert_eq!(members["users"], json!(["ann", "bob"]), "{members}");
    assert_eq!(
        members["info"],
        json!({"ann": {"name": "Ann", "avatar": "/a.png"}})
    );
    // Too big, or not an object: the token is refused.
    let mut big = claims("cy", &["lobby"]);
    big["info"] = json!({"bio": "x".repeat(100)});
    assert_eq!(log_in(&server, &hs256(SECRET, &big)).await.1, Err(4001));
    let mut not_object = claims("cy", &["lobby"]);
    not_object["info"] = json!("Cy");
    assert_eq!(
        log_in(&server, &hs256(SECRET, &not_object)).await.1,
        Err(4001)
    );
}

#[tokio::test]
async fn refresh_extends_and_expiry_closes() {
    let server = jwt_server(&["--auth-leeway-s", "0"]);
    // Expires in 2 s.
    let short = hs256(SECRET, &json!({"sub":"ann","exp":now()+2,"rooms":["*"]}));
    let (mut a, w) = log_in(&server, &short).await;
    w.unwrap();
    let (mut b, w) = log_in(&server, &short).await;
    w.unwrap();
    // a refreshes in time; b does not.
    let long = hs256(SECRET, &json!({"sub":"ann","exp":now()+3600,"rooms":["*"]}));
    let ok = request(&mut a, json!({"op":"refresh","token":long,"id":"r"})).await;
    assert_eq!(
        (ok["op"].as_str(), ok["id"].as_str()),
        (Some("ok"), Some("r")),
        "{ok}"
    );
    assert!(ok["exp"].as_u64().unwrap() > now() + 3000);
    assert_eq!(next(&mut b).await, Err(4002), "b's token expired");
    assert_eq!(
        request(&mut a, json!({"op":"ping","id":1})).await["op"],
        "pong"
    );
    // A refresh that does not verify is refused; the old token stands.
    let bad = request(&mut a, json!({"op":"refresh","token":"x.y.z","id":2})).await;
    assert_eq!(bad["code"], "unauthorized");
    // A refresh for someone else closes the connection.
    let other = hs256(SECRET, &claims("mallory", &["*"]));
    a.send(Message::Text(
        json!({"op":"refresh","token":other}).to_string(),
    ))
    .await
    .unwrap();
    assert_eq!(next(&mut a).await, Err(4003));
    let stats = server.stats().await;
    assert!(
        stats["node"]["token_expiries"].as_u64().unwrap() >= 1,
        "{stats}"
    );
}

/// A token that expired less than `auth.leeway_s` ago verifies; the
/// connection then lasts until `exp` + leeway, not only until `exp` (which
/// is already past). The same for a refresh.
#[tokio::test]
async fn leeway_applies_to_the_close_at_expiry_too() {
    // A short auth timeout makes the sweep run every 50 ms.
    let server = jwt_server(&["--auth-leeway-s", "3", "--auth-timeout-ms", "200"]);
    let exp = now() - 1;
    let late = hs256(SECRET, &json!({"sub":"ann","exp":exp,"rooms":["*"]}));
    let (mut a, w) = log_in(&server, &late).await;
    let started = std::time::Instant::now();
    w.unwrap();
    // Closed at exp + 3 s: at least 1 s from now (`now()` rounds down).
    assert_eq!(next(&mut a).await, Err(4002));
    assert!(
        started.elapsed() >= std::time::Duration::from_millis(900),
        "closed {:?} after the welcome",
        started.elapsed()
    );
    // A refresh with such a token: the reply says its exp, and the
    // connection lasts until exp + leeway.
    let (mut b, w) = log_in(&server, &hs256(SECRET, &claims("ann", &["*"]))).await;
    w.unwrap();
    let exp = now() - 1;
    let late = hs256(SECRET, &json!({"sub":"ann","exp":exp,"rooms":["*"]}));
    let ok = request(&mut b, json!({"op":"refresh","token":late,"id":"r"})).await;
    let started = std::time::Instant::now();
    assert_eq!(
        (ok["op"].as_str(), ok["exp"].as_u64()),
        (Some("ok"), Some(exp)),
        "{ok}"
    );
    assert_eq!(next(&mut b).await, Err(4002));
    assert!(
        started.elapsed() >= std::time::Duration::from_millis(900),
        "closed {:?} after the refresh",
        started.elapsed()
    );
}

#[tokio::test]
async fn keys_rotate_on_sighup_without_dropping_connections() {
    let dir = std::env::temp_dir().join(format!("ringcast-rotate-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("secret");
    std::fs::write(&file, "first-secret-0123456789abcdef\n").unwrap();
    let server = Server::start(&[
        "--auth-mode",
        "jwt",
        "--auth-hmac-secret-file",
        file.to_str().unwrap(),
    ]);
    let old = hs256("first-secret-0123456789abcdef", &claims("ann", &["*"]));
    let (mut a, w) = log_in(&server, &old).await;
    w.unwrap();
    std::fs::write(&file, "second-secret-0123456789abcdef\n").unwrap();
    unsafe { libc::kill(server.pid() as i32, libc::SIGHUP) };
    // New tokens verify with the new key (retry while the signal lands).
    let new = hs256("second-secret-0123456789abcdef", &claims("bob", &["*"]));
    let mut welcomed = false;
    for _ in 0..100 {
        if log_in(&server, &new).await.1.is_ok() {
            welcomed = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(welcomed, "the new key is in use");
    assert_eq!(
        log_in(&server, &old).await.1,
        Err(4001),
        "the old key is not"
    );
    // The connection made with the old key is still served.
    assert_eq!(
        request(&mut a, json!({"op":"ping","id":1})).await["op"],
        "pong"
    );
}

#[tokio::test]
async fn no_token_in_time_or_anything_else_first_closes() {
    let server = jwt_server(&["--auth-timeout-ms", "300"]);
    let mut silent = open(&server, "").await;
    assert_eq!(
        next(&mut silent).await,
        Err(4001),
        "nothing within the timeout"
    );
    let mut eager = open(&server, "").await;
    eager
        .send(Message::Text(
            json!({"op":"join","room":"lobby"}).to_string(),
        ))
        .await
        .unwrap();
    assert_eq!(
        next(&mut eager).await,
        Err(4001),
        "a request before the token"
    );
}

/// `auth.timeout_ms` counts from the connect: a client that keeps the
/// connection busy with pings (its own, or pongs to the server's) but never
/// sends a token is closed all the same.
#[tokio::test]
async fn pings_do_not_stretch_the_auth_timeout() {
    let server = jwt_server(&["--auth-timeout-ms", "300", "--ping-interval-ms", "100"]);
    let mut ws = open(&server, "").await;
    let started = std::time::Instant::now();
    let mut ticks = tokio::time::interval(std::time::Duration::from_millis(50));
    let code = tokio::time::timeout(std::time::Duration::from_secs(5), async {
        loop {
            tokio::select! {
                _ = ticks.tick() => {
                    if ws.send(Message::Ping(b"still here".to_vec())).await.is_err() {
                        return None;
                    }
                }
                msg = ws.next() => match msg {
                    Some(Ok(Message::Close(f))) => return f.map(|f| u16::from(f.code)),
                    Some(Ok(_)) => {}
                    _ => return None,
                },
            }
        }
    })
    .await
    .expect("closed within 5 s although it pings every 50 ms");
    assert_eq!(code, Some(4001));
    assert!(
        started.elapsed() >= std::time::Duration::from_millis(200),
        "not before the timeout: {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_flooder_is_rate_limited_and_others_are_not() {
    let server = Server::start(&[
        "--limits-publish-rate",
        "5",
        "--limits-publish-burst",
        "5",
        "--limits-rate-limited-close-ms",
        "60000",
    ]);
    let mut flooder = Client::connect(&server, "flooder").await;
    let mut calm = Client::connect(&server, "calm").await;
    calm.join("room").await;
    flooder
        .send_burst((0..50).map(|i| json!({"op":"publish","room":"room","data":i,"id":i})))
        .await;
    let (mut ok, mut limited) = (0, 0);
    while ok + limited < 50 {
        let v = flooder.recv_main().await;
        match v["op"].as_str() {
            Some("ok") => ok += 1,
            Some("error") => {
                assert_eq!(v["code"], "rate_limited", "{v}");
                assert!(v["retry_after_ms"].as_u64().unwrap() > 0, "{v}");
                limited += 1;
            }
            _ => panic!("{v}"),
        }
    }
    assert!(ok >= 5 && limited >= 40, "{ok} passed, {limited} limited");
    // The calm member's own round trips go through.
    for i in 0..3 {
        calm.send(json!({"op":"publish","room":"room","data":"calm","id":i}))
            .await;
        loop {
            let v = calm.recv_main().await;
            if v["op"] == "ok" && v["id"] == i {
                break;
            }
            assert_ne!(v["op"], "error", "{v}");
        }
    }
    let stats = server.stats().await;
    assert_eq!(errors_total(&stats, "rate_limited"), limited, "{stats}");
}

#[tokio::test]
async fn a_connection_over_the_limit_for_long_is_closed() {
    let server = Server::start(&[
        "--limits-publish-rate",
        "1",
        "--limits-publish-burst",
        "1",
        "--limits-rate-limited-close-ms",
        "200",
    ]);
    let mut c = Client::connect(&server, "flood").await;
    let mut code = None;
    for i in 0..200 {
        if c.ws
            .send(Message::Text(
                json!({"op":"publish","room":"r","data":i}).to_string(),
            ))
            .await
            .is_err()
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        while let Ok(Some(Ok(m))) =
            tokio::time::timeout(std::time::Duration::from_millis(1), c.ws.next()).await
        {
            if let Message::Close(f) = m {
                code = f.map(|f| u16::from(f.code));
            }
        }
        if code.is_some() {
            break;
        }
    }
    assert_eq!(code, Some(4029));
}

/// At the default rates a flooder gets one publish through every 50 ms;
/// it is still over the limit all the time, and is closed once that has
/// lasted `rate_limited_close_ms`.
#[tokio::test]
async fn a_steady_flooder_at_the_default_rates_is_closed() {
    let server = Server::start(&[
        "--limits-publish-rate",
        "20",
        "--limits-publish-burst",
        "40",
        "--limits-rate-limited-close-ms",
        "1000",
    ]);
    let mut c = Client::connect(&server, "flood").await;
    let started = std::time::Instant::now();
    let (mut passed, mut refused) = (0, 0);
    let code = tokio::time::timeout(std::time::Duration::from_secs(8), async {
        loop {
            // 20 at a time, then read their answers: as fast as the server
            // answers, never more than 20 ahead.
            c.send_burst((0..20).map(|i| json!({"op":"publish","room":"r","data":i})))
                .await;
            let mut answered = 0;
            while answered < 20 {
                match c.ws.next().await {
                    Some(Ok(Message::Text(t))) => {
                        let v: Value = serde_json::from_str(&t).unwrap();
                        match (v["op"].as_str(), v["code"].as_str()) {
                            (Some("ok"), _) => passed += 1,
                            (Some("error"), Some("rate_limited")) => refused += 1,
                            _ => panic!("{v}"),
                        }
                        answered += 1;
                    }
                    Some(Ok(Message::Close(f))) => return f.map(|f| u16::from(f.code)),
                    Some(Ok(_)) => {}
                    _ => return None,
                }
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("not closed: {passed} passed, {refused} refused"));
    assert_eq!(code, Some(4029), "{passed} passed, {refused} refused");
    assert!(passed > 40, "some got through all along: {passed}");
    assert!(
        started.elapsed() >= std::time::Duration::from_millis(900),
        "{:?}",
        started.elapsed()
    );
}

/// A client that goes over the limit once, then keeps to the rate, is
/// not closed, however long it stays: a second without a refusal ends the
/// run.
#[tokio::test]
async fn a_client_over_the_limit_once_is_not_closed() {
    let server = Server::start(&[
        "--limits-publish-rate",
        "20",
        "--limits-publish-burst",
        "40",
        "--limits-rate-limited-close-ms",
        "1000",
    ]);
    let mut c = Client::connect(&server, "eager").await;
    c.send_burst((0..41).map(|i| json!({"op":"publish","room":"r","data":i,"id":i})))
        .await;
    let mut refused = 0;
    for _ in 0..41 {
        let v = c.recv_main().await;
        if v["code"] == "rate_limited" {
            refused += 1;
        }
    }
    assert_eq!(refused, 1);
    // Then 10 a second for 1.5 s, from 200 ms on (the bucket lets the
    // next one through 50 ms after the burst): all within the rate.
    let period = std::time::Duration::from_millis(100);
    let start = tokio::time::Instant::now() + 2 * period;
    let mut ticks = tokio::time::interval_at(start, period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    for i in 0..15 {
        ticks.tick().await;
        c.send(json!({"op":"publish","room":"r","data":i,"id":i}))
            .await;
        let v = c.recv_main().await;
        assert_eq!(v["op"], "ok", "{v}");
    }
    // Over the limit again (more than the burst), 1.5 s after the first
    // time: a new run, not one that has lasted 1.5 s.
    c.send_burst((0..60).map(|i| json!({"op":"publish","room":"r","data":i,"id":i})))
        .await;
    let mut refused = 0;
    for _ in 0..60 {
        let v = c.recv_main().await;
        if v["code"] == "rate_limited" {
            refused += 1;
        }
    }
    assert!(refused > 0);
    c.send(json!({"op":"ping","id":"p"})).await;
    assert_eq!(c.recv_main().await["op"], "pong");
}

#[tokio::test]
async fn origins_not_listed_get_403() {
    let server = Server::start(&["--allowed-origins", "https://chat.example.com"]);
    let status = |origin: Option<&'static str>| {
        let addr = server.ws;
        async move {
            let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
            let origin = origin
                .map(|o| format!("Origin: {o}\r\n"))
                .unwrap_or_default();
            let req = format!(
                "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                 Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{origin}\r\n"
            );
            s.write_all(req.as_bytes()).await.unwrap();
            let mut head = [0u8; 12];
            s.read_exact(&mut head).await.unwrap();
            String::from_utf8_lossy(&head).into_owned()
        }
    };
    assert_eq!(
        status(Some("https://chat.example.com")).await,
        "HTTP/1.1 101"
    );
    assert_eq!(status(Some("https://evil.example")).await, "HTTP/1.1 403");
    assert_eq!(status(Some("null")).await, "HTTP/1.1 403");
    assert_eq!(status(None).await, "HTTP/1.1 101", "not a browser");
}

#[tokio::test]
async fn the_admin_token_guards_everything_but_healthz() {
    let server = Server::start(&["--admin-token", "t0ken"]);
    assert_eq!(server.admin_get("/stats").await.0, 401);
    assert_eq!(server.admin_get("/metrics").await.0, 401);
    assert_eq!(server.admin_get("/healthz").await.0, 200);
    assert_eq!(server.admin_get("/readyz").await.0, 200);
    // The dashboard's page loads without the token (it holds no data);
    // what it reads needs it.
    assert_eq!(server.admin_get("/").await.0, 200);
    assert_eq!(server.admin_get("/unknown").await.0, 401);
    let get = |auth: &'static str| {
        let addr = server.admin;
        async move {
            let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
            s.write_all(
                format!("GET /stats HTTP/1.1\r\nHost: x\r\nAuthorization: {auth}\r\n\r\n")
                    .as_bytes(),
            )
            .await
            .unwrap();
            let mut out = String::new();
            s.read_to_string(&mut out).await.unwrap();
            out
        }
    };
    assert!(get("Bearer t0ken").await.starts_with("HTTP/1.1 200"));
    assert!(get("Bearer wrong").await.starts_with("HTTP/1.1 401"));
    assert!(get("t0ken").await.starts_with("HTTP/1.1 401"));
}

// ----- RESP ----------------------------------------------------------------------

fn sha256_hex(s: &str) -> String {
    use sha2::Digest;
    format!("{:x}", sha2::Sha256::digest(s.as_bytes()))
}

fn resp_server() -> Server {
    let backend = format!("backend/{}/news:*/news:eu", sha256_hex("b4ck"));
    Server::start(&["--resp-requirepass", "pa55", "--resp-user", &backend])
}

async fn raw_resp(server: &Server, send: &[u8]) -> String {
    let mut s = tokio::net::TcpStream::connect(server.resp).await.unwrap();
    s.write_all(send).await.unwrap();
    s.shutdown().await.unwrap();
    let mut out = String::new();
    tokio::time::timeout(WAIT, s.read_to_string(&mut out))
        .await
        .unwrap()
        .unwrap();
    out
}

#[tokio::test]
async fn resp_needs_auth_and_checks_it_as_redis_does() {
    let server = resp_server();
    let out = raw_resp(
        &server,
        b"PING\r\nSUBSCRIBE news:eu\r\nAUTH nope\r\nAUTH pa55\r\nPING\r\n",
    )
    .await;
    assert_eq!(
        out,
        "-NOAUTH Authentication required.\r\n-NOAUTH Authentication required.\r\n\
         -WRONGPASS invalid username-password pair or user is disabled.\r\n+OK\r\n+PONG\r\n"
    );
    let out = raw_resp(
        &server,
        b"HELLO 3\r\nHELLO 3 AUTH backend b4ck\r\nCLIENT GETNAME\r\n",
    )
    .await;
    assert!(
        out.starts_with("-NOAUTH HELLO must be called with the client already authenticated"),
        "{out}"
    );
    assert!(out.contains("%7\r\n$6\r\nserver\r\n$5\r\nredis"), "{out}");
    assert!(
        out.ends_with("$7\r\nbackend\r\n"),
        "the user is the RESP user: {out}"
    );
    // Per-user channels.
    let out = raw_resp(
        &server,
        b"AUTH backend b4ck\r\nPUBLISH news:us x\r\nPUBLISH news:eu x\r\nSUBSCRIBE sport\r\nSUBSCRIBE news:us\r\n",
    )
    .await;
    assert_eq!(
        out,
        "+OK\r\n-NOPERM this user has no permissions to access one of the channels used as arguments\r\n\
         :0\r\n-NOPERM this user has no permissions to access one of the channels used as arguments\r\n\
         *3\r\n$9\r\nsubscribe\r\n$7\r\nnews:us\r\n:1\r\n"
    );
}

#[tokio::test]
async fn resp_auth_with_the_redis_crate_and_redis_cli() {
    let server = resp_server();
    // The redis crate, password only (RESP2) and user + password.
    for url in [
        format!("redis://:pa55@{}", server.resp),
        format!("redis://backend:b4ck@{}", server.resp),
    ] {
        let client = redis::Client::open(url.as_str()).unwrap();
        let mut c = client.get_multiplexed_async_connection().await.unwrap();
        let pong: String = redis::cmd("PING").query_async(&mut c).await.unwrap();
        assert_eq!(pong, "PONG", "{url}");
    }
    let wrong = redis::Client::open(format!("redis://:wrong@{}", server.resp).as_str()).unwrap();
    assert!(wrong.get_multiplexed_async_connection().await.is_err());
    // A publish from the RESP user carries it as its user.
    let mut w = Client::connect(&server, "watcher").await;
    w.join("news:eu").await;
    let client =
        redis::Client::open(format!("redis://backend:b4ck@{}", server.resp).as_str()).unwrap();
    let mut c = client.get_multiplexed_async_connection().await.unwrap();
    let n: i64 = redis::cmd("PUBLISH")
        .arg("news:eu")
        .arg("hello")
        .query_async(&mut c)
        .await
        .unwrap();
    assert_eq!(n, 1);
    assert_eq!(w.recv_op("message").await["user"], "backend");
    if !have_tool("redis-cli", "redis-tools") {
        return;
    }
    let port = server.resp.port().to_string();
    let out = std::process::Command::new("redis-cli")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port,
            "-a",
            "pa55",
            "--no-auth-warning",
            "ping",
        ])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "PONG");
    let out = std::process::Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port, "ping"])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("NOAUTH"),
        "{out:?}"
    );
}

/// A web page can make a browser POST to the RESP port; the body's lines
/// would be inline commands. As Redis does, a command named `POST` or
/// `Host:` closes the connection before anything after it runs.
#[tokio::test]
async fn an_http_request_to_the_resp_port_runs_nothing() {
    let server = Server::start(&["--presence-interval-ms", "0"]);
    let mut sub = Client::connect(&server, "sub").await;
    sub.join("r").await;
    let attacks: [&[u8]; 4] = [
        b"POST / HTTP/1.1\r\nHost: x\r\n\r\nPUBLISH r x\r\n",
        b"post /x HTTP/1.1\r\nPUBLISH r x\r\n",
        b"GET / HTTP/1.1\r\nhOsT: 127.0.0.1:6380\r\n\r\nPUBLISH r x\r\n",
        b"*2\r\n$5\r\nHOST:\r\n$1\r\nx\r\n*3\r\n$7\r\nPUBLISH\r\n$1\r\nr\r\n$1\r\nx\r\n",
    ];
    for attack in attacks {
        let mut s = tokio::net::TcpStream::connect(server.resp).await.unwrap();
        s.write_all(attack).await.unwrap();
        // No shutdown from this side: the server must end the connection.
        let mut out = Vec::new();
        tokio::time::timeout(WAIT, s.read_to_end(&mut out))
            .await
            .unwrap_or_else(|_| panic!("not closed: {}", String::from_utf8_lossy(attack)))
            .ok();
        let out = String::from_utf8_lossy(&out);
        assert!(!out.contains(":1\r\n"), "a PUBLISH ran: {out:?}");
    }
    // A real publish after them is the first message the subscriber gets.
    let client = redis::Client::open(format!("redis://{}", server.resp).as_str()).unwrap();
    let mut c = client.get_multiplexed_async_connection().await.unwrap();
    let n: i64 = redis::cmd("PUBLISH")
        .arg("r")
        .arg("real")
        .query_async(&mut c)
        .await
        .unwrap();
    assert_eq!(n, 1);
    let msg = sub.recv_op("message").await;
    assert_eq!(msg["data"], "real", "{msg}");
    let history = {
        sub.send(json!({"op":"history","room":"r","id":"h"})).await;
        sub.recv_op("history").await
    };
    assert_eq!(
        history["messages"].as_array().unwrap().len(),
        1,
        "{history}"
    );
    let stats = server.stats().await;
    assert!(errors_total(&stats, "resp") >= 4, "{stats}");
}

#[tokio::test]
async fn without_passwords_resp_is_open_and_auth_says_so() {
    let server = Server::start(&[]);
    let out = raw_resp(&server, b"AUTH x\r\nPING\r\n").await;
    assert_eq!(
        out,
        "-ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?\r\n+PONG\r\n"
    );
    // As Redis 7, whose default user is `nopass` then: any password for
    // `default` is right, and no other user exists.
    let out = raw_resp(
        &server,
        b"AUTH default anything\r\nAUTH nobody x\r\nHELLO 3 AUTH nobody x\r\nHELLO 3 AUTH default x\r\nPING\r\n",
    )
    .await;
    let wrongpass = "-WRONGPASS invalid username-password pair or user is disabled.\r\n";
    let (first, rest) = out.split_at(5);
    assert_eq!(first, "+OK\r\n", "{out}");
    assert!(
        rest.starts_with(&format!("{wrongpass}{wrongpass}%7\r\n")),
        "{out}"
    );
    assert!(rest.contains("$5\r\nproto\r\n:3\r\n"), "{out}");
    assert!(rest.ends_with("+PONG\r\n"), "{out}");
    // The redis crate sends AUTH default …, and HELLO 3 AUTH default … in
    // RESP3.
    for url in [
        format!("redis://default:anything@{}", server.resp),
        format!("redis://default:anything@{}/?protocol=resp3", server.resp),
    ] {
        let client = redis::Client::open(url.as_str()).unwrap();
        let mut c = client.get_multiplexed_async_connection().await.unwrap();
        let pong: String = redis::cmd("PING").query_async(&mut c).await.unwrap();
        assert_eq!(pong, "PONG", "{url}");
    }
    if !have_tool("redis-cli", "redis-tools") {
        return;
    }
    let port = server.resp.port().to_string();
    let cli = |args: &[&str]| {
        let out = std::process::Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &port, "--no-auth-warning"])
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    assert_eq!(cli(&["--user", "default", "--pass", "x", "ping"]), "PONG");
    assert_eq!(
        cli(&["-3", "--user", "default", "--pass", "x", "ping"]),
        "PONG"
    );
}
