// Tokens (auth.mode = jwt): the token as the first frame, a bad one
// surfaced rather than retried forever, an expired one replaced through
// getToken without losing a message, refresh, and the errors that tokens
// and rate limits bring (forbidden, rate_limited).
//
// These need a server with `--auth-mode` and `--limits-*`; against one
// without them each test says it skipped.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { createHmac } from "node:crypto";
import WebSocket from "ws";

import { connect, RingcastError } from "../ringcast.js";
import { startServer, supports } from "./support/server.js";
import { collect, next, recordingWebSocket } from "./support/events.js";

const SECRET = "test-secret-of-at-least-32-bytes-length";
const hasAuth = supports("--auth-mode");
const hasLimits = supports("--limits-publish-rate");
const why = "this server has no --auth-mode yet";

let server;
const clients = [];
const now = () => Math.floor(Date.now() / 1000);

/** An HS256 JWT. */
function jwt(claims, secret = SECRET) {
  const enc = (o) => Buffer.from(JSON.stringify(o)).toString("base64url");
  const head = `${enc({ alg: "HS256", typ: "JWT" })}.${enc(claims)}`;
  return `${head}.${createHmac("sha256", secret).update(head).digest("base64url")}`;
}

const token = (sub, claims = {}) => jwt({ sub, exp: now() + 600, rooms: ["*"], publish: ["*"], ...claims });

/** A WebSocket constructor that counts the connections it opens. */
function counting() {
  const Counted = class extends WebSocket {
    constructor(...args) {
      super(...args);
      Counted.opened += 1;
    }
  };
  Counted.opened = 0;
  return Counted;
}

const open = (opts) => {
  const c = connect(server.url, { WebSocket, backoffInitialMs: 50, backoffMaxMs: 200, ...opts });
  clients.push(c);
  return c;
};

before(async () => {
  if (!hasAuth) return;
  server = await startServer(["--auth-mode", "jwt", "--auth-hmac-secret", SECRET, "--auth-leeway-s", "0"]);
});

after(async () => {
  await Promise.all(clients.map((c) => c.close()));
  await server?.stop();
});

test("the token goes first and the user is its sub", { skip: !hasAuth && why }, async () => {
  const c = open({ user: "mallory", token: token("ann") });
  const room = await c.join("auth-1");
  assert.equal(c.user, "ann");
  const seen = collect(room, "message");
  await room.publish("hi");
  assert.equal((await seen.until(1))[0].user, "ann");
});

test("a token that does not verify is reported once, not retried", { skip: !hasAuth && why }, async () => {
  const WS = counting();
  const c = open({ token: jwt({ sub: "eve", exp: now() + 600 }, "another-secret-another-secret-xx"), WebSocket: WS });
  const err = await next(c, "error");
  assert.ok(err instanceof RingcastError);
  assert.equal(err.code, "unauthorized");
  assert.equal(err.closeCode, 4001);
  assert.equal(c.state, "closed");
  await assert.rejects(c.join("auth-2"), (e) => e.code === "unauthorized");
  assert.equal(WS.opened, 1);

  // With getToken, a fresh token is asked for once; a second refusal is final.
  const WS2 = counting();
  let asked = 0;
  const d = open({ WebSocket: WS2, getToken: async () => (asked++, jwt({ sub: "eve", exp: now() + 600 }, "x".repeat(40))) });
  await assert.rejects(d.ready(), (e) => e.code === "unauthorized");
  assert.deepEqual([asked, WS2.opened], [2, 2]);
});

test("an expired token is replaced through getToken and nothing is missed", { skip: !hasAuth && why }, async () => {
  const publisher = open({ token: token("pub") });
  const pubRoom = await publisher.join("auth-3");
  let asked = 0;
  const c = open({
    token: token("kim", { exp: now() + 2 }),
    getToken: async () => (asked++, token("kim")),
    refreshAheadMs: 0,
  });
  const room = await c.join("auth-3");
  const seen = collect(room, "message");
  await pubRoom.publish(1);
  const expired = await next(c, "state", (s) => s === "reconnecting", 10_000);
  assert.equal(expired, "reconnecting");
  for (let i = 2; i <= 5; i++) await pubRoom.publish(i);
  await seen.until(5);
  assert.deepEqual(seen.map((m) => m.data), [1, 2, 3, 4, 5]);
  assert.equal(asked, 1);
  assert.equal(c.user, "kim");
});

test("refresh() replaces the token, and getToken refreshes ahead of exp", { skip: !hasAuth && why }, async () => {
  const c = open({ token: token("lee") });
  await c.ready();
  const exp = now() + 900;
  assert.deepEqual(await c.refresh(token("lee", { exp })), { exp });

  const frames = [];
  const soon = now() + 3;
  const later = now() + 1200;
  const d = open({
    token: token("lou", { exp: soon }),
    getToken: async () => token("lou", { exp: later }),
    refreshAheadMs: 2500,
    WebSocket: recordingWebSocket(WebSocket, frames),
  });
  await d.ready();
  // About a second in (3 s before exp, less 2.5 s ahead, at least 1 s).
  await frames.when((f) => f.op === "ok" && f.exp === later);
  assert.equal(d.state, "open");
});

test("what the token does not allow is refused as forbidden", { skip: !hasAuth && why }, async () => {
  const c = open({ token: token("max", { rooms: ["lobby", "team-*"], publish: ["lobby"] }) });
  await c.join("team-7");
  await assert.rejects(c.join("secret"), (e) => e instanceof RingcastError && e.code === "forbidden");
  await assert.rejects(c.publish("team-7", "no"), (e) => e.code === "forbidden");
  assert.equal((await c.publish("lobby", "yes")).seq, 1);
});

test("over the publish rate: rate_limited, with when to try again", { skip: !hasLimits && "this server has no --limits-* yet" }, async () => {
  const limited = await startServer(["--limits-publish-rate", "1", "--limits-publish-burst", "1"]);
  try {
    const c = connect(limited.url, { user: "rae", WebSocket });
    clients.push(c);
    await c.publish("auth-6", 1);
    const err = await c.publish("auth-6", 2).then(
      () => assert.fail("the second publish went through"),
      (e) => e,
    );
    assert.equal(err.code, "rate_limited");
    assert.ok(err.retryAfterMs > 0, `retryAfterMs ${err.retryAfterMs}`);
    await c.close();
  } finally {
    await limited.stop();
  }
});
