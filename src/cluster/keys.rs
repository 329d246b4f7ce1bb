//! A room's keys and channel in Redis. All share the hash tag `{room}`, so
//! one room lives in one slot and the scripts work unchanged on Redis
//! Cluster. Room names hold no braces (see `proto::chat` names).

/// The names of one room's keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    /// `P:{R}:meta`, a hash: `e` the epoch (8 bytes), `s` the last seq.
    pub meta: String,
    /// `P:{R}:hist`, a stream: entry `<seq>-0`, field `d` the message.
    pub hist: String,
    /// `P:{R}:pm`, a hash: `<node>/<conn>` → the member's user (and info).
    pub members: String,
    /// `P:{R}:pn`, a sorted set: node → its lease's end (Unix ms).
    pub leases: String,
    /// `P:{R}:ch`, the room's pub/sub channel.
    pub channel: String,
}

impl Keys {
    /// The keys of `room` in the cluster named `prefix`.
    pub fn new(prefix: &str, room: &str) -> Self {
        let k = |what: &str| format!("{prefix}:{{{room}}}:{what}");
        Self {
            meta: k("meta"),
            hist: k("hist"),
            members: k("pm"),
            leases: k("pn"),
            channel: k("ch"),
        }
    }
}

/// The room a channel of the cluster named `prefix` is for.
pub fn room_of_channel<'a>(prefix: &str, channel: &'a [u8]) -> Option<&'a str> {
    let rest = channel
        .strip_prefix(prefix.as_bytes())?
        .strip_prefix(b":{")?;
    let room = rest.strip_suffix(b"}:ch")?;
    std::str::from_utf8(room).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_back() {
        let k = Keys::new("ringcast", "team:42");
        assert_eq!(k.meta, "ringcast:{team:42}:meta");
        assert_eq!(k.channel, "ringcast:{team:42}:ch");
        assert_eq!(
            room_of_channel("ringcast", k.channel.as_bytes()),
            Some("team:42")
        );
        assert_eq!(room_of_channel("other", k.channel.as_bytes()), None);
        assert_eq!(room_of_channel("ringcast", b"ringcast:{x}:meta"), None);
    }
}
