// ringcast: the JavaScript client for ringcast's WebSocket chat protocol.
//
// One ES module, no dependencies. It runs in browsers and in Node (Node 22's
// global WebSocket, or any `ws`-compatible constructor passed as
// `options.WebSocket`). What it does so that applications need not:
//
// - reconnects by itself, with exponential backoff and jitter, bounded;
// - sends the token as the connection's first frame when one is given,
//   and asks `getToken()` for a new one when the server says it expired;
// - remembers each room's last seq and epoch and rejoins with them after
//   every reconnect, so the application sees every message exactly once,
//   in seq order, or is told plainly (`gap`, `reset`) when it cannot;
// - gives every request an id and a timeout and resolves its promise with
//   the reply carrying that id; server errors reject as `RingcastError`s
//   with the server's code;
// - notices a dead link that no close event reports (an idle-time ping).
//
// The protocol itself is in docs/protocol.md of the ringcast repository.

/** @typedef {"connecting" | "open" | "reconnecting" | "closed"} State */

const OPEN = 1;

const DEFAULTS = {
  requestTimeoutMs: 10_000,
  connectTimeoutMs: 10_000,
  backoffInitialMs: 250,
  backoffMaxMs: 10_000,
  maxRetries: Infinity,
  heartbeatMs: 20_000,
  heartbeatTimeoutMs: 10_000,
  refreshAheadMs: 30_000,
};

/** Close codes the server sends, and what each means for the client. */
const CLOSE = {
  4001: "unauthorized",
  4002: "token_expired",
  4003: "forbidden",
  4029: "rate_limited",
};

/** Room events kept until the application listens for them (see Room). */
const HELD = new Set(["message", "presence", "gap", "reset"]);
const HELD_MAX = 10_000;

/** An error from the server (its `code`) or from the client library. */
export class RingcastError extends Error {
  constructor(code, message, extra = {}) {
    super(message || code);
    this.name = "RingcastError";
    /** The server's error code, or timeout, disconnected, closed, unauthorized, token_expired… */
    this.code = code;
    Object.assign(this, extra);
  }
}

/** A minimal event emitter: `on`, `once`, `off`. */
class Emitter {
  #handlers = new Map();

