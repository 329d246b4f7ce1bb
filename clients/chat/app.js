// The chat page: everything goes through the client library, which
// reconnects and recovers by itself; this file only draws what it says.

import { connect } from "/ringcast.js";

const $ = (id) => document.getElementById(id);
const HISTORY = 100;
const TYPING_SHOWN_MS = 6000;
const TYPING_RESEND_MS = 3000;
const TYPING_IDLE_MS = 4000;

/** Per room: its Room, messages by seq (of the current epoch), members, who is typing, unread count. */
const rooms = new Map();
let client;
let active;

// ---- log in -----------------------------------------------------------

const params = new URLSearchParams(location.search);
$("name").value = params.get("user") ?? sessionStorage.getItem("ringcast.name") ?? `guest-${Math.floor(Math.random() * 9000 + 1000)}`;
if (params.get("room")) $("first-room").value = params.get("room");

$("login").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const name = $("name").value.trim();
  const token = $("token").value.trim() || undefined;
  sessionStorage.setItem("ringcast.name", name);
  start(token ? { token } : { user: name }, $("first-room").value.trim());
});

function start(identity, firstRoom) {
  $("login").hidden = true;
  $("chat").hidden = false;
  client = connect("/ws", identity);
  showState(client.state);
  client.on("state", (s) => {
    showState(s);
    // Presence during the outage went unseen: ask again.
    if (s === "open") for (const r of rooms.values()) refreshMembers(r);
  });
  client.on("welcome", (w) => ($("me").textContent = `signed in as ${w.user}`));
  client.on("error", (e) => showError(e.message));
  joinRoom(firstRoom);
}

function showState(s) {
  const el = $("state");
  el.dataset.state = s;
  el.textContent = { connecting: "connecting…", open: "connected", reconnecting: "reconnecting…", closed: "disconnected" }[s];
}

let errorTimer;
function showError(text) {
  const el = $("error");
  el.textContent = text;
  el.hidden = false;
  clearTimeout(errorTimer);
  errorTimer = setTimeout(() => (el.hidden = true), 5000);
}

// ---- rooms ------------------------------------------------------------

$("join").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const name = $("join-room").value.trim();
  $("join-room").value = "";
  if (name) joinRoom(name);
});

async function joinRoom(name) {
  if (rooms.has(name)) return select(name);
  let room;
  try {
    room = await client.join(name);
  } catch (e) {
    return showError(`cannot join ${name}: ${e.message}`);
  }
  const r = { name, room, messages: new Map(), members: new Set(), typing: new Map(), unread: 0 };
  rooms.set(name, r);
  room.on("message", (m) => addMessage(r, m));
  room.on("presence", (e) => onPresence(r, e));
  room.on("typing", (e) => onTyping(r, e));
  room.on("gap", (e) => addNote(r, `messages after #${e.since} were lost while away`));
  room.on("reset", () => {
    r.messages.clear();
    if (active === r) $("messages").replaceChildren();
    addNote(r, "the room started again");
    loadHistory(r);
  });
  renderRooms();
  select(name);
  loadHistory(r);
  refreshMembers(r);
}

async function loadHistory(r) {
  const upTo = r.room.seq ?? 0;
  try {
    const page = await r.room.history({ since: Math.max(0, upTo - HISTORY), limit: HISTORY });
    for (const m of page.messages) if (m.seq <= upTo) addMessage(r, m, true);
  } catch (e) {
    showError(`history of ${r.name}: ${e.message}`);
  }
}

async function leaveRoom(name) {
  const r = rooms.get(name);
  rooms.delete(name);
  await r.room.leave().catch(() => {});
  if (active === r) active = undefined;
  const next = rooms.keys().next();
  if (!next.done) select(next.value);
  else renderRooms();
}

function select(name) {
  active = rooms.get(name);
  active.unread = 0;
  $("room-title").textContent = `# ${name}`;
  const list = $("messages");
  list.replaceChildren(...[...active.messages.values()].map((m) => m.el));
  list.scrollTop = list.scrollHeight;
  renderRooms();
  renderMembers();
  renderTyping();
  $("text").focus();
}

function renderRooms() {
  $("room-list").replaceChildren(
    ...[...rooms.values()].map((r) => {
      const li = el("li", { class: r === active ? "active" : "" });
      const open = el("button", { type: "button" }, `# ${r.name} `);
      if (r.unread) open.append(el("span", { class: "unread" }, String(r.unread)));
      open.addEventListener("click", () => select(r.name));
      const leave = el("button", { type: "button", class: "link", title: `leave ${r.name}` }, "×");
      leave.addEventListener("click", () => leaveRoom(r.name));
      li.append(open, leave);
      return li;
    }),
  );
}

