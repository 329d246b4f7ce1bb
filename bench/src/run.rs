//! The coordinator: starts the workers, waits for the connect ramp, runs the
//! steps a mode asks for (one fixed step, a find-max ladder, or an overload
//! step), samples the server's `/proc` around each measured window, and turns
//! the merged worker reports into a [`RunRecord`].

use std::io::{IsTerminal, Write};
use std::net::SocketAddrV4;
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::broker;
use crate::clock::{now_ns, sleep_until, unix_ms};
use crate::control::{Control, Layout, StepPlan};
use crate::procstat::{self, ProcSample};
use crate::record::{iso_date, ConnectRecord, RunRecord, StepRecord};
use crate::stalls::{self, StealSamples};
use crate::stats::{self, Percentiles, StepCounts};
use crate::worker::{self, WorkerReport};

/// How a run chooses its offered rates.
#[derive(Debug, Clone)]
pub enum Mode {
    /// One step at a fixed rate (publishes/s).
    Fixed(f64),
    /// Raise the rate by `factor` from `start` until p99 > `p99_ms` or loss; at most `steps` steps.
    FindMax {
        /// First offered rate, publishes/s.
        start: f64,
        /// Multiplier per step.
        factor: f64,
        /// p99 bound, ms.
        p99_ms: f64,
        /// Upper bound on steps (each step is warm-up + window + drain).
        steps: u32,
        /// Bisection steps between the last rate that held and the first
        /// that failed, each halving the gap geometrically.
        refine: u32,
    },
    /// One step far past saturation (publishes/s); the drain is where memory shows.
    Overload(f64),
    /// Connect, hold, sample memory; no publishing.
    Idle,
}

/// Everything one run needs besides the layout.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Scenario name for the record.
    pub scenario: String,
    /// Rate ladder.
    pub mode: Mode,
    /// Warm-up per step, s.
    pub warmup_s: f64,
    /// Measured window per step, s.
    pub duration_s: f64,
    /// Longest wait for outstanding deliveries after a step, s.
    pub drain_s: f64,
    /// Longest wait for the connect ramp, s.
    pub connect_timeout_s: f64,
    /// Server pids, one per node (found by each address's port when empty);
    /// their CPU and memory are summed.
    pub server_pids: Vec<u32>,
    /// A broker the servers share (the Redis of a cluster): its CPU over the
    /// window is reported per published message.
    pub redis_pid: Option<u32>,
    /// That broker's address, to read its `INFO commandstats` around the window.
    pub redis_addr: Option<SocketAddrV4>,
    /// ringcast shard count, for the record.
    pub shards: Option<u32>,
    /// Cores the server runs on, for the record.
    pub server_cores: Option<String>,
    /// Stop the server this long every so often in each window (paused
    /// runs), the same for every target.
    pub pauses: Option<crate::pause::Pauses>,
    /// Print progress lines.
    pub progress: bool,
}

struct Run {
    layout: Arc<Layout>,
    ctl: Arc<Control>,
    rx: mpsc::Receiver<WorkerReport>,
    pids: Vec<u32>,
    opts: RunOptions,
    tty: bool,
    connect_latency: hdrhistogram::Histogram<u64>,
}

impl Run {
    /// One find-max step at `rate` publishes/s. A failed step gets one more
    /// chance, because this kind of VM has steal time; a failed window in
    /// which the hypervisor stole more than [`STEAL_RETRY_PCT`] of the CPU
    /// says nothing about the server, so it gets up to two more. Every
    /// attempt is recorded; the result is the last.
    fn held_step(&mut self, rate: f64, p99_ms: f64, rec: &mut RunRecord) -> Result<StepRecord> {
        let mut st = self.step(rate, self.opts.drain_s, p99_ms, false)?;
        let mut attempts = 1;
        while !st.held && (attempts < 2 || (attempts < 4 && st.steal_pct > STEAL_RETRY_PCT)) {
            if st.steal_pct > STEAL_RETRY_PCT {
                rec.steal_retries += 1;
            }
            rec.steps.push(st);
            st = self.step(rate, self.opts.drain_s, p99_ms, true)?;
            attempts += 1;
            if st.held {
                rec.borderline = true;
            }
        }
        rec.steps.push(st.clone());
        Ok(st)
    }
}

