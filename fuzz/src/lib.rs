//! gitvps's fuzz targets as plain functions of one input, with the fixtures they need: the
//! libFuzzer binaries in `fuzz_targets/` call them, and `tests/tests/fuzz.rs` replays the corpora.

pub mod checks;
pub mod fixtures;
pub mod hooks_body;
