//! What each fuzz target does with one input, and what must hold for it: no panic, and where
//! a parser has a writer, what it accepts reads back as itself. Shared by the libFuzzer targets
//! (`fuzz/fuzz_targets/`) and the corpus replay of `tests/tests/fuzz.rs`.
#![allow(
    unreachable_pub,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use std::path::Path;

/// A VPS file: written as `inventory/vps/xen02.toml` of the fleet at `repo`, then the whole
/// inventory loaded; every problem names its file.
pub fn inventory_vps(repo: &Path, input: &[u8]) {
    std::fs::write(repo.join("inventory/vps/xen02.toml"), input).unwrap();
    if let Err(model::LoadError::Invalid(d)) = model::Inventory::load(repo) {
        assert!(d.iter().all(|x| !x.file.is_empty()), "{d:?}");
    }
}

/// The JSON `observe.sh` prints.
pub fn observe(input: &[u8]) {
    let _ = planner::observe::parse("node1", input);
}

/// Apply's output protocol: every marker read from a line prints back as the same marker.
pub fn protocol(input: &[u8]) {
    for line in String::from_utf8_lossy(input).lines() {
        if let Some(m) = planner::protocol::Marker::parse(line) {
            let again = planner::protocol::Marker::parse(&m.to_string());
            assert_eq!(again.as_ref(), Some(&m), "{line:?}");
        }
    }
}

/// The Stripe webhook: the first line is the `Stripe-Signature` header, the rest the event;
/// the signature is checked and the event read (at a fixed time: a run is repeatable).
pub fn stripe(input: &[u8]) {
    let secrets = [hooks::Secret::new("whsec_fuzz")];
    let cut = input
        .iter()
        .position(|b| *b == b'\n')
        .unwrap_or(input.len());
    let header = String::from_utf8_lossy(&input[..cut]);
    let payload = input.get(cut + 1..).unwrap_or_default();
    let _ = hooks::stripe::verify_signature(payload, Some(&header), &secrets, 1_700_000_000, 300);
    let at = chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap();
    let _ = hooks::stripe::interpret(payload, at);
}

/// An SSH public key: an accepted key is one line that reads back as itself.
pub fn ssh_key(input: &[u8]) {
    let text = String::from_utf8_lossy(input);
    if let Ok(k) = text.parse::<model::values::SshPublicKey>() {
        let again: model::values::SshPublicKey = k.as_str().parse().unwrap();
        assert_eq!(again.as_str(), k.as_str());
        assert!(!k.as_str().contains('\n'));
    }
}

/// A plan file (`gitvps plan --out`): read, then rendered as text, as drift and as a summary.
pub fn plan(input: &[u8]) {
    if let Ok(plan) = serde_json::from_slice::<planner::plan::Plan>(input) {
        let _ = planner::plan::render(&plan);
        let _ = planner::plan::render_drift(&plan);
        let _ = plan.summary();
    }
}
