//! The JSON record of one run (one scenario against one target) and its
//! human summary. Other scripts consume the record: field names are stable.

use serde::{Deserialize, Serialize};

/// One measured step: an offered rate held for the measured window.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct StepRecord {
    /// Offered publishes per second.
    pub offered_publishes_per_s: f64,
    /// Offered deliveries per second (publishes × members of the room).
    pub offered_deliveries_per_s: f64,
    /// Publishes sent in the measured window, per second.
    pub publishes_per_s: f64,
    /// First-copy deliveries received in the measured window, per second.
    pub deliveries_per_s: f64,
    /// Publish→receive latency, measured from the scheduled send time.
    pub p50_ms: f64,
    /// 90th percentile latency.
    pub p90_ms: f64,
    /// 99th percentile latency.
    pub p99_ms: f64,
    /// 99.9th percentile latency.
    pub p999_ms: f64,
    /// Largest latency.
    pub max_ms: f64,
    /// Latency samples.
    pub latency_samples: u64,
    /// Publishes sent in the whole step (warm-up included).
    pub published: u64,
    /// First copies of deliveries received in the whole step (drain included).
    pub delivered: u64,
    /// Deliveries expected in the step (publishes × ready members).
    pub expected: u64,
    /// Expected deliveries not received when the drain ended.
    pub lost: u64,
    /// Deliveries received twice or more.
    pub duplicated: u64,
    /// Deliveries received after a later one of the same publisher.
    pub reordered: u64,
    /// ringcast deliveries whose room `seq` was not the next expected.
    pub seq_anomalies: u64,
    /// Frames that looked like deliveries but had no readable stamp.
    pub unparsed: u64,
    /// Error replies from the server.
    pub server_errors: u64,
    /// Publishes the generator skipped: the publisher's socket was backed up.
    pub publish_skipped: u64,
    /// Connections lost during the step.
    pub disconnects: u64,
    /// Server CPU time in the window per delivery, µs.
    pub server_cpu_us_per_delivery: f64,
    /// Server CPU time in the window over wall time (1.0 = one core).
    pub server_cpu_share: f64,
    /// CPU time of the broker the nodes share (`--redis-pid`) in the window,
    /// from `/proc/PID/stat` utime + stime, per publish made in the window, µs.
    pub redis_cpu_us_per_publish: f64,
    /// The same from `/proc/PID/task/*/schedstat` (ns, not clock ticks): at
    /// a few hundred messages a second a 10 ms tick is several µs per message.
    pub redis_sched_us_per_publish: f64,
    /// That broker's CPU time in the window over wall time (1.0 = one core).
    pub redis_cpu_share: f64,
    /// Commands the broker ran in the window (`--redis-addr`), per published
    /// message, busiest first (the commands inside a Lua script count too).
    pub redis_commands: Vec<crate::broker::CommandShare>,
    /// Server RSS at the window's end, bytes.
    pub server_rss_bytes: u64,
    /// Highest server RSS sampled during the step, bytes.
    pub server_rss_max_bytes: u64,
    /// Generator CPU over the window divided by (window × generator threads).
    pub generator_cpu_share: f64,
    /// Generator CPU time per delivery, µs.
    pub generator_cpu_us_per_delivery: f64,
    /// Host steal time during the window, % of all CPUs.
    pub steal_pct: f64,
    /// CPU used on the host by other processes during the window (1.0 = one core).
    #[serde(default)]
    pub host_other_cpu_share: f64,
    /// Host-wide irq + softirq time during the window (1.0 = one core): the
    /// loopback TCP work that no process's CPU time includes.
    pub host_irq_cpu_share: f64,
    /// Deliveries per read call (above 1: the server coalesces frames).
    pub deliveries_per_read: f64,
    /// The drain ended by its time limit rather than by receiving everything.
    pub drain_timed_out: bool,
    /// Deliveries later than 10 ms ([`crate::stalls::LATE_NS`]) in the window.
    pub late_deliveries: u64,
    /// Episodes those came in (late deliveries within 5 ms of each other
    /// in receive time are one).
    pub late_episodes: u64,
    /// Host steal time (all CPUs) during those episodes, ms.
    pub late_episode_steal_ms: f64,
    /// The worst episodes (the latest deliveries in them), worst first.
    pub late_worst_episodes: Vec<crate::stalls::EpisodeRecord>,
    /// How far behind its schedule the generator sent, at worst, ms
    /// (latency counts from the scheduled time, so this is in it).
    pub generator_send_lag_max_ms: f64,
    /// Pauses injected into the window (`--pause-ms`).
    pub injected_pauses: u64,
    /// How long the server was stopped by them in all, ms.
    pub injected_pause_ms: f64,
    /// p99 within the bound and nothing lost or skipped.
    pub held: bool,
    /// This step is a repeat of a failed one.
    pub repeat: bool,
}

