//! RESP passwords: `AUTH password` against `resp_requirepass`, and
//! `AUTH user password` against `[[resp_users]]`, whose passwords are kept
//! as SHA-256 hashes (as Redis ACL's `#<hash>`), never in clear.

use ahash::AHashMap;
use sha2::{Digest, Sha256};

use super::grants::{Grants, Patterns};
use crate::config::RespUser;

/// The RESP users, and whether RESP needs `AUTH` at all.
#[derive(Debug, Default)]
pub struct RespAuth {
    /// SHA-256 of `resp_requirepass`, the `default` user's password.
    requirepass: Option<[u8; 32]>,
    users: AHashMap<String, ([u8; 32], Grants)>,
}

/// Who a RESP client authenticated as.
#[derive(Clone, Debug, PartialEq)]
pub struct RespLogin {
    /// The user name (`default` for `resp_requirepass`).
    pub user: String,
    /// What it may subscribe to and publish into.
    pub grants: Grants,
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// Equal, in time that does not depend on where they differ.
fn same(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl RespAuth {
    /// From the settings; a hash that is not 64 hex digits is an error.
    pub fn new(requirepass: &str, users: &[RespUser]) -> anyhow::Result<Self> {
        let mut out = RespAuth {
            requirepass: (!requirepass.is_empty()).then(|| sha256(requirepass.as_bytes())),
            users: AHashMap::new(),
        };
        for u in users {
            let hex = u.password_sha256.trim();
            anyhow::ensure!(
                hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()),
                "resp_users {:?}: password_sha256 must be 64 hex digits (sha256sum of the password)",
                u.name
            );
            let mut hash = [0u8; 32];
            for (i, byte) in hash.iter_mut().enumerate() {
                *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap_or(0);
            }
            let grants = Grants {
                rooms: Patterns::new(&u.subscribe),
                publish: Patterns::new(&u.publish),
            };
            out.users.insert(u.name.clone(), (hash, grants));
        }
        Ok(out)
    }

    /// True when RESP clients must `AUTH` before anything else.
    pub fn required(&self) -> bool {
        self.requirepass.is_some() || !self.users.is_empty()
    }

    /// `AUTH [user] password`: who it is, or `None` for Redis's WRONGPASS.
    /// With no password configured at all the `default` user is Redis's
    /// `nopass`: any password logs it in (and only it: no other user
    /// exists). With users but no `resp_requirepass`, `default` is off.
    pub fn login(&self, user: Option<&[u8]>, password: &[u8]) -> Option<RespLogin> {
        let given = sha256(password);
        let default = || RespLogin {
            user: "default".into(),
            grants: Grants::all(),
        };
        match user {
            None | Some(b"default") if !self.required() => Some(default()),
            None | Some(b"default") => {
                let want = self.requirepass?;
                same(&want, &given).then(default)
            }
            Some(name) => {
                let name = std::str::from_utf8(name).ok()?;
                let (want, grants) = self.users.get(name)?;
                same(want, &given).then(|| RespLogin {
                    user: name.into(),
                    grants: grants.clone(),
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_by_hash_and_per_user_channels() {
        // sha256("s3cret")
        let hash = "0d6b1f1ae3b3e1b4a2d9bd0b88dd5a1b6b2aee6cf3c9dd4ecb5a8fbb31b5fc58";
        let real = format!("{:x}", Sha256::digest(b"s3cret"));
        let users = [RespUser {
            name: "backend".into(),
            password_sha256: real.clone(),
            subscribe: vec!["news:*".into()],
            publish: vec!["news:eu".into()],
        }];
        let auth = RespAuth::new("pw", &users).unwrap();
        assert!(auth.required());
        let login = auth.login(Some(b"backend"), b"s3cret").unwrap();
        assert_eq!(login.user, "backend");
        assert!(login.grants.rooms.allows("news:us"));
        assert!(!login.grants.publish.allows("news:us"));
        assert!(auth.login(Some(b"backend"), b"wrong").is_none());
        assert!(auth.login(Some(b"nobody"), b"s3cret").is_none());
        assert_eq!(auth.login(None, b"pw").unwrap().user, "default");
        assert!(auth.login(Some(b"default"), b"pw").is_some());
        assert!(auth.login(None, b"nope").is_none());
        let open = RespAuth::new("", &[]).unwrap();
        assert!(!open.required());
        assert_eq!(
            open.login(Some(b"default"), b"any").unwrap().user,
            "default"
        );
        assert!(open.login(Some(b"backend"), b"s3cret").is_none());
        let users_only = RespAuth::new("", &users).unwrap();
        assert!(
            users_only.login(Some(b"default"), b"").is_none(),
            "default is off"
        );
        assert!(users_only.login(None, b"pw").is_none());
        let bad = [RespUser {
            password_sha256: hash[..10].into(),
            ..users[0].clone()
        }];
        assert!(RespAuth::new("", &bad).is_err());
    }
}
