//! Applying what was reviewed: what a saved plan was made from (the inventory's commit and
//! tree, each node's observed state), what moved since, and how a fresh plan differs from it.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use model::NodeId;
use serde::{Deserialize, Serialize};

use crate::drift::{Drift, Snapshot, drift};
use crate::moves::Move;
use crate::observe::Observation;
use crate::plan::{NodePlan, Plan, step_line};

/// What a saved plan was made from: `gitvps apply --reviewed` applies it only while both are
/// still as they were.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MadeFrom {
    /// The inventory's git commit (`HEAD` when the plan was made).
    pub commit: String,
    /// That commit's tree: two commits with the same tree plan the same.
    pub tree: String,
    /// Inventory paths that differed from the commit (uncommitted changes) when the plan was
    /// made; a plan made from them describes no commit and is never applied as reviewed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub uncommitted: Vec<String>,
    /// Each reachable node's observed state when the plan was made.
    pub nodes: BTreeMap<NodeId, Fingerprint>,
}

/// A node's observed state as a plan file keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fingerprint {
    /// The digest of the observed state (the one a plan's node entry carries).
    pub digest: String,
    /// What the node held, to say what moved.
    pub snapshot: Snapshot,
}

/// Where the inventory is now: its commit, tree, and uncommitted inventory paths.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkout {
    /// The commit.
    pub commit: String,
    /// Its tree.
    pub tree: String,
    /// Inventory paths with uncommitted changes.
    pub uncommitted: Vec<String>,
    /// Paths that differ between the plan's tree and this one (filled by the caller, which
    /// reads git).
    pub changed: Vec<String>,
}

/// The record of what a plan was made from.
pub fn made_from(at: &Checkout, observed: &BTreeMap<NodeId, Observation>) -> MadeFrom {
    MadeFrom {
        commit: at.commit.clone(),
        tree: at.tree.clone(),
        uncommitted: at.uncommitted.clone(),
        nodes: observed
            .iter()
            .filter_map(|(n, o)| match o {
                Observation::Reachable(s) => Some((
                    n.clone(),
                    Fingerprint {
                        digest: s.digest.clone(),
                        snapshot: Snapshot::of(s),
                    },
                )),
                Observation::Unreachable { .. } => None,
            })
            .collect(),
    }
}

/// One thing that moved since the reviewed plan was made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Moved {
    /// The plan file does not say what it was made from.
    NoOrigin,
    /// The plan was made from uncommitted changes.
    PlannedUncommitted {
        /// The paths.
        paths: Vec<String>,
    },
    /// The inventory here has uncommitted changes.
    Uncommitted {
        /// The paths.
        paths: Vec<String>,
    },
    /// The inventory's tree is another one.
    Tree {
        /// The plan's commit and tree.
        planned: (String, String),
        /// This checkout's commit and tree.
        now: (String, String),
        /// The paths that differ.
        changed: Vec<String>,
    },
    /// A node's observed state changed.
    Node {
        /// The node.
        node: NodeId,
        /// What changed, when the snapshot tells (empty: records or formats only).
        changes: Vec<Drift>,
        /// The digests then and now.
        digest: (String, String),
    },
    /// A node was unreachable when the plan was made and answers now.
    WasUnreachable {
        /// The node.
        node: NodeId,
    },
    /// A node is not in the reviewed plan.
    NotInPlan {
        /// The node.
        node: NodeId,
    },
    /// The moves the nodes call for now are not the reviewed plan's (a move it did not show,
    /// one it showed that is gone, or one that goes, waits or is refused otherwise).
    Moves {
        /// The reviewed plan's move lines that the nodes do not call for now.
        planned: Vec<String>,
        /// The move lines the nodes call for now that the reviewed plan did not show.
        now: Vec<String>,
    },
}

