//! The matrix report: run records in, `latest.json`, a markdown table and SVG
//! charts out.
//!
//! Rows are grouped by scenario; ratios compare each row with ringcast (the
//! best ringcast row of the scenario, WebSocket preferred) and with the
//! ceiling, so a reader sees at once how far each system is from the kernel's
//! limit on this machine.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use plotters::prelude::*;

use crate::record::RunRecord;

/// Reads every record under `inputs` (files, or directories of `*.json`).
pub fn load(inputs: &[PathBuf]) -> Result<Vec<RunRecord>> {
    let mut files = Vec::new();
    for p in inputs {
        if p.is_dir() {
            for e in std::fs::read_dir(p)?.flatten() {
                if e.path().extension().is_some_and(|x| x == "json") {
                    files.push(e.path());
                }
            }
        } else {
            files.push(p.clone());
        }
    }
    files.sort();
    let mut out = Vec::new();
    for f in files {
        let text =
            std::fs::read_to_string(&f).with_context(|| format!("reading {}", f.display()))?;
        let rec: RunRecord =
            serde_json::from_str(&text).with_context(|| format!("parsing {}", f.display()))?;
        out.push(rec);
    }
    Ok(out)
}

/// One record per scenario × target × shards: where the matrix repeated a
/// run, the median run by [`RunRecord::median_key`] (the lower middle of an
/// even count), with every run's value in `repeats`. Order of first
/// appearance is kept.
pub fn medians(recs: Vec<RunRecord>) -> Vec<RunRecord> {
    let mut groups: Vec<Vec<RunRecord>> = Vec::new();
    for r in recs {
        match groups.iter_mut().find(|g| {
            g[0].scenario == r.scenario && g[0].target == r.target && g[0].shards == r.shards
        }) {
            Some(g) => g.push(r),
            None => groups.push(vec![r]),
        }
    }
    groups
        .into_iter()
        .map(|mut g| {
            if g.len() == 1 {
                return g.pop().unwrap_or_default();
            }
            g.sort_by(|a, b| a.median_key().total_cmp(&b.median_key()));
            let values = g.iter().map(RunRecord::median_key).collect();
            let mut p99s: Vec<f64> = g.iter().map(|r| r.headline.p99_ms).collect();
            p99s.sort_by(f64::total_cmp);
            // Records from before episodes were counted have no send lag.
            let counted = || {
                g.iter()
                    .map(|r| &r.headline)
                    .filter(|h| h.generator_send_lag_max_ms > 0.0)
            };
            let (runs, late) = (counted().count(), counted().filter(|h| h.late_episodes > 0).count());
            let (episodes, steal) = counted().fold((0, 0.0), |(e, s), h| {
                (e + h.late_episodes, s + h.late_episode_steal_ms)
            });
            let n = g.len();
            let mut m = g.swap_remove((n - 1) / 2);
            m.notes.push(format!("median of {n} runs (see repeats)"));
            if m.mode == "fixed" {
                let list: Vec<String> = p99s.iter().map(|v| format!("{v:.2}")).collect();
                m.notes.push(format!(
                    "p99 of the {n} runs: {} ms (median {:.2})",
                    list.join(" / "),
                    p99s[(n - 1) / 2]
                ));
                if runs > 0 {
                    m.notes.push(format!(
                        "of the {runs} runs that counted them, {late} had deliveries over 10 ms late, in {episodes} episode(s) in all; the host's steal time during those episodes: {steal:.0} ms"
                    ));
                }
            }
            m.repeats = values;
            m.repeats_p99_ms = p99s;
            m
        })
        .collect()
}

/// The row label: target, plus shard count for ringcast.
pub fn label(r: &RunRecord) -> String {
    match r.shards {
        Some(n) => format!("{} x{n}", r.target),
        None => r.target.clone(),
    }
}

