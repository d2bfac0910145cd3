//! The planner: a pure function (desired, observed) → ordered steps per node.
//! It decides everything (paths, sizes, config text, records); apply only carries steps out.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use model::values::Size;
use model::{NodeId, VpsId};
use serde::{Deserialize, Serialize};

use crate::desired::{
    ConsoleSpec, Desired, InstallSpec, IsoSpec, NodeSpec, RescueSpec, RestoreSpec, Store, VpsSpec,
};
use crate::drift::Drift;
use crate::observe::{Domain, NodeState, Observation, Record};

mod vps;
use vps::plan_vps;

/// What a step does. Every operation is idempotent on the node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op {
    /// Create the disk (a logical volume or an image file).
    CreateDisk {
        /// Size in bytes.
        bytes: u64,
    },
    /// Grow the disk and its filesystem; the domain is stopped first.
    GrowDisk {
        /// Current size.
        from: u64,
        /// New size.
        to: u64,
        /// Also check and grow the filesystem (false while no OS is installed).
        resize_fs: bool,
    },
    /// Write the domain config.
    WriteConfig {
        /// The config text.
        content: String,
        /// Its sha256.
        sha256: String,
        /// Whether a config existed (a change rather than a creation).
        replaces: bool,
    },
    /// Start the domain (`xl create`).
    Start,
    /// Shut the domain down gracefully, destroying it after the timeout.
    Stop {
        /// Why, for the plan's reader.
        reason: String,
        /// Seconds to wait for the guest.
        timeout_secs: u32,
    },
    /// Destroy the domain at once.
    Destroy {
        /// Why.
        reason: String,
    },
    /// Reboot the running domain.
    Reboot {
        /// The generation asked for.
        generation: u64,
    },
    /// Check the filesystem of the (stopped) disk.
    Fsck {
        /// The generation asked for.
        generation: u64,
    },
    /// Install the OS on a disk that has none yet (a new disk).
    Install {
        /// What to install and how.
        spec: Box<InstallSpec>,
    },
    /// Erase the disk and install the OS again.
    Reinstall {
        /// The generation asked for.
        generation: u64,
        /// What to install and how.
        spec: Box<InstallSpec>,
    },
    /// Check, before anything is stopped or erased, that the backup of `[restore]` is one of
    /// the VPS it names (its `vps=` tag in the repository) and fits on the disk.
    CheckBackup {
        /// The restore.
        restore: Box<RestoreSpec>,
        /// The disk's size: the backup may not be larger.
        max_bytes: u64,
    },
    /// Write the backup onto the (stopped) disk, erasing it.
    Restore {
        /// The restore.
        restore: Box<RestoreSpec>,
        /// The disk's size: the backup may not be larger.
        max_bytes: u64,
    },
    /// Fetch the ISO of `[boot]` into the node's cache and check its sha256, before anything
    /// is stopped or rewritten: a bad ISO leaves the VPS as it was.
    FetchIso {
        /// The ISO.
        iso: Box<IsoSpec>,
    },
    /// A step of the node, not of one VPS: remove an ISO from the node's cache that no VPS
    /// on the node attaches any more. It runs after every VPS's steps (a guest that ejects it
    /// is restarted first), is skipped when one of them failed, and fails, removing nothing,
    /// while a process still holds the file open.
    RemoveIso {
        /// The ISO's sha256.
        sha256: String,
        /// Its path in the cache.
        path: String,
    },
    /// Build the VPS's rescue system image (`rescue = true`), before anything is stopped: the
    /// rescue OS from the bootstraps with the customer's keys and the VPS's addresses. The
    /// VPS's disk is not touched.
    BuildRescue {
        /// The image and how it is built.
        rescue: Box<RescueSpec>,
    },
    /// Remove rescue system images of the VPS that its config no longer boots (it left rescue,
    /// or its keys or addresses changed); the guest is down or runs another image. The VPS's
    /// disk is not touched.
    DropRescue {
        /// The images' paths.
        images: Vec<String>,
    },
    /// Only write the record (an action that needs no work, e.g. reboot of a stopped VPS).
    Record {
        /// What is recorded, for the reader.
        note: String,
    },
    /// Give the customer's keys console access (the console user, its keys, its sudo rule).
    WriteConsole {
        /// The console user and its files.
        spec: Box<ConsoleSpec>,
        /// Whether keys were there already (a change rather than a creation).
        replaces: bool,
    },
    /// Take console access away (suspended, destroyed, or no keys).
    RemoveConsole {
        /// The console user's home.
        home: String,
        /// The sudo rule to remove.
        sudoers_path: String,
    },
    /// Load a running bridged guest's network filter again (its rules were lost).
    RestoreFilter,
    /// Remove the domain config.
    RemoveConfig,
    /// Remove the disk of a destroyed VPS after its retention.
    RemoveDisk {
        /// Why now.
        reason: String,
    },
    /// Take a customer snapshot of the disk (`[[snapshot]]`); the guest may run (the snapshot is
    /// what a power cut at that instant would leave).
    TakeSnapshot {
        /// Its name.
        name: String,
        /// The copy-on-write area LVM allocates for it, bytes.
        cow_bytes: u64,
    },
    /// Bring the stopped disk back to a snapshot (`[revert]`), which is kept: the disk's
    /// changes since are lost.
    RevertSnapshot {
        /// The snapshot.
        name: String,
        /// The revert's generation, done once.
        generation: u64,
        /// The copy-on-write area of the snapshot taken again after the merge, bytes.
        cow_bytes: u64,
    },
    /// Delete a snapshot the VPS file no longer declares.
    DeleteSnapshot {
        /// Its name.
        name: String,
    },
}

