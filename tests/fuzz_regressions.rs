//! Every committed fuzz seed and every input that ever made a fuzz target
//! fail, replayed on stable through the same check the target runs
//! (`ringcast::proto::fuzz::<target>::check`). A crash found by
//! `cargo +nightly fuzz run <target>` is kept as a file under
//! `fuzz/regressions/<target>/`, and this test keeps it fixed.

use std::path::Path;

fn replay(target: &str, check: fn(&[u8])) -> usize {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut n = 0;
    for dir in ["seeds", "regressions"] {
        let Ok(entries) = std::fs::read_dir(root.join(dir).join(target)) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            let input = std::fs::read(&path).unwrap();
            let outcome = std::panic::catch_unwind(|| check(&input));
            assert!(outcome.is_ok(), "{} fails its check", path.display());
            n += 1;
        }
    }
    n
}

#[test]
fn ws_decoder_inputs_hold() {
    assert!(replay("ws_decoder", ringcast::proto::fuzz::ws_decoder::check) >= 8);
}

#[test]
fn resp_parse_inputs_hold() {
    assert!(replay("resp_parse", ringcast::proto::fuzz::resp_parse::check) >= 7);
}

#[test]
fn json_request_inputs_hold() {
    assert!(replay("json_request", ringcast::proto::fuzz::json_request::check) >= 5);
}
