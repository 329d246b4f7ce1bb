//! Who may reach each listener, and whether anything stops them: the
//! start-up warnings and `ringcast doctor`'s exposure rows come from here.

use std::net::SocketAddr;

use super::report::{Check, Status};
use crate::config::{AuthMode, Config};

/// One listener that anyone who reaches it may use without proving who
/// they are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exposure {
    /// The setting that decides it, as a config file spells it.
    pub setting: &'static str,
    /// The listener's address.
    pub addr: SocketAddr,
    /// What is open, in a sentence.
    pub risk: &'static str,
    /// What to set instead.
    pub fix: &'static str,
}

/// The listeners of `cfg` (bound at `ws`, `resp`, `admin`) that are open to
/// more than this host. Loopback listeners are never listed: only local
/// processes reach them.
pub fn exposures(
    cfg: &Config,
    ws: SocketAddr,
    resp: SocketAddr,
    admin: SocketAddr,
) -> Vec<Exposure> {
    let mut out = Vec::new();
    if cfg.auth.mode == AuthMode::None && !ws.ip().is_loopback() {
        out.push(Exposure {
            setting: "auth.mode",
            addr: ws,
            risk: "auth.mode = \"none\" on a non-loopback WebSocket listener: anyone who reaches it may speak as anyone in any room",
            fix: "auth.mode = \"jwt\" (docs/security.md)",
        });
    }
    if cfg.resp_requirepass.is_empty() && cfg.resp_users.is_empty() && !resp.ip().is_loopback() {
        out.push(Exposure {
            setting: "resp_requirepass",
            addr: resp,
            risk: "RESP without resp_requirepass or resp_users on a non-loopback listener: anyone who reaches it may publish anywhere",
            fix: "resp_requirepass or [[resp_users]]",
        });
    }
    if cfg.admin_token.is_empty() && !admin.ip().is_loopback() {
        out.push(Exposure {
            setting: "admin_token",
            addr: admin,
            risk: "the admin port is not on loopback and has no admin_token: anyone who reaches it reads every shard's stats",
            fix: "admin_token, or admin on 127.0.0.1",
        });
    }
    out
}

/// `ringcast doctor`'s rows for the configured listeners: one per
/// listener, `warn` where [`exposures`] names it.
pub(crate) fn checks(cfg: &Config) -> Vec<Check> {
    let open = exposures(cfg, cfg.ws, cfg.resp, cfg.admin);
    let row = |setting: &'static str, name: &str, addr: SocketAddr, guard: String| {
        let found = open.iter().find(|e| e.setting == setting);
        Check {
            setting: format!("{name} access"),
            current: format!("{guard} on {addr}"),
            recommended: found.map_or("as is", |e| e.fix).to_owned(),
            status: if found.is_some() {
                Status::Warn
            } else {
                Status::Ok
            },
            note: found.map_or(String::new(), |e| e.risk.to_owned()),
        }
    };
    let ws_guard = match cfg.auth.mode {
        AuthMode::None => "auth none".to_owned(),
        AuthMode::Jwt => "jwt".to_owned(),
    };
    let resp_guard = match (cfg.resp_requirepass.is_empty(), cfg.resp_users.len()) {
        (true, 0) => "open".to_owned(),
        (false, 0) => "password".to_owned(),
        (_, n) => format!("{n} users"),
    };
    let admin_guard = if cfg.admin_token.is_empty() {
        "open"
    } else {
        "token"
    };
    vec![
        row("auth.mode", "ws", cfg.ws, ws_guard),
        row("resp_requirepass", "resp", cfg.resp, resp_guard),
        row("admin_token", "admin", cfg.admin, admin_guard.to_owned()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn loopback_defaults_expose_nothing() {
        let cfg = Config::default();
        assert!(exposures(&cfg, cfg.ws, cfg.resp, cfg.admin).is_empty());
    }

    #[test]
    fn open_listeners_on_a_network_are_each_named() {
        let any = addr("0.0.0.0:1");
        let mut cfg = Config::default();
        let names = |cfg: &Config| -> Vec<&str> {
            exposures(cfg, any, any, any)
                .iter()
                .map(|e| e.setting)
                .collect()
        };
        assert_eq!(
            names(&cfg),
            ["auth.mode", "resp_requirepass", "admin_token"]
        );
        cfg.auth.mode = AuthMode::Jwt;
        cfg.resp_requirepass = "x".into();
        cfg.admin_token = "t".into();
        assert!(names(&cfg).is_empty());
        let v6 = addr("[::1]:1");
        assert!(exposures(&Config::default(), v6, v6, v6).is_empty());
    }

    #[test]
    fn doctor_warns_on_auth_none_off_loopback() {
        let mut cfg = Config::default();
        assert!(checks(&cfg).iter().all(|c| c.status == Status::Ok));
        cfg.ws = addr("0.0.0.0:8080");
        let rows = checks(&cfg);
        assert_eq!(rows[0].status, Status::Warn);
        assert_eq!(rows[0].current, "auth none on 0.0.0.0:8080");
        assert!(rows[1..].iter().all(|c| c.status == Status::Ok));
    }
}
