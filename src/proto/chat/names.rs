//! What a room or user name may be.

/// Longest room name, in bytes.
pub const MAX_ROOM_NAME: usize = 128;

/// Longest user name, in bytes.
pub const MAX_USER_NAME: usize = 64;

/// Checks a room name: 1–128 bytes of `[A-Za-z0-9_.:@-]`.
pub fn valid_room_name(name: &[u8]) -> bool {
    (1..=MAX_ROOM_NAME).contains(&name.len())
        && name
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'@' | b'-'))
}

/// Checks a user name: 1–64 bytes, printable, no quotes or backslashes.
pub fn valid_user_name(name: &str) -> bool {
    (1..=MAX_USER_NAME).contains(&name.len())
        && name
            .chars()
            .all(|c| !c.is_control() && c != '"' && c != '\\')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_names() {
        assert!(valid_room_name(b"lobby"));
        assert!(valid_room_name(b"team:42@acme.org_x-y"));
        assert!(valid_room_name(&[b'a'; 128]));
        assert!(!valid_room_name(&[b'a'; 129]));
        assert!(!valid_room_name(b""));
        assert!(!valid_room_name(b"has space"));
        assert!(!valid_room_name("é".as_bytes()));
        assert!(!valid_room_name(b"a/b"));
    }

    #[test]
    fn user_names() {
        assert!(valid_user_name("ann"));
        assert!(valid_user_name("Zoë 🦀"));
        assert!(valid_user_name(&"x".repeat(64)));
        assert!(!valid_user_name(&"x".repeat(65)));
        assert!(!valid_user_name(""));
        assert!(!valid_user_name("a\"b"));
        assert!(!valid_user_name("a\\b"));
        assert!(!valid_user_name("a\nb"));
    }
}
