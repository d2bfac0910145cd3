//! libFuzzer target: the hooks' JSON bodies, through the real router.
#![no_main]
use std::sync::Mutex;

use gitvps_fuzz::hooks_body::{Hooks, check};

static HOOKS: Mutex<Option<Hooks>> = Mutex::new(None);

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let mut h = HOOKS.lock().unwrap_or_else(|e| e.into_inner());
    check(&mut h, data);
});
