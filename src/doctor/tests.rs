//! Reports on fake hosts: a `/proc` tree written to a temporary folder and
//! hand-made [`HostFacts`].

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use super::host::{HostFacts, IoUringProbe, Rlimit};
use super::recommend::{parse_sysctl_conf, SYSCTL_CONF};
use super::render;
use super::report::{bytes, thousands, Report, Status, FD_RESERVE, IDLE_CONN_BYTES};

/// A `/proc` tree in a temporary folder, removed on drop.
struct FakeProc(PathBuf);

impl FakeProc {
    fn empty() -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "ringcast-doctor-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    /// A host already tuned as `99-ringcast.conf` says, with 64 GiB of RAM.
    fn tuned() -> Self {
        let p = Self::empty();
        for s in parse_sysctl_conf(SYSCTL_CONF).unwrap() {
            // /proc/sys separates tuple fields with tabs.
            p.set(&s.key, &s.value.replace(' ', "\t"));
        }
        p.set("kernel.osrelease", "6.1.0-18-cloud-amd64");
        p.set("kernel.io_uring_disabled", "0");
        p.set("fs.file-nr", "1184\t0\t4194304");
        p.set("net.ipv4.tcp_mem", "1548408\t2064545\t3096816");
        p.meminfo(64 << 20, 60 << 20);
        p
    }

    /// This machine as it came: 20,000 open files at most, stock sysctls.
    fn stock() -> Self {
        let p = Self::tuned();
        p.set("net.core.somaxconn", "4096");
        p.set("net.ipv4.tcp_max_syn_backlog", "2048");
        p.set("net.ipv4.tcp_fin_timeout", "60");
        p.set("net.ipv4.ip_local_port_range", "32768\t60999");
        p.set("fs.file-max", "2466170");
        p.meminfo(24_684_084, 24_354_456);
        p
    }

    fn set(&self, key: &str, value: &str) {
        let path = self.0.join("sys").join(key.replace('.', "/"));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, format!("{value}\n")).unwrap();
    }

    fn remove(&self, key: &str) {
        std::fs::remove_file(self.0.join("sys").join(key.replace('.', "/"))).unwrap();
    }

    fn meminfo(&self, total_kib: u64, available_kib: u64) {
        let text = format!(
            "MemTotal:       {total_kib} kB\nMemFree:        1000 kB\nMemAvailable:   {available_kib} kB\nBuffers:        0 kB\n"
        );
        std::fs::write(self.0.join("meminfo"), text).unwrap();
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for FakeProc {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn facts(nofile_hard: u64) -> HostFacts {
    HostFacts {
        nofile: Rlimit {
            soft: Some(1024),
            hard: Some(nofile_hard),
        },
        memlock: Rlimit {
            soft: Some(64 << 20),
            hard: Some(64 << 20),
        },
        cores: 16,
        io_uring: IoUringProbe::Available { features: 0x3fff },
        page_size: 4096,
    }
}

fn check<'a>(r: &'a Report, setting: &str) -> &'a super::report::Check {
    r.checks
        .iter()
        .find(|c| c.setting == setting)
        .unwrap_or_else(|| panic!("no row {setting}"))
}

#[test]
fn a_tuned_host_passes_and_memory_is_the_limit() {
    let p = FakeProc::tuned();
    let r = Report::collect(p.path(), &facts(1 << 20));
    let bad: Vec<_> = r.checks.iter().filter(|c| c.status != Status::Ok).collect();
    assert!(bad.is_empty(), "{bad:#?}");
    assert_eq!(r.exit_code(), 0);
    // 60 GiB available at 16 KiB each = 3,932,160; nofile gives 1,048,476.
    assert_eq!(r.capacity.connections, (1 << 20) - FD_RESERVE);
    assert_eq!(r.capacity.limited_by, "RLIMIT_NOFILE hard limit");
    let mem = r
        .capacity
        .limits
        .iter()
        .find(|l| l.name == "memory")
        .unwrap();
    assert_eq!(mem.connections, (60u64 << 30) / IDLE_CONN_BYTES);
    let file_max = r
        .capacity
        .limits
        .iter()
        .find(|l| l.name == "fs.file-max")
        .unwrap();
    assert_eq!(file_max.connections, 4_194_304 - 1184 - FD_RESERVE);
    let tcp_mem = r
        .capacity
        .limits
        .iter()
        .find(|l| l.name == "net.ipv4.tcp_mem")
        .unwrap();
    assert_eq!(tcp_mem.connections, 3_096_816);
    assert_eq!(r.capacity.connect_burst_backlog, Some(65535));
}

