//! Latency histograms and the counters one worker collects per step.
//!
//! Each worker records into its own HdrHistogram (no sharing on the hot
//! path); the coordinator merges them once a step is over. Values are
//! nanoseconds, 3 significant digits, up to 120 s.

use hdrhistogram::Histogram;

/// Highest latency a histogram tracks; larger values are clamped to it.
pub const MAX_LATENCY_NS: u64 = 120_000_000_000;

/// A latency histogram in nanoseconds.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1_000, MAX_LATENCY_NS, 3).expect("valid histogram bounds")
}

/// Records one latency, clamping into the histogram's range.
#[inline]
pub fn record(h: &mut Histogram<u64>, ns: u64) {
    let _ = h.record(ns.clamp(1_000, MAX_LATENCY_NS));
}

/// Merges `parts` into one histogram.
pub fn merge<'a>(parts: impl IntoIterator<Item = &'a Histogram<u64>>) -> Histogram<u64> {
    let mut all = new_histogram();
    for h in parts {
        all.add(h).expect("histograms share bounds");
    }
    all
}

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Percentiles {
    /// Samples.
    pub count: u64,
    /// Median.
    pub p50_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// 99.9th percentile.
    pub p999_ms: f64,
    /// Largest sample.
    pub max_ms: f64,
    /// Mean.
    pub mean_ms: f64,
}

impl Percentiles {
    /// Reads the percentiles of `h`.
    pub fn of(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Percentiles::default();
        }
        let ms = |ns: u64| ns as f64 / 1e6;
        Percentiles {
            count: h.len(),
            p50_ms: ms(h.value_at_quantile(0.50)),
            p90_ms: ms(h.value_at_quantile(0.90)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            p999_ms: ms(h.value_at_quantile(0.999)),
            max_ms: ms(h.max()),
            mean_ms: h.mean() / 1e6,
        }
    }
}

/// What one worker counted during one step (a warm-up + measured window + drain).
#[derive(Debug, Clone)]
pub struct StepCounts {
    /// Latency of deliveries whose scheduled send time lay in the measured window.
    pub latency: Histogram<u64>,
    /// Those of them that were late, as episodes.
    pub stalls: crate::stalls::Stalls,
    /// How far behind its schedule the generator sent, at worst, in the
    /// measured window (ns): latency counts from the scheduled time.
    pub send_lag_max_ns: u64,
    /// Publishes sent (queued on a socket) in this step.
    pub published: u64,
    /// Publishes whose scheduled time lay in the measured window.
    pub published_in_window: u64,
    /// Publishes skipped because the connection's send buffer was over its cap.
    pub publish_skipped: u64,
    /// Deliveries received (first copies) in this step.
    pub delivered: u64,
    /// Deliveries received while the measured window was open.
    pub delivered_in_window: u64,
    /// Duplicate deliveries.
    pub duplicated: u64,
    /// Deliveries that arrived after a later one of the same stream.
    pub reordered: u64,
    /// Deliveries the worker could not read a stamp from.
    pub unparsed: u64,
    /// Error replies from the server.
    pub server_errors: u64,
    /// Connections that closed or failed during the step.
    pub disconnects: u64,
    /// Frames larger than one delivery seen per read (coalescing indicator).
    pub reads: u64,
}

impl Default for StepCounts {
    fn default() -> Self {
        StepCounts {
            latency: new_histogram(),
            stalls: Default::default(),
            send_lag_max_ns: 0,
            published: 0,
            published_in_window: 0,
            publish_skipped: 0,
            delivered: 0,
            delivered_in_window: 0,
            duplicated: 0,
            reordered: 0,
            unparsed: 0,
            server_errors: 0,
            disconnects: 0,
            reads: 0,
        }
    }
}

impl StepCounts {
    /// Adds `other` into `self`.
    pub fn absorb(&mut self, other: &StepCounts) {
        self.latency
            .add(&other.latency)
            .expect("histograms share bounds");
        self.stalls.absorb(&other.stalls);
        self.send_lag_max_ns = self.send_lag_max_ns.max(other.send_lag_max_ns);
        self.published += other.published;
        self.published_in_window += other.published_in_window;
        self.publish_skipped += other.publish_skipped;
        self.delivered += other.delivered;
        self.delivered_in_window += other.delivered_in_window;
        self.duplicated += other.duplicated;
        self.reordered += other.reordered;
        self.unparsed += other.unparsed;
        self.server_errors += other.server_errors;
        self.disconnects += other.disconnects;
        self.reads += other.reads;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merged_histogram_equals_histogram_of_all_samples() {
        let mut a = new_histogram();
        let mut b = new_histogram();
        let mut all = new_histogram();
        for i in 0..10_000u64 {
            let v = 1_000 + (i * 7919) % 50_000_000;
            if i % 3 == 0 {
                record(&mut a, v)
            } else {
                record(&mut b, v)
            }
            record(&mut all, v);
        }
        let m = merge([&a, &b]);
        assert_eq!(m.len(), 10_000);
        assert_eq!(Percentiles::of(&m), Percentiles::of(&all));
        for q in [0.5, 0.9, 0.99, 0.999, 1.0] {
            assert_eq!(m.value_at_quantile(q), all.value_at_quantile(q));
        }
    }

    #[test]
    fn percentiles_are_in_milliseconds_and_clamped() {
        let mut h = new_histogram();
        for _ in 0..99 {
            record(&mut h, 2_000_000);
        }
        record(&mut h, u64::MAX);
        let p = Percentiles::of(&h);
        assert_eq!(p.count, 100);
        assert!((p.p50_ms - 2.0).abs() < 0.01);
        assert!(p.max_ms >= 119_000.0);
        assert_eq!(Percentiles::of(&new_histogram()), Percentiles::default());
    }

    #[test]
    fn absorb_adds_counts() {
        let mut a = StepCounts {
            delivered: 3,
            published: 1,
            ..Default::default()
        };
        let b = StepCounts {
            delivered: 4,
            duplicated: 2,
            ..Default::default()
        };
        a.absorb(&b);
        assert_eq!((a.delivered, a.published, a.duplicated), (7, 1, 2));
    }
}