impl Moved {
    /// One line for humans.
    pub fn describe(&self) -> String {
        let short = |s: &str| s.chars().take(12).collect::<String>();
        match self {
            Moved::NoOrigin => "the plan file does not say what it was made from (make it with `gitvps plan --out`)".into(),
            Moved::PlannedUncommitted { paths } => format!(
                "the plan was made from uncommitted changes: {}",
                paths.join(", ")
            ),
            Moved::Uncommitted { paths } => {
                format!("uncommitted changes here: {}", paths.join(", "))
            }
            Moved::Tree {
                planned,
                now,
                changed,
            } => {
                let mut s = format!(
                    "the inventory: the plan was made from commit {} (tree {}), this is commit {} (tree {})",
                    short(&planned.0),
                    short(&planned.1),
                    short(&now.0),
                    short(&now.1)
                );
                if !changed.is_empty() {
                    let _ = write!(s, "; changed: {}", changed.join(", "));
                }
                s
            }
            Moved::Node {
                node,
                changes,
                digest,
            } if changes.is_empty() => format!(
                "{node}: its state changed (digest {} → {})",
                digest.0, digest.1
            ),
            Moved::Node { node, changes, .. } => {
                let what: Vec<String> = changes.iter().map(Drift::describe).collect();
                format!("{node}: {}", what.join("; "))
            }
            Moved::WasUnreachable { node } => {
                format!("{node}: unreachable when the plan was made, it answers now")
            }
            Moved::NotInPlan { node } => format!("{node}: not in the reviewed plan"),
            Moved::Moves { planned, now } => {
                let mut s = String::from("the moves:");
                for l in now {
                    let _ = write!(s, " now `{l}`;");
                }
                for l in planned {
                    let _ = write!(s, " not now `{l}`;");
                }
                s.pop();
                s
            }
        }
    }
}

/// What moved between the reviewed plan and now: the inventory (`at`), the nodes that
/// answered now (`observed`) and the moves they call for now (`moves`, `crate::moves::find`
/// over `observed`). A node unreachable now is not "moved": apply reports it.
pub fn moved(
    reviewed: &Plan,
    at: &Checkout,
    observed: &BTreeMap<NodeId, Observation>,
    moves: &[Move],
) -> Vec<Moved> {
    let Some(from) = &reviewed.made_from else {
        return vec![Moved::NoOrigin];
    };
    let mut out = Vec::new();
    if !from.uncommitted.is_empty() {
        out.push(Moved::PlannedUncommitted {
            paths: from.uncommitted.clone(),
        });
    }
    if !at.uncommitted.is_empty() {
        out.push(Moved::Uncommitted {
            paths: at.uncommitted.clone(),
        });
    }
    if from.tree != at.tree {
        out.push(Moved::Tree {
            planned: (from.commit.clone(), from.tree.clone()),
            now: (at.commit.clone(), at.tree.clone()),
            changed: at.changed.clone(),
        });
    }
    for (node, obs) in observed {
        let Observation::Reachable(state) = obs else {
            continue;
        };
        match (
            reviewed.nodes.iter().find(|n| n.node() == node),
            from.nodes.get(node),
        ) {
            (None, _) => out.push(Moved::NotInPlan { node: node.clone() }),
            (Some(NodePlan::Unreachable { .. }), _) | (Some(_), None) => {
                out.push(Moved::WasUnreachable { node: node.clone() });
            }
            (Some(_), Some(f)) if f.digest != state.digest => out.push(Moved::Node {
                node: node.clone(),
                changes: drift(&f.snapshot, &Snapshot::of(state)),
                digest: (f.digest.clone(), state.digest.clone()),
            }),
            _ => {}
        }
    }
    let (planned, now) = move_lines(&reviewed.moves, moves);
    if !planned.is_empty() || !now.is_empty() {
        out.push(Moved::Moves { planned, now });
    }
    out
}

