//! Moving a VPS to another node: which VPSes have their disk on a node other than the one the
//! inventory puts them on, and whether each move may go now. Pure; the executor carries it out.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;

use model::values::{Size, State};
use model::{NodeId, VpsId};
use serde::{Deserialize, Serialize};

use crate::desired::{Desired, NodeSpec, Store, VpsSpec, config_path, disk_path};
use crate::observe::{NodeState, Observation, Record};
use crate::plan::StepPaths;

/// One VPS to move from the node holding its disk to the node the inventory names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Move {
    /// The VPS.
    pub vps: VpsId,
    /// The node holding its disk (the source).
    pub from: NodeId,
    /// The node the inventory puts it on (the target).
    pub to: NodeId,
    /// The size of the disk on the source, in bytes (0 when the source did not answer): the
    /// target's disk is made this size, and grown afterwards when the product gives more.
    pub bytes: u64,
    /// Its disk and config on the source.
    pub source: StepPaths,
    /// Its disk and config on the target.
    pub target: StepPaths,
    /// The source's record of the VPS (its action counters), written on the target with the
    /// copy, so that no action runs a second time after the move.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record: Option<Record>,
    /// The target holds a disk of the VPS already: a move that was interrupted. That copy is
    /// never trusted: it is overwritten unless the node recorded it as verified.
    #[serde(default)]
    pub resumes: bool,
    /// Whether it goes now.
    pub decision: Decision,
}

/// Whether a move goes now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "decision", rename_all = "lowercase")]
pub enum Decision {
    /// The move goes in this apply.
    Go,
    /// A node did not answer: the move waits, the source keeps the VPS (and keeps it running).
    Waits {
        /// Why.
        reason: String,
    },
    /// The move may not go as the inventory stands (no room, maintenance, ...): the source
    /// keeps the VPS until the inventory changes.
    Refused {
        /// Why.
        reason: String,
    },
}

impl Move {
    /// Whether the move goes in this apply.
    pub fn goes(&self) -> bool {
        self.decision == Decision::Go
    }

    /// The plan's line: `move vps xen10: node1 → node2 (disk 30 GiB)`, with why it waits or
    /// is refused.
    pub fn line(&self) -> String {
        let mut out = format!("move vps {}: {} → {}", self.vps, self.from, self.to);
        if self.bytes > 0 {
            let _ = write!(out, " (disk {})", Size(self.bytes));
        }
        if self.resumes && self.goes() {
            out.push_str(", resuming an interrupted move");
        }
        match &self.decision {
            Decision::Go => {}
            Decision::Waits { reason } => {
                let _ = write!(out, ": WAITS: {reason}");
            }
            Decision::Refused { reason } => {
                let _ = write!(out, ": REFUSED: {reason}");
            }
        }
        out
    }

    /// The note on the target node while the VPS is held there (no steps for it).
    pub fn held_note(&self) -> String {
        match self.decision {
            Decision::Go => format!(
                "{}: no steps here before its move from {} is done",
                self.vps, self.from
            ),
            _ => format!(
                "{}: no steps here: its disk is on {} and the move does not go (see Moves)",
                self.vps, self.from
            ),
        }
    }
}

/// The VPSes held on each target node: their moves' notes, by VPS. A held VPS gets no steps
/// on its target (a fresh disk and install would stand beside the real one on the source).
pub fn held(moves: &[Move]) -> BTreeMap<NodeId, BTreeMap<VpsId, String>> {
    let mut out: BTreeMap<NodeId, BTreeMap<VpsId, String>> = BTreeMap::new();
    for m in moves {
        out.entry(m.to.clone())
            .or_default()
            .insert(m.vps.clone(), m.held_note());
    }
    out
}