  /** Calls `fn(value)` for every `event`; returns a function that stops it. */
  on(event, fn) {
    if (!this.#handlers.has(event)) this.#handlers.set(event, new Set());
    this.#handlers.get(event).add(fn);
    this._listening?.(event);
    return () => this.off(event, fn);
  }

  /** Calls `fn` for the next `event` only. */
  once(event, fn) {
    const off = this.on(event, (v) => {
      off();
      fn(v);
    });
    return off;
  }

  off(event, fn) {
    this.#handlers.get(event)?.delete(fn);
  }

  /** True when something listens for `event`. */
  listens(event) {
    return (this.#handlers.get(event)?.size ?? 0) > 0;
  }

  _emit(event, value) {
    for (const fn of [...(this.#handlers.get(event) ?? [])]) {
      try {
        fn(value);
      } catch (e) {
        // A listener's bug must not break the connection's bookkeeping;
        // it is still reported, as an uncaught error.
        queueMicrotask(() => {
          throw e;
        });
      }
    }
  }
}

/** Connects to a ringcast server; see `Client`. */
export function connect(url, options = {}) {
  return new Client(url, options);
}

/**
 * One logical connection to a server, kept up across reconnects.
 *
 * Events: `state` (State), `welcome` ({user, conn, shard}), `error`
 * (RingcastError), and every room's `message`, `presence`, `typing`, `gap`
 * and `reset` (each carries its `room`).
 */
export class Client extends Emitter {
  /** @type {State} */
  state = "connecting";
  /** The user name the server gave this connection (from the welcome). */
  user = undefined;
  /** The server's id for the current connection, and its shard. */
  conn = undefined;
  shard = undefined;
  /** Rooms joined (or being joined), by name. */
  rooms = new Map();

  #url;
  #opts;
  #WS;
  #ws = null;
  #token;
  #attempt = 0;
  #everOpen = false;
  #welcomed = false;
  #nextId = 0;
  /** Requests by id, in the order made: {frame, kind, done, timer, sent}. */
  #pending = new Map();
  #timers = new Set();
  #retryTimer = null;
  #watchdog = null;
  #refreshTimer = null;
  #lastHeard = 0;
  #pingSentAt = 0;
  #authFailures = 0;
  #closed = false;
  #fatal = undefined;
  #closeWaiters = [];
  #online = () => this.#retryNow();

  constructor(url, options = {}) {
    super();
    this.#opts = { ...DEFAULTS, ...options };
    this.#WS = options.WebSocket ?? globalThis.WebSocket;
    if (typeof this.#WS !== "function") {
      throw new TypeError("no WebSocket: pass options.WebSocket (e.g. the `ws` package's) on this runtime");
    }
    this.#url = wsUrl(url, options.user);
    this.#token = options.token;
    globalThis.addEventListener?.("online", this.#online);
    this.#open();
  }

  /** Resolves once the connection is open (welcomed); rejects if the client closes first. */
  ready() {
    if (this.state === "open") return Promise.resolve();
    if (this.state === "closed") return Promise.reject(new RingcastError("closed", "the client is closed"));
    return new Promise((resolve, reject) => {
      const off = this.on("state", (s) => {
        if (s === "open") resolve();
        else if (s === "closed") reject(this.#fatal ?? new RingcastError("closed", "the client is closed"));
        else return;
        off();
      });
    });
  }

  /**
   * Joins `name` and resolves with its Room once the server's `ok` arrives.
   * `since` (and the `epoch` it belongs to) asks for what was missed after
   * that seq; a room token lets the user into a room its own token does not
   * list. Joining a room already joined returns the same Room.
   */
  join(name, { since, epoch, token } = {}) {
    if (this.#closed) return Promise.reject(this.#fatal ?? new RingcastError("closed", "the client is closed"));
    const known = this.rooms.get(name);
    if (known) return known._joined;
    const room = new Room(this, name, { since, epoch, token });
    this.rooms.set(name, room);
    if (this.#welcomed) this.#sendJoin(room);
    return room._joined;
  }

  /** The Room `name`, if joined or being joined. */
  room(name) {
    return this.rooms.get(name);
  }

  /** Publishes `data` (any JSON value) to `room`; resolves with `{seq, epoch}`. */
  publish(room, data) {
    return this.#request({ op: "publish", room, data }, "once").then((r) => ({ seq: r.seq, epoch: r.epoch }));
  }

  /**
   * Sends a typing indicator; resolves once the server has taken it. It is
   * not queued while the connection is down (it would be stale): that
   * rejects with `disconnected`.
   */
  typing(room, state = true) {
    const r = this.rooms.get(room);
    if (!r) return Promise.reject(new RingcastError("not_member", `not a member of room ${room}`));
    if (!r.joined) return Promise.reject(new RingcastError("disconnected", "typing is not queued while reconnecting"));
    // The server does not acknowledge typing, only refuses it, at once and
    // in order: the answer to a ping right behind it is the acknowledgement.
    const typing = this.#start({ op: "typing", room, state }, "once");
    this.#start({ op: "ping" }, "once", (err) => {
      if (!err) this.#settle(typing.id, {}, null);
    });
    return typing.promise.then(() => undefined);
  }

  /** One page of `room`'s retained messages after `since`: `{room, epoch, messages, more}`. */
  history(room, { since = 0, limit } = {}) {
    return this.#request({ op: "history", room, since, limit }, "retry").then((r) => ({
      room: r.room,
      epoch: r.epoch,
      messages: (r.messages ?? []).map((m) => message(m, r.epoch)),
      more: r.more === true,
    }));
  }

  /** One page of `room`'s member names after `after`: `{room, users, count, more}`. */
  members(room, { after, limit } = {}) {
    return this.#request({ op: "members", room, after, limit }, "retry").then((r) => ({
      room: r.room,
      users: r.users,
      count: r.count,
      more: r.more === true,
    }));
  }

  /** Every member name of `room`, page by page. */
  async allMembers(room, { limit } = {}) {
    const users = [];
    let after;
    for (;;) {
      const page = await this.members(room, { after, limit });
      users.push(...page.users);
      if (!page.more || page.users.length === 0) return users;
      after = page.users[page.users.length - 1];
    }
  }

