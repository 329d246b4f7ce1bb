//! ringcast: an io_uring, thread-per-core chat edge server.
//!
//! # Layout
//! - [`server`]: start-up (listeners, shards, admin thread) and shutdown.
//! - [`node`]: one shard's chat state — its connections, the local members
//!   of rooms, the rooms homed on it — and the routing between shards.
//! - [`room`]: a room at its home: sequence numbers, retained history, members.
//! - [`presence`]: batching of join/leave events so a filling room does not
//!   cost members × joins frames.
//! - [`wire`]: the rkyv frames shards exchange over their rings.
//! - [`conn`]: a connection's bounded, corked outbound queue and raw I/O.
//! - [`ws_conn`] / [`resp_conn`]: the WebSocket and RESP sessions.
//! - [`ws`] / [`resp`]: sans-I/O codecs for RFC 6455 and RESP.
//! - [`api`]: the chat protocol's JSON requests and replies.
//! - [`admin`] and [`stats`]: `/stats`, `/metrics`, `/healthz` and the
//!   per-shard counters behind them.
//! - [`config`]: settings from a TOML file and flags.
//! - [`doctor`]: what this host's kernel and limits allow.
//!
//! The thread-per-core runtime itself (threads, pinning, rings, wake-ups)
//! is the `shards` crate; see docs/architecture.md for one message's path.
#![warn(unreachable_pub)]

pub mod admin;
pub mod api;
pub mod config;
pub mod conn;
pub mod doctor;
pub mod node;
pub mod presence;
pub mod resp;
pub mod resp_conn;
pub mod room;
pub mod sendring;
pub mod server;
pub mod stats;
pub mod wire;
pub mod ws;
pub mod ws_conn;