/// A given (saved or reviewed) plan's moves as they stand now: each goes only when the
/// nodes, observed now (`fresh`, from [`find`]), still call for the same move; the others
/// wait for a new plan.
pub fn still(given: &[Move], fresh: &[Move]) -> Vec<Move> {
    (given.iter())
        .map(|m| {
            let goes_now = (fresh.iter())
                .any(|f| f.goes() && (&f.vps, &f.from, &f.to) == (&m.vps, &m.from, &m.to));
            let mut m = m.clone();
            if m.goes() && !goes_now {
                m.decision = Decision::Waits {
                    reason: "the nodes changed since the plan was made; run gitvps plan again"
                        .into(),
                };
            }
            m
        })
        .collect()
}

/// The moves the observed nodes call for. A VPS moves when a node other than its own holds
/// its disk; `last_seen` (the node each VPS was last observed on, from the status branch)
/// finds the moves whose source did not answer, so that they wait instead of installing a
/// fresh VPS on the target.
pub fn find(
    desired: &Desired,
    observed: &BTreeMap<NodeId, Observation>,
    last_seen: &BTreeMap<VpsId, NodeId>,
) -> Vec<Move> {
    // Which answering nodes hold a disk of each name, in one pass over what they reported: a
    // VPS's holders are then a lookup, not a scan of the fleet (VPSes times nodes).
    let mut holders: Holders = HashMap::new();
    for n in desired.nodes.values() {
        if let Some(s) = reachable(observed, &n.node) {
            for disk in s.disks.keys() {
                holders.entry(disk.as_str()).or_default().push((n, s));
            }
        }
    }
    let mut out = Vec::new();
    for to in desired.nodes.values() {
        for v in to.vps.values().filter(|v| v.state != State::Destroyed) {
            if let Some(m) = find_one(desired, observed, last_seen, &holders, to, v) {
                out.push(m);
            }
        }
    }
    out
}

/// The answering nodes holding a disk of each name (with what they reported), in node order.
type Holders<'a> = HashMap<&'a str, Vec<(&'a NodeSpec, &'a NodeState)>>;

fn reachable<'a>(
    observed: &'a BTreeMap<NodeId, Observation>,
    node: &NodeId,
) -> Option<&'a NodeState> {
    match observed.get(node)? {
        Observation::Reachable(s) => Some(s),
        Observation::Unreachable { .. } => None,
    }
}

/// The move of one VPS whose inventory node is `to`, if it has one.
fn find_one(
    desired: &Desired,
    observed: &BTreeMap<NodeId, Observation>,
    last_seen: &BTreeMap<VpsId, NodeId>,
    all_holders: &Holders<'_>,
    to: &NodeSpec,
    v: &VpsSpec,
) -> Option<Move> {
    let name = v.id.as_str();
    let holders: Vec<(&NodeSpec, &NodeState)> = (all_holders.get(name).into_iter().flatten())
        .filter(|(n, _)| n.node != to.node)
        .copied()
        .collect();
    let target_state = reachable(observed, &to.node);
    let (from, bytes, record, decision) = match holders.as_slice() {
        [] => {
            // No answering node holds it: a move only if it was last seen on a node that did
            // not answer now, and the target has no disk of it.
            let from = desired.nodes.get(last_seen.get(&v.id)?)?;
            if from.node == to.node
                || reachable(observed, &from.node).is_some()
                || target_state.is_some_and(|s| s.disks.contains_key(name))
            {
                return None;
            }
            let reason = format!(
                "{} did not answer: {name}'s disk is there; the move waits and nothing is installed on {}",
                from.node, to.node
            );
            (from, 0, None, Decision::Waits { reason })
        }
        [(from, s)] => {
            let bytes = s.disks.get(name).copied().unwrap_or(0);
            let decision =
                match snapshots_refusal(v, from, s).or_else(|| rescue_refusal(v, from, s)) {
                    Some(reason) => Decision::Refused { reason },
                    None => decide(desired, observed, from, to, v, bytes),
                };
            (*from, bytes, s.records.get(name).cloned(), decision)
        }
        several => {
            let names: Vec<&str> = several.iter().map(|(n, _)| n.node.as_str()).collect();
            let reason = format!(
                "{name} has a disk on {}: which one is the VPS is for an operator to say (remove the others by hand)",
                names.join(" and ")
            );
            let (from, s) = several[0];
            let bytes = s.disks.get(name).copied().unwrap_or(0);
            (from, bytes, None, Decision::Refused { reason })
        }
    };
    Some(Move {
        vps: v.id.clone(),
        from: from.node.clone(),
        to: to.node.clone(),
        bytes,
        source: StepPaths {
            disk: disk_path(from, &v.id),
            config: config_path(from, &v.id),
        },
        target: StepPaths {
            disk: v.disk_path.clone(),
            config: v.config_path.clone(),
        },
        record,
        resumes: target_state.is_some_and(|s| s.disks.contains_key(name)),
        decision,
    })
}

