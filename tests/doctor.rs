//! `ringcast doctor` on the real host: the JSON object has the documented
//! shape, agrees with the exit code, and reports what the kernel says.

use std::collections::BTreeMap;
use std::process::Command;

use serde_json::Value;

fn doctor(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ringcast"))
        .arg("doctor")
        .args(args)
        .output()
        .expect("run ringcast doctor");
    let code = out.status.code().expect("doctor exited by a signal");
    (
        code,
        String::from_utf8(out.stdout).expect("doctor prints UTF-8"),
    )
}

/// `key = value` lines of the shipped sysctl file, values whitespace-normalised.
fn shipped_sysctls() -> BTreeMap<String, String> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/sysctl/99-ringcast.conf");
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with(';'))
        .map(|l| {
            let (k, v) = l.split_once('=').unwrap();
            (
                k.trim().to_owned(),
                v.split_whitespace().collect::<Vec<_>>().join(" "),
            )
        })
        .collect()
}

/// Soft and hard limit of `name` (e.g. "Max open files") for this process;
/// the doctor child inherits them.
fn own_limit(name: &str) -> (Value, Value) {
    let text = std::fs::read_to_string("/proc/self/limits").unwrap();
    let line = text.lines().find(|l| l.starts_with(name)).unwrap();
    let cols: Vec<&str> = line[name.len()..].split_whitespace().collect();
    let v = |s: &str| s.parse::<u64>().map_or(Value::Null, Value::from);
    (v(cols[0]), v(cols[1]))
}

#[test]
fn json_report_matches_the_host_and_the_exit_code() {
    let (code, stdout) = doctor(&["--json"]);
    assert!(code == 0 || code == 1, "exit code {code}");
    let v: Value = serde_json::from_str(&stdout).expect("--json prints one JSON object");

    assert_eq!(v["exit_code"], code);
    assert_eq!(v["ok"], code == 0);
    let checks = v["checks"].as_array().expect("checks array");
    let any_low = checks.iter().any(|c| c["status"] == "low");
    assert_eq!(code == 1, any_low, "exit 1 exactly when some row is low");
    for c in checks {
        for field in ["setting", "current", "recommended"] {
            assert!(c[field].is_string(), "{field} in {c}");
        }
        assert!(
            matches!(c["status"].as_str(), Some("ok" | "low" | "warn")),
            "{c}"
        );
    }

    // Every shipped sysctl is checked against the shipped value, and the
    // current value is what /proc/sys says.
    for (key, value) in shipped_sysctls() {
        let row = checks
            .iter()
            .find(|c| c["setting"] == key.as_str())
            .unwrap_or_else(|| panic!("no row for {key}"));
        assert_eq!(row["recommended"], value.as_str(), "{key}");
        let proc = format!("/proc/sys/{}", key.replace('.', "/"));
        if let Ok(live) = std::fs::read_to_string(proc) {
            let live = live.split_whitespace().collect::<Vec<_>>().join(" ");
            assert_eq!(row["current"], live.as_str(), "{key}");
        }
    }

    let host = &v["host"];
    let (soft, hard) = own_limit("Max open files");
    assert_eq!(host["nofile"]["soft"], soft);
    assert_eq!(host["nofile"]["hard"], hard);
    let (mem_soft, mem_hard) = own_limit("Max locked memory");
    assert_eq!(host["memlock"]["soft"], mem_soft);
    assert_eq!(host["memlock"]["hard"], mem_hard);
    let cores = std::thread::available_parallelism().unwrap().get();
    assert_eq!(host["cores"], cores);
    let io = checks.iter().find(|c| c["setting"] == "io_uring").unwrap();
    assert_eq!(host["io_uring_available"], io["status"] == "ok");

    // The connection estimate is the smallest limit, and no more than the
    // fd hard limit allows.
    let cap = &v["capacity"];
    let limits = cap["limits"].as_array().unwrap();
    let smallest = limits
        .iter()
        .min_by_key(|l| l["connections"].as_u64().unwrap())
        .unwrap();
    assert_eq!(cap["connections"], smallest["connections"]);
    assert_eq!(cap["limited_by"], smallest["name"]);
    if let Some(hard) = hard.as_u64() {
        assert!(cap["connections"].as_u64().unwrap() < hard);
    }
    let summary = v["summary"].as_str().unwrap();
    assert!(summary.starts_with("fd limit "), "{summary}");
    assert!(
        summary.contains(cap["limited_by"].as_str().unwrap()),
        "{summary}"
    );
}

#[test]
fn table_agrees_with_json() {
    let (json_code, json) = doctor(&["--json"]);
    let (code, table) = doctor(&[]);
    assert_eq!(code, json_code);
    let v: Value = serde_json::from_str(&json).unwrap();
    let first = table.lines().next().unwrap();
    assert_eq!(
        first,
        format!("ringcast doctor: {}", v["summary"].as_str().unwrap())
    );
    assert!(table
        .lines()
        .any(|l| l.starts_with("SETTING ") && l.contains("STATUS")));
    for c in v["checks"].as_array().unwrap() {
        let setting = c["setting"].as_str().unwrap();
        assert!(
            table.lines().any(|l| l.starts_with(&format!("{setting} "))),
            "no row {setting}"
        );
    }
    let last = table.lines().last().unwrap();
    assert!(last.ends_with(&format!("(exit {code})")), "{last}");
}

/// `doctor --config` judges what `serve` would start with, key files
/// included: one that is missing, malformed or unfit for `[auth]` is exit 2
/// with the reason, as a bad key in the file is.
#[test]
fn key_files_are_read_as_serve_reads_them() {
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_ringcast"))
            .arg("doctor")
            .args(args)
            .output()
            .expect("run ringcast doctor");
        (
            out.status.code().expect("doctor exited by a signal"),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let dir = std::env::temp_dir().join(format!("ringcast-doctor-keys-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let missing = dir.join("missing.pem");
    let garbage = dir.join("jwks.json");
    std::fs::write(&garbage, "not json").unwrap();
    let config = dir.join("ringcast.toml");
    std::fs::write(
        &config,
        format!(
            "[auth]\nmode = \"jwt\"\nalgorithms = [\"ES256\"]\npublic_key_file = {:?}\n",
            missing.to_str().unwrap()
        ),
    )
    .unwrap();
    let (code, err) = run(&["--config", config.to_str().unwrap()]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("auth.public_key_file") && err.contains(missing.to_str().unwrap()),
        "{err}"
    );
    let (code, err) = run(&[
        "--auth-mode",
        "jwt",
        "--auth-algorithms",
        "ES256",
        "--auth-jwks-file",
        garbage.to_str().unwrap(),
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("auth.jwks_file"), "{err}");
    let (code, err) = run(&["--auth-mode", "jwt", "--auth-algorithms", "ES256"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("needs keys"), "{err}");
    let (code, err) = run(&["--resp-user", "app/abc//"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("password_sha256"), "{err}");
    // Good keys: the host is judged as usual (0 or 1).
    let pem = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/keys/ec_pub.pem");
    let (code, err) = run(&[
        "--auth-mode",
        "jwt",
        "--auth-algorithms",
        "ES256",
        "--auth-public-key-file",
        pem,
    ]);
    assert!(code == 0 || code == 1, "{code}: {err}");
}
