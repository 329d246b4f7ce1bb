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

/// Tries to create a small io_uring and says which driver to use, with the
/// reason when io_uring is unavailable (`kernel.io_uring_disabled`, seccomp
/// in containers, an old kernel, a memlock limit too small for the ring).
pub fn probe(entries: u32) -> (Driver, Option<String>) {
    match io_uring::IoUring::new(entries) {
        Ok(ring) => {
            drop(ring);
            (Driver::IoUring, None)
        }
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
