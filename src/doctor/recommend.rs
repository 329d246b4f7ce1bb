//! The recommendations: the files in `sysctl/`, compiled in, and the rule
//! that says how each live value is judged against them.
//!
//! The values live only in `sysctl/99-ringcast.conf` and `sysctl/limits.conf`
//! (the files an operator installs by hand or with Ansible); this module adds
//! the direction of each comparison, which a `key = value` file cannot say.

/// `sysctl/99-ringcast.conf`, as shipped.
pub(crate) const SYSCTL_CONF: &str = include_str!("../../sysctl/99-ringcast.conf");
/// `sysctl/limits.conf`, as shipped.
pub(crate) const LIMITS_CONF: &str = include_str!("../../sysctl/limits.conf");
/// The user `limits.conf` is written for.
pub(crate) const SERVICE_USER: &str = "ringcast";

/// One `key = value` line of a sysctl.d file, value whitespace-normalised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Sysctl {
    pub(crate) key: String,
    pub(crate) value: String,
}

/// A line of a config file that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {reason}")]
pub(crate) struct ParseError {
    pub(crate) line: usize,
    pub(crate) reason: &'static str,
}

/// Collapses runs of spaces and tabs to one space: `/proc/sys` separates the
/// fields of `tcp_rmem` with tabs, sysctl.d files with spaces.
pub(crate) fn normalize(value: &str) -> String {
    value.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Parses a sysctl.d file the way `sysctl --system` reads it: `#` and `;`
/// start comment lines, a leading `-` (ignore errors) is dropped.
pub(crate) fn parse_sysctl_conf(text: &str) -> Result<Vec<Sysctl>, ParseError> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        let err = |reason| ParseError {
            line: i + 1,
            reason,
        };
        let (key, value) = line.split_once('=').ok_or(err("expected `key = value`"))?;
        let key = key.trim().trim_start_matches('-').trim();
        let value = normalize(value);
        if key.is_empty() || key.contains(char::is_whitespace) {
            return Err(err("bad key"));
        }
        if value.is_empty() {
            return Err(err("empty value"));
        }
        out.push(Sysctl {
            key: key.to_owned(),
            value,
        });
    }
    Ok(out)
}

/// The limits `limits.conf` gives the service user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct UserLimits {
    /// Hard `nofile`: `ringcast serve` raises its soft limit to this.
    pub(crate) nofile: Option<u64>,
    /// Soft `memlock`, in bytes (the file says KiB).
    pub(crate) memlock_bytes: Option<u64>,
}

/// Reads the `nofile` (hard) and `memlock` (soft) lines for `user` (or `*`,
/// when the user has none) from a limits.conf file. `-` sets both kinds.
pub(crate) fn parse_limits_conf(text: &str, user: &str) -> Result<UserLimits, ParseError> {
    let mut mine = UserLimits::default();
    let mut star = UserLimits::default();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let err = |reason| ParseError {
            line: i + 1,
            reason,
        };
        let f: Vec<&str> = line.split_whitespace().collect();
        let [domain, kind, item, value] = f[..] else {
            return Err(err("expected `<domain> <type> <item> <value>`"));
        };
        let value = match value {
            "unlimited" | "infinity" | "-1" => u64::MAX,
            v => v.parse::<u64>().map_err(|_| err("value is not a number"))?,
        };
        let slot = if domain == user {
            &mut mine
        } else if domain == "*" {
            &mut star
        } else {
            continue;
        };
        match (item, kind) {
            ("nofile", "hard" | "-") => slot.nofile = Some(value),
            ("memlock", "soft" | "-") => {
                slot.memlock_bytes = Some(value.saturating_mul(1024));
            }
            (_, "soft" | "hard" | "-") => {}
            _ => return Err(err("type must be soft, hard or -")),
        }
    }
    Ok(UserLimits {
        nofile: mine.nofile.or(star.nofile),
        memlock_bytes: mine.memlock_bytes.or(star.memlock_bytes),
    })
}

