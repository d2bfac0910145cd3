//! Drift: what changed on a node outside gitvps since the last apply left it, from the
//! snapshot apply keeps on the status branch and what is observed now (Terraform's "Objects
//! have changed outside of Terraform").

use std::collections::{BTreeMap, BTreeSet};

use model::values::Size;
use serde::{Deserialize, Serialize};

use crate::observe::NodeState;

/// A domain as the snapshot keeps it: whether it ran, and its size.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapDomain {
    /// It ran (Xen: running or blocked; KVM: QEMU up).
    pub up: bool,
    /// Memory, MiB.
    pub memory_mib: u64,
    /// vCPUs.
    pub vcpus: u32,
}

/// What a node held when the last apply left it: the parts of its observed state that only
/// gitvps should change (not the clock, the records or the domain ids).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Snapshot {
    /// Domains by name.
    pub domains: BTreeMap<String, SnapDomain>,
    /// Disk sizes in bytes, by name.
    pub disks: BTreeMap<String, u64>,
    /// sha256 of each domain config, by VPS name.
    pub configs: BTreeMap<String, String>,
    /// sha256 of each console user's `authorized_keys`, by VPS name.
    pub consoles: BTreeMap<String, String>,
}

impl Snapshot {
    /// The snapshot of an observed state.
    pub fn of(s: &NodeState) -> Snapshot {
        Snapshot {
            domains: s
                .domains
                .iter()
                .map(|(name, d)| {
                    let snap = SnapDomain {
                        up: d.is_up(),
                        memory_mib: d.memory_mib,
                        vcpus: d.vcpus,
                    };
                    (name.clone(), snap)
                })
                .collect(),
            disks: s.disks.clone(),
            configs: s.configs.clone(),
            consoles: s.consoles.clone(),
        }
    }
}

/// One thing that changed outside gitvps.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Drift {
    /// A domain that ran is gone (destroyed, or shut down from inside).
    DomainGone {
        /// Its name.
        name: String,
    },
    /// A domain that ran is still there but does not run (paused, crashed, shut down).
    DomainDown {
        /// Its name.
        name: String,
    },
    /// A domain runs that did not (started by hand, or a stopped one unpaused).
    DomainStarted {
        /// Its name.
        name: String,
    },
    /// A running domain's memory or vCPUs changed (`xl mem-set`, `xl vcpu-set`).
    DomainResized {
        /// Its name.
        name: String,
        /// Memory then and now, MiB.
        memory_mib: (u64, u64),
        /// vCPUs then and now.
        vcpus: (u32, u32),
    },
    /// A disk is gone.
    DiskGone {
        /// Its name.
        name: String,
    },
    /// A disk appeared.
    DiskAdded {
        /// Its name.
        name: String,
    },
    /// A disk's size changed.
    DiskResized {
        /// Its name.
        name: String,
        /// Bytes then and now.
        bytes: (u64, u64),
    },
    /// A domain config was edited.
    ConfigEdited {
        /// The VPS.
        name: String,
    },
    /// A domain config is gone.
    ConfigRemoved {
        /// The VPS.
        name: String,
    },
    /// A console user's keys were edited.
    ConsoleEdited {
        /// The VPS.
        name: String,
    },
    /// A console user is gone.
    ConsoleRemoved {
        /// The VPS.
        name: String,
    },
}

impl Drift {
    /// The domain, disk or VPS it concerns.
    pub fn name(&self) -> &str {
        match self {
            Drift::DomainGone { name }
            | Drift::DomainDown { name }
            | Drift::DomainStarted { name }
            | Drift::DomainResized { name, .. }
            | Drift::DiskGone { name }
            | Drift::DiskAdded { name }
            | Drift::DiskResized { name, .. }
            | Drift::ConfigEdited { name }
            | Drift::ConfigRemoved { name }
            | Drift::ConsoleEdited { name }
            | Drift::ConsoleRemoved { name } => name,
        }
    }

    /// One line for humans, starting with the name.
    pub fn describe(&self) -> String {
        let name = self.name().escape_debug();
        match self {
            Drift::DomainGone { .. } => {
                format!("{name}: its domain ran and is gone (destroyed or shut down)")
            }
            Drift::DomainDown { .. } => format!("{name}: its domain ran and now does not run"),
            Drift::DomainStarted { .. } => format!("{name}: a domain runs that did not"),
            Drift::DomainResized {
                memory_mib: (m0, m1),
                vcpus: (c0, c1),
                ..
            } => format!("{name}: its domain has {m1} MiB and {c1} vCPU(s), was {m0} MiB and {c0}"),
            Drift::DiskGone { .. } => format!("{name}: its disk is gone"),
            Drift::DiskAdded { .. } => format!("{name}: a disk appeared"),
            Drift::DiskResized {
                bytes: (b0, b1), ..
            } => {
                format!("{name}: its disk is {}, was {}", Size(*b1), Size(*b0))
            }
            Drift::ConfigEdited { .. } => format!("{name}: its domain config was edited"),
            Drift::ConfigRemoved { .. } => format!("{name}: its domain config is gone"),
            Drift::ConsoleEdited { .. } => format!("{name}: its console user's keys were edited"),
            Drift::ConsoleRemoved { .. } => format!("{name}: its console user is gone"),
        }
    }
}

