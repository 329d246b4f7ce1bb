// Reconnects with recovery: a network drop, a link that dies silently, a
// gap past the history window, and a server restart (a new epoch). In
// each the application writes no recovery code: it only listens.

import { test, after } from "node:test";
import assert from "node:assert/strict";
import WebSocket from "ws";

import { connect } from "../ringcast.js";
import { startServer } from "./support/server.js";
import { startProxy } from "./support/proxy.js";
import { collect, next } from "./support/events.js";

const cleanup = [];
after(async () => {
  for (const f of cleanup.reverse()) await f();
});

async function setup(args = []) {
  const server = await startServer(args);
  const proxy = await startProxy(server.wsAddr);
  cleanup.push(() => server.stop(), () => proxy.close());
  const open = (user, url, opts = {}) => {
    const c = connect(url, { user, WebSocket, backoffInitialMs: 50, backoffMaxMs: 400, ...opts });
    cleanup.push(() => c.close());
    return c;
  };
  return { server, proxy, open };
}

const range = (from, to) => Array.from({ length: to - from + 1 }, (_, i) => from + i);

test("after a network drop every missed message arrives once, in order", async () => {
  const { server, proxy, open } = await setup();
  const ann = open("ann", server.url);
  const bob = open("bob", proxy.url);
  const annRoom = await ann.join("rc-1");
  const bobRoom = await bob.join("rc-1");
  const seen = collect(bobRoom, "message");
  const states = collect(bob, "state");
  const gaps = collect(bobRoom, "gap");
  const resets = collect(bobRoom, "reset");
  for (let i = 1; i <= 5; i++) await annRoom.publish(i);
  await seen.until(5);

  const down = next(bob, "state", (s) => s === "reconnecting");
  proxy.cut();
  await down;
  for (let i = 6; i <= 25; i++) await annRoom.publish(i);
  // Retries while the network is still down fail, and back off.
  await proxy.refused();
  proxy.restore();
  await seen.until(25);
  assert.deepEqual(seen.map((m) => m.data), range(1, 25));
  assert.deepEqual(seen.map((m) => m.seq), range(1, 25));
  assert.ok(seen.every((m) => m.epoch === annRoom.epoch));
  assert.deepEqual(states.slice(0, 1), ["reconnecting"]);
  assert.equal(states.at(-1), "open");
  assert.deepEqual([gaps.length, resets.length], [0, 0]);
  assert.equal(bobRoom.seq, 25);
  // Live traffic goes on after the recovery, still without duplicates.
  await annRoom.publish(26);
  await seen.until(26);
  assert.deepEqual(seen.map((m) => m.seq), range(1, 26));
});

test("a link that dies without a close is found by the heartbeat", async () => {
  const { server, proxy, open } = await setup();
  const ann = open("ann", server.url);
  const bob = open("bob", proxy.url, { heartbeatMs: 200, heartbeatTimeoutMs: 300 });
  const annRoom = await ann.join("rc-2");
  const bobRoom = await bob.join("rc-2");
  const seen = collect(bobRoom, "message");
  proxy.blackhole();
  for (let i = 1; i <= 10; i++) await annRoom.publish(i);
  await next(bob, "state", (s) => s === "reconnecting");
  proxy.restore();
  await seen.until(10);
  assert.deepEqual(seen.map((m) => m.seq), range(1, 10));
});

test("messages gone from the history window are reported as a gap", async () => {
  const { server, proxy, open } = await setup(["--history", "4"]);
  const ann = open("ann", server.url);
  const bob = open("bob", proxy.url);
  const annRoom = await ann.join("rc-3");
  const bobRoom = await bob.join("rc-3");
  const seen = collect(bobRoom, "message");
  await annRoom.publish(1);
  await seen.until(1);
  const down = next(bob, "state", (s) => s === "reconnecting");
  proxy.cut();
  await down;
  for (let i = 2; i <= 11; i++) await annRoom.publish(i);
  const gap = next(bobRoom, "gap");
  proxy.restore();
  assert.deepEqual(await gap, { room: "rc-3", epoch: annRoom.epoch, since: 1, seq: 11 });
  await seen.until(5);
  // What the room still had: the last four, in order, once.
  assert.deepEqual(seen.map((m) => m.seq), [1, 8, 9, 10, 11]);
});

test("a server restart starts a new sequence: a reset, then the new one's messages", async () => {
  const first = await startServer();
  const port = first.wsAddr.split(":")[1];
  const stops = [() => first.stop()];
  cleanup.push(() => Promise.all(stops.map((s) => s())));
  const ann = connect(first.url, { user: "ann", WebSocket, backoffInitialMs: 50, backoffMaxMs: 200 });
  cleanup.push(() => ann.close());
  const room = await ann.join("rc-4");
  const seen = collect(room, "message");
  await room.publish("old");
  await seen.until(1);
  const oldEpoch = room.epoch;

  await first.stop();
  const second = await startServer([], { ws: `127.0.0.1:${port}` });
  stops.push(() => second.stop());
  const reset = await next(room, "reset");
  assert.equal(reset.room, "rc-4");
  assert.equal(reset.previousEpoch, oldEpoch);
  assert.notEqual(reset.epoch, oldEpoch);
  assert.equal(reset.seq, 0);
  assert.equal(room.epoch, reset.epoch);
  const { seq, epoch } = await room.publish("new");
  assert.deepEqual([seq, epoch], [1, reset.epoch]);
  await seen.until(2);
  assert.deepEqual(seen.map((m) => [m.seq, m.epoch, m.data]), [
    [1, oldEpoch, "old"],
    [1, reset.epoch, "new"],
  ]);
});

test("reconnect() drops the connection at once and recovers the same way", async () => {
  const { server, open } = await setup();
  const ann = open("ann", server.url);
  const room = await ann.join("rc-5");
  const seen = collect(room, "message");
  await room.publish(1);
  const conn = ann.conn;
  ann.reconnect();
  assert.equal(ann.state, "reconnecting");
  await ann.ready();
  assert.notEqual(ann.conn, conn);
  await room.publish(2);
  await seen.until(2);
  assert.deepEqual(seen.map((m) => m.seq), [1, 2]);
});
