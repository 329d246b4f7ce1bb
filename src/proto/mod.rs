//! Protocol codecs, sans I/O: bytes in, values out, and back. Nothing here
//! knows about sockets, shards or the server that uses it.
//!
//! - [`ws`]: RFC 6455 — the HTTP upgrade and the frame codec.
//! - [`resp`]: the Redis protocol subset — request parsing, reply encoding.
//! - [`chat`]: the JSON chat protocol carried over WebSocket.
//! - [`fuzz`]: the properties the fuzz targets check, callable from tests.

pub mod chat;
pub mod fuzz;
pub mod resp;
pub mod ws;