/// One step on one node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    /// The VPS it concerns; for a step of the node itself ([`Op::of_node`]), the node's id.
    pub vps: VpsId,
    /// What to do.
    #[serde(flatten)]
    pub op: Op,
    /// The VPS's record once the step succeeded, when it changes.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub record: Option<Record>,
    /// Paths and sizes the step needs, fixed by the planner.
    pub target: StepPaths,
}

/// The node paths a step works on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepPaths {
    /// The disk device or image.
    pub disk: String,
    /// The domain config.
    pub config: String,
}

/// Something the reader should know that is not a step.
pub type Note = String;

/// The plan for one node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "lowercase")]
pub enum NodePlan {
    /// The node answered.
    Reachable {
        /// The node.
        node: NodeId,
        /// `host:port`.
        address: String,
        /// Digest of the observed state the plan was made from.
        digest: String,
        /// Node root.
        root: String,
        /// Disk storage.
        store: Store,
        /// Steps, in the order they must run.
        steps: Vec<Step>,
        /// Things left alone, and why.
        notes: Vec<Note>,
        /// Domains on the node that the inventory does not declare there (unknown ones, and
        /// VPSes the inventory puts on another node, as after a change of `node`): never
        /// touched, always reported, and counted in the plan's summary line.
        #[serde(default)]
        undeclared: Vec<Note>,
    },
    /// The node did not answer; its VPSes get no steps.
    Unreachable {
        /// The node.
        node: NodeId,
        /// `host:port`.
        address: String,
        /// Why.
        reason: String,
        /// Its VPSes, which get no steps.
        vps: Vec<VpsId>,
    },
}

impl NodePlan {
    /// The node.
    pub fn node(&self) -> &NodeId {
        match self {
            NodePlan::Reachable { node, .. } | NodePlan::Unreachable { node, .. } => node,
        }
    }

    /// Its steps (none when unreachable).
    pub fn steps(&self) -> &[Step] {
        match self {
            NodePlan::Reachable { steps, .. } => steps,
            NodePlan::Unreachable { .. } => &[],
        }
    }
}

/// The plan for the fleet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    /// Format version of a saved plan.
    pub version: u32,
    /// One entry per node, by node id.
    pub nodes: Vec<NodePlan>,
    /// What changed outside gitvps since the last apply, by node (nodes without drift, or
    /// without a snapshot of their last apply, are left out). Filled by the caller, which
    /// reads the snapshots from the status branch (`crate::drift`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub drift: BTreeMap<NodeId, Vec<Drift>>,
    /// What the plan was made from (the inventory's commit and tree, each node's observed
    /// state), recorded in a saved plan for `gitvps apply --reviewed` (`crate::reviewed`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub made_from: Option<crate::reviewed::MadeFrom>,
    /// VPSes whose disk is on another node than the inventory's (`crate::moves`): moved first
    /// by apply when they go, and held (no steps) on their target until then.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub moves: Vec<crate::moves::Move>,
}

