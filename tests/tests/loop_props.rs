//! Property tests across the whole loop, over real SSH to simulated nodes: for a generated
//! fleet and generated out-of-band damage to its nodes (domains destroyed, configs edited,
//! disks grown, console users removed), a plan saved before the damage is refused, then
//! plan → apply → plan is empty, and no disk is gone unless its VPS is destroyed with its
//! retention passed. Cases: `LOOP_PROPTEST_CASES` (default 6; each is a few gitvps runs).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use gitvps_tests as support;

use proptest::prelude::*;
use support::fleet::Fleet;

/// What a generated VPS is declared as.
#[derive(Debug, Clone, Copy)]
enum Declared {
    Running,
    Stopped,
    Suspended,
    /// Destroyed, its retention not passed yet.
    DestroyedRecently,
    /// Destroyed long ago: its disk may go.
    DestroyedLongAgo,
}

impl Declared {
    fn extra(self) -> &'static str {
        match self {
            Declared::Running | Declared::DestroyedRecently | Declared::DestroyedLongAgo => "",
            Declared::Stopped => "power = \"stopped\"\n",
            Declared::Suspended => "state = \"suspended\"\n",
        }
    }
}

/// Damage done on a node behind gitvps's back.
#[derive(Debug, Clone, Copy)]
enum Damage {
    DestroyDomain,
    EditConfig,
    GrowDisk,
    RemoveConsole,
}

fn declared() -> impl Strategy<Value = Declared> {
    prop_oneof![
        3 => Just(Declared::Running),
        1 => Just(Declared::Stopped),
        1 => Just(Declared::Suspended),
        1 => Just(Declared::DestroyedRecently),
        1 => Just(Declared::DestroyedLongAgo),
    ]
}

fn damage() -> impl Strategy<Value = Damage> {
    prop_oneof![
        Just(Damage::DestroyDomain),
        Just(Damage::EditConfig),
        Just(Damage::GrowDisk),
        Just(Damage::RemoveConsole),
    ]
}

/// The VPSes (node index, what is declared after the first converge).
type Fleetish = Vec<(usize, Declared)>;
/// The damage (VPS index, what).
type Damages = Vec<(usize, Damage)>;

/// VPSes and damage.
fn case() -> impl Strategy<Value = (Fleetish, Damages)> {
    proptest::collection::vec((0..2usize, declared()), 1..5).prop_flat_map(|vps| {
        let n = vps.len();
        (Just(vps), proptest::collection::vec((0..n, damage()), 0..4))
    })
}

const NODES: [&str; 2] = ["node1", "node2"];

fn name(i: usize) -> String {
    format!("xen{}", 30 + i)
}

fn ip(i: usize) -> String {
    format!("192.0.2.{}", 30 + i)
}

fn run_case(vps: &[(usize, Declared)], damage: &[(usize, Damage)]) -> Result<(), TestCaseError> {
    let f = Fleet::new(&NODES);
    // Every VPS first runs, then gets its declared state: the nodes hold real disks,
    // domains, configs and console users when the damage comes.
    for (i, (node, _)) in vps.iter().enumerate() {
        f.vps(&name(i), NODES[*node], &ip(i), "");
    }
    f.converge();
    for (i, (node, d)) in vps.iter().enumerate() {
        f.vps(&name(i), NODES[*node], &ip(i), d.extra());
        let destroyed = match d {
            Declared::DestroyedRecently => Some("state = \"destroyed\"\n"),
            Declared::DestroyedLongAgo => Some("state = \"destroyed\"\ndestroyed = 2026-01-02\n"),
            _ => None,
        };
        if let Some(text) = destroyed {
            f.edit(
                &format!("inventory/vps/{}.toml", name(i)),
                "os = \"debian-12\"\n",
                &format!("os = \"debian-12\"\n{text}"),
            );
        }
    }
    f.converge();
    let plan = f.dir.path().join("before-damage.json");
    let p = f.gitvps(&["plan", "--out", plan.to_str().unwrap()]);
    prop_assert_eq!(p.code, 0, "converged, yet: {:?}", p);

    let mut damaged = false;
    for (i, what) in damage {
        let (node, _) = vps[*i];
        let root = f.root(NODES[node]);
        let v = name(*i);
        damaged |= match what {
            Damage::DestroyDomain => f.on_node(NODES[node], "xl", &["destroy", &v]).code == 0,
            Damage::EditConfig => {
                let cfg = root.join(format!("etc/xen/gitvps/{v}.cfg"));
                cfg.exists() && {
                    let text = std::fs::read_to_string(&cfg).unwrap();
                    std::fs::write(&cfg, format!("{text}# edited by hand\n")).unwrap();
                    true
                }
            }
            Damage::GrowDisk => {
                let disk = root.join(format!("dev/vg0/{v}"));
                disk.exists() && {
                    let file = std::fs::OpenOptions::new().write(true).open(&disk).unwrap();
                    let len = file.metadata().unwrap().len();
                    file.set_len(len + (1 << 30)).unwrap();
                    true
                }
            }
            // Only a live VPS's console account is observed: a destroyed or suspended VPS's
            // leftover home is not the nodes' state the plan was made from.
            Damage::RemoveConsole => {
                let home = root.join(format!("var/lib/gitvps/console/{v}"));
                let live = matches!(vps[*i].1, Declared::Running | Declared::Stopped);
                home.exists() && {
                    std::fs::remove_dir_all(&home).unwrap();
                    live
                }
            }
        };
    }
    let disks_before: Vec<(usize, bool)> = (0..vps.len())
        .map(|i| (i, f.lv(NODES[vps[i].0], &name(i)).is_some()))
        .collect();

    // The plan reviewed before the damage no longer matches the nodes: refused.
    let a = f.gitvps(&["apply", plan.to_str().unwrap()]);
    if damaged {
        prop_assert_eq!(a.code, 1, "a stale plan was applied: {:?}", a);
        prop_assert!(
            a.stdout.contains("changed since the plan was made"),
            "{:?}",
            a
        );
    }
    // Plan → apply → plan is empty.
    let a = f.gitvps(&["apply"]);
    prop_assert_eq!(a.code, 0, "{:?}", a);
    let p = f.gitvps(&["plan"]);
    prop_assert_eq!(p.code, 0, "the plan after the apply is not empty: {:?}", p);
    // No disk is gone but a destroyed VPS's whose retention passed.
    for (i, had) in disks_before {
        let has = f.lv(NODES[vps[i].0], &name(i)).is_some();
        if had && !has {
            prop_assert!(
                matches!(vps[i].1, Declared::DestroyedLongAgo),
                "{}'s disk is gone, declared {:?}: {:?}",
                name(i),
                vps[i].1,
                a
            );
        }
    }
    Ok(())
}

fn cases() -> u32 {
    std::env::var("LOOP_PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(6)
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: cases(),
        max_shrink_iters: 8,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn any_damage_is_repaired_in_one_apply_and_no_disk_is_lost((vps, damage) in case()) {
        run_case(&vps, &damage)?;
    }
}
