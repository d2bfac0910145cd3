//! Fuzzing of the parsers that read outside input (issue 17, item 6): each target replays its
//! corpus (`tests/fuzz/<target>/`, the regression tests) and mutates it for a bounded time.
//! See `support::fuzz` and `scripts/fuzz` for the long run.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr
)]

use gitvps_tests as support;

use support::fuzz;

/// Prints how many inputs a target ran (the figure `scripts/fuzz` reports).
fn ran(target: &str, runs: u64) {
    eprintln!("fuzz {target}: {runs} inputs in {:?}", fuzz::budget());
    assert!(runs > 0);
}

#[test]
fn fuzz_inventory_loading_of_a_vps_file() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = support::fleet_repo(tmp.path(), &["inventory"]);
    let file = repo.join("inventory/vps/xen02.toml");
    let runs = fuzz::run("inventory_vps", Vec::new(), |input| {
        std::fs::write(&file, input).unwrap();
        if let Err(model::LoadError::Invalid(d)) = model::Inventory::load(&repo) {
            // Every problem names its file.
            assert!(d.iter().all(|x| !x.file.is_empty()), "{d:?}");
        }
    });
    ran("inventory_vps", runs);
}

#[test]
fn fuzz_the_observe_json() {
    let runs = fuzz::run("observe", Vec::new(), |input| {
        let _ = planner::observe::parse("node1", input);
    });
    ran("observe", runs);
}

#[test]
fn fuzz_the_apply_output_protocol() {
    let runs = fuzz::run("protocol", Vec::new(), |input| {
        for line in String::from_utf8_lossy(input).lines() {
            if let Some(m) = planner::protocol::Marker::parse(line) {
                // What the reader takes, the writer prints back the same way.
                let again = planner::protocol::Marker::parse(&m.to_string());
                assert_eq!(again.as_ref(), Some(&m), "{line:?}");
            }
        }
    });
    ran("protocol", runs);
}

#[test]
fn fuzz_the_stripe_signature_header_and_event() {
    let secrets = [hooks::Secret::new("whsec_fuzz")];
    let now = chrono::Utc::now();
    let runs = fuzz::run("stripe", Vec::new(), |input| {
        let cut = input
            .iter()
            .position(|b| *b == b'\n')
            .unwrap_or(input.len());
        let header = String::from_utf8_lossy(&input[..cut]);
        let payload = input.get(cut + 1..).unwrap_or_default();
        let _ =
            hooks::stripe::verify_signature(payload, Some(&header), &secrets, 1_700_000_000, 300);
        let _ = hooks::stripe::interpret(payload, now);
    });
    ran("stripe", runs);
}

#[test]
fn fuzz_ssh_public_keys() {
    let runs = fuzz::run("ssh_key", Vec::new(), |input| {
        let text = String::from_utf8_lossy(input);
        if let Ok(k) = text.parse::<model::values::SshPublicKey>() {
            // An accepted key is one line that reads back as itself.
            let again: model::values::SshPublicKey = k.as_str().parse().unwrap();
            assert_eq!(again.as_str(), k.as_str());
            assert!(!k.as_str().contains('\n'));
        }
    });
    ran("ssh_key", runs);
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
    let runs = fuzz::run("plan", vec![seed], |input| {
        if let Ok(plan) = serde_json::from_slice::<planner::plan::Plan>(input) {
            let _ = planner::plan::render(&plan);
            let _ = planner::plan::render_drift(&plan);
            let _ = plan.summary();
        }
    });
    ran("plan", runs);
}
