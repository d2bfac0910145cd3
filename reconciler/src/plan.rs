//! The planner: a pure function (desired, observed) → ordered steps per node.
//! It decides everything (paths, sizes, config text, records); apply only carries steps out.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use model::values::{Size, State};
use model::{NodeId, VpsId};
use serde::{Deserialize, Serialize};

use crate::desired::{Desired, NodeSpec, Store, VpsSpec};
use crate::observe::{NodeState, Observation, Record};

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
    /// Erase the disk and install the OS again.
    Reinstall {
        /// The generation asked for.
        generation: u64,
    },
    /// Only write the record (an action that needs no work, e.g. reboot of a stopped VPS).
    Record {
        /// What is recorded, for the reader.
        note: String,
    },
    /// Remove the domain config.
    RemoveConfig,
    /// Remove the disk of a destroyed VPS after its retention.
    RemoveDisk {
        /// Why now.
        reason: String,
    },
}

/// One step on one node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    /// The VPS it concerns.
    pub vps: VpsId,
    /// What to do.
    #[serde(flatten)]
    pub op: Op,
    /// The VPS's record once the step succeeded, when it changes.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub record: Option<Record>,
    /// Paths and sizes the step needs, fixed by the planner.
    pub target: Target,
}

/// The node paths a step works on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Target {
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
    },
    /// The node did not answer; its VPSes get no steps.
    Unreachable {
        /// The node.
        node: NodeId,
        /// `host:port`.
        address: String,
        /// Why.
        reason: String,
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
}

impl Plan {
    /// Whether any node has a step.
    pub fn has_changes(&self) -> bool {
        self.nodes.iter().any(|n| !n.steps().is_empty())
    }

    /// Whether any node was unreachable.
    pub fn has_unreachable(&self) -> bool {
        self.nodes
            .iter()
            .any(|n| matches!(n, NodePlan::Unreachable { .. }))
    }
}

/// Plans every node of `desired` against what was observed. Nodes missing from
/// `observed` are treated as unreachable.
pub fn plan(desired: &Desired, observed: &BTreeMap<NodeId, Observation>) -> Plan {
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
                },
                Observation::Reachable(state) => plan_node(desired, spec, state),
            })
        })
        .collect();
    Plan { version: 1, nodes }
}

/// Plans one reachable node.
pub fn plan_node(desired: &Desired, spec: &NodeSpec, obs: &NodeState) -> NodePlan {
    let mut steps = Vec::new();
    let mut notes = Vec::new();
    for v in spec.vps.values() {
        plan_vps(desired, v, obs, &mut steps, &mut notes);
    }
    for name in obs.domains.keys() {
        if !spec.vps.keys().any(|k| k.as_str() == name) {
            notes.push(format!(
                "domain `{}` is not in the inventory: left alone",
                name.escape_debug()
            ));
        }
    }
    for name in obs.disks.keys() {
        if !spec.vps.keys().any(|k| k.as_str() == name) {
            notes.push(format!(
                "disk `{}` is not in the inventory: left alone",
                name.escape_debug()
            ));
        }
    }
    NodePlan::Reachable {
        node: spec.node.clone(),
        address: spec.address.clone(),
        digest: obs.digest.clone(),
        root: spec.root.clone(),
        store: spec.store.clone(),
        steps,
        notes,
    }
}

