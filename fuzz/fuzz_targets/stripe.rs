//! libFuzzer target: the Stripe signature header (first line) and event (the rest).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| gitvps_fuzz::checks::stripe(data));
