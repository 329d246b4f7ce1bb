//! What a node publishes on a room's channel. Every payload starts with a
//! fixed header, so a node reads the kind and sequence without touching
//! the body:
//!
//! ```text
//! message   'R' 0x01 | epoch [8] | seq u64 BE [8] | body      (built by rc_pub)
//! presence  'R' 0x02 | origin node [8] | event JSON
//! typing    'R' 0x03 | origin node [8] | event JSON
//! ```
//!
//! `'R'` is the format's version: a later format takes another byte, and a
//! node drops (and counts) what it does not know. A message's body is the
//! rkyv frame the shards exchange (`Wire::Message`); the history stream
//! keeps only the body, its seq being the entry id. Presence and typing are
//! the JSON events as clients see them, the same on every node; a node
//! drops its own (it delivered them locally already).

/// The version byte.
pub const MAGIC: u8 = b'R';
const MESSAGE: u8 = 1;
const PRESENCE: u8 = 2;
const TYPING: u8 = 3;

/// A payload read from a room's channel.
#[derive(Debug, PartialEq, Eq)]
pub enum Published<'a> {
    /// A sequenced message.
    Message {
        /// The room's sequence.
        epoch: u64,
        /// Its seq.
        seq: u64,
        /// The message (rkyv).
        body: &'a [u8],
    },
    /// Presence or typing JSON from another node (or this one).
    Event {
        /// The node that published it.
        origin: u64,
        /// The event as clients see it.
        json: &'a [u8],
    },
}

/// Reads a payload; `None` for one this version does not know.
pub fn parse(payload: &[u8]) -> Option<Published<'_>> {
    let (&magic, rest) = payload.split_first()?;
    let (&kind, rest) = rest.split_first()?;
    if magic != MAGIC || rest.len() < 8 {
        return None;
    }
    let (a, rest) = rest.split_at(8);
    let a = u64::from_be_bytes(a.try_into().ok()?);
    match kind {
        MESSAGE if rest.len() >= 8 => {
            let (seq, body) = rest.split_at(8);
            Some(Published::Message {
                epoch: a,
                seq: u64::from_be_bytes(seq.try_into().ok()?),
                body,
            })
        }
        PRESENCE | TYPING => Some(Published::Event {
            origin: a,
            json: rest,
        }),
        _ => None,
    }
}

/// A presence (`typing` false) or typing event's payload.
pub fn event(origin: u64, typing: bool, json: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(10 + json.len());
    out.push(MAGIC);
    out.push(if typing { TYPING } else { PRESENCE });
    out.extend_from_slice(&origin.to_be_bytes());
    out.extend_from_slice(json);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers() {
        let mut m = vec![b'R', 1];
        m.extend_from_slice(&7u64.to_be_bytes());
        m.extend_from_slice(&300u64.to_be_bytes());
        m.extend_from_slice(b"body");
        assert_eq!(
            parse(&m),
            Some(Published::Message {
                epoch: 7,
                seq: 300,
                body: b"body"
            })
        );
        let e = event(9, true, b"{}");
        assert_eq!(
            parse(&e),
            Some(Published::Event {
                origin: 9,
                json: b"{}"
            })
        );
        assert_eq!(parse(b"R\x01short"), None);
        assert_eq!(parse(b"X\x02\0\0\0\0\0\0\0\0{}"), None);
        assert_eq!(parse(b"R\x09\0\0\0\0\0\0\0\0{}"), None);
        assert_eq!(parse(b""), None);
    }
}