#[test]
fn every_shipped_sysctl_gets_a_row_with_its_recommendation() {
    let p = FakeProc::tuned();
    let r = Report::collect(p.path(), &facts(1 << 20));
    for s in parse_sysctl_conf(SYSCTL_CONF).unwrap() {
        let c = check(&r, &s.key);
        assert_eq!(c.recommended, s.value);
        assert_eq!(c.current, s.value, "tabs from /proc are normalised");
    }
}

#[test]
fn this_machine_as_it_came_is_limited_by_its_fd_hard_limit() {
    let p = FakeProc::stock();
    let mut f = facts(20_000);
    f.nofile.soft = Some(20_000);
    f.memlock = Rlimit {
        soft: Some(8 << 20),
        hard: Some(8 << 20),
    };
    f.cores = 2;
    let r = Report::collect(p.path(), &f);
    assert_eq!(r.exit_code(), 1);
    assert_eq!(check(&r, "net.core.somaxconn").status, Status::Low);
    assert_eq!(
        check(&r, "net.ipv4.tcp_max_syn_backlog").status,
        Status::Low
    );
    assert_eq!(check(&r, "RLIMIT_NOFILE").status, Status::Low);
    // 2.4 M files system-wide is short of the file but fits one server.
    assert_eq!(check(&r, "fs.file-max").status, Status::Warn);
    p.set("fs.file-max", "1000000");
    let low = Report::collect(p.path(), &f);
    assert_eq!(check(&low, "fs.file-max").status, Status::Low);
    // Timeouts and port ranges are advice: they never fail the doctor.
    assert_eq!(check(&r, "net.ipv4.tcp_fin_timeout").status, Status::Warn);
    assert_eq!(
        check(&r, "net.ipv4.ip_local_port_range").status,
        Status::Warn
    );
    // A 6.1 kernel does not charge rings to memlock: 8 MiB is only advice.
    assert_eq!(check(&r, "RLIMIT_MEMLOCK").status, Status::Warn);
    assert_eq!(r.capacity.connections, 19_900);
    assert_eq!(r.capacity.connect_burst_backlog, Some(2048));
    assert_eq!(
        r.summary(),
        "fd limit 20000 → ~19,900 connections; limited by RLIMIT_NOFILE hard limit; \
         somaxconn 4096; io_uring available; memlock 8 MiB"
    );
    assert!(r
        .notes
        .iter()
        .any(|n| n.contains("ephemeral ports 32768-60999 (28,232 per destination)")));
}

#[test]
fn only_low_rows_decide_the_exit_code() {
    let p = FakeProc::tuned();
    p.set("net.ipv4.tcp_keepalive_time", "7200");
    p.set("net.ipv4.tcp_tw_reuse", "2");
    p.set("net.ipv4.tcp_rmem", "4096\t131072\t6291456");
    let r = Report::collect(p.path(), &facts(1 << 20));
    assert_eq!(
        check(&r, "net.ipv4.tcp_keepalive_time").status,
        Status::Warn
    );
    assert_eq!(check(&r, "net.ipv4.tcp_tw_reuse").status, Status::Warn);
    assert_eq!(check(&r, "net.ipv4.tcp_rmem").status, Status::Warn);
    assert_eq!(r.exit_code(), 0);
    p.set("net.core.somaxconn", "65534");
    let r = Report::collect(p.path(), &facts(1 << 20));
    assert_eq!(check(&r, "net.core.somaxconn").status, Status::Low);
    assert_eq!(r.exit_code(), 1);
}

#[test]
fn higher_ceilings_and_shorter_timeouts_than_recommended_are_ok() {
    let p = FakeProc::tuned();
    p.set("net.core.somaxconn", "131072");
    p.set("fs.nr_open", "1073741816");
    p.set("net.ipv4.tcp_fin_timeout", "5");
    p.set("net.ipv4.ip_local_port_range", "1024\t65535");
    let r = Report::collect(p.path(), &facts(1 << 20));
    assert_eq!(r.exit_code(), 0, "{:#?}", r.checks);
}