/// How a live value is compared with the recommended one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Rule {
    /// A ceiling: lower live values cap the server.
    AtLeast,
    /// A timeout or interval: higher live values keep dead state longer.
    AtMost,
    /// A port range: the live range should cover the recommended one.
    Covers,
    /// A flag or a tuple: anything else is a deliberate local choice.
    Equal,
}

/// What a miss means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Weight {
    /// Caps connections or drops them under load: status `low`, exit 1.
    Limits,
    /// Worth a look, the server still works: status `warn`.
    Advice,
}

/// The rule and weight for every key in `99-ringcast.conf`; a unit test
/// keeps the two lists the same.
pub(crate) const POLICY: &[(&str, Rule, Weight)] = &[
    ("net.core.somaxconn", Rule::AtLeast, Weight::Limits),
    (
        "net.ipv4.tcp_max_syn_backlog",
        Rule::AtLeast,
        Weight::Limits,
    ),
    ("net.core.netdev_max_backlog", Rule::AtLeast, Weight::Advice),
    ("net.ipv4.tcp_syncookies", Rule::Equal, Weight::Advice),
    ("fs.file-max", Rule::AtLeast, Weight::Limits),
    ("fs.nr_open", Rule::AtLeast, Weight::Limits),
    ("net.ipv4.tcp_rmem", Rule::Equal, Weight::Advice),
    ("net.ipv4.tcp_wmem", Rule::Equal, Weight::Advice),
    ("net.core.rmem_max", Rule::AtLeast, Weight::Advice),
    ("net.core.wmem_max", Rule::AtLeast, Weight::Advice),
    ("net.ipv4.tcp_tw_reuse", Rule::Equal, Weight::Advice),
    ("net.ipv4.tcp_fin_timeout", Rule::AtMost, Weight::Advice),
    ("net.ipv4.ip_local_port_range", Rule::Covers, Weight::Advice),
    ("net.ipv4.tcp_keepalive_time", Rule::AtMost, Weight::Advice),
    ("net.ipv4.tcp_keepalive_intvl", Rule::AtMost, Weight::Advice),
    (
        "net.ipv4.tcp_keepalive_probes",
        Rule::AtMost,
        Weight::Advice,
    ),
];

/// The rule for `key`, if it has one.
pub(crate) fn policy(key: &str) -> Option<(Rule, Weight)> {
    POLICY
        .iter()
        .find(|(k, ..)| *k == key)
        .map(|&(_, r, w)| (r, w))
}