/// The counts of a plan, for its summary line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// Steps that create (`+`).
    pub add: usize,
    /// Steps that change (`~`).
    pub change: usize,
    /// Steps that stop or remove (`-`).
    pub remove: usize,
    /// Actions (`!`).
    pub actions: usize,
    /// Steps that erase a disk.
    pub erase: usize,
    /// Nodes planned.
    pub nodes: usize,
    /// Nodes that did not answer.
    pub unreachable: usize,
    /// Domains on nodes that the inventory does not declare there.
    pub undeclared: usize,
    /// Things changed outside gitvps since the last apply.
    pub drift: usize,
    /// Moves that go in this apply.
    pub moves: usize,
    /// Moves that wait or are refused.
    pub moves_held: usize,
}

impl Summary {
    /// The summary line, without its final period:
    /// `Plan: 1 to add, 0 to change, 0 to stop or remove, 0 action(s) on 1 node(s)`.
    pub fn line(&self) -> String {
        let mut out = format!(
            "Plan: {} to add, {} to change, {} to stop or remove, {} action(s) on {} node(s)",
            self.add, self.change, self.remove, self.actions, self.nodes
        );
        if self.moves > 0 {
            let _ = write!(out, "; {} VPS(es) to move", self.moves);
        }
        if self.moves_held > 0 {
            let _ = write!(out, "; {} move(s) WAIT or REFUSED", self.moves_held);
        }
        if self.erase > 0 {
            let _ = write!(out, "; {} step(s) ERASE A DISK", self.erase);
        }
        if self.unreachable > 0 {
            let _ = write!(out, "; {} unreachable", self.unreachable);
        }
        if self.undeclared > 0 {
            let _ = write!(
                out,
                "; {} domain(s) the inventory does not declare there",
                self.undeclared
            );
        }
        if self.drift > 0 {
            let _ = write!(out, "; {} change(s) outside gitvps", self.drift);
        }
        out
    }
}

impl Plan {
    /// Whether any node has a step.
    pub fn has_changes(&self) -> bool {
        self.nodes.iter().any(|n| !n.steps().is_empty()) || self.moves.iter().any(|m| m.goes())
    }

    /// Whether any node was unreachable.
    pub fn has_unreachable(&self) -> bool {
        self.nodes
            .iter()
            .any(|n| matches!(n, NodePlan::Unreachable { .. }))
    }

    /// Whether anything changed outside gitvps.
    pub fn has_drift(&self) -> bool {
        self.drift.values().any(|d| !d.is_empty())
    }

    /// The counts of the summary line.
    pub fn summary(&self) -> Summary {
        let mut s = Summary {
            nodes: self.nodes.len(),
            drift: self.drift.values().map(Vec::len).sum(),
            moves: self.moves.iter().filter(|m| m.goes()).count(),
            moves_held: self.moves.iter().filter(|m| !m.goes()).count(),
            ..Summary::default()
        };
        for n in &self.nodes {
            match n {
                NodePlan::Unreachable { .. } => s.unreachable += 1,
                NodePlan::Reachable { undeclared, .. } => s.undeclared += undeclared.len(),
            }
            for step in n.steps() {
                match step.op.symbol() {
                    '+' => s.add += 1,
                    '~' => s.change += 1,
                    '-' => s.remove += 1,
                    _ => s.actions += 1,
                }
                if step.op.destructive() {
                    s.erase += 1;
                }
            }
        }
        s
    }
}

/// Plans every node of `desired` against what was observed. Nodes missing from
/// `observed` (not selected with `--node`) are left out of the plan.
pub fn plan(desired: &Desired, observed: &BTreeMap<NodeId, Observation>) -> Plan {
    plan_with(desired, observed, &BTreeMap::new())
}

/// [`plan`], knowing the node each VPS was last observed on (the status branch), so that a
/// move whose source does not answer waits instead of installing a fresh VPS on the target.
pub fn plan_with(
    desired: &Desired,
    observed: &BTreeMap<NodeId, Observation>,
    last_seen: &BTreeMap<VpsId, NodeId>,
) -> Plan {
    let moves = crate::moves::find(desired, observed, last_seen);
    let held = crate::moves::held(&moves);
    let none = BTreeMap::new();
    let nodes = desired
        .nodes
        .values()
        .filter_map(|spec| {
            let obs = observed.get(&spec.node)?;
            Some(match obs {
                Observation::Unreachable { reason } => NodePlan::Unreachable {
                    node: spec.node.clone(),
                    address: spec.address.clone(),
                    reason: reason.clone(),
                    vps: spec.vps.keys().cloned().collect(),
                },
                Observation::Reachable(state) => {
                    plan_node_holding(desired, spec, state, held.get(&spec.node).unwrap_or(&none))
                }
            })
        })
        .collect();
    Plan {
        version: 1,
        nodes,
        drift: BTreeMap::new(),
        made_from: None,
        moves,
    }
}

