// The everyday surface against the real server: connect, join, publish,
// the message shape, presence, typing, `since` on a first join, and the
// paged history and members.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import WebSocket from "ws";

import { connect, RingcastError } from "../ringcast.js";
import { startServer } from "./support/server.js";
import { collect, next } from "./support/events.js";

let server;
const clients = [];
const open = (user, opts = {}) => {
  const c = connect(server.url, { user, WebSocket, ...opts });
  clients.push(c);
  return c;
};

before(async () => {
  // A small max_payload makes the smallest outbound bound small, so a
  // history reply stops early and says `more`.
  server = await startServer(["--max-payload", "1024", "--outbound-limit", "10240"]);
});

after(async () => {
  await Promise.all(clients.map((c) => c.close()));
  await server.stop();
});

test("connects, says so, and takes the user name from the welcome", async () => {
  const c = open("ann");
  assert.equal(c.state, "connecting");
  const states = collect(c, "state");
  await c.ready();
  assert.deepEqual(states, ["open"]);
  assert.equal(c.user, "ann");
  assert.match(c.conn, /^\d+$/);
  assert.ok(c.shard === 0 || c.shard === 1);
  await c.close();
  assert.equal(c.state, "closed");
  await assert.rejects(c.ready(), (e) => e instanceof RingcastError && e.code === "closed");
  await assert.rejects(c.join("after-close"), (e) => e.code === "closed");
  await assert.rejects(c.publish("after-close", 1), (e) => e.code === "closed");
});

test("a join resolves on its ok; messages arrive once, in order, with their epoch", async () => {
  const ann = open("ann");
  const bob = open("bob");
  const room = await ann.join("basics-1");
  assert.equal(room.seq, 0);
  assert.match(room.epoch, /^[0-9a-f]{16}$/);
  const bobRoom = await bob.join("basics-1");
  assert.equal(bobRoom.epoch, room.epoch);
  const seen = collect(bobRoom, "message");
  const own = collect(room, "message");
  const sent = [];
  for (let i = 1; i <= 5; i++) sent.push(await room.publish({ text: `hi ${i}` }));
  assert.deepEqual(sent.map((s) => s.seq), [1, 2, 3, 4, 5]);
  assert.ok(sent.every((s) => s.epoch === room.epoch));
  await seen.until(5);
  assert.deepEqual(seen.map((m) => m.seq), [1, 2, 3, 4, 5]);
  const m = seen[0];
  assert.deepEqual(Object.keys(m).sort(), ["data", "epoch", "room", "seq", "ts", "user"]);
  assert.equal(m.room, "basics-1");
  assert.equal(m.user, "ann");
  assert.equal(m.epoch, room.epoch);
  assert.deepEqual(m.data, { text: "hi 1" });
  assert.equal(typeof m.ts, "number");
  // The publisher, a member, gets its own messages before each ok.
  assert.deepEqual(own.map((x) => x.seq), [1, 2, 3, 4, 5]);
  assert.equal(room.seq, 5);
});

test("presence and typing reach the other members", async () => {
  const ann = open("ann");
  const room = await ann.join("basics-2");
  const joined = next(room, "presence", (e) => e.user === "cy");
  const cy = open("cy");
  const cyRoom = await cy.join("basics-2");
  assert.deepEqual(await joined, { room: "basics-2", user: "cy", event: "join" });
  const typing = next(room, "typing");
  await cyRoom.typing(true);
  assert.deepEqual(await typing, { room: "basics-2", user: "cy", state: true });
  const stopped = next(room, "typing");
  await cyRoom.typing(false);
  assert.equal((await stopped).state, false);
  const left = next(room, "presence", (e) => e.event === "leave");
  await cyRoom.leave();
  assert.deepEqual(await left, { room: "basics-2", user: "cy", event: "leave" });
  assert.equal(cy.room("basics-2"), undefined);
  await assert.rejects(cyRoom.typing(true), (e) => e.code === "not_member");
});

test("a first join with since gets what came after it, even when listened to after the await", async () => {
  const ann = open("ann");
  const room = await ann.join("basics-3");
  for (let i = 1; i <= 4; i++) await room.publish(i);
  const late = open("dee");
  // The backlog follows the ok at once; the listener comes a turn later.
  const r = await late.join("basics-3", { since: 1, epoch: room.epoch });
  const seen = collect(r, "message");
  await seen.until(3);
  assert.deepEqual(seen.map((m) => [m.seq, m.data]), [[2, 2], [3, 3], [4, 4]]);
  assert.equal(r.seq, 4);
});

test("history pages: since, limit, and `more` when a reply stops early", async () => {
  const ann = open("ann");
  const room = await ann.join("basics-4");
  const text = "x".repeat(400);
  for (let i = 1; i <= 30; i++) await room.publish({ i, text });
  const page = await room.history({ since: 10, limit: 3 });
  assert.deepEqual(page.messages.map((m) => m.seq), [11, 12, 13]);
  assert.equal(page.epoch, room.epoch);
  assert.equal(page.messages[0].epoch, room.epoch);
  const all = [];
  let since = 0;
  let pages = 0;
  for (;;) {
    const p = await room.history({ since });
    pages += 1;
    all.push(...p.messages.map((m) => m.data.i));
    if (!p.more) break;
    since = p.messages[p.messages.length - 1].seq;
  }
  assert.ok(pages > 1, "the outbound bound splits the history");
  assert.deepEqual(all, Array.from({ length: 30 }, (_, i) => i + 1));
});

test("members pages with after and limit; allMembers walks them", async () => {
  const names = ["m-a", "m-b", "m-c", "m-d", "m-e"];
  const joined = names.map((n) => open(n));
  for (const c of joined) await c.join("basics-5");
  const first = await joined[0].members("basics-5", { limit: 2 });
  assert.deepEqual(first, { room: "basics-5", users: ["m-a", "m-b"], count: 5, more: true });
  const second = await joined[0].members("basics-5", { limit: 2, after: "m-b" });
  assert.deepEqual(second.users, ["m-c", "m-d"]);
  assert.deepEqual(await joined[0].allMembers("basics-5", { limit: 2 }), names);
});