/// Whether `current` meets `recommended` under `rule`; `None` when either
/// side does not have the shape the rule needs.
pub(crate) fn meets(rule: Rule, current: &str, recommended: &str) -> Option<bool> {
    let nums =
        |s: &str| -> Option<Vec<u64>> { s.split_whitespace().map(|p| p.parse().ok()).collect() };
    match rule {
        Rule::Equal => Some(normalize(current) == normalize(recommended)),
        Rule::AtLeast | Rule::AtMost => {
            let (c, r) = (nums(current)?, nums(recommended)?);
            let (&[c], &[r]) = (&c[..], &r[..]) else {
                return None;
            };
            Some(if rule == Rule::AtLeast {
                c >= r
            } else {
                c <= r
            })
        }
        Rule::Covers => {
            let (c, r) = (nums(current)?, nums(recommended)?);
            let (&[c_lo, c_hi], &[r_lo, r_hi]) = (&c[..], &r[..]) else {
                return None;
            };
            Some(c_lo <= r_lo && c_hi >= r_hi)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_sysctl_file_parses_and_every_key_has_a_rule() {
        let conf = parse_sysctl_conf(SYSCTL_CONF).expect("99-ringcast.conf parses");
        let keys: Vec<&str> = conf.iter().map(|s| s.key.as_str()).collect();
        for k in &keys {
            let (rule, _) = policy(k).unwrap_or_else(|| panic!("{k} has no rule in POLICY"));
            let value = &conf.iter().find(|s| s.key == *k).unwrap().value;
            // Each value has the shape its rule compares, so it meets itself.
            assert_eq!(meets(rule, value, value), Some(true), "{k} = {value}");
        }
        for (k, ..) in POLICY {
            assert!(
                keys.contains(k),
                "POLICY names {k}, which the file does not set"
            );
        }
        let mut sorted = keys.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), keys.len(), "a key is set twice");
        assert!(
            !keys.iter().any(|k| k.contains("tw_recycle")),
            "tcp_tw_recycle is gone from Linux"
        );
    }

    #[test]
    fn shipped_limits_file_gives_the_service_user_its_limits() {
        let l = parse_limits_conf(LIMITS_CONF, SERVICE_USER).unwrap();
        assert_eq!(l.nofile, Some(1_048_576));
        assert_eq!(l.memlock_bytes, Some(64 << 20));
        let fs_nr_open = parse_sysctl_conf(SYSCTL_CONF)
            .unwrap()
            .into_iter()
            .find(|s| s.key == "fs.nr_open")
            .unwrap();
        let nr_open: u64 = fs_nr_open.value.parse().unwrap();
        assert!(
            l.nofile.unwrap() <= nr_open,
            "nofile above fs.nr_open cannot be applied"
        );
    }

    #[test]
    fn sysctl_parser_follows_sysctl_d_syntax() {
        let text = "# c\n; c\n\n-net.core.somaxconn=  1024\nnet.ipv4.tcp_rmem = 1\t2   3\n";
        let got = parse_sysctl_conf(text).unwrap();
        assert_eq!(
            got,
            vec![
                Sysctl {
                    key: "net.core.somaxconn".into(),
                    value: "1024".into()
                },
                Sysctl {
                    key: "net.ipv4.tcp_rmem".into(),
                    value: "1 2 3".into()
                },
            ]
        );
        assert_eq!(parse_sysctl_conf("a.b\n").unwrap_err().line, 1);
        assert_eq!(parse_sysctl_conf("# x\na.b =\n").unwrap_err().line, 2);
        assert_eq!(
            parse_sysctl_conf("a b = 1\n").unwrap_err().reason,
            "bad key"
        );
    }

    #[test]
    fn limits_parser_prefers_the_user_over_star_and_reads_dash() {
        let text = "* hard nofile 4096\n* soft memlock 64\nringcast - nofile 8192 # both\nother hard nofile 9\n";
        let l = parse_limits_conf(text, "ringcast").unwrap();
        assert_eq!(l.nofile, Some(8192));
        assert_eq!(l.memlock_bytes, Some(64 * 1024));
        let l = parse_limits_conf("* hard nofile unlimited\n", "ringcast").unwrap();
        assert_eq!(l.nofile, Some(u64::MAX));
        assert!(parse_limits_conf("ringcast hard nofile\n", "ringcast").is_err());
        assert!(parse_limits_conf("ringcast hard nofile lots\n", "ringcast").is_err());
        assert!(parse_limits_conf("ringcast medium nofile 1\n", "ringcast").is_err());
    }

    #[test]
    fn rules_compare_in_their_direction() {
        assert_eq!(meets(Rule::AtLeast, "4096", "65535"), Some(false));
        assert_eq!(meets(Rule::AtLeast, "65535", "65535"), Some(true));
        assert_eq!(meets(Rule::AtMost, "60", "15"), Some(false));
        assert_eq!(meets(Rule::AtMost, "10", "15"), Some(true));
        assert_eq!(
            meets(Rule::Covers, "32768\t60999", "10000 65535"),
            Some(false)
        );
        assert_eq!(meets(Rule::Covers, "1024 65535", "10000 65535"), Some(true));
        assert_eq!(
            meets(Rule::Equal, "4096\t16384\t16777216", "4096 16384 16777216"),
            Some(true)
        );
        assert_eq!(meets(Rule::Equal, "2", "1"), Some(false));
        assert_eq!(meets(Rule::AtLeast, "lots", "1"), None);
        assert_eq!(meets(Rule::AtLeast, "1 2", "1"), None);
        assert_eq!(meets(Rule::Covers, "1", "1 2"), None);
    }
}