/// Plans one reachable node.
pub fn plan_node(desired: &Desired, spec: &NodeSpec, obs: &NodeState) -> NodePlan {
    plan_node_holding(desired, spec, obs, &BTreeMap::new())
}

/// [`plan_node`] with some VPSes held: they get no steps, only their note (a VPS whose move
/// to this node has not happened yet: see `crate::moves`).
pub fn plan_node_holding(
    desired: &Desired,
    spec: &NodeSpec,
    obs: &NodeState,
    hold: &BTreeMap<VpsId, Note>,
) -> NodePlan {
    let mut steps = Vec::new();
    let mut notes = Vec::new();
    for v in spec.vps.values() {
        if let Some(note) = hold.get(&v.id) {
            notes.push(note.clone());
            continue;
        }
        plan_vps(desired, spec, v, obs, &mut steps, &mut notes);
        if !v.adopted {
            plan_console(&spec.root, v, obs, &mut steps);
        }
    }
    plan_iso_cache(desired, spec, obs, &mut steps);
    let elsewhere = |name: &str| {
        desired
            .nodes
            .values()
            .find(|n| n.node != spec.node && n.vps.keys().any(|k| k.as_str() == name))
            .map(|n| n.node.clone())
    };
    if let Some(k) = &obs.kvm {
        if k.qemu.is_none() {
            notes.push(
                "qemu-system-x86_64 is not installed on this node: its guests cannot start (apt-get install qemu-system-x86 socat)".into(),
            );
        } else if spec.accel == Some(model::values::Accel::Kvm) && !k.accel_kvm {
            notes.push(format!(
                "accel = \"kvm\" but KVM does not work on this node ({}): its guests cannot start; fix /dev/kvm or set [kvm] accel = \"tcg\"",
                if k.accel_error.is_empty() { "no reason given" } else { k.accel_error.as_str() }
            ));
        }
    }
    let declared = |name: &str| spec.vps.keys().any(|k| k.as_str() == name);
    let undeclared = obs
        .domains
        .iter()
        .filter(|(name, _)| !declared(name))
        .map(|(name, d)| undeclared_domain(name, d, elsewhere(name), obs.disks.contains_key(name)))
        .collect();
    notes.extend(obs.nameless.iter().map(|(id, d)| nameless_domain(*id, d)));
    for name in obs.disks.keys().filter(|n| !declared(n)) {
        notes.push(match elsewhere(name) {
            Some(other) => format!(
                "disk `{name}` belongs to {other} in the inventory: kept here until the VPS runs there (see Moves)"
            ),
            None => format!(
                "disk `{}` is not in the inventory: left alone",
                name.escape_debug()
            ),
        });
    }
    NodePlan::Reachable {
        node: spec.node.clone(),
        address: spec.address.clone(),
        digest: obs.digest.clone(),
        root: spec.root.clone(),
        store: spec.store.clone(),
        steps,
        notes,
        undeclared,
    }
}

/// The plan's line for a domain on a node that the inventory does not declare there. A VPS
/// the inventory puts on another node is one whose `node` changed: it is moved there
/// (`crate::moves`), and this copy is kept until the copy there runs.
fn undeclared_domain(name: &str, d: &Domain, elsewhere: Option<NodeId>, disk_here: bool) -> Note {
    let state = if d.is_up() {
        "runs".to_owned()
    } else {
        format!("is {}", d.state_words())
    };
    match elsewhere {
        Some(other) if !disk_here => format!(
            "domain `{name}` {state} here, but the inventory puts {name} on {other} and its disk \
             is not here: left untouched (stop it by hand)"
        ),
        Some(other) => format!(
            "domain `{name}` {state} here, but the inventory puts {name} on {other}: \
             it moves there (see Moves); this copy and its disk are kept until the copy \
             on {other} runs"
        ),
        None => format!(
            "domain `{}` {state} here and is not in the inventory: left untouched",
            name.escape_debug()
        ),
    }
}

