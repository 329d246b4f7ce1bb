//! Open-loop send schedule.
//!
//! Send `k` is *due* at `start + k / rate`, whatever happened to send `k-1`.
//! The scheduled time (not the time the send actually left) is written into
//! the message, and latency is measured from it: if the server or the
//! generator stalls, the stall shows up in latency instead of silently
//! lowering the offered load (no coordinated omission).

/// A fixed-rate schedule of sends over `[start, end)`.
#[derive(Debug, Clone)]
pub struct Schedule {
    start_ns: u64,
    end_ns: u64,
    /// Rate in sends per 1000 s (milli-hertz), so fractional rates stay exact.
    rate_mhz: u64,
    next_k: u64,
}

impl Schedule {
    /// A schedule of `rate_per_s` sends per second from `start_ns` until `end_ns`,
    /// shifted by `phase` (0..1) of one interval so threads do not send in lockstep.
    pub fn new(start_ns: u64, end_ns: u64, rate_per_s: f64, phase: f64) -> Self {
        let rate_mhz = (rate_per_s * 1000.0).round().max(0.0) as u64;
        let shift = if rate_mhz > 0 {
            (phase.clamp(0.0, 1.0) * 1e12 / rate_mhz as f64) as u64
        } else {
            0
        };
        Schedule {
            start_ns: start_ns + shift,
            end_ns,
            rate_mhz,
            next_k: 0,
        }
    }

    /// Scheduled time of send `k`.
    #[inline]
    pub fn time_of(&self, k: u64) -> u64 {
        if self.rate_mhz == 0 {
            return u64::MAX;
        }
        self.start_ns + ((k as u128 * 1_000_000_000_000u128) / self.rate_mhz as u128) as u64
    }

    /// When the next send is due, or `None` when the schedule is over.
    #[inline]
    pub fn next_at(&self) -> Option<u64> {
        let t = self.time_of(self.next_k);
        (t < self.end_ns).then_some(t)
    }

    /// Takes the next send if it is due at `now_ns`: its index and scheduled time.
    #[inline]
    pub fn pop_due(&mut self, now_ns: u64) -> Option<(u64, u64)> {
        let t = self.next_at()?;
        if t > now_ns {
            return None;
        }
        let k = self.next_k;
        self.next_k += 1;
        Some((k, t))
    }

    /// Sends taken so far.
    pub fn taken(&self) -> u64 {
        self.next_k
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sends_exactly_rate_times_duration() {
        let mut s = Schedule::new(1_000, 1_000 + 2_000_000_000, 1500.0, 0.0);
        let mut n = 0;
        while s.pop_due(u64::MAX - 1).is_some() {
            n += 1;
        }
        assert_eq!(n, 3000);
    }

    #[test]
    fn nothing_is_due_before_its_time_and_late_sends_keep_their_slot() {
        let mut s = Schedule::new(0, 10_000_000_000, 10.0, 0.0);
        assert_eq!(s.pop_due(0), Some((0, 0)));
        assert_eq!(s.pop_due(99_999_999), None);
        // A stall of 350 ms: three sends are now due, each with its own scheduled time.
        assert_eq!(s.pop_due(450_000_000), Some((1, 100_000_000)));
        assert_eq!(s.pop_due(450_000_000), Some((2, 200_000_000)));
        assert_eq!(s.pop_due(450_000_000), Some((3, 300_000_000)));
        assert_eq!(s.pop_due(450_000_000), Some((4, 400_000_000)));
        assert_eq!(s.pop_due(450_000_000), None);
        assert_eq!(s.next_at(), Some(500_000_000));
    }

    #[test]
    fn fractional_rates_and_phase() {
        let s = Schedule::new(0, u64::MAX, 0.5, 0.0);
        assert_eq!(s.time_of(3), 6_000_000_000);
        let s = Schedule::new(0, u64::MAX, 100.0, 0.5);
        assert_eq!(s.time_of(0), 5_000_000);
        assert_eq!(s.time_of(1), 15_000_000);
        let s = Schedule::new(0, u64::MAX, 0.0, 0.0);
        assert_eq!(s.next_at(), None);
    }
}
