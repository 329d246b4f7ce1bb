// Presence: the server sends a lone join or leave as one event and a
// burst of them as one frame with an `events` array; the application sees
// the same thing either way, one `presence` event per join or leave.

import { test, after } from "node:test";
import assert from "node:assert/strict";
import WebSocket from "ws";

import { connect } from "../ringcast.js";
import { startServer } from "./support/server.js";
import { collect, recordingWebSocket } from "./support/events.js";

const cleanup = [];
after(async () => {
  for (const f of cleanup.reverse()) await f();
});

const names = ["p1", "p2", "p3", "p4", "p5"];

/** Five users join a watched room at once, then leave; returns what the watcher saw and the wire. */
async function burst(intervalMs) {
  const server = await startServer(["--presence-interval-ms", String(intervalMs)]);
  cleanup.push(() => server.stop());
  const frames = [];
  const watcher = connect(server.url, { user: "watcher", WebSocket: recordingWebSocket(WebSocket, frames) });
  cleanup.push(() => watcher.close());
  const room = await watcher.join("presence");
  const events = collect(room, "presence");
  const onClient = collect(watcher, "presence");
  const others = names.map((user) => connect(server.url, { user, WebSocket }));
  await Promise.all(others.map((c) => c.join("presence")));
  await events.until(5);
  await Promise.all(others.map((c) => c.close()));
  await events.until(10);
  const wire = frames.filter((f) => f.op === "presence");
  return { events, onClient, wire };
}

const line = (e) => `${e.event} ${e.user}`;

for (const [form, intervalMs] of [
  ["single", 0],
  ["batched", 300],
]) {
  test(`${form} presence frames become one event per join and leave, in order`, async () => {
    const { events, onClient, wire } = await burst(intervalMs);
    if (form === "single") assert.ok(wire.every((f) => !f.events), "every frame a single event");
    else assert.ok(wire.some((f) => Array.isArray(f.events) && f.events.length > 1), "a batch was sent");
    assert.deepEqual(events.slice(0, 5).map(line).sort(), names.map((n) => `join ${n}`));
    assert.deepEqual(events.slice(5).map(line).sort(), names.map((n) => `leave ${n}`));
    for (const e of events) assert.deepEqual(Object.keys(e).sort(), ["event", "room", "user"]);
    // The order is the wire's, and the client hears what the room does.
    const flat = wire.flatMap((f) => (f.events ? f.events : [{ user: f.user, event: f.event }]));
    assert.deepEqual(events.map(line), flat.map(line));
    assert.deepEqual(onClient, events);
  });
}
