//! The ceiling's WebSocket side: upgrades, answers a join with a
//! pre-encoded `ok`, and turns each publish frame into one unmasked server
//! frame, encoded once and copied into every member's corked output.

use super::{Hub, OUT_CAP};
use crate::wsframe::{self, op};

/// Computes `Sec-WebSocket-Accept` for `key`.
pub fn accept_key(key: &[u8]) -> String {
    use base64::Engine;
    use sha1::{Digest, Sha1};
    let mut h = Sha1::new();
    h.update(key);
    h.update(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    base64::engine::general_purpose::STANDARD.encode(h.finalize())
}

fn field<'a>(msg: &'a [u8], key: &[u8]) -> Option<&'a [u8]> {
    let at = memchr::memmem::find(msg, key)? + key.len();
    let end = memchr::memchr(b'"', &msg[at..])? + at;
    Some(&msg[at..end])
}

/// Handles received bytes; returns how many were used, or `None` to close.
pub(super) fn handle(hub: &mut Hub, slot: usize, buf: &[u8]) -> Option<usize> {
    let mut at = 0;
    if !hub.conns[slot].as_ref()?.open {
        let Some(end) = memchr::memmem::find(buf, b"\r\n\r\n") else {
            return (buf.len() < 8192).then_some(0);
        };
        let head = &buf[..end];
        let key_at = memchr::memmem::find(&head.to_ascii_lowercase(), b"sec-websocket-key:")? + 18;
        let key_end = memchr::memchr(b'\r', &head[key_at..]).map_or(head.len(), |e| e + key_at);
        let key = head[key_at..key_end].trim_ascii();
        let c = hub.conns[slot].as_mut()?;
        c.out.extend_from_slice(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ");
        c.out.extend_from_slice(accept_key(key).as_bytes());
        c.out.extend_from_slice(b"\r\n\r\n");
        c.open = true;
        hub.dirty.push(slot);
        at = end + 4;
    }
    loop {
        let rest = &buf[at..];
        if rest.len() < 6 {
            return Some(at);
        }
        let (len, hdr) = match rest[1] & 0x7f {
            126 => (u16::from_be_bytes([rest[2], rest[3]]) as usize, 8),
            127 => return None,
            n => (n as usize, 6),
        };
        if rest[1] & 0x80 == 0 || rest.len() < hdr + len {
            return if rest[1] & 0x80 == 0 { None } else { Some(at) };
        }
        let mask = [rest[hdr - 4], rest[hdr - 3], rest[hdr - 2], rest[hdr - 1]];
        let mut payload = rest[hdr..hdr + len].to_vec();
        wsframe::apply_mask(&mut payload, mask);
        let opcode = rest[0] & 0x0f;
        at += hdr + len;
        match opcode {
            op::CLOSE => return None,
            op::PING => {
                let c = hub.conns[slot].as_mut()?;
                wsframe::server_header(&mut c.out, op::PONG, payload.len());
                c.out.extend_from_slice(&payload);
                hub.dirty.push(slot);
            }
            op::TEXT | op::BINARY => {
                let Some(name) = field(&payload, b"\"room\":\"") else {
                    continue;
                };
                let id = hub.room(name);
                if memchr::memmem::find(&payload, b"\"op\":\"join\"").is_some() {
                    let c = hub.join(slot, id)?;
                    let mut ok = Vec::with_capacity(64);
                    ok.extend_from_slice(b"{\"op\":\"ok\",\"id\":1,\"room\":\"");
                    ok.extend_from_slice(name);
                    ok.extend_from_slice(b"\",\"seq\":0}");
                    wsframe::server_header(&mut c.out, op::TEXT, ok.len());
                    c.out.extend_from_slice(&ok);
                    hub.dirty.push(slot);
                } else {
                    // Encode once, copy into every member's corked buffer.
                    hub.frame.clear();
                    wsframe::server_header(&mut hub.frame, op::TEXT, payload.len());
                    hub.frame.extend_from_slice(&payload);
                    hub.fan_out(id, OUT_CAP);
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_key_matches_rfc_example() {
        assert_eq!(
            accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }
}
