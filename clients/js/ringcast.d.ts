// Types for ringcast.js, the ringcast chat client.

/** Where the connection is: "connecting" until the first welcome, "reconnecting" after a drop, "closed" for good. */
export type State = "connecting" | "open" | "reconnecting" | "closed";

/** The server's error codes, and the library's own (timeout, disconnected, closed, token_expired). */
export type ErrorCode =
  | "bad_json"
  | "bad_id"
  | "unknown_op"
  | "invalid_room"
  | "payload_too_large"
  | "too_many_rooms"
  | "room_full"
  | "not_member"
  | "forbidden"
  | "rate_limited"
  | "unauthorized"
  | "token_expired"
  | "timeout"
  | "disconnected"
  | "closed";

/** Any JSON value: what `publish` takes and messages carry as `data`. */
export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

/** An error from the server, with its code, or from the library. */
export class RingcastError extends Error {
  readonly name: "RingcastError";
  readonly code: ErrorCode | (string & {});
  /** The request id the server's error answered. */
  readonly id?: number | string;
  /** With `rate_limited`: how long to wait before trying again. */
  readonly retryAfterMs?: number;
  /** When the error is a close: the WebSocket close code (4001, 4002, 4003). */
  readonly closeCode?: number;
}

/** The constructor of a WebSocket: the browser's, Node 22's global, or the `ws` package's. */
export interface WebSocketLike {
  readonly readyState: number;
  onopen: ((ev: unknown) => void) | null;
  onmessage: ((ev: { data: unknown }) => void) | null;
  onclose: ((ev: { code: number; reason: string }) => void) | null;
  onerror: ((ev: unknown) => void) | null;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  terminate?(): void;
}
export type WebSocketConstructor = new (url: string) => WebSocketLike;

export interface ConnectOptions {
  /** The user name (`?user=`) on a server without authentication. */
  user?: string;
  /** A token, sent as the connection's first frame (`{"op":"auth"}`). */
  token?: string;
  /** Fetches a token: before connecting when there is none, after the server says it expired (4002) or refused it (4001, once), and ahead of `exp`. */
  getToken?: () => string | Promise<string>;
  /** The WebSocket constructor; the global one by default. */
  WebSocket?: WebSocketConstructor;
  /** How long a request may wait for its answer, queued time included (10 000). */
  requestTimeoutMs?: number;
  /** How long a connection may take to be welcomed (10 000). */
  connectTimeoutMs?: number;
  /** The first retry's delay ceiling; doubled per failed attempt (250). */
  backoffInitialMs?: number;
  /** The most a retry waits (10 000). */
  backoffMaxMs?: number;
  /** Consecutive failed attempts before giving up (Infinity). */
  maxRetries?: number;
  /** After this long without a frame from the server, ping it; 0 = never (20 000). */
  heartbeatMs?: number;
  /** A ping unanswered this long means the link is dead: reconnect (10 000). */
  heartbeatTimeoutMs?: number;
  /** With getToken: refresh this long before the token's exp; 0 = only when it expired (30 000). */
  refreshAheadMs?: number;
}

export interface JoinOptions {
  /** Deliver what came after this seq (of `epoch`) first. */
  since?: number;
  /** The sequence `since` is of, as the server named it. */
  epoch?: string;
  /** A room token, for a room the connection's token does not list. */
  token?: string;
}

/** A room message. */
export interface Message {
  room: string;
  seq: number;
  /** The room sequence `seq` belongs to. */
  epoch: string;
  user: string;
  /** Unix ms at the room's home when it was sequenced. */
  ts: number;
  data: Json;
  /** For a RESP-published payload that is not UTF-8 (then `data` is absent). */
  data_b64?: string;
}

export interface PresenceEvent {
  room: string;
  user: string;
  event: "join" | "leave";
  /** The `info` claim of the user's token, on joins (jwt mode). */
  info?: Record<string, unknown>;
}

