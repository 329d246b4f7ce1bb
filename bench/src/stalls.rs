//! Stalls: where a latency tail comes from. On a shared VM the tail of a
//! run near a server's capacity is mostly episodes: for some milliseconds
//! nothing is delivered (the hypervisor ran something else, or the server
//! was busy), then the backlog drains at the server's spare capacity, and
//! every delivery in between is late. A run's p99 says how late; the
//! episodes say when, for how long, and whether the host's steal time was
//! there too.
//!
//! Each worker groups its late deliveries (received more than [`LATE_NS`]
//! after their scheduled send) into episodes by receive time: a late
//! delivery within [`GAP_NS`] of an episode's end extends it. The
//! coordinator merges the workers' episodes and charges each the steal
//! time sampled during it.

use serde::{Deserialize, Serialize};

/// A delivery later than this is late.
pub const LATE_NS: u64 = 10_000_000;

/// Late deliveries closer than this in receive time are one episode.
pub const GAP_NS: u64 = 5_000_000;

/// Episodes a worker keeps; past this, later ones extend the last.
const MAX_EPISODES: usize = 512;

/// One run of late deliveries.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Episode {
    /// First late delivery's receive time (`CLOCK_MONOTONIC` ns).
    pub start_ns: u64,
    /// Last late delivery's receive time.
    pub end_ns: u64,
    /// Late deliveries in it.
    pub deliveries: u64,
    /// The latest of them, ns.
    pub worst_ns: u64,
}

/// A worker's late deliveries, as episodes in receive order.
#[derive(Debug, Clone, Default)]
pub struct Stalls {
    episodes: Vec<Episode>,
}

impl Stalls {
    /// Counts a delivery received at `now` with `latency`, if it is late.
    #[inline]
    pub fn observe(&mut self, now: u64, latency: u64) {
        if latency <= LATE_NS {
            return;
        }
        let full = self.episodes.len() >= MAX_EPISODES;
        match self.episodes.last_mut() {
            Some(e) if full || now <= e.end_ns + GAP_NS => {
                e.end_ns = e.end_ns.max(now);
                e.deliveries += 1;
                e.worst_ns = e.worst_ns.max(latency);
            }
            _ => self.episodes.push(Episode {
                start_ns: now,
                end_ns: now,
                deliveries: 1,
                worst_ns: latency,
            }),
        }
    }

    /// Adds another worker's episodes.
    pub fn absorb(&mut self, other: &Stalls) {
        self.episodes.extend_from_slice(&other.episodes);
    }

    /// The episodes of every worker absorbed, merged where they overlap or
    /// lie within [`GAP_NS`] of each other, in time order.
    pub fn merged(&self) -> Vec<Episode> {
        let mut all = self.episodes.clone();
        all.sort_by_key(|e| e.start_ns);
        let mut out: Vec<Episode> = Vec::with_capacity(all.len());
        for e in all {
            match out.last_mut() {
                Some(m) if e.start_ns <= m.end_ns + GAP_NS => {
                    m.end_ns = m.end_ns.max(e.end_ns);
                    m.deliveries += e.deliveries;
                    m.worst_ns = m.worst_ns.max(e.worst_ns);
                }
                _ => out.push(e),
            }
        }
        out
    }
}

/// Host steal ticks sampled through the measured window: (ns, ticks).
#[derive(Debug, Clone, Default)]
pub struct StealSamples(pub Vec<(u64, u64)>);

impl StealSamples {
    /// Steal ticks that accrued between the sample before `from` and the
    /// first sample at or after `to`. Samples are a tick (10 ms) coarse,
    /// so this errs towards counting steal next to an episode as in it.
    pub fn ticks_between(&self, from: u64, to: u64) -> u64 {
        let s = &self.0;
        if s.is_empty() {
            return 0;
        }
        let a = s.partition_point(|&(t, _)| t <= from).saturating_sub(1);
        let b = s.partition_point(|&(t, _)| t < to).min(s.len() - 1);
        s[b].1.saturating_sub(s[a].1)
    }
}

/// One episode as the record keeps it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct EpisodeRecord {
    /// Start, ms after the measured window opened.
    pub at_ms: f64,
    /// From the first late delivery to the last, ms.
    pub span_ms: f64,
    /// Late deliveries in it.
    pub deliveries: u64,
    /// The latest of them, ms.
    pub worst_ms: f64,
    /// Host steal time (all CPUs) from just before it to its end, ms.
    pub steal_ms: f64,
}

/// Episodes the record lists, worst first.
pub const KEPT: usize = 8;

