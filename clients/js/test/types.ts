// Compiled (not run) by `npm test`: the README's and the usage
// must type-check against ringcast.d.ts, and misuse must not.

import { connect, RingcastError, type Message, type State, type Room } from "../ringcast.js";

declare const token: string;
declare const since: number;
declare const WebSocket: import("../ringcast.js").WebSocketConstructor;

export async function usage(): Promise<void> {
  const client = connect("ws://127.0.0.1:8080/ws", { user: "ann", token, WebSocket });
  client.on("state", (s: State) => void s);
  const room: Room = await client.join("lobby", { since });
  room.on("message", (m: Message) => void [m.room, m.seq, m.epoch, m.user, m.ts, m.data]);
  room.on("presence", (e) => void (e.event === "join" || e.event === "leave"));
  room.on("typing", (e) => void e.state);
  room.on("reset", (e) => void [e.previousEpoch, e.epoch, e.seq]);
  room.on("gap", (e) => void [e.since, e.seq]);
  const { seq } = await room.publish({ text: "hi" });
  void (seq + 1);
  const page = await room.history({ since: 0, limit: 50 });
  void page.messages.map((m) => m.seq);
  const members = await room.members({ limit: 10, after: "a" });
  void members.count;
  try {
    await client.publish("lobby", [1, "two", { three: null }]);
  } catch (e) {
    if (e instanceof RingcastError && e.code === "rate_limited") void e.retryAfterMs;
  }
  await room.leave();
  await client.close();
  // @ts-expect-error: no such event
  room.on("nonsense", () => {});
  // @ts-expect-error: data must be JSON
  await room.publish(() => 1);
  // @ts-expect-error: states are these four words
  client.on("state", (s) => s === "gone");
}