export interface TypingEvent {
  room: string;
  user: string;
  state: boolean;
}

/** Messages after `since` were lost (past the room's history); what follows starts later. */
export interface GapEvent {
  room: string;
  epoch: string;
  since: number;
  /** The room's seq when it was rejoined. */
  seq: number;
}

/** The room's sequence started again (a new epoch): seqs from before name other messages. */
export interface ResetEvent {
  room: string;
  previousEpoch: string | null;
  epoch: string;
  /** The new sequence's last seq: fetch `history` for what it already has. */
  seq: number;
}

export interface Welcome {
  user: string;
  conn: string;
  shard: number;
}

export interface Published {
  seq: number;
  epoch: string;
}

export interface HistoryPage {
  room: string;
  /** Absent for a room its home does not have. */
  epoch?: string;
  messages: Message[];
  /** The reply stopped early: ask again with `since` = the last seq. */
  more: boolean;
}

export interface MembersPage {
  room: string;
  users: string[];
  /** Distinct names in all. */
  count: number;
  /** Another page follows: ask again with `after` = the last name. */
  more: boolean;
}

export interface HistoryOptions {
  since?: number;
  limit?: number;
}

export interface MembersOptions {
  after?: string;
  limit?: number;
}

interface RoomEvents {
  message: Message;
  presence: PresenceEvent;
  typing: TypingEvent;
  gap: GapEvent;
  reset: ResetEvent;
  error: RingcastError;
}

interface ClientEvents extends RoomEvents {
  state: State;
  welcome: Welcome;
}

declare class Emitter<Events> {
  /** Listens; returns a function that stops listening. */
  on<E extends keyof Events>(event: E, fn: (value: Events[E]) => void): () => void;
  once<E extends keyof Events>(event: E, fn: (value: Events[E]) => void): () => void;
  off<E extends keyof Events>(event: E, fn: (value: Events[E]) => void): void;
  listens(event: keyof Events): boolean;
}

export class Room extends Emitter<RoomEvents> {
  readonly name: string;
  /** The last seq delivered (or the room's seq at the join). */
  readonly seq: number | undefined;
  readonly epoch: string | undefined;
  /** A member right now (false while reconnecting). */
  readonly joined: boolean;
  publish(data: Json): Promise<Published>;
  typing(state?: boolean): Promise<void>;
  history(options?: HistoryOptions): Promise<HistoryPage>;
  members(options?: MembersOptions): Promise<MembersPage>;
  allMembers(options?: { limit?: number }): Promise<string[]>;
  leave(): Promise<void>;
}

export class Client extends Emitter<ClientEvents> {
  readonly state: State;
  /** From the latest welcome. */
  readonly user: string | undefined;
  readonly conn: string | undefined;
  readonly shard: number | undefined;
  readonly rooms: ReadonlyMap<string, Room>;
  /** Resolves once open; rejects if the client closes (or gives up) first. */
  ready(): Promise<void>;
  join(name: string, options?: JoinOptions): Promise<Room>;
  room(name: string): Room | undefined;
  publish(room: string, data: Json): Promise<Published>;
  typing(room: string, state?: boolean): Promise<void>;
  history(room: string, options?: HistoryOptions): Promise<HistoryPage>;
  members(room: string, options?: MembersOptions): Promise<MembersPage>;
  allMembers(room: string, options?: { limit?: number }): Promise<string[]>;
  /** A round trip; resolves with its time in ms. */
  ping(): Promise<number>;
  /** Replaces the token (same user); resolves with its `exp`. */
  refresh(token: string): Promise<{ exp: number }>;
  /** Drops the connection and connects again at once. */
  reconnect(): void;
  /** Closes for good; resolves when the socket has closed. */
  close(): Promise<void>;
}

/** Connects to `url` (ws:, wss:, or a path such as "/ws" relative to the page). */
export function connect(url?: string, options?: ConnectOptions): Client;
