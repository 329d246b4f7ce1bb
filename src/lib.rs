//! ringcast: an io_uring, thread-per-core chat edge server.
//!
//! # Layout
//! One folder per layer; arrows between them point down this list only
//! (a test, `tests/layout.rs`, keeps it so):
//!
//! - [`server`]: start-up (listeners, shards, the admin thread), one
//!   shard's life, and shutdown.
//! - [`admin`] and [`doctor`]: operations — `/stats`, `/metrics`,
//!   `/healthz` over HTTP; what this host's kernel and limits allow.
//! - [`session`]: one file per protocol (WebSocket, RESP) on the shared
//!   read loop: what a client says, and what the shard is asked to do.
//! - [`shard`]: one shard's chat state — the frames between shards and the
//!   mesh they travel, the rooms homed here (sequence, history, members,
//!   presence, retention), delivery to local members, the flusher, and the
//!   per-shard counters; in cluster mode, a room's home also relays it
//!   through Redis.
//! - [`cluster`]: cluster mode's plain parts — the pipelined, reconnecting
//!   Redis link each shard owns, the Lua scripts, key names, channel frames.
//! - [`conn`]: protocol-agnostic connection I/O — the bounded outbound
//!   queue, reply order, reads, the io_uring send ring and file table.
//! - [`access`]: identity and access, no I/O — token and password checks,
//!   room grants, rate-limit buckets — carried by each connection.
//! - [`proto`]: sans-I/O codecs that know none of the above — RFC 6455
//!   ([`proto::ws`]), RESP ([`proto::resp`]) and the JSON chat protocol
//!   ([`proto::chat`]).
//! - [`config`]: settings from a TOML file and flags, used by every layer.
//!
//! Below all of them, the `shards` crate is the thread-per-core runtime
//! (threads, pinning, the SPSC ring mesh, wake-ups). One WebSocket
//! publish to a member on another shard runs through
//! `session/ws.rs` → `shard/requests.rs` → `shard/mesh.rs` (the ring) →
//! `shard/inbox.rs` and `shard/homing.rs` at the room's home → back over
//! the mesh → `shard/member.rs` → the member's queue in `conn/queue.rs`
//! and out through the flusher and `conn/sendring.rs`; docs/architecture.md
//! draws it.
#![warn(unreachable_pub)]

pub mod access;
pub mod admin;
pub mod cluster;
pub mod config;
pub mod conn;
pub mod doctor;
pub mod proto;
pub mod server;
pub mod session;
pub mod shard;