/// Connect phase results.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ConnectRecord {
    /// Sockets attempted.
    pub attempted: u64,
    /// Sockets ready (upgraded and joined).
    pub ready: u64,
    /// Sockets that failed.
    pub errors: u64,
    /// Seconds from the first connect's start to the last one done (ready
    /// or failed), as the workers timed them.
    pub seconds: f64,
    /// Ready sockets per second.
    pub per_s: f64,
    /// Connect→ready latency median.
    pub p50_ms: f64,
    /// Connect→ready latency 99th percentile.
    pub p99_ms: f64,
    /// Server CPU time from before the first connect to the last one done,
    /// per attempted socket, µs (accept, upgrade, token check, welcome, join).
    pub server_cpu_us_per_connect: f64,
    /// The generator's CPU time over the same span, per attempted socket, µs.
    pub generator_cpu_us_per_connect: f64,
}

/// One run: the record `latest.json` holds an array of.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct RunRecord {
    /// Scenario name.
    pub scenario: String,
    /// Target name.
    pub target: String,
    /// `fixed`, `find-max`, `overload` or `idle`.
    pub mode: String,
    /// ringcast shard count, when the target is ringcast.
    pub shards: Option<u32>,
    /// UTC date and time of the run.
    pub date: String,
    /// Online CPUs of the host.
    pub cores: usize,
    /// Kernel release.
    pub kernel: String,
    /// Cores the generator was pinned to.
    pub generator_cores: Vec<usize>,
    /// Cores the server was pinned to, as told by the caller.
    pub server_cores: Option<String>,
    /// Ready connections (member sockets plus publisher sockets).
    pub connections: u64,
    /// Rooms.
    pub rooms: u32,
    /// Members per room.
    pub members_per_room: u32,
    /// Publishers.
    pub publishers: u32,
    /// Data object bytes per publish.
    pub size_bytes: usize,
    /// Headline numbers: the fixed step, the overload step, or find-max's best held step.
    #[serde(flatten)]
    pub headline: StepRecord,
    /// find-max: highest offered deliveries/s that held.
    pub max_held_deliveries_per_s: Option<f64>,
    /// find-max: a step failed once and passed on repeat (steal time).
    pub borderline: bool,
    /// find-max: failed steps retried because the hypervisor stole much of
    /// their window.
    pub steal_retries: u32,
    /// Connect phase.
    pub connect: ConnectRecord,
    /// How connections proved who they are: empty, or e.g. `jwt HS256 via
    /// query, 10000 tokens` (made before the first connect, untimed).
    pub auth: String,
    /// Server pid, if found (the first node's).
    pub server_pid: Option<u32>,
    /// Every node's server pid; CPU and RSS figures are their sums.
    pub server_pids: Vec<u32>,
    /// Server addresses the sockets were spread over (1: a single server).
    pub nodes: u32,
    /// The broker sampled for `redis_cpu_us_per_publish`, if any.
    pub redis_pid: Option<u32>,
    /// Server RSS before the generator connected, bytes.
    pub server_rss_before_bytes: u64,
    /// Server RSS with all connections up, before publishing, bytes.
    pub server_rss_connected_bytes: u64,
    /// Server RSS after the last step, bytes.
    pub server_rss_after_bytes: u64,
    /// (RSS connected − RSS before) / connections.
    pub rss_per_conn_bytes: f64,
    /// Every step, in order.
    pub steps: Vec<StepRecord>,
    /// Anything a reader must know (pinning, generator saturation, repeats).
    pub notes: Vec<String>,
    /// When the matrix ran this target × scenario several times: every
    /// run's value of [`RunRecord::median_key`], sorted. This record is the
    /// median run.
    pub repeats: Vec<f64>,
    /// With `repeats`: every run's p99 (ms), sorted.
    pub repeats_p99_ms: Vec<f64>,
}

