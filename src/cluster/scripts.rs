//! The Lua scripts that make a room's sequence, history and members atomic
//! in Redis. Each link loads them (`SCRIPT LOAD`) when it connects, before
//! its first `EVALSHA`, and checks the SHA-1 Redis answers against the one
//! computed here.

use std::sync::LazyLock;

use sha1::{Digest, Sha1};

/// One script: its text and SHA-1 (40 hex digits).
#[derive(Debug)]
pub struct Script {
    /// File name, for logs.
    pub name: &'static str,
    /// The Lua text.
    pub text: &'static str,
    /// SHA-1 of `text`, lowercase hex, as `SCRIPT LOAD` answers.
    pub sha: String,
}

impl Script {
    fn new(name: &'static str, text: &'static str) -> Self {
        let digest = Sha1::digest(text.as_bytes());
        let sha = digest.iter().map(|b| format!("{b:02x}")).collect();
        Self { name, text, sha }
    }
}

/// Indexes into [`SCRIPTS`].
pub const PUB: usize = 0;
/// `rc_join`: create or read a sequence, and the messages after a seq.
pub const JOIN: usize = 1;
/// `rc_pres_add`: add members and renew this node's lease.
pub const PRES_ADD: usize = 2;
/// `rc_pres_rem`: remove members.
pub const PRES_REM: usize = 3;
/// `rc_pres_list`: every live member of a room.
pub const PRES_LIST: usize = 4;

/// Every script, loaded on every connection.
pub static SCRIPTS: LazyLock<[Script; 5]> = LazyLock::new(|| {
    [
        Script::new("rc_pub", include_str!("lua/rc_pub.lua")),
        Script::new("rc_join", include_str!("lua/rc_join.lua")),
        Script::new("rc_pres_add", include_str!("lua/rc_pres_add.lua")),
        Script::new("rc_pres_rem", include_str!("lua/rc_pres_rem.lua")),
        Script::new("rc_pres_list", include_str!("lua/rc_pres_list.lua")),
    ]
});

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shas_are_what_redis_computes() {
        // SHA-1 of the empty script, as `SCRIPT LOAD ""` answers.
        assert_eq!(
            Script::new("e", "").sha,
            "da39a3ee5e6b4b0d3255bfef95601890afd80709"
        );
        assert!(SCRIPTS
            .iter()
            .all(|s| s.sha.len() == 40 && !s.text.is_empty()));
    }
}
