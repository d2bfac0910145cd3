//! libFuzzer target: a VPS file loaded with the rest of the example fleet.
#![no_main]
use std::sync::OnceLock;

static FLEET: OnceLock<tempfile::TempDir> = OnceLock::new();

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let dir = FLEET.get_or_init(|| {
        let d = tempfile::tempdir().unwrap();
        gitvps_fuzz::fixtures::fleet(d.path(), |t| t);
        d
    });
    gitvps_fuzz::checks::inventory_vps(dir.path(), data);
});
