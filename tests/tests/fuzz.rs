//! Fuzzing of the parsers that read outside input (issue 17, item 6), the cheap half: each
//! target replays its regression corpus (`tests/fuzz/<target>/`, where every input that once
//! crashed a target lands) and the libFuzzer corpus (`fuzz/corpus/<target>/`), then mutates
//! them for a bounded time. The checks are the libFuzzer targets' own (`fuzz/src/checks.rs`);
//! the coverage-guided runs are `scripts/fuzz` (docs/security.md, "Fuzzing").
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr
)]

use gitvps_tests as support;

use support::fuzz;

#[path = "../../fuzz/src/checks.rs"]
mod checks;
#[path = "../../fuzz/src/fixtures.rs"]
mod fixtures;
#[path = "../../fuzz/src/hooks_body.rs"]
mod hooks_body;

/// Prints how many inputs a target ran (the figure `scripts/fuzz mutate` reports).
fn ran(target: &str, runs: u64) {
    eprintln!("fuzz {target}: {runs} inputs in {:?}", fuzz::budget());
    assert!(runs > 0);
}

#[test]
fn fuzz_inventory_loading_of_a_vps_file() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = support::fleet_repo(tmp.path(), &["inventory"]);
    let runs = fuzz::run("inventory_vps", Vec::new(), |input| {
        checks::inventory_vps(&repo, input);
    });
    ran("inventory_vps", runs);
}

#[test]
fn fuzz_the_observe_json() {
    ran("observe", fuzz::run("observe", Vec::new(), checks::observe));
}

#[test]
fn fuzz_the_apply_output_protocol() {
    ran(
        "protocol",
        fuzz::run("protocol", Vec::new(), checks::protocol),
    );
}

#[test]
fn fuzz_the_stripe_signature_header_and_event() {
    ran("stripe", fuzz::run("stripe", Vec::new(), checks::stripe));
}

#[test]
fn fuzz_ssh_public_keys() {
    ran("ssh_key", fuzz::run("ssh_key", Vec::new(), checks::ssh_key));
}

#[test]
fn fuzz_plan_files() {
    // A real plan of a small fleet, besides the committed ones.
    let f = support::fleet::Fleet::new(&["node1"]);
    f.vps("xen10", "node1", "192.0.2.10", "");
    let out = f.dir.path().join("plan.json");
    let p = f.gitvps(&["plan", "--out", out.to_str().unwrap()]);
    assert_eq!(p.code, 2, "{p:?}");
    let seed = std::fs::read(&out).unwrap();
    ran("plan", fuzz::run("plan", vec![seed], checks::plan));
}

#[test]
fn fuzz_the_hooks_json_bodies() {
    let hooks = std::cell::RefCell::new(None);
    let runs = fuzz::run("hooks_body", Vec::new(), |input| {
        hooks_body::check(&mut hooks.borrow_mut(), input);
    });
    ran("hooks_body", runs);
}
