//! libFuzzer target: SSH public keys.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| gitvps_fuzz::checks::ssh_key(data));
