//! The report: every check with its status, and how many connections the
//! host allows as it is. Built from a `/proc` root and [`HostFacts`], so the
//! same code judges the live host and a fake tree in a test.

use std::path::Path;

use serde::Serialize;

use super::host::{HostFacts, IoUringProbe, Rlimit};
use super::recommend::{self, Rule, Weight};

/// File descriptors kept back from the connection count: listeners (WebSocket,
/// RESP and admin, one set per shard with `SO_REUSEPORT`), one io_uring and a
/// few eventfds per shard, stdio, logs, admin clients.
pub(crate) const FD_RESERVE: u64 = 100;

/// Memory one idle connection costs, all in: the kernel's socket, `tcp_sock`,
/// file and its io_uring request (about 3 KiB), plus ringcast's per-connection
/// state and read buffer. An estimate for planning, on the high side.
pub(crate) const IDLE_CONN_BYTES: u64 = 16 * 1024;

/// The smallest amount of `tcp_mem` a socket holding any queued data is
/// charged (`SK_MEM_QUANTUM`, one page on 4 KiB-page hosts).
const TCP_MEM_QUANTUM: u64 = 4096;

/// io_uring rings stopped counting against `RLIMIT_MEMLOCK` in Linux 5.12.
const MEMLOCK_FREE_KERNEL: (u32, u32) = (5, 12);
/// Older kernels lack io_uring features the server runtime relies on.
const OLDEST_KERNEL: (u32, u32) = (5, 6);

/// The verdict on one setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Status {
    /// Meets the recommendation.
    Ok,
    /// Caps connections or breaks the server: `ringcast doctor` exits 1.
    Low,
    /// Differs from the recommendation without capping the server.
    Warn,
}

/// One row of the table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Check {
    pub(crate) setting: String,
    pub(crate) current: String,
    pub(crate) recommended: String,
    pub(crate) status: Status,
    /// Why the status, or what to do; empty when there is nothing to say.
    pub(crate) note: String,
}

/// One resource that bounds the number of concurrent connections.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Limit {
    pub(crate) name: String,
    pub(crate) connections: u64,
    pub(crate) detail: String,
}

/// How many connections the host allows as it is, and what decides it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Capacity {
    /// The smallest of `limits` (0 if nothing could be read).
    pub(crate) connections: u64,
    /// The name of that limit.
    pub(crate) limited_by: String,
    pub(crate) limits: Vec<Limit>,
    /// `min(somaxconn, tcp_max_syn_backlog)`: how many connection attempts
    /// one listener queues in a reconnect storm before it drops or cookies.
    pub(crate) connect_burst_backlog: Option<u64>,
}

/// Host facts, echoed for scripts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Host {
    pub(crate) kernel: Option<String>,
    pub(crate) cores: usize,
    pub(crate) mem_total_bytes: Option<u64>,
    pub(crate) mem_available_bytes: Option<u64>,
    pub(crate) io_uring_available: bool,
    /// `kernel.io_uring_disabled` (0 on, 1 group only, 2 off); absent before 6.6.
    pub(crate) io_uring_disabled: Option<u8>,
    /// `io_uring_setup` result: `ok (features 0x…)` or the error.
    pub(crate) io_uring_probe: String,
    pub(crate) nofile: Rlimit,
    pub(crate) memlock: Rlimit,
}

/// Everything `ringcast doctor` prints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Report {
    pub(crate) checks: Vec<Check>,
    pub(crate) capacity: Capacity,
    pub(crate) host: Host,
    pub(crate) notes: Vec<String>,
}

/// Reads `<proc_root>/sys/<key with dots as slashes>`, whitespace-normalised.
fn read_sysctl(proc_root: &Path, key: &str) -> std::io::Result<String> {
    let path = proc_root.join("sys").join(key.replace('.', "/"));
    Ok(recommend::normalize(&std::fs::read_to_string(path)?))
}

fn sysctl_u64s(proc_root: &Path, key: &str) -> Option<Vec<u64>> {
    let v = read_sysctl(proc_root, key).ok()?;
    v.split(' ').map(|p| p.parse().ok()).collect()
}