  /** A round trip to the server; resolves with its time in ms. */
  ping() {
    const t0 = Date.now();
    return this.#request({ op: "ping" }, "retry").then(() => Date.now() - t0);
  }

  /** Replaces the connection's token (for the same user); resolves with `{exp}`. */
  refresh(token) {
    this.#token = token;
    return this.#request({ op: "refresh", token }, "once").then((r) => ({ exp: r.exp }));
  }

  /** Drops the current connection and connects again now (rooms are recovered as after any drop). */
  reconnect() {
    if (this.#closed) return;
    this.#drop(1000, "reconnect asked for", true);
  }

  /** Closes for good: pending requests reject with `closed`. Resolves when the socket has closed. */
  close() {
    if (this.#closed) return Promise.resolve();
    this.#closed = true;
    globalThis.removeEventListener?.("online", this.#online);
    const ws = this.#ws;
    const done = new Promise((resolve) => {
      if (!ws || ws.readyState === 3) return resolve();
      this.#closeWaiters.push(resolve);
    });
    this.#stopTimers();
    this.#failAll(new RingcastError("closed", "the client was closed"));
    if (ws) {
      try {
        ws.close(1000);
      } catch {
        this.#settleClose();
      }
    }
    this.#setState("closed");
    return done;
  }

  // ---- the socket ----------------------------------------------------

  async #open() {
    if (this.#closed) return;
    this.#welcomed = false;
    if (this.#token === undefined && this.#opts.getToken) {
      try {
        this.#token = await this.#opts.getToken();
      } catch (e) {
        this._emit("error", new RingcastError("unauthorized", `getToken failed: ${e?.message ?? e}`));
        return this.#retryLater();
      }
      if (this.#closed) return;
    }
    let ws;
    try {
      ws = new this.#WS(this.#url);
    } catch (e) {
      this._emit("error", new RingcastError("disconnected", `cannot connect: ${e?.message ?? e}`));
      return this.#retryLater();
    }
    this.#ws = ws;
    const connectTimer = this.#after(this.#opts.connectTimeoutMs, () => {
      if (this.#ws === ws && !this.#welcomed) this.#drop(1006, "no welcome within connectTimeoutMs");
    });
    ws.onopen = () => {
      if (this.#ws !== ws) return;
      this.#heard();
      if (this.#token !== undefined) this.#sendRaw({ op: "auth", token: this.#token, id: "auth" });
    };
    ws.onmessage = (ev) => {
      if (this.#ws !== ws) return;
      this.#heard();
      let frame;
      try {
        frame = JSON.parse(typeof ev.data === "string" ? ev.data : new TextDecoder().decode(ev.data));
      } catch {
        return this._emit("error", new RingcastError("bad_json", "the server sent a frame that is not JSON"));
      }
      if (frame.op === "welcome") {
        clearTimeout(connectTimer);
        this.#timers.delete(connectTimer);
      }
      this.#onFrame(frame);
    };
    ws.onerror = () => {};
    ws.onclose = (ev) => {
      if (this.#ws !== ws) return this.#settleClose();
      clearTimeout(connectTimer);
      this.#timers.delete(connectTimer);
      this.#drop(ev.code, ev.reason);
      this.#settleClose();
    };
  }

  #settleClose() {
    for (const resolve of this.#closeWaiters.splice(0)) resolve();
  }

  /** The current socket is gone (or given up on): decide what comes next. */
  #drop(code, reason, now = false) {
    const ws = this.#ws;
    this.#ws = null;
    if (ws) {
      // Forget it: its late events must not reach us (`onerror` stays a
      // no-op, as some implementations throw on an error nobody hears).
      ws.onopen = ws.onmessage = ws.onclose = null;
      if (ws.readyState <= OPEN) {
        try {
          typeof ws.terminate === "function" ? ws.terminate() : ws.close();
        } catch {
          // already closing
        }
      }
    }
    clearInterval(this.#watchdog);
    clearTimeout(this.#refreshTimer);
    const wasWelcomed = this.#welcomed;
    this.#welcomed = false;
    for (const room of this.rooms.values()) room._disconnected();
    this.#settlePending();
    if (this.#closed) return;
    const kind = CLOSE[code];
    if (kind === "unauthorized" || kind === "token_expired") {
      this.#authFailures += 1;
      const retry = this.#opts.getToken && this.#authFailures <= 1;
      if (!retry) return this.#fail(new RingcastError(kind, reason || kind, { closeCode: code }));
      this.#token = undefined;
    } else if (kind === "forbidden") {
      return this.#fail(new RingcastError(kind, reason || kind, { closeCode: code }));
    }
    if (wasWelcomed || this.#everOpen) this.#setState("reconnecting");
    if (now) {
      this.#attempt = 0;
      this.#open();
    } else {
      this.#retryLater();
    }
  }

  #retryLater() {
    if (this.#closed) return;
    if (this.#attempt >= this.#opts.maxRetries) {
      return this.#fail(new RingcastError("disconnected", `gave up after ${this.#attempt} attempts`));
    }
    const ceiling = Math.min(this.#opts.backoffMaxMs, this.#opts.backoffInitialMs * 2 ** this.#attempt);
    this.#attempt += 1;
    // "Equal jitter": at least half the ceiling, so retries never bunch at 0.
    const delay = ceiling / 2 + Math.random() * (ceiling / 2);
    this.#retryTimer = this.#after(delay, () => {
      this.#retryTimer = null;
      this.#open();
    });
  }

  /** The network is back (a browser's `online`): skip the rest of the backoff. */
  #retryNow() {
    if (this.#retryTimer === null || this.#closed) return;
    clearTimeout(this.#retryTimer);
    this.#timers.delete(this.#retryTimer);
    this.#retryTimer = null;
    this.#open();
  }

  /** Gives up for good with `err`. */
  #fail(err) {
    this.#fatal = err;
    this._emit("error", err);
    this.#closed = true;
    globalThis.removeEventListener?.("online", this.#online);
    this.#stopTimers();
    this.#failAll(err);
    this.#setState("closed");
  }

  #setState(state) {
    if (this.state === state) return;
    this.state = state;
    this._emit("state", state);
  }

  #after(ms, fn) {
    const t = setTimeout(() => {
      this.#timers.delete(t);
      fn();
    }, ms);
    this.#timers.add(t);
    return t;
  }

  #stopTimers() {
    for (const t of this.#timers) clearTimeout(t);
    this.#timers.clear();
    clearInterval(this.#watchdog);
    clearTimeout(this.#refreshTimer);
    this.#retryTimer = null;
  }

  #sendRaw(frame) {
    this.#ws.send(JSON.stringify(frame));
  }

  #heard() {
    this.#lastHeard = Date.now();
    this.#pingSentAt = 0;
  }

  /** Pings a quiet link and gives up on one that stays silent. */
  #watch() {
    const { heartbeatMs, heartbeatTimeoutMs } = this.#opts;
    if (!(heartbeatMs > 0)) return;
    const every = Math.max(50, Math.min(1000, heartbeatMs / 4, heartbeatTimeoutMs / 4));
    this.#watchdog = setInterval(() => {
      const now = Date.now();
      if (this.#pingSentAt && now - this.#pingSentAt > heartbeatTimeoutMs) {
        this.#drop(1006, "no answer to a ping");
      } else if (!this.#pingSentAt && now - this.#lastHeard >= heartbeatMs) {
        this.#pingSentAt = now;
        this.#sendRaw({ op: "ping", id: "heartbeat" });
      }
    }, every);
  }

  // ---- frames in -----------------------------------------------------

  #onFrame(f) {
    switch (f.op) {
      case "welcome":
        return this.#onWelcome(f);
      case "message":
      case "presence":
      case "typing":
      case "reset":
      case "gap":
        return this.rooms.get(f.room)?._event(f);
      case "error":
        if (f.id === "auth") return this.#authRefused(f);
        if (f.id === undefined || !this.#pending.has(f.id)) {
          return this._emit("error", serverError(f));
        }
        return this.#settle(f.id, null, serverError(f));
      default:
        if (f.id !== undefined) this.#settle(f.id, f, null);
    }
  }

  #onWelcome(f) {
    this.user = f.user;
    this.conn = f.conn;
    this.shard = f.shard;
    this.#welcomed = true;
    this.#everOpen = true;
    this.#attempt = 0;
    this.#authFailures = 0;
    this.#watch();
    this.#scheduleRefresh();
    this._emit("welcome", { user: f.user, conn: f.conn, shard: f.shard });
    // Rooms first, so that requests made while away follow the rejoins.
    for (const room of this.rooms.values()) this.#sendJoin(room);
    for (const [id, p] of this.#pending) {
      if (!p.sent) {
        p.sent = true;
        this.#sendRaw({ ...p.frame, id });
      }
    }
    this.#setState("open");
  }

  /** An error answering our `auth` frame after the welcome: a server that takes no tokens. */
  #authRefused(f) {
    if (!this.#welcomed) this._emit("error", serverError(f));
  }

  /** With `getToken` and a token that says when it expires, replaces it a little before. */
  #scheduleRefresh() {
    const exp = jwtExp(this.#token);
    if (!this.#opts.getToken || !exp || !(this.#opts.refreshAheadMs > 0)) return;
    const wait = Math.max(1000, exp * 1000 - Date.now() - this.#opts.refreshAheadMs);
    this.#refreshTimer = setTimeout(async () => {
      try {
        await this.refresh(await this.#opts.getToken());
        this.#scheduleRefresh();
      } catch (e) {
        this._emit("error", e instanceof RingcastError ? e : new RingcastError("unauthorized", String(e)));
      }
    }, Math.min(wait, 2 ** 31 - 1));
  }

  // ---- requests ------------------------------------------------------

  /**
   * Sends `frame` with a fresh id; resolves with the reply carrying that id.
   * `kind` says what a drop does to a request already sent: "retry" sends
   * it again after the reconnect (it changes nothing), "once" rejects with
   * `disconnected` (a publish may or may not have been sequenced), "leave"
   * resolves (a closed connection is in no room), "join" is forgotten (its
   * room rejoins by itself). Requests made while the connection is down
   * wait for it, within their timeout.
   */
  #request(frame, kind) {
    return this.#start(frame, kind).promise;
  }

  /**
   * `#request`, returning the id too. With `done(err, reply)` the answer is
   * handed over synchronously, while the frame is handled, rather than
   * through a promise: a join's backlog follows its `ok` in the same read.
   */
  #start(frame, kind, done) {
    for (const k of Object.keys(frame)) if (frame[k] === undefined) delete frame[k];
    const id = ++this.#nextId;
    let promise;
    if (!done) {
      promise = new Promise((resolve, reject) => {
        done = (err, reply) => (err ? reject(err) : resolve(reply));
      });
    }
    if (this.#closed) {
      done(this.#fatal ?? new RingcastError("closed", "the client is closed"));
      return { id, promise };
    }
    const timer = this.#after(this.#opts.requestTimeoutMs, () => {
      this.#pending.delete(id);
      done(new RingcastError("timeout", `no answer to ${frame.op} within ${this.#opts.requestTimeoutMs} ms`));
    });
    const p = { frame, kind, done, timer, sent: false };
    this.#pending.set(id, p);
    if (this.#welcomed) {
      p.sent = true;
      this.#sendRaw({ ...frame, id });
    }
    return { id, promise };
  }

  #settle(id, reply, err) {
    const p = this.#pending.get(id);
    if (!p) return;
    this.#pending.delete(id);
    clearTimeout(p.timer);
    this.#timers.delete(p.timer);
    p.done(err, reply);
  }