/// Where a VPS was last seen: its node and the snapshots that node held of it (the status
/// branch's `node` and `snapshots`).
pub type Seen = BTreeMap<VpsId, (NodeId, Vec<String>)>;

/// `gitvps validate` and `gitvps vps move`: a VPS whose `node` is not the one it was last seen
/// on (a move) while it has snapshots, declared in its file or held on that node, is an error
/// at its `node` line: a move does not carry snapshots.
pub fn snapshot_diagnostics(inv: &model::Inventory, seen: &Seen) -> Vec<model::Diagnostic> {
    let mut out = Vec::new();
    for v in inv.vps.values().filter(|v| v.state != State::Destroyed) {
        let Some((on, held)) = seen.get(&v.id).filter(|(on, _)| *on != v.node) else {
            continue;
        };
        let mut names: Vec<&str> = (v.snapshots.list.iter())
            .map(|s| s.name.as_str())
            .chain(held.iter().map(String::as_str))
            .collect();
        names.sort_unstable();
        names.dedup();
        if names.is_empty() {
            continue;
        }
        out.push(v.origin.diag(
            "node",
            format!(
                "{} has snapshots on {on} ({}): a move to {} does not carry them; keep node = \"{on}\", delete its snapshots (its [[snapshot]] tables) and apply, then move it",
                v.id,
                names.join(", "),
                v.node
            ),
        ));
    }
    out
}

/// Why a VPS with snapshots does not move: a move copies the disk alone, and its LVM
/// snapshots (declared in its file, or still on the source) would be lost on the way, or taken
/// afresh on the target from the moved disk under their old names. `None`: it has none.
fn snapshots_refusal(v: &VpsSpec, from: &NodeSpec, source: &NodeState) -> Option<String> {
    let mut names: Vec<&str> = v.snapshots.names.iter().map(String::as_str).collect();
    if let Some(on_source) = source.snapshots.get(v.id.as_str()) {
        names.extend(on_source.keys().map(String::as_str));
    }
    names.sort_unstable();
    names.dedup();
    if names.is_empty() {
        return None;
    }
    Some(format!(
        "{} has snapshots on {} ({}): a move does not carry them; delete its snapshots first (node back to {}, its [[snapshot]] tables removed, gitvps apply), then move it",
        v.id,
        from.node,
        names.join(", "),
        from.node
    ))
}

/// Why a VPS in rescue mode does not move: the move carries its disk alone, and the target
/// would start it on a rescue image it does not have. `None`: it is not in rescue (asked in its
/// file, or still with a rescue image on the source).
fn rescue_refusal(v: &VpsSpec, from: &NodeSpec, source: &NodeState) -> Option<String> {
    let prefix = format!("{}.", v.id);
    let on_source = source.rescue.iter().any(|n| n.starts_with(&prefix));
    (v.rescue.is_some() || on_source).then(|| {
        format!(
            "{} is in rescue mode on {}: a move does not carry the rescue system; leave rescue mode first (node back to {}, rescue removed, gitvps apply), then move it",
            v.id, from.node, from.node
        )
    })
}

