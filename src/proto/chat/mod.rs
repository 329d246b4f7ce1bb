//! The chat protocol spoken over WebSocket: JSON requests in, JSON replies
//! and events out. See docs/protocol.md for the contract.
//!
//! - [`request`]: parsing a request, borrowing from its frame, and the
//!   typed error codes.
//! - [`reply`]: every reply and event, written straight into a buffer.
//! - [`names`]: what room and user names may be.
//! - [`close`]: the close codes beyond RFC 6455's.
//! - [`json`]: the JSON text helpers both sides share.

pub mod close;
pub mod json;
pub mod names;
pub mod reply;
pub mod request;

pub use json::{epoch_text, minify, parse_epoch};
pub use names::{valid_room_name, valid_user_name, MAX_ROOM_NAME, MAX_USER_NAME};
pub use reply::*;
pub use request::{parse, ApiError, Code, Request, MAX_HISTORY_LIMIT, MAX_MEMBERS_LIMIT};
