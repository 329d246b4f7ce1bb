//! Protocol violations and the close code each one gets.

use bytes::Bytes;

/// A protocol violation: send a Close frame with `code` (use
/// [`CloseError::to_frame`]) and close the connection. The decoder must not
/// be used again afterwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{reason} (close code {code})")]
pub struct CloseError {
    /// Close status code: 1002 protocol error, 1007 invalid UTF-8, 1009
    /// message too big.
    pub code: u16,
    /// Short human-readable description, suitable as the close reason.
    pub reason: &'static str,
}

impl CloseError {
    /// 1002: the peer broke the framing rules.
    pub const PROTOCOL: u16 = 1002;
    /// 1007: a text message or close reason was not valid UTF-8.
    pub const INVALID_DATA: u16 = 1007;
    /// 1009: a message exceeded the configured maximum size.
    pub const TOO_BIG: u16 = 1009;

    const fn protocol(reason: &'static str) -> Self {
        Self {
            code: Self::PROTOCOL,
            reason,
        }
    }

    /// The Close frame to send to the client for this error.
    pub fn to_frame(&self) -> Bytes {
        super::frame::close_frame(self.code, self.reason)
    }
}

pub(super) const UNMASKED: CloseError = CloseError::protocol("unmasked frame");
pub(super) const RSV_SET: CloseError = CloseError::protocol("reserved bits set");
pub(super) const RESERVED_OPCODE: CloseError = CloseError::protocol("reserved opcode");
pub(super) const FRAGMENTED_CONTROL: CloseError = CloseError::protocol("fragmented control frame");
pub(super) const CONTROL_TOO_LONG: CloseError = CloseError::protocol("control frame too long");
pub(super) const BAD_LENGTH: CloseError = CloseError::protocol("invalid payload length");
pub(super) const NOTHING_TO_CONTINUE: CloseError =
    CloseError::protocol("unexpected continuation frame");
pub(super) const EXPECTED_CONTINUATION: CloseError =
    CloseError::protocol("expected continuation frame");
pub(super) const CLOSE_LEN_ONE: CloseError = CloseError::protocol("close payload of 1 byte");
pub(super) const BAD_CLOSE_CODE: CloseError = CloseError::protocol("invalid close code");
pub(super) const INVALID_UTF8: CloseError = CloseError {
    code: CloseError::INVALID_DATA,
    reason: "invalid UTF-8 in text message",
};
pub(super) const INVALID_UTF8_REASON: CloseError = CloseError {
    code: CloseError::INVALID_DATA,
    reason: "invalid UTF-8 in close reason",
};
pub(super) const TOO_BIG: CloseError = CloseError {
    code: CloseError::TOO_BIG,
    reason: "message too big",
};