impl RunRecord {
    /// The value repeated runs are ranked by: deliveries/s for find-max and
    /// overload, server CPU µs per delivery for a fixed rate, RSS per
    /// connection for idle, connects/s for connect storms.
    pub fn median_key(&self) -> f64 {
        match self.mode.as_str() {
            "fixed" => self.headline.server_cpu_us_per_delivery,
            "idle" if self.scenario.contains("storm") => self.connect.per_s,
            "idle" => self.rss_per_conn_bytes,
            _ => self.headline.deliveries_per_s,
        }
    }

    /// The p99 the goals compare: the median of every run's p99 where the
    /// matrix repeated the run, else this run's.
    pub fn p99_ms(&self) -> f64 {
        let v = &self.repeats_p99_ms;
        if v.is_empty() {
            self.headline.p99_ms
        } else {
            v[(v.len() - 1) / 2]
        }
    }

    /// The human summary printed at the end of a run.
    pub fn summary(&self) -> String {
        let h = &self.headline;
        let mut s = format!(
            "== {} / {} ({}{}) ==\n",
            self.scenario,
            self.target,
            self.mode,
            self.shards
                .map(|n| format!(", {n} shards"))
                .unwrap_or_default()
        );
        s += &format!(
            "connections {} ready, {} errors, {:.0}/s (p99 {:.1} ms; server {:.1} us/connect, generator {:.1}); rooms {} x {} members, {} publishers, {} B\n",
            self.connect.ready, self.connect.errors, self.connect.per_s, self.connect.p99_ms,
            self.connect.server_cpu_us_per_connect, self.connect.generator_cpu_us_per_connect, self.rooms,
            self.members_per_room, self.publishers, self.size_bytes
        );
        if !self.auth.is_empty() {
            s += &format!("auth: {}\n", self.auth);
        }
        if !self.steps.is_empty() {
            s += &format!(
                "offered {:.0} pub/s = {:.0} del/s; achieved {:.0} pub/s, {:.0} del/s\n",
                h.offered_publishes_per_s,
                h.offered_deliveries_per_s,
                h.publishes_per_s,
                h.deliveries_per_s
            );
            s += &format!(
                "latency ms p50 {:.2} p90 {:.2} p99 {:.2} p99.9 {:.2} max {:.2} ({} samples)\n",
                h.p50_ms, h.p90_ms, h.p99_ms, h.p999_ms, h.max_ms, h.latency_samples
            );
            if h.late_episodes > 0 {
                let worst = h.late_worst_episodes.first().cloned().unwrap_or_default();
                s += &format!(
                    "late (> 10 ms): {} deliveries in {} episodes, host steal {:.0} ms in them; worst at {:.0} ms into the window, {:.1} ms long, {:.1} ms late, steal {:.0} ms; generator behind schedule {:.1} ms at most\n",
                    h.late_deliveries,
                    h.late_episodes,
                    h.late_episode_steal_ms,
                    worst.at_ms,
                    worst.span_ms,
                    worst.worst_ms,
                    worst.steal_ms,
                    h.generator_send_lag_max_ms
                );
            }
            if h.injected_pauses > 0 {
                s += &format!(
                    "paused: the server was stopped {} times in the window, {:.0} ms in all\n",
                    h.injected_pauses, h.injected_pause_ms
                );
            }
            s += &format!(
                "lost {} dup {} reordered {} seq-anomalies {} skipped {} errors {} disconnects {}\n",
                h.lost, h.duplicated, h.reordered, h.seq_anomalies, h.publish_skipped, h.server_errors, h.disconnects
            );
            s += &format!(
                "server cpu {:.2} us/delivery ({:.0}% of a core); generator cpu {:.0}% of its cores ({:.2} us/delivery); other processes {:.0}% of a core; steal {:.1}%\n",
                h.server_cpu_us_per_delivery,
                h.server_cpu_share * 100.0,
                h.generator_cpu_share * 100.0,
                h.generator_cpu_us_per_delivery,
                h.host_other_cpu_share * 100.0,
                h.steal_pct
            );
            if self.redis_pid.is_some() {
                s += &format!(
                    "redis cpu {:.2} us/publish (schedstat {:.2}; {:.0}% of a core)\n",
                    h.redis_cpu_us_per_publish,
                    h.redis_sched_us_per_publish,
                    h.redis_cpu_share * 100.0
                );
                if !h.redis_commands.is_empty() {
                    s += "redis commands per publish:";
                    for c in &h.redis_commands {
                        s += &format!(
                            " {} {:.2} ({:.1} us)",
                            c.command, c.calls_per_publish, c.usec_per_publish
                        );
                    }
                    s += "\n";
                }
            }
        }
        s += &format!(
            "server rss before {:.1} MiB, connected {:.1} MiB ({:.0} B/conn), max {:.1} MiB, after {:.1} MiB\n",
            mib(self.server_rss_before_bytes),
            mib(self.server_rss_connected_bytes),
            self.rss_per_conn_bytes,
            mib(h.server_rss_max_bytes.max(self.server_rss_connected_bytes)),
            mib(self.server_rss_after_bytes)
        );
        if let Some(m) = self.max_held_deliveries_per_s {
            s += &format!(
                "find-max: held up to {m:.0} deliveries/s{}\n",
                if self.borderline {
                    " (borderline steps repeated)"
                } else {
                    ""
                }
            );
            for st in &self.steps {
                s += &format!(
                    "  offered {:>9.0} del/s -> {:>9.0} del/s p99 {:>8.2} ms lost {} {}{}\n",
                    st.offered_deliveries_per_s,
                    st.deliveries_per_s,
                    st.p99_ms,
                    st.lost,
                    if st.held { "held" } else { "FAILED" },
                    if st.repeat { " (repeat)" } else { "" }
                );
            }
        }
        for n in &self.notes {
            s += &format!("note: {n}\n");
        }
        s
    }
}