fn sysctl_u64(proc_root: &Path, key: &str) -> Option<u64> {
    match sysctl_u64s(proc_root, key)?[..] {
        [v] => Some(v),
        _ => None,
    }
}

/// `(MemTotal, MemAvailable)` from `/proc/meminfo`, in bytes.
fn meminfo(proc_root: &Path) -> (Option<u64>, Option<u64>) {
    let text = std::fs::read_to_string(proc_root.join("meminfo")).unwrap_or_default();
    let field = |name: &str| {
        let line = text.lines().find(|l| l.split(':').next() == Some(name))?;
        let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib * 1024)
    };
    (field("MemTotal"), field("MemAvailable"))
}

/// `(major, minor)` from a release string like `6.1.0-18-cloud-amd64`.
fn kernel_version(release: &str) -> Option<(u32, u32)> {
    let mut it = release.split(|c: char| !c.is_ascii_digit());
    Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
}

/// `1048576` → `1,048,576`.
pub(crate) fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Bytes in the largest binary unit that keeps it readable: `8 MiB`, `1.5 GiB`.
pub(crate) fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if v.fract() == 0.0 || unit == 0 {
        format!("{v:.0} {}", UNITS[unit])
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

fn limit_str(v: Option<u64>, fmt: fn(u64) -> String) -> String {
    v.map_or_else(|| "unlimited".to_owned(), fmt)
}

fn errno_name(errno: i32) -> String {
    let name = match errno {
        libc::EPERM => "EPERM",
        libc::ENOSYS => "ENOSYS",
        libc::ENOMEM => "ENOMEM",
        libc::EMFILE => "EMFILE",
        libc::EINVAL => "EINVAL",
        libc::EACCES => "EACCES",
        _ => "",
    };
    let text = std::io::Error::from_raw_os_error(errno).to_string();
    let text = text.split(" (os error").next().unwrap_or(&text).to_owned();
    if name.is_empty() {
        text
    } else {
        format!("{text} ({name})")
    }
}

impl Report {
    /// Judges the host whose `/proc` is at `proc_root` and whose process
    /// limits and io_uring probe are `facts`.
    pub(crate) fn collect(proc_root: &Path, facts: &HostFacts) -> Self {
        let mut notes = Vec::new();
        let mut checks = sysctl_checks(proc_root, &mut notes);
        let release = read_sysctl(proc_root, "kernel.osrelease").ok();
        let version = release.as_deref().and_then(kernel_version);
        let user = recommend::parse_limits_conf(recommend::LIMITS_CONF, recommend::SERVICE_USER)
            .unwrap_or_default();
        checks.push(nofile_check(facts.nofile, user.nofile));
        checks.push(memlock_check(facts.memlock, user.memlock_bytes, version));
        let io_disabled =
            sysctl_u64(proc_root, "kernel.io_uring_disabled").and_then(|v| u8::try_from(v).ok());
        let (io_check, probe) = io_uring_check(&facts.io_uring, io_disabled);
        checks.push(io_check);
        checks.push(kernel_check(release.as_deref(), version));
        let (mem_total, mem_available) = meminfo(proc_root);
        checks.push(cores_check(facts.cores));
        checks.push(memory_check(mem_total, mem_available));
        let capacity = capacity(proc_root, facts, mem_available.or(mem_total), &mut notes);
        limit_notes(proc_root, facts, &mut notes);
        let host = Host {
            kernel: release,
            cores: facts.cores,
            mem_total_bytes: mem_total,
            mem_available_bytes: mem_available,
            io_uring_available: matches!(facts.io_uring, IoUringProbe::Available { .. }),
            io_uring_disabled: io_disabled,
            io_uring_probe: probe,
            nofile: facts.nofile,
            memlock: facts.memlock,
        };
        Self {
            checks,
            capacity,
            host,
            notes,
        }
    }

    /// 0 when nothing limits the server, 1 when any check is `low`.
    pub(crate) fn exit_code(&self) -> i32 {
        i32::from(self.checks.iter().any(|c| c.status == Status::Low))
    }

    /// The one-line summary `ringcast serve` logs at start-up.
    pub(crate) fn summary(&self) -> String {
        let fd = limit_str(self.host.nofile.hard, |v| v.to_string());
        let somaxconn = self
            .checks
            .iter()
            .find(|c| c.setting == "net.core.somaxconn")
            .map_or("unknown", |c| c.current.as_str());
        let io = if self.host.io_uring_available {
            "io_uring available".to_owned()
        } else {
            format!(
                "io_uring UNAVAILABLE ({}): epoll fallback",
                self.host.io_uring_probe
            )
        };
        let memlock = limit_str(self.host.memlock.soft, bytes);
        format!(
            "fd limit {fd} → ~{} connections; limited by {}; somaxconn {somaxconn}; {io}; memlock {memlock}",
            thousands(self.capacity.connections),
            self.capacity.limited_by,
        )
    }
}

fn sysctl_check(proc_root: &Path, key: &str, recommended: &str) -> Check {
    let mut check = Check {
        setting: key.to_owned(),
        current: String::new(),
        recommended: recommended.to_owned(),
        status: Status::Ok,
        note: String::new(),
    };
    let current = match read_sysctl(proc_root, key) {
        Ok(v) => v,
        Err(e) => {
            check.current = "unreadable".into();
            check.status = Status::Warn;
            check.note =
                format!("cannot read /proc/sys: {e} (a container without this namespace?)");
            return check;
        }
    };
    check.current = current;
    let Some((rule, weight)) = recommend::policy(key) else {
        check.status = if check.current == recommended {
            Status::Ok
        } else {
            Status::Warn
        };
        return check;
    };
    match recommend::meets(rule, &check.current, recommended) {
        Some(true) => {}
        Some(false) => {
            check.status = match weight {
                Weight::Limits => Status::Low,
                Weight::Advice => Status::Warn,
            };
            check.note = match rule {
                Rule::AtLeast => "raise it: sysctl/99-ringcast.conf",
                Rule::AtMost => "lower it: sysctl/99-ringcast.conf",
                Rule::Covers => "widen it: sysctl/99-ringcast.conf",
                Rule::Equal => "differs from sysctl/99-ringcast.conf",
            }
            .into();
        }
        None => {
            check.status = Status::Warn;
            check.note = "unexpected format".into();
        }
    }
    check
}

fn nofile_check(nofile: Rlimit, recommended: Option<u64>) -> Check {
    let rec = recommended.unwrap_or(1 << 20);
    // `ringcast serve` raises soft to hard, so the hard limit is what counts.
    let low = nofile.hard.is_some_and(|h| h < rec);
    Check {
        setting: "RLIMIT_NOFILE".into(),
        current: format!(
            "soft {}, hard {}",
            limit_str(nofile.soft, |v| v.to_string()),
            limit_str(nofile.hard, |v| v.to_string())
        ),
        recommended: format!("hard {rec}"),
        status: if low { Status::Low } else { Status::Ok },
        note: if low {
            "one fd per connection: LimitNOFILE= in the unit, nofile in limits.d".into()
        } else {
            String::new()
        },
    }
}

fn memlock_check(memlock: Rlimit, recommended: Option<u64>, kernel: Option<(u32, u32)>) -> Check {
    let rec = recommended.unwrap_or(64 << 20);
    let below = memlock.soft.is_some_and(|s| s < rec);
    let old_kernel = kernel.is_some_and(|v| v < MEMLOCK_FREE_KERNEL);
    let (status, note) = match (below, old_kernel) {
        (false, _) => (Status::Ok, String::new()),
        (true, true) => (
            Status::Low,
            "this kernel (< 5.12) charges io_uring rings to memlock: LimitMEMLOCK= in the unit".into(),
        ),
        (true, false) => (
            Status::Warn,
            "rings are charged to the memory cgroup on this kernel; only registered buffers need memlock".into(),
        ),
    };
    Check {
        setting: "RLIMIT_MEMLOCK".into(),
        current: limit_str(memlock.soft, bytes),
        recommended: bytes(rec),
        status,
        note,
    }
}

/// Each sysctl of the shipped `99-ringcast.conf` against this host.
fn sysctl_checks(proc_root: &Path, notes: &mut Vec<String>) -> Vec<Check> {
    let recommended = recommend::parse_sysctl_conf(recommend::SYSCTL_CONF).unwrap_or_else(|e| {
        notes.push(format!(
            "built-in 99-ringcast.conf unreadable ({e}); sysctls not checked"
        ));
        Vec::new()
    });
    let user = recommend::parse_limits_conf(recommend::LIMITS_CONF, recommend::SERVICE_USER)
        .unwrap_or_default();
    recommended
        .iter()
        .map(|rec| {
            let mut check = sysctl_check(proc_root, &rec.key, &rec.value);
            // A system-wide file limit below the recommendation still leaves
            // room for one ringcast at its recommended fd limit: advice only.
            let one_server = user.nofile.unwrap_or(1 << 20).saturating_add(FD_RESERVE);
            if rec.key == "fs.file-max"
                && check.status == Status::Low
                && check.current.parse::<u64>().is_ok_and(|v| v >= one_server)
            {
                check.status = Status::Warn;
            }
            check
        })
        .collect()
}

fn cores_check(cores: usize) -> Check {
    Check {
        setting: "cores".into(),
        current: cores.to_string(),
        recommended: "-".into(),
        status: Status::Ok,
        note: "one shard per core by default (shards = 0)".into(),
    }
}

fn memory_check(total: Option<u64>, available: Option<u64>) -> Check {
    Check {
        setting: "memory".into(),
        current: match (total, available) {
            (Some(t), Some(a)) => format!("{} total, {} available", bytes(t), bytes(a)),
            (Some(t), None) => format!("{} total", bytes(t)),
            _ => "unreadable".into(),
        },
        recommended: "-".into(),
        status: if total.is_some() {
            Status::Ok
        } else {
            Status::Warn
        },
        note: format!("~{} per idle connection", bytes(IDLE_CONN_BYTES)),
    }
}

/// What the limits shown mean for a service and for outgoing connections.
fn limit_notes(proc_root: &Path, facts: &HostFacts, notes: &mut Vec<String>) {
    if let (Some(soft), Some(hard)) = (facts.nofile.soft, facts.nofile.hard) {
        if soft < hard {
            notes.push(format!(
                "open files: soft limit {soft} is below the hard limit {hard}; `ringcast serve` raises it to {hard} at start-up"
            ));
        }
    }
    notes.push(
        "limits shown are this process's: a systemd unit sets its own (LimitNOFILE=, LimitMEMLOCK=); \
         run doctor as the service would, e.g. `systemd-run --pipe --wait -p LimitNOFILE=1048576 ringcast doctor`"
            .into(),
    );
    if let Some(r) = sysctl_u64s(proc_root, "net.ipv4.ip_local_port_range") {
        if let [lo, hi] = r[..] {
            notes.push(format!(
                "ephemeral ports {lo}-{hi} ({} per destination) limit connections this host opens (load generators, proxies), not the ones ringcast accepts",
                thousands(hi.saturating_sub(lo) + 1)
            ));
        }
    }
}

fn io_uring_check(probe: &IoUringProbe, disabled: Option<u8>) -> (Check, String) {
    let switch = match disabled {
        None => "kernel.io_uring_disabled absent".to_owned(),
        Some(v) => format!("kernel.io_uring_disabled = {v}"),
    };
    let (current, status, note, probe_text) = match probe {
        IoUringProbe::Available { features } => (
            "available".to_owned(),
            Status::Ok,
            format!("{switch}; probe ok"),
            format!("ok (features {features:#x})"),
        ),
        IoUringProbe::Failed { errno } => {
            let err = errno_name(*errno);
            let hint = match (disabled, *errno) {
                (Some(2), _) => "set kernel.io_uring_disabled = 0",
                (Some(1), _) => "add the service user to kernel.io_uring_group, or set kernel.io_uring_disabled = 0",
                (_, libc::EPERM) => "blocked by a seccomp profile? (container runtimes block io_uring by default)",
                (_, libc::ENOSYS) => "kernel without io_uring: needs Linux 5.6 or later",
                (_, libc::ENOMEM) => "raise RLIMIT_MEMLOCK (kernels before 5.12)",
                _ => "",
            };
            (
                "unavailable".to_owned(),
                Status::Low,
                format!("{switch}; io_uring_setup: {err}; {hint}; ringcast falls back to epoll (slower)"),
                format!("io_uring_setup: {err}"),
            )
        }
    };
    let check = Check {
        setting: "io_uring".into(),
        current,
        recommended: "available".into(),
        status,
        note,
    };
    (check, probe_text)
}

fn kernel_check(release: Option<&str>, version: Option<(u32, u32)>) -> Check {
    let (status, note) = match version {
        None => (Status::Warn, "unknown kernel version"),
        Some(v) if v < OLDEST_KERNEL => (
            Status::Low,
            "too old for ringcast's io_uring use: it runs on epoll",
        ),
        Some(v) if v < MEMLOCK_FREE_KERNEL => (
            Status::Warn,
            "before 5.12, io_uring rings count against memlock",
        ),
        Some(_) => (Status::Ok, ""),
    };
    Check {
        setting: "kernel".into(),
        current: release.unwrap_or("unknown").to_owned(),
        recommended: "5.12 or later".into(),
        status,
        note: note.into(),
    }
}

/// Each resource that bounds concurrent connections, and the smallest.
fn capacity(
    proc_root: &Path,
    facts: &HostFacts,
    memory: Option<u64>,
    notes: &mut Vec<String>,
) -> Capacity {
    let mut limits = Vec::new();
    let nr_open = sysctl_u64(proc_root, "fs.nr_open");
    if let Some(hard) = facts.nofile.hard.or(nr_open) {
        limits.push(Limit {
            name: "RLIMIT_NOFILE hard limit".into(),
            connections: hard.saturating_sub(FD_RESERVE),
            detail: format!("{hard} open files, {FD_RESERVE} kept for listeners, rings and logs"),
        });
    }
    if let Some(max) = sysctl_u64(proc_root, "fs.file-max") {
        let used = sysctl_u64s(proc_root, "fs.file-nr")
            .and_then(|v| v.first().copied())
            .unwrap_or(0);
        limits.push(Limit {
            name: "fs.file-max".into(),
            connections: max.saturating_sub(used).saturating_sub(FD_RESERVE),
            detail: format!(
                "system-wide {} files, {} already open",
                thousands(max),
                thousands(used)
            ),
        });
    }
    if let Some(mem) = memory {
        limits.push(Limit {
            name: "memory".into(),
            connections: mem / IDLE_CONN_BYTES,
            detail: format!(
                "{} available at ~{} per idle connection",
                bytes(mem),
                bytes(IDLE_CONN_BYTES)
            ),
        });
    }
    if let Some(tcp_mem) = sysctl_u64s(proc_root, "net.ipv4.tcp_mem") {
        if let [_, _, max_pages] = tcp_mem[..] {
            let max = max_pages.saturating_mul(facts.page_size);
            limits.push(Limit {
                name: "net.ipv4.tcp_mem".into(),
                connections: max / TCP_MEM_QUANTUM,
                detail: format!(
                    "{} for all TCP buffers, ≥{} per connection with data queued",
                    bytes(max),
                    bytes(TCP_MEM_QUANTUM)
                ),
            });
        }
    }
    let (connections, limited_by) = limits
        .iter()
        .min_by_key(|l| l.connections)
        .map_or((0, "nothing readable".to_owned()), |l| {
            (l.connections, l.name.clone())
        });
    let somaxconn = sysctl_u64(proc_root, "net.core.somaxconn");
    let syn = sysctl_u64(proc_root, "net.ipv4.tcp_max_syn_backlog");
    let connect_burst_backlog = match (somaxconn, syn) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    if let Some(b) = connect_burst_backlog {
        notes.push(format!(
            "a reconnect storm queues at most {} connection attempts per listener (min of somaxconn and tcp_max_syn_backlog) before SYN cookies or drops",
            thousands(b)
        ));
    }
    Capacity {
        connections,
        limited_by,
        limits,
        connect_burst_backlog,
    }
}
