//! Start-up probe: is io_uring usable on this host?

use std::fmt;

/// The I/O driver a shard runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Driver {
    /// io_uring (the normal case on Linux ≥ 5.6 with io_uring enabled).
    IoUring,
    /// epoll, used only when io_uring cannot be set up.
    Epoll,
}

impl Driver {
    /// Short lowercase name, as shown in stats and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Driver::IoUring => "io_uring",
            Driver::Epoll => "epoll",
        }
    }
}

impl fmt::Display for Driver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Creates an io_uring of `entries` entries and closes it again: the
/// feature flags the kernel reports (`IORING_FEAT_*`, bit for bit), or the
/// error that says why it refused. This is the check that counts:
/// `kernel.io_uring_disabled`, `io_uring_group`, seccomp filters (container
/// runtimes often block the system call) and old kernels all show up here.
pub fn features(entries: u32) -> std::io::Result<u32> {
    let ring = io_uring::IoUring::new(entries)?;
    let p = ring.params();
    let bits = [
        p.is_feature_single_mmap(),
        p.is_feature_nodrop(),
        p.is_feature_submit_stable(),
        p.is_feature_rw_cur_pos(),
        p.is_feature_cur_personality(),
        p.is_feature_fast_poll(),
        p.is_feature_poll_32bits(),
        p.is_feature_sqpoll_nonfixed(),
        p.is_feature_ext_arg(),
        p.is_feature_native_workers(),
        p.is_feature_resource_tagging(),
        p.is_feature_skip_cqe_on_success(),
        p.is_feature_linked_file(),
    ];
    Ok(bits
        .iter()
        .enumerate()
        .fold(0, |acc, (i, &on)| acc | (u32::from(on) << i)))
}

/// Tries to create a small io_uring and says which driver to use, with the
/// reason when io_uring is unavailable (`kernel.io_uring_disabled`, seccomp
/// in containers, an old kernel, a memlock limit too small for the ring).
pub fn probe(entries: u32) -> (Driver, Option<String>) {
    match features(entries) {
        Ok(_) => (Driver::IoUring, None),
        Err(e) => {
            let disabled = std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled")
                .map(|s| s.trim().to_string())
                .unwrap_or_else(|_| "unknown".into());
            (
                Driver::Epoll,
                Some(format!(
                    "io_uring_setup({entries}) failed: {e} (kernel.io_uring_disabled={disabled})"
                )),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_answers_with_a_reason_when_it_falls_back() {
        let (driver, why) = probe(8);
        match driver {
            Driver::IoUring => assert!(why.is_none()),
            Driver::Epoll => assert!(why.unwrap().contains("io_uring_setup")),
        }
    }
}
