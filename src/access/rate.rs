//! Rate limits: the generic cell rate algorithm (a token bucket kept as one
//! number). A bucket of `rate` per second with room for `burst` at once
//! holds the time at which it would be full again; a request is allowed
//! when that time is no further ahead than the burst allows.

/// One bucket: its theoretical arrival time, in µs on the caller's clock.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Bucket {
    tat: u64,
}

impl Bucket {
    /// Takes one request at `now_us`: `Ok`, or `Err(ms)` to wait before the
    /// next one would pass. A `rate` of 0 allows everything.
    pub fn take(&mut self, now_us: u64, rate: u32, burst: u32) -> Result<(), u64> {
        if rate == 0 {
            return Ok(());
        }
        let interval = 1_000_000 / u64::from(rate);
        let tolerance = interval * u64::from(burst.max(1) - 1);
        let tat = self.tat.max(now_us);
        let ahead = tat - now_us;
        if ahead > tolerance {
            return Err((ahead - tolerance).div_ceil(1000).max(1));
        }
        self.tat = tat + interval;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_the_rate() {
        let mut b = Bucket::default();
        let t0 = 1_000_000;
        // 10 per second, 5 at once.
        for _ in 0..5 {
            assert_eq!(b.take(t0, 10, 5), Ok(()));
        }
        assert_eq!(b.take(t0, 10, 5), Err(100), "the next in 100 ms");
        assert_eq!(b.take(t0 + 99_000, 10, 5), Err(1));
        assert_eq!(b.take(t0 + 100_000, 10, 5), Ok(()));
        // A quiet second fills it again, but not past the burst.
        let t1 = t0 + 2_000_000;
        for _ in 0..5 {
            assert_eq!(b.take(t1, 10, 5), Ok(()));
        }
        assert!(b.take(t1, 10, 5).is_err());
        assert_eq!(Bucket::default().take(0, 0, 0), Ok(()), "0 is no limit");
    }
}