/// What the record says of a step's episodes: their count, the late
/// deliveries in all of them, the steal time in them, and the [`KEPT`]
/// worst.
pub fn summarize(
    episodes: &[Episode],
    window_start_ns: u64,
    steal: &StealSamples,
    ms_per_tick: f64,
) -> (u64, f64, Vec<EpisodeRecord>) {
    let ms = |ns: u64| ns as f64 / 1e6;
    let mut recs: Vec<EpisodeRecord> = episodes
        .iter()
        .map(|e| EpisodeRecord {
            at_ms: ms(e.start_ns.saturating_sub(window_start_ns)),
            span_ms: ms(e.end_ns - e.start_ns),
            deliveries: e.deliveries,
            worst_ms: ms(e.worst_ns),
            steal_ms: steal.ticks_between(e.start_ns.saturating_sub(e.worst_ns), e.end_ns) as f64
                * ms_per_tick,
        })
        .collect();
    let late = recs.iter().map(|r| r.deliveries).sum();
    // A fold from 0.0: an empty f64 sum is -0.0, which prints as "-0".
    let steal_ms = recs.iter().fold(0.0, |a, r| a + r.steal_ms);
    recs.sort_by(|a, b| b.worst_ms.total_cmp(&a.worst_ms));
    recs.truncate(KEPT);
    (late, steal_ms, recs)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    #[test]
    fn on_time_deliveries_make_no_episode() {
        let mut s = Stalls::default();
        for i in 0..1000 {
            s.observe(i * MS, LATE_NS);
        }
        assert!(s.merged().is_empty());
    }

    #[test]
    fn late_deliveries_group_by_receive_time() {
        let mut s = Stalls::default();
        // 11..20 ms late, received 1 ms apart: one episode.
        for i in 0..10 {
            s.observe(100 * MS + i * MS, 11 * MS + i * MS);
        }
        // Another, more than the gap later.
        s.observe(200 * MS, 30 * MS);
        let e = s.merged();
        assert_eq!(e.len(), 2, "{e:?}");
        assert_eq!(
            e[0],
            Episode {
                start_ns: 100 * MS,
                end_ns: 109 * MS,
                deliveries: 10,
                worst_ns: 20 * MS
            }
        );
        assert_eq!((e[1].deliveries, e[1].worst_ns), (1, 30 * MS));
    }

    #[test]
    fn workers_episodes_merge_where_they_meet() {
        let (mut a, mut b) = (Stalls::default(), Stalls::default());
        a.observe(100 * MS, 20 * MS);
        a.observe(104 * MS, 20 * MS);
        b.observe(107 * MS, 25 * MS);
        b.observe(300 * MS, 12 * MS);
        a.absorb(&b);
        let e = a.merged();
        assert_eq!(e.len(), 2, "{e:?}");
        assert_eq!(
            (e[0].start_ns, e[0].end_ns, e[0].deliveries),
            (100 * MS, 107 * MS, 3)
        );
        assert_eq!(e[0].worst_ns, 25 * MS);
    }

    #[test]
    fn a_worker_keeps_a_bounded_list() {
        let mut s = Stalls::default();
        for i in 0..10_000 {
            s.observe(i * 100 * MS, 20 * MS);
        }
        assert_eq!(s.episodes.len(), MAX_EPISODES);
        assert_eq!(s.episodes.iter().map(|e| e.deliveries).sum::<u64>(), 10_000);
    }

    #[test]
    fn steal_is_charged_to_the_episode_it_falls_in() {
        let steal = StealSamples(
            (0..100)
                .map(|i| (i * 10 * MS, u64::from(i >= 50)))
                .collect(),
        );
        // The tick accrued between 490 and 500 ms.
        assert_eq!(steal.ticks_between(480 * MS, 520 * MS), 1);
        assert_eq!(steal.ticks_between(600 * MS, 700 * MS), 0);
        assert_eq!(steal.ticks_between(100 * MS, 200 * MS), 0);
        assert_eq!(StealSamples::default().ticks_between(0, MS), 0);
        let episodes = [
            Episode {
                start_ns: 495 * MS,
                end_ns: 520 * MS,
                deliveries: 40,
                worst_ns: 15 * MS,
            },
            Episode {
                start_ns: 800 * MS,
                end_ns: 801 * MS,
                deliveries: 2,
                worst_ns: 11 * MS,
            },
        ];
        let (late, steal_ms, recs) = summarize(&episodes, 400 * MS, &steal, 10.0);
        assert_eq!((late, steal_ms), (42, 10.0));
        assert_eq!(recs[0].at_ms, 95.0);
        assert_eq!(
            (recs[0].span_ms, recs[0].worst_ms, recs[0].steal_ms),
            (25.0, 15.0, 10.0)
        );
        assert_eq!(recs[1].steal_ms, 0.0);
        let (late, steal_ms, recs) = summarize(&[], 0, &steal, 10.0);
        assert_eq!((late, recs.len()), (0, 0));
        assert!(steal_ms.is_sign_positive(), "prints as 0, not -0");
    }
}