  /** After a drop: what each request already sent becomes. */
  #settlePending() {
    for (const [id, p] of this.#pending) {
      if (!p.sent) continue;
      if (p.kind === "retry") {
        p.sent = false;
      } else if (p.kind === "join") {
        this.#pending.delete(id);
        clearTimeout(p.timer);
        this.#timers.delete(p.timer);
      } else if (p.kind === "leave") {
        this.#settle(id, {}, null); // a closed connection has left every room
      } else {
        this.#settle(id, null, new RingcastError("disconnected", `the connection dropped before ${p.frame.op} was answered`));
      }
    }
  }

  #failAll(err) {
    for (const id of [...this.#pending.keys()]) this.#settle(id, null, err);
    for (const room of this.rooms.values()) room._fail(err);
  }

  #sendJoin(room) {
    const frame = { op: "join", room: room.name, ...room._resumeFrom() };
    this.#start(frame, "join", (err, ok) => (err ? room._joinFailed(err) : room._onJoined(ok)));
  }

  /** Used by Room. */
  _leave(room) {
    this.rooms.delete(room.name);
    if (!this.#welcomed) return Promise.resolve();
    return this.#request({ op: "leave", room: room.name }, "leave").then(
      () => undefined,
      (err) => {
        if (err.code !== "not_member") throw err;
      },
    );
  }

  /** Used by Room: a rejoin got no answer, so the link is presumed dead. */
  _rejoinTimedOut() {
    this.#drop(1006, "a rejoin got no answer");
  }

  /** Used by Room: an `ok` for a room nobody wants any more. */
  _unwanted(name) {
    if (this.#welcomed && !this.rooms.has(name)) this.#request({ op: "leave", room: name }, "leave").catch(() => {});
  }
}