fn mib(b: u64) -> f64 {
    b as f64 / (1024.0 * 1024.0)
}

/// Formats a Unix time in ms as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn iso_date(unix_ms: u64) -> String {
    let secs = unix_ms / 1000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_dates() {
        assert_eq!(iso_date(0), "1970-01-01T00:00:00Z");
        assert_eq!(iso_date(951_782_400_000), "2000-02-29T00:00:00Z");
        assert_eq!(iso_date(1_795_000_000_000), "2026-11-18T11:06:40Z");
    }

    #[test]
    fn record_has_the_flat_fields_scripts_read() {
        let r = RunRecord {
            scenario: "fanout".into(),
            target: "uws".into(),
            ..Default::default()
        };
        let v = serde_json::to_value(&r).unwrap();
        for k in [
            "scenario",
            "target",
            "deliveries_per_s",
            "publishes_per_s",
            "p50_ms",
            "p99_ms",
            "p999_ms",
            "lost",
            "duplicated",
            "reordered",
            "connections",
            "shards",
            "server_cpu_us_per_delivery",
            "generator_cpu_share",
            "server_rss_bytes",
            "rss_per_conn_bytes",
            "date",
            "cores",
            "kernel",
        ] {
            assert!(v.get(k).is_some(), "missing {k}");
        }
        assert!(!r.summary().is_empty());
    }
}