/// Writes `latest.json`, `benchmarks.md` and `img/*.svg` into `out_dir`.
pub fn write(inputs: &[PathBuf], out_dir: &Path) -> Result<()> {
    let recs = medians(load(inputs)?);
    if recs.is_empty() {
        anyhow::bail!("no run records found");
    }
    std::fs::create_dir_all(out_dir.join("img"))?;
    std::fs::write(
        out_dir.join("latest.json"),
        serde_json::to_string_pretty(&recs)? + "\n",
    )?;
    let md = markdown(&recs);
    std::fs::write(out_dir.join("benchmarks.md"), md)?;
    for scenario in scenarios(&recs) {
        let rows: Vec<&RunRecord> = recs
            .iter()
            .filter(|r| r.scenario == scenario && r.mode != "idle")
            .collect();
        if rows.is_empty() {
            continue;
        }
        throughput_chart(
            &out_dir.join(format!("img/{scenario}-throughput.svg")),
            &scenario,
            &rows,
        )?;
        latency_chart(
            &out_dir.join(format!("img/{scenario}-latency.svg")),
            &scenario,
            &rows,
        )?;
    }
    println!(
        "wrote {}/latest.json, benchmarks.md and img/*.svg ({} records)",
        out_dir.display(),
        recs.len()
    );
    Ok(())
}

fn scenarios(recs: &[RunRecord]) -> Vec<String> {
    let mut v: Vec<String> = Vec::new();
    for r in recs {
        if !v.contains(&r.scenario) {
            v.push(r.scenario.clone());
        }
    }
    v
}

fn reference<'a>(rows: &[&'a RunRecord], prefix: &str) -> Option<&'a RunRecord> {
    rows.iter()
        .filter(|r| r.target.starts_with(prefix))
        .max_by(|a, b| {
            a.headline
                .deliveries_per_s
                .total_cmp(&b.headline.deliveries_per_s)
        })
        .copied()
}

fn ratio(a: f64, b: f64) -> String {
    if b > 0.0 && a > 0.0 {
        format!("{:.2}", a / b)
    } else {
        "–".into()
    }
}

/// The record of `target` (ringcast with its shard count) in `scenario`.
fn find<'a>(
    recs: &'a [RunRecord],
    scenario: &str,
    target: &str,
    shards: Option<u32>,
) -> Option<&'a RunRecord> {
    recs.iter()
        .find(|r| r.scenario == scenario && r.target == target && r.shards == shards)
}