/// Steal time (% of the measured window) above which a failed find-max step
/// is retried more than once.
pub const STEAL_RETRY_PCT: f64 = 10.0;

/// How often the measured window samples the host's steal time: its
/// clock tick, the resolution `/proc/stat` has.
const STEAL_SAMPLE_NS: u64 = 10_000_000;

/// Runs one scenario against one target and returns its record.
pub fn run(layout: Layout, opts: RunOptions) -> Result<RunRecord> {
    let limit = procstat::raise_nofile();
    let need = layout.sockets() as u64 + 64;
    if need > limit {
        bail!(
            "{} sockets need an open-file limit of at least {need}, but it is {limit}: raise `ulimit -n` (hard limit) or use fewer connections",
            layout.sockets()
        );
    }
    let ports_per_source = 28_000u64;
    let sources = layout.sources.len().max(1) as u64;
    if layout.sockets() as u64 > ports_per_source * sources {
        bail!(
            "{} sockets from {sources} source address(es) would run out of ephemeral ports: pass --sources {}",
            layout.sockets(),
            (layout.sockets() as u64).div_ceil(ports_per_source)
        );
    }
    let pids = if opts.server_pids.is_empty() {
        let mut v: Vec<u32> = layout
            .addrs
            .iter()
            .filter_map(|a| procstat::pid_listening_on(a.port()))
            .collect();
        v.dedup();
        v
    } else {
        opts.server_pids.clone()
    };
    let before = procstat::sample_sum(&pids);
    let gen_before = procstat::self_cpu_us();
    let ctl = Arc::new(Control::new(layout.rooms));
    let layout = Arc::new(layout);
    let (tx, rx) = mpsc::channel();
    let handles: Vec<_> = (0..layout.threads)
        .map(|id| {
            let (l, c, t) = (layout.clone(), ctl.clone(), tx.clone());
            std::thread::Builder::new()
                .name(format!("gen-{id}"))
                .spawn(move || worker::run(id, l, c, t))
                .expect("spawn worker")
        })
        .collect();
    drop(tx);
    let mut r = Run {
        layout: layout.clone(),
        ctl: ctl.clone(),
        rx,
        pids,
        tty: std::io::stderr().is_terminal(),
        opts,
        connect_latency: stats::new_histogram(),
    };
    let result = r.drive(before, gen_before);
    ctl.quit.store(true, Ordering::Relaxed);
    for h in handles {
        let _ = h.join();
    }
    result
}

impl Run {
    fn progress(&self, line: &str) {
        if !self.opts.progress {
            return;
        }
        let mut e = std::io::stderr();
        if self.tty {
            let _ = write!(e, "\r\x1b[2K{line}");
        } else {
            let _ = writeln!(e, "{line}");
        }
        let _ = e.flush();
    }

    fn end_progress(&self) {
        if self.opts.progress && self.tty {
            eprintln!();
        }
    }

