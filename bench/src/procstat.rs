//! What the kernel says about a process: CPU time and RSS from `/proc/PID`,
//! the generator's own CPU time from `getrusage`, and which process listens on
//! a TCP port (`/proc/net/tcp` inode → `/proc/*/fd` socket link).

use std::fs;

/// CPU time and resident memory of one process at one moment.
#[derive(Debug, Clone, Copy, Default, serde::Serialize, serde::Deserialize)]
pub struct ProcSample {
    /// User + system CPU time, µs (all threads).
    pub cpu_us: u64,
    /// Resident set size, bytes.
    pub rss_bytes: u64,
}

/// Clock ticks per second for `/proc` CPU times.
pub fn clk_tck() -> u64 {
    // SAFETY: sysconf has no memory-safety preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as u64
    } else {
        100
    }
}

/// Samples `/proc/PID/stat` (utime, stime) and `/proc/PID/statm` (resident pages).
pub fn sample(pid: u32) -> Option<ProcSample> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name (which may contain spaces).
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state); utime is field 14, stime field 15.
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    let statm = fs::read_to_string(format!("/proc/{pid}/statm")).ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf has no memory-safety preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(4096) as u64;
    Some(ProcSample {
        cpu_us: (utime + stime) * 1_000_000 / clk_tck(),
        rss_bytes: pages * page,
    })
}

/// CPU time of every thread of `pid`, ns: the first field of
/// `/proc/PID/task/*/schedstat` (the scheduler's own run-time count, not
/// rounded to clock ticks as `/proc/PID/stat` is). `None` without schedstats.
pub fn sched_ns(pid: u32) -> Option<u64> {
    let mut total = 0u64;
    let mut any = false;
    for t in fs::read_dir(format!("/proc/{pid}/task")).ok()?.flatten() {
        let Ok(s) = fs::read_to_string(t.path().join("schedstat")) else {
            continue;
        };
        if let Some(ns) = s
            .split_whitespace()
            .next()
            .and_then(|x| x.parse::<u64>().ok())
        {
            total += ns;
            any = true;
        }
    }
    any.then_some(total)
}

/// The sum of [`sample`] over `pids` (the nodes of a cluster); a pid that
/// cannot be read adds nothing.
pub fn sample_sum(pids: &[u32]) -> ProcSample {
    pids.iter()
        .filter_map(|&p| sample(p))
        .fold(ProcSample::default(), |a, s| ProcSample {
            cpu_us: a.cpu_us + s.cpu_us,
            rss_bytes: a.rss_bytes + s.rss_bytes,
        })
}

/// This process's user + system CPU time, µs (all threads).
pub fn self_cpu_us() -> u64 {
    // SAFETY: an all-zero rusage is valid; getrusage fills it.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `ru` is a valid, writable rusage.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let tv = |t: libc::timeval| t.tv_sec as u64 * 1_000_000 + t.tv_usec as u64;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// Finds the pid of the process holding a listening TCP socket on `port`.
pub fn pid_listening_on(port: u16) -> Option<u32> {
    let mut inodes = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = fs::read_to_string(table) else {
            continue;
        };
        for l in text.lines().skip(1) {
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.len() < 10 || f[3] != "0A" {
                continue;
            }
            let Some(p) = f[1].rsplit(':').next() else {
                continue;
            };
            if u16::from_str_radix(p, 16).ok() == Some(port) {
                inodes.push(format!("socket:[{}]", f[9]));
            }
        }
    }
    if inodes.is_empty() {
        return None;
    }
    for entry in fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(fds) = fs::read_dir(format!("/proc/{pid}/fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            if let Ok(link) = fs::read_link(fd.path()) {
                if inodes.iter().any(|i| link.as_os_str() == i.as_str()) {
                    return Some(pid);
                }
            }
        }
    }
    None
}

/// Raises the soft open-file limit to the hard limit; returns the new soft limit.
pub fn raise_nofile() -> u64 {
    // SAFETY: plain getrlimit/setrlimit on a local struct.
    unsafe {
        let mut rl = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) != 0 {
            return 1024;
        }
        rl.rlim_cur = rl.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &rl);
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl);
        rl.rlim_cur
    }
}

/// The kernel release (`uname -r`).
pub fn kernel() -> String {
    fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// Host-wide CPU ticks summed over all CPUs, from `/proc/stat`'s first line.
#[derive(Debug, Clone, Copy, Default)]
pub struct HostTicks {
    /// user + nice + system: time charged to processes.
    pub busy: u64,
    /// irq + softirq: with IRQ time accounting, loopback TCP receive work
    /// done in softirq context lands here, not in any process's CPU time.
    pub irq: u64,
    /// Time the hypervisor ran something else while this VM wanted to run.
    pub steal: u64,
}

/// Samples host-wide busy and steal ticks.
pub fn host_ticks() -> HostTicks {
    let Ok(s) = fs::read_to_string("/proc/stat") else {
        return HostTicks::default();
    };
    let f: Vec<u64> = s
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let at = |i: usize| f.get(i).copied().unwrap_or(0);
    HostTicks {
        busy: at(0) + at(1) + at(2),
        irq: at(5) + at(6),
        steal: at(7),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_own_listener_and_samples_self() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        assert_eq!(pid_listening_on(port), Some(std::process::id()));
        let s = sample(std::process::id()).unwrap();
        assert!(s.rss_bytes > 0);
        assert!(s.cpu_us <= self_cpu_us() + 20_000);
        let me = std::process::id();
        let two = sample_sum(&[me, me, u32::MAX]);
        assert!(two.rss_bytes >= 2 * s.rss_bytes - (1 << 20));
        assert_eq!(sample_sum(&[]).cpu_us, 0);
        if let Some(ns) = sched_ns(me) {
            // Threads that ended are in neither count; both see the living ones.
            assert!(ns / 1000 <= self_cpu_us() + 20_000);
        }
        assert_eq!(sched_ns(u32::MAX), None);
    }
}
