//! Where the cluster's Redis is: `cluster.redis`, parsed once.

use anyhow::Context;

/// A Redis server and how to log in to it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// `host:port`, as connected to.
    pub addr: String,
    /// `AUTH` user (Redis 6 ACL), if any.
    pub user: Option<String>,
    /// `AUTH` password, if any.
    pub password: Option<String>,
    /// `SELECT` database (0 = the default, not sent).
    pub db: u32,
}

impl Target {
    /// Parses `redis://[user:password@]host[:port][/db]` (port 6379 when
    /// left out; `redis://:password@host` is a password without a user).
    pub fn parse(url: &str) -> anyhow::Result<Self> {
        let u =
            url::Url::parse(url).with_context(|| format!("cluster.redis {url:?} is not a URL"))?;
        anyhow::ensure!(
            u.scheme() == "redis",
            "cluster.redis must start with redis:// (TLS to Redis is not built in: use a local stunnel or a private network)"
        );
        let host = u
            .host_str()
            .filter(|h| !h.is_empty())
            .context("cluster.redis has no host")?;
        let port = u.port().unwrap_or(6379);
        let decode = |s: &str| {
            form_urlencoded::parse(format!("x={s}").as_bytes())
                .next()
                .map(|(_, v)| v.into_owned())
                .unwrap_or_default()
        };
        let user = Some(decode(u.username())).filter(|s| !s.is_empty());
        let password = u.password().map(decode);
        let db = match u.path().trim_start_matches('/') {
            "" => 0,
            d => d
                .parse()
                .with_context(|| format!("cluster.redis database {d:?} is not a number"))?,
        };
        Ok(Self {
            addr: format!("{host}:{port}"),
            user,
            password,
            db,
        })
    }

    /// The URL with the password hidden, for logs.
    pub fn redacted(&self) -> String {
        let auth = match (&self.user, &self.password) {
            (Some(u), Some(_)) => format!("{u}:***@"),
            (None, Some(_)) => ":***@".to_owned(),
            (Some(u), None) => format!("{u}@"),
            (None, None) => String::new(),
        };
        format!("redis://{auth}{}/{}", self.addr, self.db)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let t = Target::parse("redis://127.0.0.1:6390").unwrap();
        assert_eq!(
            (t.addr.as_str(), t.user, t.password, t.db),
            ("127.0.0.1:6390", None, None, 0)
        );
        let t = Target::parse("redis://app:p%40ss@redis.internal/2").unwrap();
        assert_eq!(t.addr, "redis.internal:6379");
        assert_eq!(
            (t.user.as_deref(), t.password.as_deref(), t.db),
            (Some("app"), Some("p@ss"), 2)
        );
        assert_eq!(t.redacted(), "redis://app:***@redis.internal:6379/2");
        let t = Target::parse("redis://:secret@[::1]:7000").unwrap();
        assert_eq!(
            (t.addr.as_str(), t.user, t.password.as_deref()),
            ("[::1]:7000", None, Some("secret"))
        );
        assert!(Target::parse("rediss://h").is_err());
        assert!(Target::parse("redis://h/x").is_err());
        assert!(Target::parse("nonsense").is_err());
    }
}
