//! `ringcast doctor`: what this host's kernel and limits allow, measured
//! against the tuning shipped in `sysctl/`.
//!
//! # Layout
//! - [`recommend`]: the `sysctl/` files, compiled in (one source of truth
//!   with what operators and Ansible install), and the rule for each key.
//! - [`host`]: process limits, core count and an io_uring probe; also the
//!   fd-limit raise `ringcast serve` does at start-up.
//! - [`report`]: reads a `/proc` tree and judges every setting, then
//!   estimates the concurrent connections the host allows as it is.
//! - [`exposure`]: which configured listeners anyone on a network may use
//!   without proving who they are (also the start-up warnings).
//! - [`render`]: the table and the `--json` object.
//!
//! The report is built from a `/proc` root and a [`host::HostFacts`] value,
//! so tests judge fake hosts with the same code that judges the live one.
//!
//! Statuses: `ok`; `low` caps connections or breaks the server (exit 1);
//! `warn` differs from the recommendation without capping anything.

mod exposure;
mod host;
mod recommend;
mod render;
mod report;
#[cfg(test)]
mod tests;

use std::path::Path;

use crate::access::Authority;
use crate::config::{Config, ServeArgs};

pub use exposure::{exposures, Exposure};
use host::HostFacts;
use report::Report;

/// The settings `ringcast serve` would start with, judged as it judges
/// them: the file and the flags, and then what `[auth]` and the RESP users
/// name, the key files read and parsed. An error (exit status 2) says
/// which setting cannot work.
pub fn load(args: &ServeArgs) -> anyhow::Result<Config> {
    let cfg = Config::load(args)?;
    Authority::new(&cfg)?;
    Ok(cfg)
}

/// Runs `ringcast doctor` on this host for the server `cfg` describes:
/// prints the table (or one JSON object with `json`) to stdout and returns
/// the exit code, 0 when nothing limits the server and 1 when something
/// does. An open listener is a `warn`: it does not limit the server.
pub fn run(json: bool, cfg: &Config) -> i32 {
    let mut report = Report::collect(Path::new("/proc"), &HostFacts::live());
    report.checks.extend(exposure::checks(cfg));
    report.checks.extend(cluster_check(cfg));
    let out = if json {
        render::json(&report)
    } else {
        render::text(&report)
    };
    print!("{out}");
    report.exit_code()
}

/// In cluster mode, a row saying whether the cluster's Redis answers:
/// `low` when it does not (the node cannot serve its rooms without it).
fn cluster_check(cfg: &Config) -> Option<report::Check> {
    use report::{Check, Status};
    if !cfg.cluster.enabled() {
        return None;
    }
    let (current, status, note) = match crate::cluster::target::Target::parse(&cfg.cluster.redis) {
        Err(e) => ("not a Redis URL".to_owned(), Status::Low, format!("{e:#}")),
        Ok(t) => match crate::cluster::probe::probe(&t, std::time::Duration::from_secs(2)) {
            Ok(took) => (
                format!("answers in {} ms", took.as_millis()),
                Status::Ok,
                t.redacted(),
            ),
            Err(e) => (
                "does not answer".to_owned(),
                Status::Low,
                format!("{}: {e}", t.redacted()),
            ),
        },
    };
    Some(Check {
        setting: "cluster.redis".into(),
        current,
        recommended: "answers".into(),
        status,
        note,
    })
}

/// Raises this process's soft open-files limit to its hard limit, which
/// needs no privilege; one connection is one descriptor, and the soft limit
/// is often 1,024. Returns `(old_soft, new_soft)`; `u64::MAX` is unlimited.
pub fn raise_nofile_limit() -> std::io::Result<(u64, u64)> {
    let nr_open = std::fs::read_to_string("/proc/sys/fs/nr_open")
        .ok()
        .and_then(|s| s.trim().parse().ok());
    host::raise_nofile(nr_open)
}

/// One line for the start-up log: the fd limit and the connections it
/// allows, what limits them, somaxconn, io_uring and memlock. For example
/// `fd limit 20000 → ~19,900 connections; limited by RLIMIT_NOFILE hard
/// limit; somaxconn 4096; io_uring available; memlock 8 MiB`.
pub fn startup_summary() -> String {
    Report::collect(Path::new("/proc"), &HostFacts::live()).summary()
}
