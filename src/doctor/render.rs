//! Turning a [`Report`] into the text table or the `--json` object.

use std::fmt::Write as _;

use serde::Serialize;

use super::report::{thousands, Report, Status};

/// The `--json` object: the report plus its verdict, so a script needs only
/// `.ok` or `.exit_code`.
#[derive(Serialize)]
struct JsonReport<'a> {
    ok: bool,
    exit_code: i32,
    summary: String,
    #[serde(flatten)]
    report: &'a Report,
}

/// One JSON object (pretty-printed), ending in a newline.
pub(crate) fn json(report: &Report) -> String {
    let code = report.exit_code();
    let out = JsonReport {
        ok: code == 0,
        exit_code: code,
        summary: report.summary(),
        report,
    };
    let mut s = serde_json::to_string_pretty(&out).unwrap_or_else(|e| {
        // Only plain strings and numbers inside: this cannot fail, but a
        // broken doctor must still print valid JSON.
        format!(
            "{{\"ok\":false,\"exit_code\":1,\"error\":{:?}}}",
            e.to_string()
        )
    });
    s.push('\n');
    s
}

fn status_word(s: Status) -> &'static str {
    match s {
        Status::Ok => "ok",
        Status::Low => "LOW",
        Status::Warn => "warn",
    }
}

/// The human table: checks, the connection estimate, notes, the verdict.
pub(crate) fn text(report: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "ringcast doctor: {}\n", report.summary());

    let header = ["SETTING", "CURRENT", "RECOMMENDED", "STATUS"];
    let rows: Vec<[&str; 4]> = report
        .checks
        .iter()
        .map(|c| {
            [
                c.setting.as_str(),
                c.current.as_str(),
                c.recommended.as_str(),
                status_word(c.status),
            ]
        })
        .collect();
    let mut width = header.map(str::len);
    for r in &rows {
        for (w, cell) in width.iter_mut().zip(r) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |out: &mut String, cells: [&str; 4], note: &str| {
        for (cell, w) in cells.iter().zip(width) {
            let _ = write!(out, "{cell:<w$}  ");
        }
        let _ = writeln!(out, "{note}");
    };
    line(&mut out, header, "NOTE");
    for (r, c) in rows.iter().zip(&report.checks) {
        line(&mut out, *r, &c.note);
    }

    let cap = &report.capacity;
    let _ = writeln!(
        out,
        "\nconnections this host allows as it is: ~{} (limited by {})",
        thousands(cap.connections),
        cap.limited_by
    );
    let name_w = cap.limits.iter().map(|l| l.name.len()).max().unwrap_or(0);
    let num_w = cap
        .limits
        .iter()
        .map(|l| thousands(l.connections).len())
        .max()
        .unwrap_or(0);
    for l in &cap.limits {
        let n = thousands(l.connections);
        let _ = writeln!(out, "  {:<name_w$}  {n:>num_w$}  {}", l.name, l.detail);
    }

    if !report.notes.is_empty() {
        let _ = writeln!(out, "\nnotes:");
        for n in &report.notes {
            let _ = writeln!(out, "  - {n}");
        }
    }

    let count = |s| report.checks.iter().filter(|c| c.status == s).count();
    let (low, warn) = (count(Status::Low), count(Status::Warn));
    let verdict = if low == 0 {
        "nothing limits the server".to_owned()
    } else {
        let names: Vec<&str> = report
            .checks
            .iter()
            .filter(|c| c.status == Status::Low)
            .map(|c| c.setting.as_str())
            .collect();
        format!("limited by {}", names.join(", "))
    };
    let _ = writeln!(
        out,
        "\nresult: {low} low, {warn} warn: {verdict} (exit {})",
        report.exit_code()
    );
    out
}