/// The move lines only in `then` and only in `now`: each as the plan shows it (the VPS, both
/// nodes, the disk, whether it resumes, goes, waits or is refused, and why).
fn move_lines(then: &[Move], now: &[Move]) -> (Vec<String>, Vec<String>) {
    let mut gone: Vec<String> = then.iter().map(Move::line).collect();
    let mut added = Vec::new();
    for l in now.iter().map(Move::line) {
        match gone.iter().position(|g| *g == l) {
            Some(i) => {
                gone.remove(i);
            }
            None => added.push(l),
        }
    }
    (gone, added)
}

/// The lines of a node's plan that a comparison looks at: its steps.
fn lines(n: Option<&NodePlan>) -> Vec<String> {
    n.map(|n| n.steps().iter().map(step_line).collect())
        .unwrap_or_default()
}

/// How a fresh plan differs from the reviewed one: its moves, then per node: steps only in the
/// fresh plan (`now:`), steps only in the reviewed one (`not now:`). Empty when the moves and
/// the steps are the same.
pub fn differences(reviewed: &Plan, fresh: &Plan) -> String {
    let mut nodes: Vec<&NodeId> = (reviewed.nodes.iter().chain(&fresh.nodes))
        .map(NodePlan::node)
        .collect();
    nodes.sort();
    nodes.dedup();
    let mut out = String::new();
    let (gone, added) = move_lines(&reviewed.moves, &fresh.moves);
    if !gone.is_empty() || !added.is_empty() {
        let _ = writeln!(out, "moves:");
        for l in added {
            let _ = writeln!(out, "  now:     {l}");
        }
        for l in gone {
            let _ = writeln!(out, "  not now: {l}");
        }
    }
    for node in nodes {
        let find = |p: &Plan| p.nodes.iter().find(|n| n.node() == node).cloned();
        let (then, now) = (find(reviewed), find(fresh));
        let mut gone = lines(then.as_ref());
        let mut added = Vec::new();
        for l in lines(now.as_ref()) {
            match gone.iter().position(|g| *g == l) {
                Some(i) => {
                    gone.remove(i);
                }
                None => added.push(l),
            }
        }
        let unreachable = matches!(now, Some(NodePlan::Unreachable { .. }));
        if added.is_empty() && gone.is_empty() && !unreachable {
            continue;
        }
        let _ = writeln!(out, "{node}:");
        if unreachable {
            let _ = writeln!(out, "  unreachable now: its steps are not carried out");
        }
        for l in added {
            let _ = writeln!(out, "  now:     {l}");
        }
        for l in gone {
            let _ = writeln!(out, "  not now: {l}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]

    use super::*;
    use crate::observe::NodeState;
    use crate::plan::{Op, Step, StepPaths};

    fn state(digest: &str, up: bool) -> NodeState {
        let mut s = NodeState::default();
        s.disks.insert("xen10".into(), 1 << 30);
        if up {
            s.domains.insert(
                "xen10".into(),
                crate::observe::Domain {
                    domid: 1,
                    memory_mib: 512,
                    vcpus: 1,
                    state: "r-----".into(),
                    running_config: None,
                },
            );
        }
        s.digest = digest.into();
        s
    }

    fn step(vps: &str, op: Op) -> Step {
        Step {
            vps: vps.parse().unwrap(),
            op,
            record: None,
            target: StepPaths {
                disk: "/d".into(),
                config: "/c".into(),
            },
        }
    }

    fn node_plan(node: &str, digest: &str, steps: Vec<Step>) -> NodePlan {
        NodePlan::Reachable {
            node: node.parse().unwrap(),
            address: "192.0.2.1:22".into(),
            digest: digest.into(),
            root: "/".into(),
            store: crate::desired::Store::Lvm { vg: "vg0".into() },
            steps,
            notes: vec![],
            undeclared: vec![],
        }
    }

    fn at(tree: &str) -> Checkout {
        Checkout {
            commit: format!("c-{tree}"),
            tree: tree.into(),
            uncommitted: vec![],
            changed: vec!["inventory/vps/xen10.toml".into()],
        }
    }

    fn reviewed(observed: &BTreeMap<NodeId, Observation>) -> Plan {
        let mut p = Plan {
            version: 1,
            nodes: vec![node_plan("node1", "d1", vec![step("xen10", Op::Start)])],
            drift: BTreeMap::new(),
            made_from: None,
            moves: Vec::new(),
        };
        p.made_from = Some(made_from(&at("t1"), observed));
        p
    }

    fn obs(s: NodeState) -> BTreeMap<NodeId, Observation> {
        [("node1".parse().unwrap(), Observation::Reachable(s))].into()
    }

    #[test]
    fn nothing_moved_when_tree_and_digests_match() {
        let o = obs(state("d1", false));
        let p = reviewed(&o);
        assert_eq!(moved(&p, &at("t1"), &o, &[]), vec![]);
        // The record round-trips through the plan file.
        let json = serde_json::to_string(&p).unwrap();
        assert_eq!(serde_json::from_str::<Plan>(&json).unwrap(), p);
    }

    #[test]
    fn a_node_changed_out_of_band_says_what_changed() {
        let p = reviewed(&obs(state("d1", true)));
        let m = moved(&p, &at("t1"), &obs(state("d2", false)), &[]);
        assert_eq!(m.len(), 1, "{m:?}");
        assert_eq!(
            m[0].describe(),
            "node1: xen10: its domain ran and is gone (destroyed or shut down)"
        );
        // Only the digest moved (a record): said with the digests.
        let p = reviewed(&obs(state("d1", false)));
        let m = moved(&p, &at("t1"), &obs(state("d3", false)), &[]);
        assert_eq!(m[0].describe(), "node1: its state changed (digest d1 → d3)");
    }

    #[test]
    fn another_tree_uncommitted_changes_and_new_nodes_moved() {
        let o = obs(state("d1", false));
        let p = reviewed(&o);
        let m = moved(&p, &at("t2"), &o, &[]);
        assert_eq!(
            m[0].describe(),
            "the inventory: the plan was made from commit c-t1 (tree t1), this is commit c-t2 (tree t2); changed: inventory/vps/xen10.toml"
        );
        let mut dirty = at("t1");
        dirty.uncommitted = vec!["inventory/vps/xen10.toml".into()];
        assert!(matches!(
            moved(&p, &dirty, &o, &[])[..],
            [Moved::Uncommitted { .. }]
        ));
        let mut o2 = o.clone();
        o2.insert(
            "node2".parse().unwrap(),
            Observation::Reachable(state("x", false)),
        );
        assert_eq!(
            moved(&p, &at("t1"), &o2, &[]),
            vec![Moved::NotInPlan {
                node: "node2".parse().unwrap()
            }]
        );
        let mut bare = p.clone();
        bare.made_from = None;
        assert_eq!(moved(&bare, &at("t1"), &o, &[]), vec![Moved::NoOrigin]);
        // Unreachable now: not moved (apply reports it).
        let gone: BTreeMap<NodeId, Observation> = [(
            "node1".parse().unwrap(),
            Observation::Unreachable {
                reason: "refused".into(),
            },
        )]
        .into();
        assert_eq!(moved(&p, &at("t1"), &gone, &[]), vec![]);
    }

    fn a_move(to: &str, decision: crate::moves::Decision) -> Move {
        let paths = |n: &str| StepPaths {
            disk: format!("/srv/{n}/dev/vg0/xen10"),
            config: format!("/srv/{n}/etc/xen/gitvps/xen10.cfg"),
        };
        Move {
            vps: "xen10".parse().unwrap(),
            from: "node1".parse().unwrap(),
            to: to.parse().unwrap(),
            bytes: 1 << 30,
            source: paths("node1"),
            target: paths(to),
            record: None,
            resumes: false,
            decision,
        }
    }

    /// A reviewed plan without the move the nodes call for now, with another one, or with one
    /// that now waits: stale, saying which move lines differ; the same moves: not.
    #[test]
    fn a_move_the_reviewed_plan_did_not_show_is_a_difference() {
        use crate::moves::Decision;
        let o = obs(state("d1", false));
        let mut p = reviewed(&o);
        let go = a_move("node2", Decision::Go);
        let m = moved(&p, &at("t1"), &o, std::slice::from_ref(&go));
        assert_eq!(
            m,
            vec![Moved::Moves {
                planned: vec![],
                now: vec!["move vps xen10: node1 → node2 (disk 1 GiB)".into()],
            }]
        );
        assert_eq!(
            m[0].describe(),
            "the moves: now `move vps xen10: node1 → node2 (disk 1 GiB)`"
        );
        p.moves = vec![go.clone()];
        assert_eq!(moved(&p, &at("t1"), &o, std::slice::from_ref(&go)), vec![]);
        // Another target, or the same move waiting now: both lines are named.
        let other = a_move("node3", Decision::Go);
        let m = moved(&p, &at("t1"), &o, std::slice::from_ref(&other));
        assert_eq!(
            m[0].describe(),
            "the moves: now `move vps xen10: node1 → node3 (disk 1 GiB)`; not now `move vps xen10: node1 → node2 (disk 1 GiB)`"
        );
        let waits = a_move(
            "node2",
            Decision::Waits {
                reason: "node2 did not answer; xen10 keeps running on node1".into(),
            },
        );
        assert!(matches!(
            &moved(&p, &at("t1"), &o, &[waits])[..],
            [Moved::Moves { planned, now }] if planned.len() == 1 && now[0].contains("WAITS")
        ));
        // A plan that showed a move the nodes no longer call for (done meanwhile).
        assert!(matches!(
            &moved(&p, &at("t1"), &o, &[])[..],
            [Moved::Moves { planned, now }] if planned.len() == 1 && now.is_empty()
        ));
        // --if-moved replan says how the moves differ.
        let mut fresh = p.clone();
        fresh.moves = vec![other];
        assert_eq!(
            differences(&p, &fresh),
            "moves:\n  now:     move vps xen10: node1 → node3 (disk 1 GiB)\n  not now: move vps xen10: node1 → node2 (disk 1 GiB)\n"
        );
    }

    #[test]
    fn differences_name_steps_added_and_dropped() {
        let o = obs(state("d1", false));
        let p = reviewed(&o);
        assert_eq!(differences(&p, &p), "");
        let mut fresh = p.clone();
        fresh.nodes = vec![node_plan(
            "node1",
            "d2",
            vec![step("xen10", Op::Reboot { generation: 2 })],
        )];
        assert_eq!(
            differences(&p, &fresh),
            "node1:\n  now:     ! xen10: reboot (generation 2)\n  not now: + xen10: start domain\n"
        );
    }

    /// A cached ISO that appeared since the plan was made moves the node's digest, and the
    /// node's step that removes it is a difference like any VPS's.
    #[test]
    fn a_cached_iso_is_part_of_what_a_reviewed_plan_was_made_from() {
        let mut with_iso = state("", false);
        with_iso.isos.insert("ab".repeat(32).parse().unwrap());
        with_iso.digest = crate::observe::digest(&with_iso);
        let mut without = state("", false);
        without.digest = crate::observe::digest(&without);
        let p = reviewed(&obs(without));
        let m = moved(&p, &at("t1"), &obs(with_iso), &[]);
        assert!(matches!(m.as_slice(), [Moved::Node { .. }]), "{m:?}");
        let remove = Op::RemoveIso {
            sha256: "ab".repeat(32),
            path: format!("/var/cache/gitvps/iso/{}.iso", "ab".repeat(32)),
        };
        let mut fresh = p.clone();
        fresh.nodes = vec![node_plan(
            "node1",
            "d1",
            vec![step("xen10", Op::Start), step("node1", remove)],
        )];
        assert_eq!(
            differences(&p, &fresh),
            "node1:\n  now:     - node1: remove cached ISO abababababab (no VPS uses it)\n"
        );
    }
}