// ---- messages ---------------------------------------------------------

function addMessage(r, m, fromHistory = false) {
  if (r.messages.has(m.seq)) return;
  const text = typeof m.data?.text === "string" ? m.data.text : m.data_b64 !== undefined ? "[binary]" : JSON.stringify(m.data);
  const li = el("li", { class: m.user === client.user ? "msg mine" : "msg" });
  li.dataset.seq = m.seq;
  li.dataset.epoch = m.epoch;
  li.append(el("span", { class: "who" }, m.user), el("span", { class: "text" }, text), el("time", {}, clock(m.ts)));
  // History and live traffic may interleave: keep seq order.
  const entries = [...r.messages.values()];
  const later = m.seq > (entries.at(-1)?.seq ?? 0) ? undefined : entries.find((x) => x.seq > m.seq);
  if (later) r.messages = new Map([...entries, { seq: m.seq, el: li }].sort((a, b) => a.seq - b.seq).map((x) => [x.seq, x]));
  else r.messages.set(m.seq, { seq: m.seq, el: li });
  clearTimeout(r.typing.get(m.user));
  r.typing.delete(m.user);
  if (active !== r) {
    if (!fromHistory) r.unread += 1;
    return renderRooms();
  }
  const list = $("messages");
  const atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
  if (later) list.insertBefore(li, later.el);
  else list.append(li);
  if (atBottom || m.user === client.user) list.scrollTop = list.scrollHeight;
  renderTyping();
}

function addNote(r, text) {
  if (active !== r) return;
  $("messages").append(el("li", { class: "note" }, text));
}

$("compose").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const input = $("text");
  const text = input.value;
  if (!text.trim() || !active) return;
  input.value = "";
  stopTyping();
  try {
    await active.room.publish({ text });
  } catch (e) {
    if (!input.value) input.value = text;
    showError(`not sent: ${e.message}`);
  }
});

// ---- presence and members ---------------------------------------------

function onPresence(r, e) {
  if (e.event === "join") r.members.add(e.user);
  else r.members.delete(e.user);
  if (e.event === "leave") r.typing.delete(e.user);
  if (active === r) renderMembers();
  // A name may have more than one connection: the server has the truth.
  clearTimeout(r.membersTimer);
  r.membersTimer = setTimeout(() => refreshMembers(r), 500);
}

async function refreshMembers(r) {
  try {
    r.members = new Set(await r.room.allMembers());
  } catch {
    return; // reconnecting: asked again once open
  }
  if (active === r) renderMembers();
}

function renderMembers() {
  const names = [...active.members].sort();
  $("member-count").textContent = String(names.length);
  $("member-list").replaceChildren(...names.map((n) => el("li", {}, n)));
}

// ---- typing -----------------------------------------------------------

let typingSentAt = 0;
let typingIdle;

$("text").addEventListener("input", () => {
  if (!active || !$("text").value) return stopTyping();
  const now = Date.now();
  if (now - typingSentAt > TYPING_RESEND_MS) {
    typingSentAt = now;
    active.room.typing(true).catch(() => {});
  }
  clearTimeout(typingIdle);
  typingIdle = setTimeout(stopTyping, TYPING_IDLE_MS);
});

function stopTyping() {
  clearTimeout(typingIdle);
  if (!typingSentAt || !active) return;
  typingSentAt = 0;
  active.room.typing(false).catch(() => {});
}

function onTyping(r, e) {
  clearTimeout(r.typing.get(e.user));
  if (e.state) {
    r.typing.set(e.user, setTimeout(() => {
      r.typing.delete(e.user);
      if (active === r) renderTyping();
    }, TYPING_SHOWN_MS));
  } else {
    r.typing.delete(e.user);
  }
  if (active === r) renderTyping();
}

function renderTyping() {
  const who = [...active.typing.keys()];
  $("typing").textContent =
    who.length === 0 ? "" : who.length === 1 ? `${who[0]} is typing…` : `${who.slice(0, -1).join(", ")} and ${who.at(-1)} are typing…`;
}

// ---- helpers ----------------------------------------------------------

function el(tag, attrs = {}, text) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) if (v) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}

function clock(ts) {
  return new Date(ts).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}