/// The plan's note for a domain `xl list` shows without a name: a domain Xen is still tearing
/// down (its name already gone from xenstore, its memory not yet released), as right after a
/// VPS's stop, or one still being built. Nobody's, so neither acted on nor counted as
/// undeclared; a domain that stays so is worth a look, which the note asks for.
fn nameless_domain(domid: u32, d: &Domain) -> Note {
    let state = if d.is_up() {
        "runs".to_owned()
    } else {
        format!("is {}", d.state_words())
    };
    format!(
        "domain {domid} {state} here without a name: Xen is still tearing it down (or building \
         it); left to Xen (if it stays, look at it with `xl list`)"
    )
}

/// The node's steps, after every VPS's: each cached ISO that no VPS uses is removed. A VPS uses
/// the ISO of its `[boot]` unless it is destroyed; that counts for the VPSes the inventory puts
/// on this node, and for those it puts elsewhere whose domain is still here (a move not done
/// yet: that guest may still boot it).
fn plan_iso_cache(desired: &Desired, spec: &NodeSpec, obs: &NodeState, steps: &mut Vec<Step>) {
    if obs.isos.is_empty() {
        return;
    }
    let used: std::collections::BTreeSet<&str> = (desired.nodes.values())
        .flat_map(|n| n.vps.values())
        .filter(|v| {
            v.state != model::values::State::Destroyed
                && (spec.vps.contains_key(&v.id) || obs.domains.contains_key(v.id.as_str()))
        })
        .filter_map(|v| v.iso.as_ref().map(|i| i.sha256.as_str()))
        .collect();
    // Node ids and VPS ids share one grammar: a node's id is always a valid VPS id.
    let Ok(node) = spec.node.as_str().parse::<VpsId>() else {
        return;
    };
    for sha in obs.isos.iter().filter(|h| !used.contains(h.as_str())) {
        steps.push(Step {
            vps: node.clone(),
            op: Op::RemoveIso {
                sha256: sha.as_str().to_owned(),
                path: crate::driver::iso_path(&spec.root, sha),
            },
            record: None,
            target: StepPaths {
                disk: String::new(),
                config: String::new(),
            },
        });
    }
}

/// Keeps the console user's keys equal to the customer's (none when it may not log in).
fn plan_console(root: &str, v: &VpsSpec, obs: &NodeState, steps: &mut Vec<Step>) {
    let observed = obs.consoles.get(v.id.as_str());
    let op = match (&v.console, observed) {
        (Some(c), Some(h)) if *h == c.keys_sha256 => return,
        (Some(c), observed) => Op::WriteConsole {
            spec: Box::new(c.clone()),
            replaces: observed.is_some(),
        },
        (None, Some(_)) => Op::RemoveConsole {
            home: crate::desired::console_home(root, &v.id),
            sudoers_path: crate::desired::console_sudoers(root, &v.id),
        },
        (None, None) => return,
    };
    steps.push(Step {
        vps: v.id.clone(),
        op,
        record: None,
        target: StepPaths {
            disk: v.disk_path.clone(),
            config: v.config_path.clone(),
        },
    });
}

fn day_of(ts: i64) -> String {
    chrono::DateTime::from_timestamp(ts, 0)
        .map_or_else(|| ts.to_string(), |t| t.date_naive().to_string())
}

/// Why the image files of a VPS on a file-backend node are not the disk gitvps would work on:
/// an image in the other format (the node's `storage.format` changed), both kinds, or a
/// `.qcow2` that is not one. Such a VPS is left as it is: its guest keeps running on its old
/// config rather than being restarted onto a disk that does not exist.
fn image_mismatch(spec: &NodeSpec, v: &VpsSpec, obs: &NodeState) -> Option<Note> {
    let want = spec.store.image_format()?;
    let found = obs.image_formats.get(v.id.as_str())?;
    let name = v.id.as_str();
    let ext = |f: &str| if f == "raw" { "img" } else { "qcow2" };
    match found.as_slice() {
        [f] if *f == want.to_string() => None,
        [f] if f == "raw" || f == "qcow2" => Some(format!(
            "{name}: its disk is a {f} image ({name}.{}) but the node's storage.format is \"{want}\": the VPS is left as it is (convert the image with `qemu-img convert` to {name}.{} while the guest is stopped, or set the format back)",
            ext(f),
            want.extension()
        )),
        [_] => Some(format!(
            "{name}: {name}.qcow2 is not a qcow2 image (no qcow2 header): the VPS is left as it is"
        )),
        _ => Some(format!(
            "{name}: both {name}.img and {name}.qcow2 are in the node's image folder: the VPS is left as it is until one of them is removed"
        )),
    }
}

