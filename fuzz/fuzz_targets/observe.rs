//! libFuzzer target: the observe JSON.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| gitvps_fuzz::checks::observe(data));