/// Plans one VPS, appending its steps in the order they must run.
fn plan_vps(
    desired: &Desired,
    v: &VpsSpec,
    obs: &NodeState,
    steps: &mut Vec<Step>,
    notes: &mut Vec<Note>,
) {
    let name = v.id.as_str();
    let domain = obs.domains.get(name);
    let disk = obs.disks.get(name).copied();
    let config = obs.configs.get(name);
    let mut record = obs.records.get(name).cloned().unwrap_or_default();
    let target = Target {
        disk: v.disk_path.clone(),
        config: v.config_path.clone(),
    };
    let mut push = |op: Op, record: Option<Record>| {
        steps.push(Step {
            vps: v.id.clone(),
            op,
            record,
            target: target.clone(),
        });
    };

    if v.state == State::Destroyed {
        if domain.is_some() {
            push(
                Op::Destroy {
                    reason: "state = \"destroyed\"".into(),
                },
                None,
            );
        }
        if config.is_some() {
            push(Op::RemoveConfig, None);
        }
        if disk.is_none() {
            return;
        }
        let since = v
            .destroyed
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .map(|t| t.and_utc().timestamp())
            .or(record.destroyed_at);
        let Some(since) = since else {
            record.destroyed_at = Some(obs.now);
            push(
                Op::Record {
                    note: "destruction time".into(),
                },
                Some(record),
            );
            notes.push(format!(
                "{name}: disk kept for {} days from now",
                desired.retention_days
            ));
            return;
        };
        let until = since + i64::from(desired.retention_days) * 86_400;
        if obs.now >= until {
            push(
                Op::RemoveDisk {
                    reason: format!(
                        "destroyed, retention of {} days passed",
                        desired.retention_days
                    ),
                },
                None,
            );
        } else {
            let days = (until - obs.now + 86_399) / 86_400;
            notes.push(format!("{name}: disk kept {days} more day(s) (retention)"));
        }
        return;
    }

    let up = domain.is_some_and(crate::observe::Domain::is_up);
    let grow = disk.is_some_and(|d| d < v.disk_bytes);
    if let Some(d) = disk
        && d > v.disk_bytes
    {
        notes.push(format!(
            "{name}: disk is {} but the plan gives {}: shrinking is refused, the disk is left as it is",
            Size(d),
            Size(v.disk_bytes)
        ));
    }
    let config_changed = config.is_none_or(|h| *h != v.config_sha256);
    let fsck_due = v.actions.fsck > record.fsck;
    let reinstall_due = v.actions.reinstall > record.reinstall;
    let reboot_due = v.actions.reboot > record.reboot;

    // 1. Bring the domain down when it must not run, or for work on its disk or config.
    let mut running = up;
    if let Some(dom) = domain
        && !up
    {
        push(
            Op::Destroy {
                reason: format!("the domain is in state {}", dom.state),
            },
            None,
        );
    } else if up {
        let why = if !v.run {
            Some(if v.state == State::Suspended {
                "suspended".to_owned()
            } else {
                "power = \"stopped\"".to_owned()
            })
        } else if grow {
            Some("to grow its disk".to_owned())
        } else if reinstall_due {
            Some("to reinstall".to_owned())
        } else if fsck_due {
            Some("to check its filesystem".to_owned())
        } else if config_changed {
            Some("its config changed".to_owned())
        } else {
            None
        };
        if let Some(reason) = why {
            push(
                Op::Stop {
                    reason,
                    timeout_secs: desired.shutdown_timeout_secs,
                },
                None,
            );
            running = false;
        }
    }

    // 2. The disk.
    match disk {
        None => push(
            Op::CreateDisk {
                bytes: v.disk_bytes,
            },
            None,
        ),
        Some(from) if grow => push(
            Op::GrowDisk {
                from,
                to: v.disk_bytes,
            },
            None,
        ),
        Some(_) => {}
    }

    // 3. Actions that need the domain down.
    if reinstall_due {
        record.reinstall = v.actions.reinstall;
        record.installed = true;
        push(
            Op::Reinstall {
                generation: v.actions.reinstall,
            },
            Some(record.clone()),
        );
    }
    if fsck_due {
        record.fsck = v.actions.fsck;
        push(
            Op::Fsck {
                generation: v.actions.fsck,
            },
            Some(record.clone()),
        );
    }

    // 4. Config, then start.
    if config_changed {
        push(
            Op::WriteConfig {
                content: v.config.clone(),
                sha256: v.config_sha256.clone(),
                replaces: config.is_some(),
            },
            None,
        );
    }
    let started = v.run && !running;
    if started {
        push(Op::Start, None);
    }

    // 5. Reboot: only a domain that was running before and still runs; otherwise record it.
    if reboot_due {
        record.reboot = v.actions.reboot;
        if v.run && !started {
            push(
                Op::Reboot {
                    generation: v.actions.reboot,
                },
                Some(record.clone()),
            );
        } else {
            let note = if started {
                "reboot (the domain was started fresh)"
            } else {
                "reboot (the domain is not running)"
            };
            push(Op::Record { note: note.into() }, Some(record.clone()));
        }
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
            Op::WriteConfig { replaces: true, .. } | Op::GrowDisk { .. } => '~',
            Op::Stop { .. } | Op::Destroy { .. } | Op::RemoveConfig | Op::RemoveDisk { .. } => '-',
            Op::Reboot { .. } | Op::Fsck { .. } | Op::Reinstall { .. } | Op::Record { .. } => '!',
        }
    }

    /// Whether the step erases data.
    pub fn destructive(&self) -> bool {
        matches!(self, Op::Reinstall { .. } | Op::RemoveDisk { .. })
    }

    /// One line for humans.
    pub fn describe(&self) -> String {
        match self {
            Op::CreateDisk { bytes } => format!("create disk ({})", Size(*bytes)),
            Op::GrowDisk { from, to } => format!("grow disk {} → {}", Size(*from), Size(*to)),
            Op::WriteConfig {
                replaces: false, ..
            } => "write domain config".into(),
            Op::WriteConfig { replaces: true, .. } => "rewrite domain config (changed)".into(),
            Op::Start => "start domain".into(),
            Op::Stop { reason, .. } => format!("shut down domain ({reason})"),
            Op::Destroy { reason } => format!("destroy domain ({reason})"),
            Op::Reboot { generation } => format!("reboot (generation {generation})"),
            Op::Fsck { generation } => format!("fsck disk (generation {generation})"),
            Op::Reinstall { generation } => {
                format!("reinstall (generation {generation}): ERASES THE DISK")
            }
            Op::Record { note } => format!("record {note}"),
            Op::RemoveConfig => "remove domain config".into(),
            Op::RemoveDisk { reason } => format!("remove disk ({reason}): ERASES THE DISK"),
        }
    }
}

