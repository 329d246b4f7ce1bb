// Requests: ids that pair every reply with its request, timeouts, what a
// drop does to requests in flight and to those made while away, and the
// server's error codes as typed errors.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import WebSocket from "ws";

import { connect, RingcastError } from "../ringcast.js";
import { startServer } from "./support/server.js";
import { startProxy } from "./support/proxy.js";
import { collect, next } from "./support/events.js";

let server;
let proxy;
const clients = [];
const open = (user, opts = {}) => {
  const c = connect(opts.url ?? server.url, { user, WebSocket, ...opts });
  clients.push(c);
  return c;
};
const isError = (code) => (e) => e instanceof RingcastError && e.code === code;

before(async () => {
  server = await startServer([
    "--max-payload",
    "1024",
    "--max-rooms-per-conn",
    "2",
    "--max-members-per-room",
    "1",
  ]);
  proxy = await startProxy(server.wsAddr);
});

after(async () => {
  await Promise.all(clients.map((c) => c.close()));
  await proxy.close();
  await server.stop();
});

test("concurrent requests each get their own reply", async () => {
  const ann = open("ann");
  const room = await ann.join("req-1");
  const seen = collect(room, "message");
  const publishes = [];
  const reads = [];
  for (let i = 0; i < 20; i++) {
    publishes.push(room.publish({ i }));
    if (i % 5 === 0) reads.push(room.history({ since: 0, limit: 1 }), room.members(), ann.ping());
  }
  const acks = await Promise.all(publishes);
  await seen.until(20);
  // The seq each publish resolved with is the seq its own message got.
  const seqOf = new Map(seen.map((m) => [m.data.i, m.seq]));
  acks.forEach((ack, i) => assert.equal(ack.seq, seqOf.get(i), `publish ${i}`));
  const answers = await Promise.all(reads);
  for (let k = 0; k < answers.length; k += 3) {
    assert.ok(Array.isArray(answers[k].messages));
    assert.deepEqual(answers[k + 1].users, ["ann"]);
    assert.equal(typeof answers[k + 2], "number");
  }
});

test("a request with no answer times out", async () => {
  const c = open("tim", { url: proxy.url, requestTimeoutMs: 300, heartbeatMs: 0 });
  await c.ready();
  proxy.blackhole();
  try {
    const t0 = Date.now();
    await assert.rejects(c.ping(), isError("timeout"));
    const took = Date.now() - t0;
    assert.ok(took >= 290 && took < 3000, `took ${took} ms`);
  } finally {
    proxy.restore();
  }
  // A late reply to a timed-out request does not confuse the next one.
  assert.ok((await c.ping()) >= 0);
  await c.close();
});

test("a drop rejects a publish in flight, retries a read, and sends what was asked while away", async () => {
  const c = open("dora", { url: proxy.url, backoffInitialMs: 50, backoffMaxMs: 200 });
  const room = await c.join("req-2");
  proxy.blackhole();
  const publish = room.publish("maybe");
  const history = room.history();
  // Neither reached the server (the link is a black hole); now cut it.
  const reconnecting = next(c, "state", (s) => s === "reconnecting");
  proxy.cut();
  await reconnecting;
  await assert.rejects(publish, isError("disconnected"));
  const queued = room.publish("after");
  assert.equal(c.state, "reconnecting");
  proxy.restore();
  const { seq } = await queued;
  const page = await history;
  assert.ok(Array.isArray(page.messages));
  const kept = (await room.history()).messages;
  assert.deepEqual(kept.map((m) => [m.seq, m.data]), [[seq, "after"]]);
  await c.close();
});

test("server errors reject with their code", async () => {
  const c = open("erin");
  await c.ready();
  await assert.rejects(c.publish("not a room!", 1), isError("invalid_room"));
  await assert.rejects(c.join("not a room!"), isError("invalid_room"));
  assert.equal(c.room("not a room!"), undefined);
  await assert.rejects(c.publish("req-3", "x".repeat(2000)), (e) => isError("payload_too_large")(e) && /1024/.test(e.message));
  await assert.rejects(c.publish("req-3", undefined), isError("bad_json"));
  await assert.rejects(c.typing("req-3"), isError("not_member"));
  await c.join("req-3");
  await c.join("req-4");
  await assert.rejects(c.join("req-5"), isError("too_many_rooms"));
  const other = open("fred");
  await assert.rejects(other.join("req-3"), isError("room_full"));
  // The connection stays usable after every error.
  assert.equal((await c.publish("req-3", "still here")).seq, 1);
});