/// ringcast's targets, each checked against the peers measured in the same
/// run: one row per comparison the run has the records for.
pub fn targets(recs: &[RunRecord]) -> String {
    let rc = |scenario| find(recs, scenario, "ringcast-ws", Some(1));
    let peer = |scenario, t| find(recs, scenario, t, None);
    let mut rows: Vec<Target> = Vec::new();
    let dps = |r: &RunRecord| r.headline.deliveries_per_s;
    let cpu = |r: &RunRecord| r.headline.server_cpu_us_per_delivery;
    if let Some(r) = rc("fanout") {
        let ceiling = peer("fanout", "ceiling");
        if let Some(c) = ceiling {
            let x = dps(r) / dps(c);
            rows.push(Target::new(
                "fanout find-max ≥ 95% of the ceiling".into(),
                format!("{:.0} vs {:.0} del/s = {:.0}%", dps(r), dps(c), x * 100.0),
                x >= 0.95,
            ));
        }
        for t in ["uws", "nats", "redis", "ws", "socketio"] {
            if let Some(p) = peer("fanout", t) {
                let want = if t == "uws" { 1.0 } else { 2.0 };
                let x = dps(r) / dps(p);
                rows.push(
                    Target::new(
                        format!("fanout find-max ≥ {want}× {t}"),
                        format!("{:.0} vs {:.0} del/s = {x:.2}×", dps(r), dps(p)),
                        x >= want,
                    )
                    .floor(ceiling.map(|c| (dps(c) / dps(p), dps(c) / dps(p) >= want))),
                );
            }
        }
    }
    if let Some(r) = rc("fanout-50k") {
        let ceiling = peer("fanout-50k", "ceiling");
        if let Some(c) = ceiling {
            let x = cpu(r) / cpu(c);
            rows.push(Target::new(
                "CPU per delivery at 50k/s ≤ 1.1× the ceiling".into(),
                format!("{:.2} vs {:.2} µs = {x:.2}×", cpu(r), cpu(c)),
                x <= 1.1,
            ));
        }
        if let Some(u) = peer("fanout-50k", "uws") {
            let x = cpu(r) / cpu(u);
            rows.push(
                Target::new(
                    "CPU per delivery at 50k/s ≤ 0.8× uws".into(),
                    format!("{:.2} vs {:.2} µs = {x:.2}×", cpu(r), cpu(u)),
                    x <= 0.8,
                )
                .floor(ceiling.map(|c| (cpu(c) / cpu(u), cpu(c) / cpu(u) <= 0.8))),
            );
            rows.push(Target::new(
                "p99 at 50k/s below uws".into(),
                format!("{:.1} vs {:.1} ms", r.p99_ms(), u.p99_ms()),
                r.p99_ms() < u.p99_ms(),
            ));
        }
    }
    if let (Some(r), Some(u)) = (rc("overload"), peer("overload", "uws")) {
        let x = dps(r) / dps(u);
        rows.push(Target::new(
            "overload ≥ 1.3× uws, nothing lost".into(),
            format!(
                "{:.0} vs {:.0} del/s = {x:.2}×, lost {}",
                dps(r),
                dps(u),
                r.headline.lost
            ),
            x >= 1.3 && r.headline.lost == 0,
        ));
    }
    if let Some(r) = rc("seed-3000") {
        let h = &r.headline;
        let mut ok = h.lost == 0 && r.p99_ms() <= 5.0;
        let mut text = format!(
            "p99 {:.1} ms, {:.2} µs/del, lost {}",
            r.p99_ms(),
            h.server_cpu_us_per_delivery,
            h.lost
        );
        let mut floor = None;
        if let Some(u) = peer("seed-3000", "uws") {
            let uh = &u.headline;
            let meets = |t: &RunRecord| {
                t.headline.lost == 0
                    && t.p99_ms() <= 5.0
                    && t.p99_ms() < u.p99_ms()
                    && t.headline.server_cpu_us_per_delivery <= uh.server_cpu_us_per_delivery
            };
            ok = meets(r);
            text += &format!(
                " (uws p99 {:.1} ms, {:.2} µs/del",
                u.p99_ms(),
                uh.server_cpu_us_per_delivery
            );
            if let Some(c) = peer("seed-3000", "ceiling") {
                text += &format!(
                    "; ceiling p99 {:.1} ms, {:.2} µs/del",
                    c.p99_ms(),
                    c.headline.server_cpu_us_per_delivery
                );
                // The ceiling's p99 over uws's, and whether it meets all of it.
                floor = Some((c.p99_ms() / u.p99_ms(), meets(c)));
            }
            text += ")";
        }
        rows.push(
            Target::new(
                "seed-3000: nothing lost, p99 ≤ 5 ms, p99 and CPU per delivery ≤ uws".into(),
                text,
                ok,
            )
            .floor(floor),
        );
    }
    // The same load with the same stalls for everyone: how each recovers.
    if let (Some(r), Some(u), Some(c)) = (
        rc("seed-3000-paused"),
        peer("seed-3000-paused", "uws"),
        peer("seed-3000-paused", "ceiling"),
    ) {
        rows.push(Target::new(
            "seed-3000-paused: nothing lost, p99 < uws, ≤ 1.1× ceiling".into(),
            format!(
                "p99 {:.1} ms, lost {} (uws {:.1}, ceiling {:.1} ms; {} pauses of {:.0} ms)",
                r.p99_ms(),
                r.headline.lost,
                u.p99_ms(),
                c.p99_ms(),
                r.headline.injected_pauses,
                r.headline.injected_pause_ms / r.headline.injected_pauses.max(1) as f64
            ),
            r.headline.lost == 0 && r.p99_ms() < u.p99_ms() && r.p99_ms() <= 1.1 * c.p99_ms(),
        ));
    }
    if let Some(r) = rc("idle") {
        rows.push(Target::new(
            "idle ≤ 512 B RSS per connection".into(),
            format!(
                "{:.0} B over {} connections",
                r.rss_per_conn_bytes, r.connections
            ),
            r.rss_per_conn_bytes <= 512.0,
        ));
    }
    if rows.is_empty() {
        return String::new();
    }
    let mut s = String::from(
        "## Targets\n\nringcast over WebSocket on one shard, against the rows of this run. \
         *The ceiling, same comparison* puts the bare io_uring ceiling in ringcast's place: \
         where even the ceiling misses a ratio, the target is beyond what this host's kernel \
         allows for one frame per segment, and the verdict says so.\n\n\
         | target | measured | the ceiling, same comparison | met |\n|---|---|---|:-:|\n",
    );
    for t in rows {
        let (floor, verdict) = match (t.ok, t.floor) {
            (true, f) => (f.map(|(x, _)| format!("{x:.2}×")), "yes"),
            (false, Some((x, false))) => (Some(format!("{x:.2}×")), "no: beyond the ceiling"),
            (false, f) => (f.map(|(x, _)| format!("{x:.2}×")), "**no**"),
        };
        let _ = writeln!(
            s,
            "| {} | {} | {} | {verdict} |",
            t.what,
            t.measured,
            floor.as_deref().unwrap_or("–")
        );
    }
    s.push('\n');
    s
}

