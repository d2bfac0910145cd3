//! libFuzzer target: apply's output protocol (marker lines).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| gitvps_fuzz::checks::protocol(data));