    fn drive(&mut self, before: ProcSample, gen_before: u64) -> Result<RunRecord> {
        let l = self.layout.clone();
        let mut rec = RunRecord {
            scenario: self.opts.scenario.clone(),
            target: l.target.name().to_string(),
            shards: self.opts.shards,
            date: iso_date(unix_ms()),
            cores: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            kernel: procstat::kernel(),
            generator_cores: l.cores.clone(),
            server_cores: self.opts.server_cores.clone(),
            rooms: l.rooms,
            members_per_room: l.connections.checked_div(l.rooms).unwrap_or(0),
            publishers: l.publishers,
            size_bytes: l.size,
            server_pid: self.pids.first().copied(),
            server_pids: self.pids.clone(),
            nodes: l.addrs.len() as u32,
            redis_pid: self.opts.redis_pid,
            server_rss_before_bytes: before.rss_bytes,
            ..Default::default()
        };
        if self.pids.is_empty() {
            rec.notes
                .push("server pid not found: no server CPU or memory figures".into());
            if self.opts.pauses.is_some() {
                rec.notes
                    .push("no server pid to pause: the windows ran without pauses".into());
            }
        } else if let Some(p) = self.opts.pauses {
            rec.notes.push(format!(
                "server paused (SIGSTOP) for {:.0} ms every {:.0} ms of each window",
                p.pause_ns as f64 / 1e6,
                p.every_ns as f64 / 1e6
            ));
        }
        if !self.pids.is_empty() && self.pids.len() < l.addrs.len() {
            rec.notes.push(format!(
                "{} server pid(s) for {} nodes: CPU and memory cover only those",
                self.pids.len(),
                l.addrs.len()
            ));
        }
        if l.addrs.len() > 1 {
            rec.notes.push(format!(
                "{} nodes ({}): every room's members and publishers spread evenly over them; server CPU and RSS are the nodes' sums",
                l.addrs.len(),
                l.addrs
                    .iter()
                    .map(|a| a.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        if l.cores.is_empty() {
            rec.notes.push("generator not pinned (pass --cores)".into());
        } else if let Some(sc) = &self.opts.server_cores {
            rec.notes.push(format!(
                "server pinned to cores {sc}, generator to {:?}",
                l.cores
            ));
        }
        if let Some(t) = &l.tokens {
            rec.auth = format!(
                "jwt {} via {}, {} distinct token(s), made before the first connect",
                t.source,
                t.via.name(),
                t.len()
            );
        }
        rec.connect = self.connect_phase(before, gen_before)?;
        rec.connections = rec.connect.ready;
        std::thread::sleep(Duration::from_millis(300));
        let connected = self.sample();
        rec.server_rss_connected_bytes = connected.rss_bytes;
        if rec.connect.ready > 0 && connected.rss_bytes > 0 {
            rec.rss_per_conn_bytes = (connected.rss_bytes as f64 - before.rss_bytes as f64)
                .max(0.0)
                / rec.connect.ready as f64;
        }
        match self.opts.mode.clone() {
            Mode::Idle => {
                rec.mode = "idle".into();
                let until = now_ns() + (self.opts.duration_s * 1e9) as u64;
                while now_ns() < until {
                    let s = self.sample();
                    self.progress(&format!(
                        "idle: {} connections, server rss {:.1} MiB",
                        rec.connect.ready,
                        s.rss_bytes as f64 / 1048576.0
                    ));
                    std::thread::sleep(Duration::from_millis(500));
                }
                self.end_progress();
                let s = self.sample();
                rec.server_rss_connected_bytes = rec.server_rss_connected_bytes.max(s.rss_bytes);
                rec.headline.server_rss_bytes = s.rss_bytes;
                rec.headline.server_rss_max_bytes = s.rss_bytes;
                if rec.connect.ready > 0 && s.rss_bytes > 0 {
                    rec.rss_per_conn_bytes = (s.rss_bytes as f64 - before.rss_bytes as f64)
                        .max(0.0)
                        / rec.connect.ready as f64;
                }
            }
            Mode::Fixed(rate) => {
                rec.mode = "fixed".into();
                let st = self.step(rate, self.opts.drain_s, f64::INFINITY, false)?;
                rec.headline = st.clone();
                rec.steps.push(st);
            }
            Mode::Overload(rate) => {
                rec.mode = "overload".into();
                let st = self.step(rate, self.opts.drain_s, f64::INFINITY, false)?;
                rec.headline = st.clone();
                rec.steps.push(st);
            }
            Mode::FindMax {
                start,
                factor,
                p99_ms,
                steps,
                refine,
            } => {
                rec.mode = "find-max".into();
                let mut rate = start;
                let mut best: Option<StepRecord> = None;
                let mut failed_at = None;
                for _ in 0..steps {
                    let st = self.held_step(rate, p99_ms, &mut rec)?;
                    if !st.held {
                        failed_at = Some(rate);
                        break;
                    }
                    best = Some(st);
                    rate *= factor;
                }
                // Narrow the gap between the last held rate and the failed one.
                if let (Some(mut hi), Some(b)) = (failed_at, best.as_ref()) {
                    let mut lo = b.offered_publishes_per_s;
                    for _ in 0..refine {
                        let mid = (lo * hi).sqrt();
                        let st = self.held_step(mid, p99_ms, &mut rec)?;
                        if st.held {
                            lo = mid;
                            best = Some(st);
                        } else {
                            hi = mid;
                        }
                    }
                }
                let all_held = failed_at.is_none();
                if all_held {
                    rec.notes.push(format!(
                        "every step held: the maximum is above {:.0} deliveries/s (raise --max-steps)",
                        rec.steps.last().map_or(0.0, |s| s.offered_deliveries_per_s)
                    ));
                }
                if let Some(b) = best {
                    rec.max_held_deliveries_per_s = Some(b.deliveries_per_s);
                    rec.headline = b;
                } else {
                    rec.max_held_deliveries_per_s = Some(0.0);
                    rec.headline = rec.steps.first().cloned().unwrap_or_default();
                    rec.notes
                        .push("no step held: the first offered rate is already too high".into());
                }
                if rec.borderline {
                    rec.notes
                        .push("a step failed once and held on repeat (steal time?)".into());
                }
                if rec.steal_retries > 0 {
                    rec.notes.push(format!(
                        "{} failed step(s) had over {STEAL_RETRY_PCT:.0}% steal time and were run again",
                        rec.steal_retries
                    ));
                }
            }
        }
        rec.server_rss_after_bytes = self.sample().rss_bytes;
        let unplaced = self.ctl.unplaced.load(Ordering::Relaxed);
        if l.shard_local > 0 {
            rec.members_per_room = l.members_per_room();
            rec.notes.push(format!(
                "shard-local placement over {} shards: every room's members on its home shard; {unplaced} sockets found no room and stayed idle",
                l.shard_local
            ));
        }
        let other = rec
            .steps
            .iter()
            .map(|s| s.host_other_cpu_share)
            .fold(0.0, f64::max);
        if other > 0.2 {
            rec.notes.push(format!(
                "other processes used up to {:.0}% of a core during a measured window: latency may include their interference",
                other * 100.0
            ));
        }
        if rec.steps.iter().any(|s| s.generator_cpu_share > 0.9) {
            rec.notes.push(
                "generator above 90% of its cores in some step: it may be the bottleneck".into(),
            );
        }
        Ok(rec)
    }

    fn sample(&self) -> ProcSample {
        procstat::sample_sum(&self.pids)
    }

    /// The broker's CPU: (µs from `/proc/PID/stat`, ns from schedstat).
    fn redis_cpu(&self) -> (u64, u64) {
        let Some(pid) = self.opts.redis_pid else {
            return (0, 0);
        };
        (
            procstat::sample(pid).map_or(0, |s| s.cpu_us),
            procstat::sched_ns(pid).unwrap_or(0),
        )
    }

    fn connect_phase(&mut self, before: ProcSample, gen_before: u64) -> Result<ConnectRecord> {
        let total = self.layout.sockets() as u64;
        let t0 = now_ns();
        let deadline = t0 + (self.opts.connect_timeout_s * 1e9) as u64;
        let mut last_done = t0;
        let mut seen = 0;
        let mut shown = 0;
        loop {
            let done = self.ctl.connect_done.load(Ordering::Relaxed);
            let ready = self.ctl.ready.load(Ordering::Relaxed);
            let errors = self.ctl.connect_errors.load(Ordering::Relaxed);
            let now = now_ns();
            if done != seen {
                seen = done;
                last_done = now;
            }
            let secs = (now - t0) as f64 / 1e9;
            if now >= shown + 200_000_000 {
                shown = now;
                self.progress(&format!(
                    "connect: {ready}/{total} ready, {errors} errors, {:.0}/s",
                    ready as f64 / secs.max(1e-3)
                ));
            }
            if done >= total || now >= deadline {
                break;
            }
            // The rate is timed by the workers; this poll only ends the wait.
            std::thread::sleep(Duration::from_millis(10));
        }
        let (srv, gen) = (self.sample(), procstat::self_cpu_us());
        self.end_progress();
        let ready = self.ctl.ready.load(Ordering::Relaxed);
        let errors = self.ctl.connect_errors.load(Ordering::Relaxed);
        if ready == 0 && total > 0 {
            bail!(
                "no connection became ready ({errors} errors): is the target listening on {}{}?",
                self.layout
                    .addrs
                    .iter()
                    .map(|a| a.to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
                if self.layout.tokens.is_some() {
                    ", and does it take these tokens (a refused token is closed with 4001/4002)"
                } else {
                    ""
                }
            );
        }
        let (first, last) = (
            self.ctl.connect_first_ns.load(Ordering::Relaxed),
            self.ctl.connect_last_ns.load(Ordering::Relaxed),
        );
        let secs = if first < last {
            (last - first) as f64 / 1e9
        } else {
            (last_done - t0) as f64 / 1e9
        };
        let per_socket = |us: u64| {
            if total > 0 {
                us as f64 / total as f64
            } else {
                0.0
            }
        };
        // Connect latency comes with the first collected report.
        let reports = self.collect()?;
        self.connect_latency = stats::merge(reports.iter().map(|r| &r.connect_latency));
        let p = Percentiles::of(&self.connect_latency);
        Ok(ConnectRecord {
            attempted: total,
            ready,
            errors: total - ready,
            seconds: secs,
            per_s: if secs > 0.0 { ready as f64 / secs } else { 0.0 },
            p50_ms: p.p50_ms,
            p99_ms: p.p99_ms,
            server_cpu_us_per_connect: if !self.pids.is_empty() {
                per_socket(srv.cpu_us.saturating_sub(before.cpu_us))
            } else {
                0.0
            },
            generator_cpu_us_per_connect: per_socket(gen.saturating_sub(gen_before)),
        })
    }

    fn collect(&self) -> Result<Vec<WorkerReport>> {
        self.ctl.collect_gen.fetch_add(1, Ordering::Release);
        let mut v = Vec::with_capacity(self.layout.threads as usize);
        for _ in 0..self.layout.threads {
            v.push(
                self.rx
                    .recv_timeout(Duration::from_secs(10))
                    .context("a worker did not report")?,
            );
        }
        Ok(v)
    }

    fn step(
        &mut self,
        rate: f64,
        drain_s: f64,
        p99_bound: f64,
        repeat: bool,
    ) -> Result<StepRecord> {
        let l = self.layout.clone();
        let members: u64 = self
            .ctl
            .room_members
            .iter()
            .map(|m| m.load(Ordering::Relaxed) as u64)
            .sum();
        let per_publish = if l.rooms > 0 {
            members as f64 / l.rooms as f64
        } else {
            0.0
        };
        let exp0 = self.ctl.expected.load(Ordering::Relaxed);
        let rcv0 = self.ctl.received.load(Ordering::Relaxed);
        let start = now_ns() + 100_000_000;
        let ms = start + (self.opts.warmup_s * 1e9) as u64;
        let me = ms + (self.opts.duration_s * 1e9) as u64;
        self.ctl.start_step(StepPlan {
            rate,
            start_ns: start,
            measure_start_ns: ms,
            measure_end_ns: me,
        });
        let label = format!("{:.0} del/s offered", rate * per_publish);
        let mut rss_max = 0u64;
        while now_ns() + 250_000_000 < ms {
            std::thread::sleep(Duration::from_millis(250));
            rss_max = rss_max.max(self.sample().rss_bytes);
            self.progress(&format!(
                "{label}: warm-up, received {}",
                self.ctl.received.load(Ordering::Relaxed) - rcv0
            ));
        }
        // Read before the window opens: the query takes about a millisecond.
        let cmds0 = self.opts.redis_addr.and_then(broker::commandstats);
        sleep_until(ms);
        let (srv0, gen0, host0, redis0) = (
            self.sample(),
            procstat::self_cpu_us(),
            procstat::host_ticks(),
            self.redis_cpu(),
        );
        let rcv_w0 = self.ctl.received.load(Ordering::Relaxed);
        let pauser = self
            .opts
            .pauses
            .filter(|_| !self.pids.is_empty())
            .map(|p| crate::pause::spawn(self.pids.clone(), p, ms, me));
        // Steal time every 10 ms (a clock tick), to charge to the late
        // episodes it falls in; the rest once a second.
        let mut steal = StealSamples(vec![(ms, host0.steal)]);
        let mut tick = ms;
        while tick < me {
            let second = (tick + 1_000_000_000).min(me);
            while tick < second {
                tick = (tick + STEAL_SAMPLE_NS).min(second);
                sleep_until(tick);
                steal.0.push((now_ns(), procstat::host_ticks().steal));
            }
            let s = self.sample();
            rss_max = rss_max.max(s.rss_bytes);
            let secs = (tick - ms) as f64 / 1e9;
            let got = self.ctl.received.load(Ordering::Relaxed) - rcv_w0;
            self.progress(&format!(
                "{label}: {secs:.0}/{:.0}s {:.0} del/s, server {:.1} MiB, expected-received {}",
                self.opts.duration_s,
                got as f64 / secs.max(1e-3),
                s.rss_bytes as f64 / 1048576.0,
                (self.ctl.expected.load(Ordering::Relaxed) - exp0) as i64
                    - (self.ctl.received.load(Ordering::Relaxed) - rcv0) as i64
            ));
        }
        let (srv1, gen1, host1, redis1) = (
            self.sample(),
            procstat::self_cpu_us(),
            procstat::host_ticks(),
            self.redis_cpu(),
        );
        let cmds1 = self.opts.redis_addr.and_then(broker::commandstats);
        let (injected_pauses, injected_pause_ns) = match pauser {
            Some(h) => h
                .join()
                .map_err(|_| anyhow::anyhow!("the pause thread panicked"))?,
            None => (0, 0),
        };
        // Drain: publishing has stopped; wait for what is still in flight.
        let drain_end = now_ns() + (drain_s * 1e9) as u64;
        let mut timed_out = false;
        loop {
            let exp = self.ctl.expected.load(Ordering::Relaxed) - exp0;
            let got = self.ctl.received.load(Ordering::Relaxed) - rcv0;
            if got >= exp {
                break;
            }
            if now_ns() >= drain_end {
                timed_out = true;
                break;
            }
            rss_max = rss_max.max(self.sample().rss_bytes);
            self.progress(&format!("{label}: draining, {} outstanding", exp - got));
            std::thread::sleep(Duration::from_millis(20));
        }
        // Let the workers flush their last counters, then collect.
        std::thread::sleep(Duration::from_millis(30));
        self.end_progress();
        let reports = self.collect()?;
        let mut c = StepCounts::default();
        let mut seq_anomalies = 0;
        for r in &reports {
            c.absorb(&r.counts);
            seq_anomalies += r.seq_anomalies;
        }
        let expected = self.ctl.expected.load(Ordering::Relaxed) - exp0;
        let window = (me - ms) as f64 / 1e9;
        let p = Percentiles::of(&c.latency);
        let srv_cpu = srv1.cpu_us.saturating_sub(srv0.cpu_us) as f64;
        let gen_cpu = gen1.saturating_sub(gen0) as f64;
        let redis_cpu = redis1.0.saturating_sub(redis0.0) as f64;
        let redis_sched_us = redis1.1.saturating_sub(redis0.1) as f64 / 1e3;
        let ncpu = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1) as f64;
        let clk = procstat::clk_tck() as f64;
        let steal_pct =
            (host1.steal.saturating_sub(host0.steal)) as f64 / clk / (window * ncpu) * 100.0;
        // CPU used by anything but the server, its broker and the generator
        // (other work on the host).
        let busy_us = host1.busy.saturating_sub(host0.busy) as f64 / clk * 1e6;
        let other_share = ((busy_us - srv_cpu - gen_cpu - redis_cpu) / 1e6 / window).max(0.0);
        let pw = c.published_in_window as f64;
        let dw = c.delivered_in_window as f64;
        let lost = expected.saturating_sub(c.delivered);
        let episodes = c.stalls.merged();
        let (late_deliveries, late_steal_ms, late_worst) =
            stalls::summarize(&episodes, ms, &steal, 1000.0 / clk);
        let mut st = StepRecord {
            offered_publishes_per_s: rate,
            offered_deliveries_per_s: rate * per_publish,
            publishes_per_s: c.published_in_window as f64 / window,
            deliveries_per_s: dw / window,
            p50_ms: p.p50_ms,
            p90_ms: p.p90_ms,
            p99_ms: p.p99_ms,
            p999_ms: p.p999_ms,
            max_ms: p.max_ms,
            latency_samples: p.count,
            published: c.published,
            delivered: c.delivered,
            expected,
            lost,
            duplicated: c.duplicated,
            reordered: c.reordered,
            seq_anomalies,
            unparsed: c.unparsed,
            server_errors: c.server_errors,
            publish_skipped: c.publish_skipped,
            disconnects: c.disconnects,
            server_cpu_us_per_delivery: if dw > 0.0 && !self.pids.is_empty() {
                srv_cpu / dw
            } else {
                0.0
            },
            server_cpu_share: srv_cpu / 1e6 / window,
            redis_cpu_us_per_publish: if pw > 0.0 && self.opts.redis_pid.is_some() {
                redis_cpu / pw
            } else {
                0.0
            },
            redis_sched_us_per_publish: if pw > 0.0 && self.opts.redis_pid.is_some() {
                redis_sched_us / pw
            } else {
                0.0
            },
            redis_cpu_share: redis_cpu / 1e6 / window,
            redis_commands: match (&cmds0, &cmds1) {
                (Some(a), Some(b)) => broker::shares(a, b, c.published_in_window),
                _ => Vec::new(),
            },
            server_rss_bytes: srv1.rss_bytes,
            server_rss_max_bytes: rss_max.max(srv1.rss_bytes),
            generator_cpu_share: gen_cpu / 1e6 / window / l.threads as f64,
            generator_cpu_us_per_delivery: if dw > 0.0 { gen_cpu / dw } else { 0.0 },
            steal_pct,
            host_other_cpu_share: other_share,
            host_irq_cpu_share: host1.irq.saturating_sub(host0.irq) as f64 / clk / window,
            deliveries_per_read: if c.reads > 0 {
                c.delivered as f64 / c.reads as f64
            } else {
                0.0
            },
            late_deliveries,
            late_episodes: episodes.len() as u64,
            late_episode_steal_ms: late_steal_ms,
            late_worst_episodes: late_worst,
            generator_send_lag_max_ms: c.send_lag_max_ns as f64 / 1e6,
            injected_pauses,
            injected_pause_ms: injected_pause_ns as f64 / 1e6,
            drain_timed_out: timed_out,
            held: false,
            repeat,
        };
        st.held = st.p99_ms <= p99_bound
            && st.lost == 0
            && st.publish_skipped == 0
            && st.duplicated == 0
            && st.disconnects == 0
            && st.latency_samples > 0;
        if self.opts.progress {
            eprintln!(
                "step {:.0} del/s offered: {:.0} del/s, p50 {:.2} ms p99 {:.2} ms, lost {}, server {:.2} us/del{}, gen cpu {:.0}%{}",
                st.offered_deliveries_per_s,
                st.deliveries_per_s,
                st.p50_ms,
                st.p99_ms,
                st.lost,
                st.server_cpu_us_per_delivery,
                if self.opts.redis_pid.is_some() {
                    format!(", redis {:.1} us/publish", st.redis_cpu_us_per_publish)
                } else {
                    String::new()
                },
                st.generator_cpu_share * 100.0,
                if p99_bound.is_finite() { if st.held { " held" } else { " FAILED" } } else { "" }
            );
        }
        Ok(st)
    }
}