/// Whether a move whose source answered may go now.
fn decide(
    desired: &Desired,
    observed: &BTreeMap<NodeId, Observation>,
    from: &NodeSpec,
    to: &NodeSpec,
    v: &VpsSpec,
    bytes: u64,
) -> Decision {
    let refused = |reason: String| Decision::Refused { reason };
    let name = v.id.as_str();
    match observed.get(&to.node) {
        None => {
            return Decision::Waits {
                reason: format!(
                    "{} was not observed (select it too with --node); {name} stays on {}",
                    to.node, from.node
                ),
            };
        }
        Some(Observation::Unreachable { .. }) => {
            return Decision::Waits {
                reason: format!(
                    "{} did not answer; {name} keeps running on {}",
                    to.node, from.node
                ),
            };
        }
        Some(Observation::Reachable(_)) => {}
    }
    let room = desired.room.get(&to.node).cloned().unwrap_or_default();
    if room.maintenance {
        return refused(format!(
            "{} is in maintenance; {name} stays on {}",
            to.node, from.node
        ));
    }
    if let Some(over) = room.over {
        return refused(format!(
            "{} has no room for it ({over}); {name} stays on {}",
            to.node, from.node
        ));
    }
    if from.hypervisor != to.hypervisor {
        return refused(format!(
            "{} runs {} and {} runs {}: a move keeps the hypervisor",
            from.node, from.hypervisor, to.node, to.hypervisor
        ));
    }
    // The copy is the disk's bytes as they are: a qcow2 image goes to a qcow2 image, a raw
    // image or a logical volume to either of those, never one kind into the other.
    let qcow2 = |s: &Store| s.image_format() == Some(model::values::ImageFormat::Qcow2);
    if qcow2(&from.store) != qcow2(&to.store) {
        let kind = |s: &Store| {
            if qcow2(s) {
                "qcow2 images"
            } else {
                "raw disks"
            }
        };
        return refused(format!(
            "{} keeps {} and {} keeps {}: a move copies the disk as it is, so both keep the same kind",
            from.node,
            kind(&from.store),
            to.node,
            kind(&to.store)
        ));
    }
    if bytes > v.disk_bytes {
        return refused(format!(
            "its disk on {} is {} but product `{}` gives {}: shrinking is refused",
            from.node,
            Size(bytes),
            v.product,
            Size(v.disk_bytes)
        ));
    }
    Decision::Go
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::desired::Room;
    use model::values::Hypervisor;

    fn id<T: std::str::FromStr>(s: &str) -> T
    where
        T::Err: std::fmt::Debug,
    {
        s.parse().unwrap()
    }

    fn node(name: &str) -> NodeSpec {
        NodeSpec {
            node: id(name),
            address: format!("{name}:22"),
            root: format!("/srv/{name}"),
            sudo: false,
            hypervisor: Hypervisor::Xen,
            accel: None,
            boot_timeout_secs: 0,
            vps_at_once: 1,
            store: Store::Lvm { vg: "vg0".into() },
            vps: BTreeMap::new(),
        }
    }

    fn vps(on: &NodeSpec, name: &str) -> VpsSpec {
        let vid: VpsId = id(name);
        VpsSpec {
            disk_path: disk_path(on, &vid),
            config_path: config_path(on, &vid),
            id: vid,
            state: State::Active,
            product: "basic".into(),
            run: true,
            disk_bytes: 20 << 30,
            adopted: false,
            config: "cfg".into(),
            config_sha256: "c".into(),
            actions: model::Actions::default(),
            destroyed: None,
            install: None,
            console: None,
            tap: None,
            restore: None,
            iso: None,
            rescue: None,
            rescue_waits: false,
            snapshots: Default::default(),
        }
    }

    /// Two Xen/LVM nodes; the inventory puts `xen10` on `xen02`.
    fn fleet() -> Desired {
        let a = node("xen01");
        let mut b = node("xen02");
        let v = vps(&b, "xen10");
        b.vps.insert(v.id.clone(), v);
        Desired {
            nodes: [(a.node.clone(), a), (b.node.clone(), b)].into(),
            retention_days: 7,
            shutdown_timeout_secs: 60,
            room: BTreeMap::new(),
        }
    }

    fn holding(disks: &[(&str, u64)]) -> Observation {
        let mut s = NodeState::default();
        for (n, b) in disks {
            s.disks.insert((*n).to_owned(), *b);
        }
        s.records.insert(
            "xen10".into(),
            Record {
                reboot: 3,
                installed: true,
                ..Record::default()
            },
        );
        Observation::Reachable(s)
    }

    fn down() -> Observation {
        Observation::Unreachable {
            reason: "connection refused".into(),
        }
    }

    fn observed(a: Observation, b: Observation) -> BTreeMap<NodeId, Observation> {
        [(id("xen01"), a), (id("xen02"), b)].into()
    }

    #[test]
    fn a_disk_on_another_node_is_a_move_not_a_fresh_install() {
        let d = fleet();
        let obs = observed(holding(&[("xen10", 20 << 30)]), holding(&[]));
        let moves = find(&d, &obs, &BTreeMap::new());
        assert_eq!(moves.len(), 1);
        let m = &moves[0];
        assert_eq!(m.line(), "move vps xen10: xen01 → xen02 (disk 20 GiB)");
        assert!(m.goes() && !m.resumes);
        assert_eq!(m.source.disk, "/srv/xen01/dev/vg0/xen10");
        assert_eq!(m.source.config, "/srv/xen01/etc/xen/gitvps/xen10.cfg");
        assert_eq!(m.target.disk, "/srv/xen02/dev/vg0/xen10");
        assert_eq!(m.record.as_ref().map(|r| r.reboot), Some(3));
        let held = held(&moves);
        assert!(held[&id::<NodeId>("xen02")].contains_key(&id::<VpsId>("xen10")));
    }

    #[test]
    fn nothing_moves_when_only_the_target_holds_the_disk() {
        let d = fleet();
        let obs = observed(holding(&[]), holding(&[("xen10", 20 << 30)]));
        assert!(find(&d, &obs, &BTreeMap::new()).is_empty());
        // A new VPS (no disk anywhere, never seen) is no move either.
        let obs = observed(holding(&[]), holding(&[]));
        assert!(find(&d, &obs, &BTreeMap::new()).is_empty());
    }

    #[test]
    fn an_unreachable_target_makes_the_move_wait() {
        let d = fleet();
        let obs = observed(holding(&[("xen10", 20 << 30)]), down());
        let m = &find(&d, &obs, &BTreeMap::new())[0];
        assert!(!m.goes());
        assert_eq!(
            m.line(),
            "move vps xen10: xen01 → xen02 (disk 20 GiB): WAITS: xen02 did not answer; xen10 keeps running on xen01"
        );
    }

    #[test]
    fn an_unreachable_source_it_was_last_seen_on_makes_the_move_wait() {
        let d = fleet();
        let obs = observed(down(), holding(&[]));
        // Without knowing where it was, nothing can be said: no move.
        assert!(find(&d, &obs, &BTreeMap::new()).is_empty());
        let seen = BTreeMap::from([(id::<VpsId>("xen10"), id::<NodeId>("xen01"))]);
        let moves = find(&d, &obs, &seen);
        assert_eq!(moves.len(), 1);
        assert!(matches!(moves[0].decision, Decision::Waits { .. }));
        assert_eq!(
            moves[0].line(),
            "move vps xen10: xen01 → xen02: WAITS: xen01 did not answer: xen10's disk is there; the move waits and nothing is installed on xen02"
        );
        // It was last seen there, the node answers and has no disk of it: the move is done.
        let obs = observed(holding(&[]), holding(&[("xen10", 20 << 30)]));
        assert!(find(&d, &obs, &seen).is_empty());
    }

    #[test]
    fn a_disk_on_both_nodes_resumes_an_interrupted_move() {
        let d = fleet();
        let obs = observed(
            holding(&[("xen10", 20 << 30)]),
            holding(&[("xen10", 20 << 30)]),
        );
        let m = &find(&d, &obs, &BTreeMap::new())[0];
        assert!(m.goes() && m.resumes);
        assert_eq!(
            m.line(),
            "move vps xen10: xen01 → xen02 (disk 20 GiB), resuming an interrupted move"
        );
    }

    #[test]
    fn a_target_in_maintenance_or_without_room_refuses_the_move() {
        let mut d = fleet();
        let obs = observed(holding(&[("xen10", 20 << 30)]), holding(&[]));
        d.room.insert(
            id("xen02"),
            Room {
                maintenance: true,
                over: None,
            },
        );
        let m = &find(&d, &obs, &BTreeMap::new())[0];
        assert_eq!(
            m.decision,
            Decision::Refused {
                reason: "xen02 is in maintenance; xen10 stays on xen01".into()
            }
        );
        d.room.insert(
            id("xen02"),
            Room {
                maintenance: false,
                over: Some("disk: its VPSes take 2 TiB, it sells 1 TiB".into()),
            },
        );
        let m = &find(&d, &obs, &BTreeMap::new())[0];
        assert_eq!(
            m.line(),
            "move vps xen10: xen01 → xen02 (disk 20 GiB): REFUSED: xen02 has no room for it (disk: its VPSes take 2 TiB, it sells 1 TiB); xen10 stays on xen01"
        );
    }

    /// A VPS with snapshots, declared or still on the source, is not moved: the plan says to
    /// delete them first, and the VPS stays held (nothing installed on the target).
    #[test]
    fn a_vps_with_snapshots_is_refused_until_they_are_deleted() {
        let mut d = fleet();
        if let Some(v) = (d.nodes.get_mut(&id::<NodeId>("xen02")))
            .and_then(|n| n.vps.get_mut(&id::<VpsId>("xen10")))
        {
            v.snapshots.names = vec!["before-upgrade".into()];
        }
        let obs = observed(holding(&[("xen10", 20 << 30)]), holding(&[]));
        let m = &find(&d, &obs, &BTreeMap::new())[0];
        assert_eq!(
            m.line(),
            "move vps xen10: xen01 → xen02 (disk 20 GiB): REFUSED: xen10 has snapshots on xen01 (before-upgrade): a move does not carry them; delete its snapshots first (node back to xen01, its [[snapshot]] tables removed, gitvps apply), then move it"
        );
        assert!(held(std::slice::from_ref(m))[&id::<NodeId>("xen02")].contains_key(&m.vps));
        // Deleted from the file but still on the source (no apply since): still refused.
        let d = fleet();
        let mut src = holding(&[("xen10", 20 << 30)]);
        if let Observation::Reachable(s) = &mut src {
            s.snapshots
                .insert("xen10".into(), [("daily".to_owned(), 1 << 30)].into());
        }
        let m = &find(&d, &observed(src, holding(&[])), &BTreeMap::new())[0];
        assert!(
            matches!(&m.decision, Decision::Refused { reason } if reason.contains("on xen01 (daily)")),
            "{m:?}"
        );
    }

    /// A VPS in rescue mode (its rescue image still on the source) is not moved.
    #[test]
    fn a_vps_in_rescue_mode_is_refused_until_it_leaves() {
        let d = fleet();
        let mut src = holding(&[("xen10", 20 << 30)]);
        if let Observation::Reachable(s) = &mut src {
            s.rescue.insert("xen10.0123456789ab".into());
        }
        let m = &find(&d, &observed(src, holding(&[])), &BTreeMap::new())[0];
        assert!(
            matches!(&m.decision, Decision::Refused { reason } if reason.contains("xen10 is in rescue mode on xen01")),
            "{m:?}"
        );
    }

    #[test]
    fn a_saved_plans_move_goes_only_while_the_nodes_still_call_for_it() {
        let d = fleet();
        let obs = observed(holding(&[("xen10", 20 << 30)]), holding(&[]));
        let given = find(&d, &obs, &BTreeMap::new());
        assert_eq!(still(&given, &given), given);
        // Done meanwhile (or the target went away): it waits, saying why.
        let now = still(&given, &[]);
        assert_eq!(
            now[0].line(),
            "move vps xen10: xen01 → xen02 (disk 20 GiB): WAITS: the nodes changed since the plan was made; run gitvps plan again"
        );
    }

    /// qcow2 images move between nodes that keep qcow2 images (the image file is copied as it
    /// is); a qcow2 image is never copied into a raw disk, nor a raw disk into a qcow2 image.
    #[test]
    fn qcow2_images_move_between_qcow2_nodes_only() {
        let qcow2 = || Store::File {
            dir: "/var/lib/gitvps/disks".into(),
            format: model::values::ImageFormat::Qcow2,
        };
        let with = |a: Store, b: Store| {
            let mut d = fleet();
            for (n, s) in [("xen01", a), ("xen02", b)] {
                if let Some(n) = d.nodes.get_mut(&id::<NodeId>(n)) {
                    n.hypervisor = Hypervisor::Kvm;
                    n.store = s;
                    let on = n.clone();
                    for v in n.vps.values_mut() {
                        v.disk_path = disk_path(&on, &v.id);
                    }
                }
            }
            let obs = observed(holding(&[("xen10", 20 << 30)]), holding(&[]));
            find(&d, &obs, &BTreeMap::new()).remove(0)
        };
        let m = with(qcow2(), qcow2());
        assert!(m.goes(), "{m:?}");
        assert_eq!(m.source.disk, "/var/lib/gitvps/disks/xen10.qcow2");
        assert_eq!(m.target.disk, m.source.disk, "the same store on each node");
        let m = with(Store::Lvm { vg: "vg0".into() }, qcow2());
        assert_eq!(
            m.decision,
            Decision::Refused {
                reason: "xen01 keeps raw disks and xen02 keeps qcow2 images: a move copies the disk as it is, so both keep the same kind".into()
            }
        );
        let m = with(qcow2(), Store::Lvm { vg: "vg0".into() });
        assert!(!m.goes(), "{m:?}");
    }

    #[test]
    fn a_larger_disk_another_hypervisor_or_two_holders_are_refused() {
        let d = fleet();
        let obs = observed(holding(&[("xen10", 40 << 30)]), holding(&[]));
        let m = &find(&d, &obs, &BTreeMap::new())[0];
        assert!(
            matches!(&m.decision, Decision::Refused { reason } if reason.contains("shrinking is refused")),
            "{m:?}"
        );
        let mut d = fleet();
        if let Some(n) = d.nodes.get_mut(&id::<NodeId>("xen01")) {
            n.hypervisor = Hypervisor::Kvm;
        }
        let obs = observed(holding(&[("xen10", 20 << 30)]), holding(&[]));
        let m = &find(&d, &obs, &BTreeMap::new())[0];
        assert!(
            matches!(&m.decision, Decision::Refused { reason } if reason.contains("keeps the hypervisor")),
            "{m:?}"
        );
        let mut d = fleet();
        let c = node("xen03");
        d.nodes.insert(c.node.clone(), c);
        let mut obs = observed(holding(&[("xen10", 20 << 30)]), holding(&[]));
        obs.insert(id("xen03"), holding(&[("xen10", 20 << 30)]));
        let m = &find(&d, &obs, &BTreeMap::new())[0];
        assert!(
            matches!(&m.decision, Decision::Refused { reason } if reason.contains("xen01 and xen03")),
            "{m:?}"
        );
    }
}
