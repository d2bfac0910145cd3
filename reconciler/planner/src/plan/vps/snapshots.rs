//! The snapshot concern of one VPS's plan: snapshots the file no longer declares are deleted,
//! new ones taken, and a `[revert]` brings the stopped disk back to one, once per generation.

use model::values::State;

use super::{Due, VpsPlan};
use crate::plan::Op;

impl VpsPlan<'_> {
    /// The snapshots the node holds of this VPS, by name.
    fn observed_snapshots(&self) -> impl Iterator<Item = &String> {
        self.obs
            .snapshots
            .get(self.name)
            .into_iter()
            .flat_map(|m| m.keys())
    }

    /// Whether a `[revert]` is due (and may run now: the VPS is active); notes why one waits.
    pub(super) fn revert_due(&mut self, creating: bool) -> bool {
        let Some((_, generation)) = &self.v.snapshots.revert else {
            return false;
        };
        if *generation <= self.record.revert || creating {
            return false;
        }
        if self.v.state != State::Active {
            self.notes.push(format!(
                "{}: the revert waits until the VPS is active again",
                self.name
            ));
            return false;
        }
        true
    }

    /// Before anything stops: snapshots no longer declared are deleted (freeing their room),
    /// and on an existing disk the new ones are taken, the guest running or not.
    pub(super) fn snapshots_first(&mut self) {
        let declared = &self.v.snapshots.names;
        let gone: Vec<String> = self
            .observed_snapshots()
            .filter(|n| !declared.contains(n))
            .cloned()
            .collect();
        for name in gone {
            self.push(Op::DeleteSnapshot { name }, None);
        }
        if self.disk.is_some() {
            self.take_snapshots();
        }
    }

    /// Takes each declared snapshot the node does not hold.
    pub(super) fn take_snapshots(&mut self) {
        let missing: Vec<String> = (self.v.snapshots.names.iter())
            .filter(|n| !self.observed_snapshots().any(|o| o == *n))
            .cloned()
            .collect();
        for name in missing {
            self.push(
                Op::TakeSnapshot {
                    name,
                    cow_bytes: self.v.snapshots.cow_bytes,
                },
                None,
            );
        }
    }

    /// With the domain down: the revert, recorded by its step.
    pub(super) fn revert(&mut self, due: &Due) {
        if !due.revert {
            return;
        }
        let Some((name, generation)) = self.v.snapshots.revert.clone() else {
            return;
        };
        self.record.revert = generation;
        self.push_recorded(Op::RevertSnapshot {
            name,
            generation,
            cow_bytes: self.v.snapshots.cow_bytes,
        });
    }
}