/**
 * A room joined through a Client. `seq` is the last message delivered and
 * `epoch` the sequence it belongs to; both survive reconnects.
 *
 * Events: `message` ({room, seq, epoch, user, ts, data}), `presence`
 * ({room, user, event}, one per event whether the server batched them or
 * not), `typing` ({room, user, state}), `gap` ({room, epoch, since, seq}:
 * messages after `since` were lost, what follows starts later), `reset`
 * ({room, previousEpoch, epoch, seq}: the room's sequence started again),
 * `error`. Messages, presence, gaps and resets that arrive before anything
 * listens for them are held (up to 10,000 each) and handed to the first
 * listener, so that `room.on(...)` right after `await client.join(...)`
 * misses nothing.
 */
export class Room extends Emitter {
  seq = undefined;
  epoch = undefined;
  joined = false;

  #client;
  #asked;
  #token;
  #held = new Map();
  #resolve;
  #reject;
  #settled = false;
  #left = false;
  /** Held events whose first listener is being handed them. */
  #flushing = new Set();

  constructor(client, name, { since, epoch, token }) {
    super();
    this.#client = client;
    this.name = name;
    this.#asked = { since, epoch };
    this.#token = token;
    this._joined = new Promise((resolve, reject) => {
      this.#resolve = resolve;
      this.#reject = reject;
    });
  }