impl Op {
    /// The plan symbol: `+` create, `~` change, `-` destroy, `!` action.
    pub fn symbol(&self) -> char {
        match self {
            Op::CreateDisk { .. } | Op::Start => '+',
            Op::WriteConfig {
                replaces: false, ..
            } => '+',
            Op::WriteConfig { replaces: true, .. } | Op::GrowDisk { .. } | Op::RestoreFilter => '~',
            Op::Stop { .. } | Op::Destroy { .. } | Op::RemoveConfig | Op::RemoveDisk { .. } => '-',
            Op::Install { .. } => '+',
            Op::WriteConsole {
                replaces: false, ..
            } => '+',
            Op::WriteConsole { replaces: true, .. } => '~',
            Op::RemoveConsole { .. } => '-',
            Op::Reboot { .. }
            | Op::Fsck { .. }
            | Op::Reinstall { .. }
            | Op::Record { .. }
            | Op::CheckBackup { .. }
            | Op::Restore { .. }
            | Op::RevertSnapshot { .. } => '!',
            Op::FetchIso { .. } | Op::TakeSnapshot { .. } | Op::BuildRescue { .. } => '+',
            Op::DeleteSnapshot { .. } | Op::RemoveIso { .. } | Op::DropRescue { .. } => '-',
        }
    }

    /// Whether the step is the node's rather than one VPS's: it runs after every VPS's steps
    /// (`crate::driver::steps_script`), and its `vps` is the node's id.
    pub fn of_node(&self) -> bool {
        matches!(self, Op::RemoveIso { .. })
    }

    /// Whether the step erases data.
    pub fn destructive(&self) -> bool {
        matches!(
            self,
            Op::Reinstall { .. }
                | Op::RemoveDisk { .. }
                | Op::Restore { .. }
                | Op::RevertSnapshot { .. }
        )
    }

    /// One line for humans.
    pub fn describe(&self) -> String {
        match self {
            Op::CreateDisk { bytes } => format!("create disk ({})", Size(*bytes)),
            Op::GrowDisk { from, to, .. } => format!("grow disk {} → {}", Size(*from), Size(*to)),
            Op::WriteConfig {
                replaces: false, ..
            } => "write domain config".into(),
            Op::WriteConfig { replaces: true, .. } => "rewrite domain config".into(),
            Op::Start => "start domain".into(),
            Op::Stop { reason, .. } => format!("shut down domain ({reason})"),
            Op::Destroy { reason } => format!("destroy domain ({reason})"),
            Op::Reboot { generation } => format!("reboot (generation {generation})"),
            Op::Fsck { generation } => format!("fsck disk (generation {generation})"),
            Op::Install { spec } => format!("install {}", os_words(spec)),
            Op::Reinstall { generation, spec } => {
                format!(
                    "reinstall {} (generation {generation}): ERASES THE DISK",
                    os_words(spec)
                )
            }
            Op::CheckBackup { restore: r, .. } => {
                format!("check that backup {} is one of {}'s", r.snapshot, r.from)
            }
            Op::Restore { restore: r, .. } => format!(
                "restore backup {} of {} (generation {}): ERASES THE DISK",
                r.snapshot, r.from, r.generation
            ),
            Op::FetchIso { iso } => format!("fetch ISO {} (sha256 {})", iso.url, iso.sha256),
            Op::BuildRescue { rescue } => format!(
                "build the rescue system ({}, the customer's keys; the disk is attached, not mounted)",
                rescue.install.os
            ),
            Op::DropRescue { images } => format!(
                "remove the rescue system ({} image(s); the disk is untouched)",
                images.len()
            ),
            Op::Record { note } => format!("record {note}"),
            Op::WriteConsole {
                spec,
                replaces: false,
            } => format!("console access for {} key(s)", spec.count),
            Op::WriteConsole {
                spec,
                replaces: true,
            } => format!("update console keys ({} key(s))", spec.count),
            Op::RemoveConsole { .. } => "remove console access".into(),
            Op::RestoreFilter => "restore its network filter (its rules were lost)".into(),
            Op::RemoveConfig => "remove domain config".into(),
            Op::RemoveDisk { reason } => format!("remove disk ({reason}): ERASES THE DISK"),
            // A qcow2 internal snapshot has no area of its own (0).
            Op::TakeSnapshot { name, cow_bytes: 0 } => format!("take snapshot {name}"),
            Op::TakeSnapshot { name, cow_bytes } => format!(
                "take snapshot {name} (copy-on-write area {})",
                Size(*cow_bytes)
            ),
            Op::RevertSnapshot {
                name, generation, ..
            } => format!(
                "revert the disk to snapshot {name} (generation {generation}): LOSES THE DISK'S CHANGES SINCE"
            ),
            Op::DeleteSnapshot { name } => format!("delete snapshot {name}"),
            Op::RemoveIso { sha256, .. } => format!(
                "remove cached ISO {} (no VPS uses it)",
                sha256.get(..12).unwrap_or(sha256)
            ),
        }
    }
}

