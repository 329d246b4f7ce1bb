//! Room patterns: what a token or a RESP user may join, read and publish
//! into. A pattern is a room name, or a prefix ending in `*` (`team:42:*`);
//! `*` alone is every room.

use ahash::AHashSet;

/// A set of room patterns, checked in O(1) for names and O(prefixes) for
/// prefixes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Patterns {
    exact: AHashSet<Box<str>>,
    prefixes: Vec<Box<str>>,
    any: bool,
}

impl Patterns {
    /// The patterns of `list`.
    pub fn new<S: AsRef<str>>(list: &[S]) -> Self {
        let mut p = Patterns::default();
        for pattern in list {
            match pattern.as_ref().strip_suffix('*') {
                Some("") => p.any = true,
                Some(prefix) => p.prefixes.push(prefix.into()),
                None => {
                    p.exact.insert(pattern.as_ref().into());
                }
            }
        }
        p
    }

    /// Every room.
    pub fn any() -> Self {
        Patterns {
            any: true,
            ..Patterns::default()
        }
    }

    /// True when `room` matches a pattern.
    pub fn allows(&self, room: &str) -> bool {
        self.any
            || self.exact.contains(room)
            || self.prefixes.iter().any(|p| room.starts_with(&**p))
    }
}

/// What a client may do with rooms.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Grants {
    /// Rooms it may join (and so receive from), and read the history and
    /// members of.
    pub rooms: Patterns,
    /// Rooms it may publish and send typing events into.
    pub publish: Patterns,
}

impl Grants {
    /// Every room, for everything.
    pub fn all() -> Self {
        Grants {
            rooms: Patterns::any(),
            publish: Patterns::any(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_prefixes_and_everything() {
        let p = Patterns::new(&["lobby", "team:42:*"]);
        assert!(p.allows("lobby"));
        assert!(p.allows("team:42:general"));
        assert!(p.allows("team:42:"));
        assert!(!p.allows("team:43:general"));
        assert!(!p.allows("lobby2"));
        assert!(!p.allows("team:4"));
        assert!(Patterns::new(&["*"]).allows("anything"));
        assert!(!Patterns::new::<&str>(&[]).allows("anything"));
    }
}
