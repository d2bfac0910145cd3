//! libFuzzer target: plan files.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| gitvps_fuzz::checks::plan(data));