/// One row of the targets table.
struct Target {
    what: String,
    measured: String,
    ok: bool,
    /// The ceiling's ratio on the same comparison, and whether it meets it.
    floor: Option<(f64, bool)>,
}

impl Target {
    fn new(what: String, measured: String, ok: bool) -> Self {
        Self {
            what,
            measured,
            ok,
            floor: None,
        }
    }

    fn floor(mut self, floor: Option<(f64, bool)>) -> Self {
        self.floor = floor;
        self
    }
}

/// The markdown report.
pub fn markdown(recs: &[RunRecord]) -> String {
    let mut s = String::new();
    let first = &recs[0];
    let _ = writeln!(s, "# Benchmark results\n");
    let _ = writeln!(
        s,
        "Run {} on {} cores, kernel {}. Generated by `bench/run-matrix.sh`; raw records in `latest.json`.\n",
        first.date, first.cores, first.kernel
    );
    let _ = writeln!(
        s,
        "Latency is publish→receive, measured from each message's scheduled send time (open loop). \
         *server µs/del* is the server's CPU time over the measured window divided by deliveries; \
         *gen CPU* is the load generator's own share of its cores (near 100% means the generator, not the server, was the limit). \
         *other CPU* is what other processes on the host used during the window (one core = 100%). \
         *ready/s* is how fast the generator's sockets connected, upgraded and joined their rooms (paced at `--connect-rate` unless the scenario says unpaced). \
         *vs ringcast* and *vs ceiling* divide deliveries/s by the best ringcast row and by the bare io_uring ceiling. \
         † marks a drain that ended by its time limit: those deliveries were still queued, not necessarily dropped.\n"
    );
    s += &targets(recs);
    for scenario in scenarios(recs) {
        let rows: Vec<&RunRecord> = recs.iter().filter(|r| r.scenario == scenario).collect();
        let r0 = rows[0];
        let _ = writeln!(s, "## {scenario}\n");
        let _ = writeln!(
            s,
            "{} mode; {} connections, {} rooms × {} members, {} publishers, {} B data.\n",
            r0.mode, r0.connections, r0.rooms, r0.members_per_room, r0.publishers, r0.size_bytes
        );
        if r0.mode == "idle" {
            let _ = writeln!(
                s,
                "| target | connections | connect/s | connect errors | server RSS | RSS/conn |"
            );
            let _ = writeln!(s, "|---|---:|---:|---:|---:|---:|");
            for r in &rows {
                let _ = writeln!(
                    s,
                    "| {} | {} | {:.0} | {} | {:.1} MiB | {:.0} B |",
                    label(r),
                    r.connections,
                    r.connect.per_s,
                    r.connect.errors,
                    r.server_rss_connected_bytes as f64 / 1048576.0,
                    r.rss_per_conn_bytes
                );
            }
            s.push('\n');
            continue;
        }
        let rc = reference(&rows, "ringcast-ws").or_else(|| reference(&rows, "ringcast"));
        let ceil = reference(&rows, "ceiling");
        let _ = writeln!(
            s,
            "| target | offered del/s | del/s | p50 ms | p99 ms | p99.9 ms | lost | dup | reord | server µs/del | server RSS | RSS/conn | ready/s | gen CPU | other CPU | vs ringcast | vs ceiling |"
        );
        let _ = writeln!(
            s,
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
        );
        for r in &rows {
            let h = &r.headline;
            let _ = writeln!(
                s,
                "| {} | {:.0} | {:.0} | {:.2} | {:.2} | {:.2} | {}{} | {} | {} | {:.2} | {:.1} MiB | {:.0} B | {:.0} | {:.0}% | {:.0}% | {} | {} |",
                label(r),
                h.offered_deliveries_per_s,
                h.deliveries_per_s,
                h.p50_ms,
                h.p99_ms,
                h.p999_ms,
                h.lost,
                if h.drain_timed_out { " †" } else { "" },
                h.duplicated,
                h.reordered,
                h.server_cpu_us_per_delivery,
                h.server_rss_max_bytes as f64 / 1048576.0,
                r.rss_per_conn_bytes,
                r.connect.per_s,
                h.generator_cpu_share * 100.0,
                h.host_other_cpu_share * 100.0,
                rc.map_or("–".into(), |x| ratio(h.deliveries_per_s, x.headline.deliveries_per_s)),
                ceil.map_or("–".into(), |x| ratio(h.deliveries_per_s, x.headline.deliveries_per_s)),
            );
        }
        let notes: Vec<String> = rows
            .iter()
            .flat_map(|r| {
                r.notes
                    .iter()
                    .filter(|n| !n.starts_with("server pinned"))
                    .map(move |n| format!("{}: {n}", label(r)))
            })
            .collect();
        if !notes.is_empty() {
            s.push('\n');
            for n in notes {
                let _ = writeln!(s, "- {n}");
            }
        }
        let _ = writeln!(s, "\n![{scenario} deliveries/s](img/{scenario}-throughput.svg) ![{scenario} latency](img/{scenario}-latency.svg)\n");
    }
    s
}

