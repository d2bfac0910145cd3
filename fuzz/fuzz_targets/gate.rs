//! The engine's self-test, not a parser: a gate of eight bytes compared one at a time, which
//! only a coverage-guided fuzzer passes (a blind one needs about 2^64 tries). `scripts/fuzz
//! selftest` expects this target to "crash" within its time.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let gate = b"gitvps!1";
    let mut open = 0;
    for (i, want) in gate.iter().enumerate() {
        if data.get(i) != Some(want) {
            break;
        }
        open += 1;
        std::hint::black_box(open);
    }
    assert!(open < gate.len(), "the gate is passed");
});