  publish(data) {
    return this.#client.publish(this.name, data);
  }

  typing(state = true) {
    return this.#client.typing(this.name, state);
  }

  history(opts) {
    return this.#client.history(this.name, opts);
  }

  members(opts) {
    return this.#client.members(this.name, opts);
  }

  allMembers(opts) {
    return this.#client.allMembers(this.name, opts);
  }

  /** Leaves the room; no more events arrive for it. */
  leave() {
    this.joined = false;
    this.#left = true;
    this.#held.clear();
    if (!this.#settled) {
      this.#settled = true;
      this.#reject(new RingcastError("not_member", `left room ${this.name} before the join was answered`));
    }
    return this.#client._leave(this);
  }

  // ---- used by Client ------------------------------------------------

  /** What the next join asks for: the last seq and epoch known, else what the application asked. */
  _resumeFrom() {
    const from = this.seq === undefined ? this.#asked : { since: this.seq, epoch: this.epoch };
    const frame = { token: this.#token };
    if (from.since !== undefined) frame.since = from.since;
    if (from.since !== undefined && from.epoch !== undefined) frame.epoch = from.epoch;
    this._askedNow = frame;
    return frame;
  }

  _onJoined(ok) {
    if (this.#left) return;
    if (this.#client.rooms.get(this.name) !== this) return this.#client._unwanted(this.name);
    const asked = this._askedNow ?? {};
    const previousEpoch = asked.epoch ?? this.epoch;
    this.epoch = ok.epoch;
    if (asked.since === undefined) {
      this.seq = ok.seq;
    } else if (ok.recovered === false) {
      if ((previousEpoch !== undefined && previousEpoch !== ok.epoch) || ok.seq < asked.since) {
        // Another sequence: its seqs name other messages, none is sent.
        this.seq = ok.seq;
        this.#out("reset", { room: this.name, previousEpoch: previousEpoch ?? null, epoch: ok.epoch, seq: ok.seq });
      } else {
        this.seq = asked.since;
        this.#out("gap", { room: this.name, epoch: ok.epoch, since: asked.since, seq: ok.seq });
      }
    } else {
      this.seq = asked.since;
    }
    this.joined = true;
    if (!this.#settled) {
      this.#settled = true;
      this.#resolve(this);
    }
  }

  /** The join was refused, or timed out. */
  _joinFailed(err) {
    if (this.#left) return;
    if (err.code === "timeout" && this.#settled) return this.#client._rejoinTimedOut();
    if (this.#client.rooms.get(this.name) === this) this.#client.rooms.delete(this.name);
    this.joined = false;
    if (!this.#settled) {
      this.#settled = true;
      this.#reject(err);
    } else {
      this.#out("error", err);
      this.#client._emit("error", err);
    }
  }

  _disconnected() {
    this.joined = false;
  }

  _fail(err) {
    this.joined = false;
    if (!this.#settled) {
      this.#settled = true;
      this.#reject(err);
    }
  }

  /** A message, presence or typing frame for this room. */
  _event(f) {
    if (!this.joined) return;
    if (f.op === "message") {
      // A seq already delivered (a backlog overlapping live traffic) is not delivered twice.
      if (this.seq !== undefined && f.seq <= this.seq) return;
      this.seq = f.seq;
      return this.#out("message", message(f, this.epoch));
    }
    if (f.op === "presence") {
      const events = Array.isArray(f.events) ? f.events : [f];
      for (const e of events) {
        const p = { room: this.name, user: e.user, event: e.event };
        if (e.info !== undefined) p.info = e.info;
        this.#out("presence", p);
      }
      return;
    }
    if (f.op === "reset") {
      // Cluster mode: the room's sequence started again in Redis; its
      // messages go on from seq 1 of the new epoch.
      const previousEpoch = this.epoch ?? null;
      this.epoch = f.epoch;
      this.seq = 0;
      return this.#out("reset", { room: this.name, previousEpoch, epoch: f.epoch, seq: 0 });
    }
    if (f.op === "gap") {
      // Cluster mode: messages from..to are gone; live ones go on after.
      this.seq = f.to;
      return this.#out("gap", { room: this.name, epoch: f.epoch, since: f.from - 1, seq: f.to });
    }
    if (f.op === "typing") this.#out("typing", { room: this.name, user: f.user, state: f.state !== false });
  }

  /** Emits on the room (held while nobody listens) and on the client. */
  #out(event, value) {
    if (HELD.has(event) && (!this.listens(event) || this.#held.has(event))) {
      const q = this.#held.get(event) ?? [];
      if (q.length >= HELD_MAX) q.shift();
      q.push(value);
      this.#held.set(event, q);
    } else {
      this._emit(event, value);
    }
    if (event !== "error") this.#client._emit(event, value);
  }

  /**
   * The first listener for a held event gets what was held, in order, just
   * after it was added (not inside `on()`); what arrives meanwhile queues
   * behind.
   */
  _listening(event) {
    if (!this.#held.has(event) || this.#flushing.has(event)) return;
    this.#flushing.add(event);
    queueMicrotask(() => {
      this.#flushing.delete(event);
      const q = this.#held.get(event) ?? [];
      this.#held.delete(event);
      for (const v of q) this._emit(event, v);
    });
  }
}

// ---- helpers ---------------------------------------------------------

/** A message as the application sees it: the room's epoch added. */
function message(m, epoch) {
  const out = { room: m.room, seq: m.seq, epoch, user: m.user, ts: m.ts, data: m.data };
  if (m.data_b64 !== undefined) out.data_b64 = m.data_b64;
  return out;
}

function serverError(f) {
  const extra = { id: f.id };
  if (f.retry_after_ms !== undefined) extra.retryAfterMs = f.retry_after_ms;
  return new RingcastError(f.code ?? "error", f.message, extra);
}

/** An absolute ws:/wss: URL (relative ones against the page), with `?user=`. */
function wsUrl(url, user) {
  const base = globalThis.location?.href;
  const u = new URL(url ?? "/ws", base);
  if (u.protocol === "http:") u.protocol = "ws:";
  if (u.protocol === "https:") u.protocol = "wss:";
  if (user !== undefined) u.searchParams.set("user", user);
  return u.toString();
}

/** A JWT's `exp` (Unix seconds), if the token is one and says. */
function jwtExp(token) {
  try {
    const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    return JSON.parse(atob(part.padEnd(part.length + ((4 - (part.length % 4)) % 4), "="))).exp;
  } catch {
    return undefined;
  }
}
