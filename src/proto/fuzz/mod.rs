//! The properties the fuzz targets check, one file per parser: `fuzz/`
//! feeds each `check` libFuzzer's inputs (`cargo +nightly fuzz run <name>`),
//! and `tests/fuzz_regressions.rs` replays the committed seeds and every
//! input that ever failed through the same `check` on stable, in
//! `cargo test`. A check panics when a property is broken.

pub mod json_request;
pub mod resp_parse;
pub mod ws_decoder;
