//! A thread-per-core runtime: one pinned `monoio` shard per core, joined by
//! a mesh of bounded single-producer/single-consumer rings.
//!
//! # Layout
//! - [`probe`]: decides at start-up whether io_uring is usable (with the
//!   `io-uring` crate) or whether shards fall back to monoio's epoll driver.
//! - [`mesh`]: the N×N mesh of SPSC rings carrying [`bytes::Bytes`] frames,
//!   and the sleep/wake protocol between shards.
//! - [`launch`](mod@launch): starts the shards — one OS thread each, pinned
//!   with `core_affinity`, each running its own monoio runtime — and the
//!   [`Handle`] the caller keeps to stop them.
//!
//! # Design
//! Nothing is shared between shards but the rings and a few flags. A frame
//! sent from shard A to shard B travels on the A→B ring only, so frames from
//! one sender arrive in the order they were sent. A shard that has nothing to
//! do announces that it is going to sleep; a sender wakes it only then (the
//! Seastar discipline), so a busy mesh costs no system calls at all for
//! wake-ups. Nothing here knows about chat: frames are opaque bytes.
#![warn(missing_docs, unreachable_pub)]

pub mod launch;
pub mod mesh;
pub mod probe;

pub use launch::{launch, Config, Handle, Shard};
pub use mesh::{Inbox, Outbox, SendError};
pub use probe::Driver;