fn os_words(spec: &InstallSpec) -> String {
    let os = match &spec.appliance {
        Some(a) => format!("{} with {a}", spec.os),
        None => spec.os.clone(),
    };
    match &spec.cloud {
        Some(c) => format!(
            "{os} from cloud image {} (sha256 {}), NoCloud seed {}",
            c.url, c.sha256, c.instance_id
        ),
        None => os,
    }
}

/// The "changed outside gitvps" section, empty when nothing drifted.
pub fn render_drift(plan: &Plan) -> String {
    let mut out = String::new();
    if !plan.has_drift() {
        return out;
    }
    out.push_str("Changed outside gitvps since the last apply:\n");
    for (node, drift) in plan.drift.iter().filter(|(_, d)| !d.is_empty()) {
        let _ = writeln!(out, "{node}:");
        for d in drift {
            let _ = writeln!(out, "  ~ {}", d.describe());
        }
    }
    out.push('\n');
    out
}

/// One step as a plan line: `+ xen10: start domain`.
pub fn step_line(s: &Step) -> String {
    format!("{} {}: {}", s.op.symbol(), s.vps, s.op.describe())
}

/// The lines of one node's plan (steps, undeclared domains, notes), without its heading.
pub fn node_lines(n: &NodePlan) -> Vec<String> {
    match n {
        NodePlan::Unreachable { vps, .. } => {
            if vps.is_empty() {
                return Vec::new();
            }
            let names: Vec<&str> = vps.iter().map(VpsId::as_str).collect();
            vec![format!("no steps for its VPSes: {}", names.join(", "))]
        }
        NodePlan::Reachable {
            steps,
            notes,
            undeclared,
            ..
        } => steps
            .iter()
            .map(step_line)
            .chain(undeclared.iter().map(|u| format!("! {u}")))
            .chain(notes.iter().map(|n| format!("note: {n}")))
            .collect(),
    }
}

/// A node's heading: `node1 (host:22): no changes`, `node1 (host:22):`, or unreachable.
pub fn node_heading(n: &NodePlan) -> String {
    match n {
        NodePlan::Unreachable {
            node,
            address,
            reason,
            ..
        } => format!("{node} ({address}): UNREACHABLE: {reason}"),
        NodePlan::Reachable {
            node,
            address,
            steps,
            ..
        } if steps.is_empty() => format!("{node} ({address}): no changes"),
        NodePlan::Reachable { node, address, .. } => format!("{node} ({address}):"),
    }
}

/// The "Moves" section, empty without moves: one line per VPS to move (`>`), or whose move
/// waits or is refused (`!`).
pub fn render_moves(plan: &Plan) -> String {
    let mut out = String::new();
    if plan.moves.is_empty() {
        return out;
    }
    out.push_str("Moves:\n");
    for m in &plan.moves {
        let sym = if m.goes() { '>' } else { '!' };
        let _ = writeln!(out, "  {sym} {}", m.line());
    }
    out.push('\n');
    out
}

/// The plan as `terraform plan`-like text: what changed outside gitvps first, then the
/// moves, the steps per node, then the summary line.
pub fn render(plan: &Plan) -> String {
    let mut out = render_drift(plan);
    out.push_str(&render_moves(plan));
    for n in &plan.nodes {
        let _ = writeln!(out, "{}", node_heading(n));
        for l in node_lines(n) {
            let _ = writeln!(out, "  {l}");
        }
        out.push('\n');
    }
    let _ = writeln!(out, "{}.", plan.summary().line());
    out
}
