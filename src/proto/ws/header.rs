//! A frame header, parsed and checked statelessly: each rule as soon as
//! the bytes it needs are present, before any payload is buffered.

use super::close::{
    CloseError, BAD_LENGTH, CONTROL_TOO_LONG, FRAGMENTED_CONTROL, RESERVED_OPCODE, RSV_SET,
    UNMASKED,
};
use super::frame::{OpCode, MAX_CONTROL_PAYLOAD};

/// A parsed, statelessly-validated frame header.
#[derive(Clone, Copy, Debug)]
pub(super) struct Header {
    pub(super) fin: bool,
    pub(super) opcode: OpCode,
    /// Header bytes including the masking key (6, 8 or 14).
    pub(super) len: usize,
    pub(super) payload_len: u64,
    pub(super) mask: [u8; 4],
}

/// Header length (including mask key) and declared payload length of the
/// frame at the front of `buf`, if the whole header is present.
pub(super) fn lengths(buf: &[u8]) -> Option<(usize, u64)> {
    let len7 = buf.get(1)? & 0x7F;
    let (ext, payload_len) = match len7 {
        126 => (
            2,
            u64::from(u16::from_be_bytes(buf.get(2..4)?.try_into().ok()?)),
        ),
        127 => (8, u64::from_be_bytes(buf.get(2..10)?.try_into().ok()?)),
        n => (0, u64::from(n)),
    };
    let header_len = 2 + ext + 4;
    if buf.len() < header_len {
        return None;
    }
    Some((header_len, payload_len))
}

/// Parses and statelessly validates the header at the front of `buf`.
/// Checks each rule as soon as the bytes it needs are present.
pub(super) fn parse_header(buf: &[u8]) -> Result<Option<Header>, CloseError> {
    let Some(&b0) = buf.first() else {
        return Ok(None);
    };
    if b0 & 0x70 != 0 {
        return Err(RSV_SET);
    }
    let opcode = OpCode::from_u8(b0 & 0x0F).ok_or(RESERVED_OPCODE)?;
    let fin = b0 & 0x80 != 0;
    if opcode.is_control() && !fin {
        return Err(FRAGMENTED_CONTROL);
    }
    let Some(&b1) = buf.get(1) else {
        return Ok(None);
    };
    if b1 & 0x80 == 0 {
        return Err(UNMASKED);
    }
    if opcode.is_control() && usize::from(b1 & 0x7F) > MAX_CONTROL_PAYLOAD {
        return Err(CONTROL_TOO_LONG);
    }
    if b1 & 0x7F == 127 && buf.get(2).is_some_and(|b| b & 0x80 != 0) {
        // RFC 6455 §5.2: the most significant bit of a 64-bit length is 0.
        return Err(BAD_LENGTH);
    }
    let Some((len, payload_len)) = lengths(buf) else {
        return Ok(None);
    };
    let mut mask = [0u8; 4];
    mask.copy_from_slice(buf.get(len - 4..len).unwrap_or(&[0; 4]));
    Ok(Some(Header {
        fin,
        opcode,
        len,
        payload_len,
        mask,
    }))
}