/// The names of both maps, once each, in order.
fn names<V>(a: &BTreeMap<String, V>, b: &BTreeMap<String, V>) -> BTreeSet<String> {
    a.keys().chain(b.keys()).cloned().collect()
}

/// What changed between the snapshot the last apply left and the state observed now, by name,
/// domains first, then disks, configs and consoles.
pub fn drift(last: &Snapshot, now: &Snapshot) -> Vec<Drift> {
    let mut out = Vec::new();
    for name in names(&last.domains, &now.domains) {
        match (last.domains.get(&name), now.domains.get(&name)) {
            (Some(a), None) if a.up => out.push(Drift::DomainGone { name }),
            (Some(a), Some(b)) if a.up && !b.up => out.push(Drift::DomainDown { name }),
            (a, Some(b)) if b.up && !a.is_some_and(|a| a.up) => {
                out.push(Drift::DomainStarted { name });
            }
            (Some(a), Some(b))
                if a.up && b.up && (a.memory_mib, a.vcpus) != (b.memory_mib, b.vcpus) =>
            {
                out.push(Drift::DomainResized {
                    name,
                    memory_mib: (a.memory_mib, b.memory_mib),
                    vcpus: (a.vcpus, b.vcpus),
                });
            }
            _ => {}
        }
    }
    for name in names(&last.disks, &now.disks) {
        match (last.disks.get(&name), now.disks.get(&name)) {
            (Some(_), None) => out.push(Drift::DiskGone { name }),
            (None, Some(_)) => out.push(Drift::DiskAdded { name }),
            (Some(a), Some(b)) if a != b => out.push(Drift::DiskResized {
                name,
                bytes: (*a, *b),
            }),
            _ => {}
        }
    }
    for (name, hash) in &last.configs {
        match now.configs.get(name) {
            None => out.push(Drift::ConfigRemoved { name: name.clone() }),
            Some(h) if h != hash => out.push(Drift::ConfigEdited { name: name.clone() }),
            Some(_) => {}
        }
    }
    for (name, hash) in &last.consoles {
        match now.consoles.get(name) {
            None => out.push(Drift::ConsoleRemoved { name: name.clone() }),
            Some(h) if h != hash => out.push(Drift::ConsoleEdited { name: name.clone() }),
            Some(_) => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn dom(up: bool, memory_mib: u64) -> SnapDomain {
        SnapDomain {
            up,
            memory_mib,
            vcpus: 1,
        }
    }

    fn applied() -> Snapshot {
        let s = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
                .collect()
        };
        Snapshot {
            domains: [("xen10".to_owned(), dom(true, 768))].into(),
            disks: [
                ("xen10".to_owned(), 30 << 30),
                ("xen11".to_owned(), 30 << 30),
            ]
            .into(),
            configs: s(&[("xen10", "aa"), ("xen11", "bb")]),
            consoles: s(&[("xen10", "cc")]),
        }
    }

    #[test]
    fn the_same_state_has_no_drift() {
        assert_eq!(drift(&applied(), &applied()), vec![]);
    }

    #[test]
    fn every_change_outside_gitvps_is_named() {
        let last = applied();
        let mut now = applied();
        now.domains.clear();
        now.domains.insert("xen11".into(), dom(true, 768));
        now.disks.insert("xen10".into(), 40 << 30);
        now.disks.insert("stray".into(), 1 << 30);
        now.configs.insert("xen11".into(), "edited".into());
        now.configs.remove("xen10");
        now.consoles.clear();
        let lines: Vec<String> = drift(&last, &now).iter().map(Drift::describe).collect();
        assert_eq!(
            lines,
            [
                "xen10: its domain ran and is gone (destroyed or shut down)",
                "xen11: a domain runs that did not",
                "stray: a disk appeared",
                "xen10: its disk is 40 GiB, was 30 GiB",
                "xen10: its domain config is gone",
                "xen11: its domain config was edited",
                "xen10: its console user is gone",
            ]
        );
    }

    #[test]
    fn a_domain_down_or_resized_is_drift_and_a_stopped_one_is_not() {
        let last = applied();
        let mut now = applied();
        now.domains.insert("xen10".into(), dom(false, 768));
        assert_eq!(
            drift(&last, &now),
            [Drift::DomainDown {
                name: "xen10".into()
            }]
        );
        now.domains.insert("xen10".into(), dom(true, 512));
        assert_eq!(
            drift(&last, &now)[0].describe(),
            "xen10: its domain has 512 MiB and 1 vCPU(s), was 768 MiB and 1"
        );
        // A domain that was down when the apply left it and is gone now: nothing ran.
        let mut last = applied();
        last.domains.insert("xen10".into(), dom(false, 768));
        now.domains.clear();
        assert_eq!(drift(&last, &now), vec![]);
        // The record kinds round-trip as JSON (the plan file and the status branch).
        let d = Drift::DiskResized {
            name: "x".into(),
            bytes: (1, 2),
        };
        let json = serde_json::to_string(&d).unwrap();
        assert_eq!(serde_json::from_str::<Drift>(&json).unwrap(), d);
    }
}