/// The plan as `terraform plan`-like text.
pub fn render(plan: &Plan) -> String {
    let mut out = String::new();
    let (mut add, mut change, mut destroy, mut actions) = (0, 0, 0, 0);
    for n in &plan.nodes {
        match n {
            NodePlan::Unreachable {
                node,
                address,
                reason,
            } => {
                let _ = writeln!(
                    out,
                    "{node} ({address}): UNREACHABLE: {reason}\n  its VPSes get no steps\n"
                );
            }
            NodePlan::Reachable {
                node,
                address,
                steps,
                notes,
                ..
            } => {
                if steps.is_empty() {
                    let _ = writeln!(out, "{node} ({address}): no changes");
                } else {
                    let _ = writeln!(out, "{node} ({address}):");
                }
                for s in steps {
                    match s.op.symbol() {
                        '+' => add += 1,
                        '~' => change += 1,
                        '-' => destroy += 1,
                        _ => actions += 1,
                    }
                    let _ = writeln!(out, "  {} {}: {}", s.op.symbol(), s.vps, s.op.describe());
                }
                for note in notes {
                    let _ = writeln!(out, "  note: {note}");
                }
                if !steps.is_empty() || !notes.is_empty() {
                    out.push('\n');
                }
            }
        }
    }
    let unreachable = plan
        .nodes
        .iter()
        .filter(|n| matches!(n, NodePlan::Unreachable { .. }))
        .count();
    let _ = write!(
        out,
        "Plan: {add} to add, {change} to change, {destroy} to destroy, {actions} action(s) on {} node(s)",
        plan.nodes.len()
    );
    if unreachable > 0 {
        let _ = write!(out, "; {unreachable} unreachable");
    }
    out.push_str(".\n");
    out
}