#[test]
fn io_uring_disabled_by_sysctl_fails_with_the_fix() {
    let p = FakeProc::tuned();
    p.set("kernel.io_uring_disabled", "2");
    let mut f = facts(1 << 20);
    f.io_uring = IoUringProbe::Failed { errno: libc::EPERM };
    let r = Report::collect(p.path(), &f);
    let c = check(&r, "io_uring");
    assert_eq!(c.status, Status::Low);
    assert!(
        c.note.contains("set kernel.io_uring_disabled = 0"),
        "{}",
        c.note
    );
    assert_eq!(r.exit_code(), 1);
    assert!(!r.host.io_uring_available);
    assert_eq!(r.host.io_uring_disabled, Some(2));
    let summary = r.summary();
    assert!(
        summary.contains("io_uring UNAVAILABLE (io_uring_setup: "),
        "{summary}"
    );
    assert!(summary.contains("(EPERM)): epoll fallback"), "{summary}");
    assert!(
        c.note.ends_with("ringcast falls back to epoll (slower)"),
        "{}",
        c.note
    );
}

#[test]
fn io_uring_blocked_by_seccomp_is_told_apart_from_the_sysctl() {
    let p = FakeProc::tuned();
    p.remove("kernel.io_uring_disabled");
    let mut f = facts(1 << 20);
    f.io_uring = IoUringProbe::Failed { errno: libc::EPERM };
    let r = Report::collect(p.path(), &f);
    let c = check(&r, "io_uring");
    assert!(
        c.note.starts_with("kernel.io_uring_disabled absent"),
        "{}",
        c.note
    );
    assert!(c.note.contains("seccomp"), "{}", c.note);
    assert_eq!(r.host.io_uring_disabled, None);
}

#[test]
fn old_kernels_need_memlock_for_rings() {
    let p = FakeProc::tuned();
    p.set("kernel.osrelease", "5.10.209-198.858.amzn2.x86_64");
    let mut f = facts(1 << 20);
    f.memlock = Rlimit {
        soft: Some(64 << 10),
        hard: Some(64 << 10),
    };
    let r = Report::collect(p.path(), &f);
    assert_eq!(check(&r, "RLIMIT_MEMLOCK").status, Status::Low);
    assert_eq!(check(&r, "kernel").status, Status::Warn);
    p.set("kernel.osrelease", "5.4.0-150-generic");
    let r = Report::collect(p.path(), &f);
    assert_eq!(check(&r, "kernel").status, Status::Low);
    f.memlock = Rlimit {
        soft: None,
        hard: None,
    };
    let r = Report::collect(p.path(), &f);
    assert_eq!(check(&r, "RLIMIT_MEMLOCK").status, Status::Ok);
    assert_eq!(check(&r, "RLIMIT_MEMLOCK").current, "unlimited");
}

#[test]
fn the_smallest_resource_names_the_limit() {
    let p = FakeProc::tuned();
    p.meminfo(2 << 20, 1 << 20); // 1 GiB available
    let r = Report::collect(p.path(), &facts(1 << 20));
    assert_eq!(r.capacity.limited_by, "memory");
    assert_eq!(r.capacity.connections, (1 << 30) / IDLE_CONN_BYTES);

    p.set("fs.file-max", "50000");
    p.set("fs.file-nr", "30000\t0\t50000");
    let r = Report::collect(p.path(), &facts(1 << 20));
    assert_eq!(r.capacity.limited_by, "fs.file-max");
    assert_eq!(r.capacity.connections, 20_000 - FD_RESERVE);

    p.set("net.ipv4.tcp_mem", "100\t200\t1000");
    let r = Report::collect(p.path(), &facts(1 << 20));
    assert_eq!(r.capacity.limited_by, "net.ipv4.tcp_mem");
    assert_eq!(r.capacity.connections, 1000);
}

#[test]
fn an_unlimited_fd_hard_limit_falls_back_to_nr_open() {
    let p = FakeProc::tuned();
    let mut f = facts(0);
    f.nofile = Rlimit {
        soft: None,
        hard: None,
    };
    let r = Report::collect(p.path(), &f);
    assert_eq!(check(&r, "RLIMIT_NOFILE").status, Status::Ok);
    let fd = r
        .capacity
        .limits
        .iter()
        .find(|l| l.name == "RLIMIT_NOFILE hard limit")
        .unwrap();
    assert_eq!(fd.connections, 1_048_576 - FD_RESERVE);
    assert!(
        r.summary().starts_with("fd limit unlimited → "),
        "{}",
        r.summary()
    );
}

