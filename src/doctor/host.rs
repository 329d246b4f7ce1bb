//! Facts that do not come from `/proc`: resource limits, the core count and
//! an io_uring probe. Gathered live by [`HostFacts::live`]; tests build them
//! by hand so a report can be checked for any host.

use serde::Serialize;

/// A resource limit pair; `None` is `RLIM_INFINITY` ("unlimited").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub(crate) struct Rlimit {
    pub(crate) soft: Option<u64>,
    pub(crate) hard: Option<u64>,
}

impl Rlimit {
    // `rlim_t` is `u32` on some 32-bit targets, `u64` here.
    #[allow(clippy::useless_conversion)]
    fn from_raw(r: libc::rlimit) -> Self {
        let finite = |v: libc::rlim_t| (v != libc::RLIM_INFINITY).then_some(u64::from(v));
        Self {
            soft: finite(r.rlim_cur),
            hard: finite(r.rlim_max),
        }
    }
}

/// Reads one resource limit of this process (a macro because the type of the
/// resource argument differs between C libraries).
macro_rules! getrlimit {
    ($resource:expr) => {{
        let mut r = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: `r` is a valid, writable rlimit for the call's duration.
        if unsafe { libc::getrlimit($resource, &mut r) } == 0 {
            Ok(r)
        } else {
            Err(std::io::Error::last_os_error())
        }
    }};
}

/// The outcome of creating (and closing) a tiny io_uring.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum IoUringProbe {
    /// `io_uring_setup` returned a ring; `features` is `IORING_FEAT_*`.
    Available { features: u32 },
    /// `io_uring_setup` failed with this errno.
    Failed { errno: i32 },
}

/// Everything the report needs besides the `/proc` tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HostFacts {
    /// `RLIMIT_NOFILE` of this process.
    pub(crate) nofile: Rlimit,
    /// `RLIMIT_MEMLOCK` of this process, bytes.
    pub(crate) memlock: Rlimit,
    /// Cores this process may run on (one shard each by default).
    pub(crate) cores: usize,
    /// Whether this process may create an io_uring.
    pub(crate) io_uring: IoUringProbe,
    /// Memory page size, bytes (`tcp_mem` counts pages).
    pub(crate) page_size: u64,
}

impl HostFacts {
    /// Reads the limits of the calling process and probes io_uring.
    pub(crate) fn live() -> Self {
        let unknown = Rlimit {
            soft: None,
            hard: None,
        };
        // SAFETY: sysconf has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        Self {
            nofile: getrlimit!(libc::RLIMIT_NOFILE).map_or(unknown, Rlimit::from_raw),
            memlock: getrlimit!(libc::RLIMIT_MEMLOCK).map_or(unknown, Rlimit::from_raw),
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            io_uring: probe_io_uring(),
            page_size: u64::try_from(page).ok().filter(|&p| p > 0).unwrap_or(4096),
        }
    }
}

/// Creates a two-entry io_uring and closes it again (with the runtime's
/// own probe): what the kernel allows this process.
pub(crate) fn probe_io_uring() -> IoUringProbe {
    match shards::probe::features(2) {
        Ok(features) => IoUringProbe::Available { features },
        Err(e) => IoUringProbe::Failed {
            errno: e.raw_os_error().unwrap_or(0),
        },
    }
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit (or to `fs.nr_open`
/// when the hard limit is unlimited, the most the kernel accepts).
/// Returns `(old_soft, new_soft)`; unlimited is `u64::MAX`.
pub(crate) fn raise_nofile(nr_open: Option<u64>) -> std::io::Result<(u64, u64)> {
    let r = getrlimit!(libc::RLIMIT_NOFILE)?;
    #[allow(clippy::useless_conversion)] // `rlim_t` is `u32` on some 32-bit targets
    let as_u64 = |v: libc::rlim_t| {
        if v == libc::RLIM_INFINITY {
            u64::MAX
        } else {
            u64::from(v)
        }
    };
    let old = r.rlim_cur;
    let target = if r.rlim_max == libc::RLIM_INFINITY {
        nr_open.map_or(r.rlim_max, |n| n as libc::rlim_t)
    } else {
        r.rlim_max
    };
    if old >= target {
        return Ok((as_u64(old), as_u64(old)));
    }
    let new = libc::rlimit {
        rlim_cur: target,
        rlim_max: r.rlim_max,
    };
    // SAFETY: `new` is a valid rlimit; raising soft up to hard needs no privilege.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &new) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok((as_u64(old), as_u64(target)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_facts_match_what_the_process_sees() {
        let f = HostFacts::live();
        assert_eq!(f.cores, std::thread::available_parallelism().unwrap().get());
        assert!(f.page_size >= 4096 && f.page_size.is_power_of_two());
        // /proc/self/limits is the kernel's own rendering of the same limit.
        let limits = std::fs::read_to_string("/proc/self/limits").unwrap();
        let line = limits
            .lines()
            .find(|l| l.starts_with("Max open files"))
            .unwrap();
        let cols: Vec<&str> = line.split_whitespace().collect();
        let hard: u64 = cols[4].parse().unwrap();
        assert_eq!(f.nofile.hard, Some(hard));
    }

    #[test]
    fn probe_agrees_with_the_disable_switch() {
        let disabled = std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled")
            .ok()
            .and_then(|s| s.trim().parse::<u8>().ok());
        match (probe_io_uring(), disabled) {
            (IoUringProbe::Available { .. }, Some(2)) => panic!("ring created while disabled"),
            (IoUringProbe::Available { features }, _) => {
                // IORING_FEAT_SINGLE_MMAP (bit 0) exists on every kernel since 5.4.
                assert_ne!(features & 1, 0, "features {features:#x}");
            }
            (IoUringProbe::Failed { errno }, _) => assert!(errno > 0),
        }
    }

    #[test]
    fn raising_nofile_reaches_the_hard_limit() {
        let (old, new) = raise_nofile(None).unwrap();
        assert!(new >= old);
        let f = HostFacts::live();
        assert_eq!(f.nofile.soft, f.nofile.hard);
        assert_eq!(
            raise_nofile(None).unwrap(),
            (new, new),
            "second call changes nothing"
        );
    }
}