const COLORS: [RGBColor; 3] = [
    RGBColor(66, 133, 244),
    RGBColor(251, 188, 5),
    RGBColor(234, 67, 53),
];

fn throughput_chart(path: &Path, scenario: &str, rows: &[&RunRecord]) -> Result<()> {
    let root = SVGBackend::new(path, (chart_width(rows.len()), 380)).into_drawing_area();
    root.fill(&WHITE)?;
    let max = rows
        .iter()
        .map(|r| r.headline.deliveries_per_s)
        .fold(1.0, f64::max)
        * 1.15;
    let labels: Vec<String> = rows.iter().map(|r| label(r)).collect();
    let mut chart = ChartBuilder::on(&root)
        .caption(format!("{scenario}: deliveries/s"), ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..rows.len() as f64, 0f64..max)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(rows.len() * 2 + 1)
        .x_label_formatter(&|x| {
            let i = x.floor() as usize;
            if (x - i as f64 - 0.5).abs() < 0.01 {
                labels.get(i).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        })
        .y_label_formatter(&|v| format!("{v:.0}"))
        .y_desc("deliveries/s")
        .draw()?;
    chart.draw_series(rows.iter().enumerate().map(|(i, r)| {
        Rectangle::new(
            [
                (i as f64 + 0.15, 0.0),
                (i as f64 + 0.85, r.headline.deliveries_per_s),
            ],
            COLORS[0].filled(),
        )
    }))?;
    root.present()?;
    Ok(())
}

/// Wide enough that every target's label fits under its bar.
fn chart_width(rows: usize) -> u32 {
    (120 * rows as u32 + 120).max(760)
}

fn latency_chart(path: &Path, scenario: &str, rows: &[&RunRecord]) -> Result<()> {
    let root = SVGBackend::new(path, (chart_width(rows.len()), 380)).into_drawing_area();
    root.fill(&WHITE)?;
    let max = rows.iter().map(|r| r.headline.p999_ms).fold(1.0, f64::max) * 10.0;
    let labels: Vec<String> = rows.iter().map(|r| label(r)).collect();
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("{scenario}: latency p50 / p99 / p99.9 (ms, log)"),
            ("sans-serif", 20),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..rows.len() as f64, (0.01f64..max).log_scale())?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(rows.len() * 2 + 1)
        .x_label_formatter(&|x| {
            let i = x.floor() as usize;
            if (x - i as f64 - 0.5).abs() < 0.01 {
                labels.get(i).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        })
        .y_desc("ms")
        .draw()?;
    for (k, name) in ["p50", "p99", "p99.9"].iter().enumerate() {
        chart
            .draw_series(rows.iter().enumerate().map(|(i, r)| {
                let v = [r.headline.p50_ms, r.headline.p99_ms, r.headline.p999_ms][k].max(0.011);
                let x0 = i as f64 + 0.1 + k as f64 * 0.27;
                Rectangle::new([(x0, 0.01), (x0 + 0.25, v)], COLORS[k].filled())
            }))?
            .label(*name)
            .legend(move |(x, y)| {
                Rectangle::new([(x, y - 5), (x + 10, y + 5)], COLORS[k].filled())
            });
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .border_style(BLACK)
        .background_style(WHITE.mix(0.8))
        .draw()?;
    root.present()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::StepRecord;

    fn rec(target: &str, dps: f64, shards: Option<u32>) -> RunRecord {
        RunRecord {
            scenario: "fanout".into(),
            target: target.into(),
            mode: "find-max".into(),
            shards,
            headline: StepRecord {
                deliveries_per_s: dps,
                p50_ms: 1.0,
                p99_ms: 5.0,
                p999_ms: 9.0,
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn table_has_ratios_to_ringcast_and_ceiling() {
        let recs = vec![
            rec("ceiling", 80_000.0, None),
            rec("ringcast-ws", 40_000.0, Some(1)),
            rec("uws", 20_000.0, None),
        ];
        let md = markdown(&recs);
        let uws = md.lines().find(|l| l.starts_with("| uws")).unwrap();
        assert!(uws.ends_with("| 0% | 0.50 | 0.25 |"), "{uws}");
        assert!(md.contains("| ringcast-ws x1 |"));
    }

    #[test]
    fn repeats_reduce_to_the_median_run() {
        let mut a = rec("uws", 30_000.0, None);
        a.date = "a".into();
        let mut b = rec("uws", 10_000.0, None);
        b.date = "b".into();
        let mut c = rec("uws", 20_000.0, None);
        c.date = "c".into();
        let other = rec("ringcast-ws", 50_000.0, Some(1));
        let out = medians(vec![a, other, b, c]);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].date, "c", "the middle run, not the best");
        assert_eq!(out[0].repeats, vec![10_000.0, 20_000.0, 30_000.0]);
        assert!(out[1].repeats.is_empty());
        // A fixed rate ranks by CPU per delivery, not deliveries/s.
        let mut fixed: Vec<RunRecord> = [7.0, 9.0, 8.0, 6.0]
            .iter()
            .map(|&us| {
                let mut r = rec("ceiling", 50_000.0, None);
                r.mode = "fixed".into();
                r.headline.server_cpu_us_per_delivery = us;
                r
            })
            .collect();
        fixed = medians(fixed);
        assert_eq!(
            fixed[0].headline.server_cpu_us_per_delivery, 7.0,
            "lower middle of four"
        );
        // Its p99 for the goals is the median of the runs' p99s, which
        // need not be the median run's.
        let mut fixed: Vec<RunRecord> = [(7.0, 0.5), (9.0, 90.0), (8.0, 1.0)]
            .iter()
            .map(|&(us, p99)| {
                let mut r = rec("ringcast-ws", 50_000.0, Some(1));
                r.mode = "fixed".into();
                r.headline.server_cpu_us_per_delivery = us;
                r.headline.p99_ms = p99;
                r.headline.generator_send_lag_max_ms = 0.1;
                r.headline.late_episodes = u64::from(p99 > 10.0);
                r.headline.late_episode_steal_ms = 40.0 * f64::from(p99 > 10.0);
                r
            })
            .collect();
        fixed = medians(fixed);
        assert_eq!(fixed[0].headline.p99_ms, 1.0, "the median run by CPU");
        assert_eq!(fixed[0].repeats_p99_ms, vec![0.5, 1.0, 90.0]);
        assert_eq!(fixed[0].p99_ms(), 1.0);
        assert!(
            fixed[0].notes.iter().any(|n| n
                .contains("1 had deliveries over 10 ms late, in 1 episode(s)")
                && n.contains("40 ms")),
            "{:?}",
            fixed[0].notes
        );
    }

    #[test]
    fn targets_compare_with_peers_of_the_same_run() {
        let mut recs = vec![
            rec("ceiling", 100_000.0, None),
            rec("ringcast-ws", 96_000.0, Some(1)),
            rec("uws", 40_000.0, None),
            rec("redis", 50_000.0, None),
        ];
        let md = targets(&recs);
        assert!(
            md.contains(
                "| fanout find-max ≥ 95% of the ceiling | 96000 vs 100000 del/s = 96% | – | yes |"
            ),
            "{md}"
        );
        assert!(
            md.contains(
                "| fanout find-max ≥ 2× redis | 96000 vs 50000 del/s = 1.92× | 2.00× | **no** |"
            ),
            "{md}"
        );
        // Where the ceiling itself misses the ratio, the verdict says so.
        recs[3].headline.deliveries_per_s = 60_000.0;
        assert!(
            targets(&recs)
                .contains("| 96000 vs 60000 del/s = 1.60× | 1.67× | no: beyond the ceiling |"),
            "{}",
            targets(&recs)
        );
        recs[3].headline.deliveries_per_s = 50_000.0;
        assert!(!md.contains("nats"), "no row without a record");
        recs[1].headline.deliveries_per_s = 90_000.0;
        assert!(targets(&recs).contains("= 90% | – | **no** |"));
    }

    #[test]
    fn paused_runs_compare_recovery_with_uws_and_the_ceiling() {
        let paused = |target: &str, shards, p99_ms| {
            let mut r = rec(target, 90_000.0, shards);
            r.scenario = "seed-3000-paused".into();
            r.mode = "fixed".into();
            r.headline.p99_ms = p99_ms;
            r.headline.injected_pauses = 20;
            r.headline.injected_pause_ms = 301.0;
            r
        };
        let mut recs = vec![
            paused("ceiling", None, 14.0),
            paused("ringcast-ws", Some(1), 14.5),
            paused("uws", None, 19.0),
        ];
        let row = |recs: &[RunRecord]| {
            targets(recs)
                .lines()
                .find(|l| l.contains("seed-3000-paused"))
                .map(str::to_owned)
        };
        let r = row(&recs).expect("a row with all three records");
        assert!(
            r.contains("p99 14.5 ms, lost 0 (uws 19.0, ceiling 14.0 ms; 20 pauses of 15 ms)")
                && r.ends_with("| yes |"),
            "{r}"
        );
        // Past 1.1× the ceiling, or above uws, or anything lost: not met.
        for (p99, lost) in [(15.5, 0), (19.5, 0), (14.5, 1)] {
            recs[1].headline.p99_ms = p99;
            recs[1].headline.lost = lost;
            let r = row(&recs).unwrap();
            assert!(r.ends_with("| **no** |"), "{r}");
        }
        recs.remove(2);
        assert!(row(&recs).is_none(), "no row without uws");
    }

    #[test]
    fn seed_3000_says_when_the_ceiling_misses_it_too() {
        let seed = |target: &str, shards, p99_ms, us| {
            let mut r = rec(target, 90_000.0, shards);
            r.scenario = "seed-3000".into();
            r.mode = "fixed".into();
            r.headline.p99_ms = p99_ms;
            r.headline.server_cpu_us_per_delivery = us;
            r
        };
        let mut recs = vec![
            seed("ceiling", None, 1.0, 7.0),
            seed("ringcast-ws", Some(1), 2.6, 8.0),
            seed("uws", None, 2.3, 8.6),
        ];
        let row = |recs: &[RunRecord]| {
            targets(recs)
                .lines()
                .find(|l| l.starts_with("| seed-3000:"))
                .map(str::to_owned)
                .unwrap()
        };
        let r = row(&recs);
        assert!(
            r.contains("ceiling p99 1.0 ms, 7.00 µs/del") && r.ends_with("| 0.43× | **no** |"),
            "{r}"
        );
        // A core the load fills: the ceiling is over 5 ms too.
        recs[0].headline.p99_ms = 52.0;
        recs[1].headline.p99_ms = 64.0;
        recs[2].headline.p99_ms = 90.0;
        assert!(
            row(&recs).ends_with("| no: beyond the ceiling |"),
            "{}",
            row(&recs)
        );
        recs[1].headline.p99_ms = 2.0;
        assert!(row(&recs).ends_with("| yes |"), "{}", row(&recs));
    }

    #[test]
    fn charts_render_to_svg() {
        let dir = std::env::temp_dir().join(format!("rcb-report-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let recs = [rec("ceiling", 80_000.0, None), rec("uws", 20_000.0, None)];
        let rows: Vec<&RunRecord> = recs.iter().collect();
        let p = dir.join("t.svg");
        throughput_chart(&p, "fanout", &rows).unwrap();
        latency_chart(&dir.join("l.svg"), "fanout", &rows).unwrap();
        let svg = std::fs::read_to_string(&p).unwrap();
        assert!(svg.contains("<svg") && svg.contains("uws"));
        std::fs::remove_dir_all(&dir).ok();
    }
}