#[test]
fn an_empty_proc_tree_warns_instead_of_failing() {
    let p = FakeProc::empty();
    let r = Report::collect(p.path(), &facts(4096));
    for s in parse_sysctl_conf(SYSCTL_CONF).unwrap() {
        let c = check(&r, &s.key);
        assert_eq!((c.current.as_str(), c.status), ("unreadable", Status::Warn));
    }
    // The fd limit still bounds connections; nothing else could be read.
    assert_eq!(r.capacity.limits.len(), 1);
    assert_eq!(r.capacity.connections, 4096 - FD_RESERVE);
    assert_eq!(check(&r, "memory").status, Status::Warn);
    assert!(
        r.summary().contains("somaxconn unreadable"),
        "{}",
        r.summary()
    );
}

#[test]
fn malformed_values_are_flagged_not_trusted() {
    let p = FakeProc::tuned();
    p.set("net.core.somaxconn", "lots");
    let r = Report::collect(p.path(), &facts(1 << 20));
    let c = check(&r, "net.core.somaxconn");
    assert_eq!(
        (c.status, c.note.as_str()),
        (Status::Warn, "unexpected format")
    );
    assert_eq!(
        r.capacity.connect_burst_backlog,
        Some(65535),
        "falls back to the SYN backlog"
    );
}

#[test]
fn json_has_the_documented_shape() {
    let p = FakeProc::stock();
    let r = Report::collect(p.path(), &facts(20_000));
    let v: serde_json::Value = serde_json::from_str(&render::json(&r)).unwrap();
    assert_eq!(v["ok"], false);
    assert_eq!(v["exit_code"], 1);
    assert_eq!(v["summary"], r.summary());
    assert_eq!(v["capacity"]["connections"], 19_900);
    assert_eq!(v["capacity"]["limited_by"], "RLIMIT_NOFILE hard limit");
    assert_eq!(v["host"]["nofile"]["hard"], 20_000);
    assert_eq!(v["host"]["cores"], 16);
    assert_eq!(v["host"]["io_uring_available"], true);
    let checks = v["checks"].as_array().unwrap();
    assert_eq!(checks.len(), r.checks.len());
    let somax = checks
        .iter()
        .find(|c| c["setting"] == "net.core.somaxconn")
        .unwrap();
    assert_eq!(somax["status"], "low");
    assert_eq!(somax["current"], "4096");
    assert_eq!(somax["recommended"], "65535");
    for c in checks {
        assert!(
            matches!(c["status"].as_str(), Some("ok" | "low" | "warn")),
            "{c}"
        );
    }
    assert!(v["notes"].as_array().is_some_and(|n| !n.is_empty()));
}

#[test]
fn text_table_lists_every_row_and_the_verdict() {
    let p = FakeProc::stock();
    let r = Report::collect(p.path(), &facts(20_000));
    let t = render::text(&r);
    let first = t.lines().next().unwrap();
    assert_eq!(first, format!("ringcast doctor: {}", r.summary()));
    let header = t.lines().find(|l| l.starts_with("SETTING")).unwrap();
    let status_col = header.find("STATUS").unwrap();
    for c in &r.checks {
        let row = t
            .lines()
            .find(|l| l.starts_with(&format!("{} ", c.setting)))
            .unwrap();
        // Columns line up: the status word starts under STATUS.
        let word = &row[status_col..];
        let expect = match c.status {
            Status::Ok => "ok",
            Status::Low => "LOW",
            Status::Warn => "warn",
        };
        assert!(word.starts_with(expect), "{row}");
    }
    assert!(t.contains(
        "connections this host allows as it is: ~19,900 (limited by RLIMIT_NOFILE hard limit)"
    ));
    assert_eq!(
        t.lines().last().unwrap(),
        "result: 3 low, 3 warn: limited by net.core.somaxconn, net.ipv4.tcp_max_syn_backlog, \
         RLIMIT_NOFILE (exit 1)"
    );
}

#[test]
fn number_formatting() {
    assert_eq!(thousands(0), "0");
    assert_eq!(thousands(999), "999");
    assert_eq!(thousands(1000), "1,000");
    assert_eq!(thousands(19_900), "19,900");
    assert_eq!(thousands(1_048_576), "1,048,576");
    assert_eq!(bytes(512), "512 B");
    assert_eq!(bytes(8 << 20), "8 MiB");
    assert_eq!(bytes(3 << 29), "1.5 GiB");
    assert_eq!(bytes(16 << 10), "16 KiB");
}
