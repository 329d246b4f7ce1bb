//! One clock for every thread: `CLOCK_MONOTONIC` in nanoseconds.
//!
//! Send timestamps travel inside message payloads and are compared with the
//! receive time on another thread, so every thread must read the same clock.
//! `CLOCK_MONOTONIC` is shared by all threads (and processes) of a host.

/// Nanoseconds on the host's monotonic clock.
#[inline]
pub fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Milliseconds since the Unix epoch, for record dates.
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Sleeps until the monotonic clock reaches `deadline_ns` (returns at once if past).
pub fn sleep_until(deadline_ns: u64) {
    let now = now_ns();
    if deadline_ns > now {
        std::thread::sleep(std::time::Duration::from_nanos(deadline_ns - now));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn monotonic_never_goes_back() {
        let a = now_ns();
        let b = now_ns();
        assert!(b >= a);
    }
}
