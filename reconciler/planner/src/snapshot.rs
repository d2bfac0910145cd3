//! Customer snapshots on a node: what a VPS file declares (`[[snapshot]]`, `[revert]`) as the
//! planner carries it, the names of their logical volumes, and the node's sh for each step.

use serde::{Deserialize, Serialize};

use crate::desired::Store;
use crate::quote;

/// A VPS's snapshots as its node keeps them: LVM classic snapshots `VG/<vps>.snap.<name>` of
/// its volume.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotsSpec {
    /// The snapshots declared, by name, in the file's order.
    pub names: Vec<String>,
    /// The copy-on-write area of each, bytes (`[backup] snapshot_cow_percent` of the disk).
    pub cow_bytes: u64,
    /// `[revert]`: the snapshot to go back to and the generation.
    pub revert: Option<(String, u64)>,
}

/// Between a VPS and a snapshot's name in a logical volume's name: ids hold no `.`, so
/// `<vps>.snap.<name>` is never another VPS's volume nor another snapshot's.
const SEP: &str = ".snap.";

/// The logical volume of a VPS's snapshot.
pub fn lv_name(vps: &str, name: &str) -> String {
    format!("{vps}{SEP}{name}")
}

/// The snapshot's name when `lv` is a customer snapshot of the volume `origin`.
pub fn name_of_lv<'a>(origin: &str, lv: &'a str) -> Option<&'a str> {
    lv.strip_prefix(origin)?
        .strip_prefix(SEP)
        .filter(|n| n.parse::<model::SnapshotName>().is_ok())
}

/// The sh of a snapshot step on LVM storage; `None` on image files (validation refuses
/// snapshots there). Each is idempotent: a step run again after a failure finishes the work.
pub(crate) fn lines(
    store: &Store,
    vps: &str,
    disk: &str,
    op: &crate::plan::Op,
) -> Option<Vec<String>> {
    use crate::plan::Op;
    let Store::Lvm { vg } = store else {
        return None;
    };
    let origin = quote(&format!("{vg}/{vps}"));
    let lv = |name: &str| quote(&format!("{vg}/{}", lv_name(vps, name)));
    let take = |name: &str, cow: u64| {
        format!(
            "if ! lvs {} >/dev/null 2>&1; then lvcreate -s -L {cow}b -n {} {origin} || return 1; fi",
            lv(name),
            quote(&lv_name(vps, name))
        )
    };
    Some(match op {
        Op::TakeSnapshot { name, cow_bytes } => vec![take(name, *cow_bytes)],
        Op::DeleteSnapshot { name } => vec![format!(
            "if lvs {} >/dev/null 2>&1; then lvremove -f {} || return 1; fi",
            lv(name),
            lv(name)
        )],
        // The merge writes the snapshot's blocks back onto the (closed) origin and removes the
        // snapshot; it is taken again at once, so that the customer keeps it.
        Op::RevertSnapshot {
            name, cow_bytes, ..
        } => vec![
            format!("disk_free {} || return 1", quote(disk)),
            format!(
                "if lvs {} >/dev/null 2>&1; then lvconvert --merge {} || return 1; fi",
                lv(name),
                lv(name)
            ),
            // An open origin makes LVM delay the merge to its next activation: not a revert.
            format!(
                "if lvs {} >/dev/null 2>&1; then echo 'gitvps: LVM delayed the merge (the disk is open): the disk was not reverted' >&2; return 1; fi",
                lv(name)
            ),
            take(name, *cow_bytes),
        ],
        _ => return None,
    })
}

/// The sh of a snapshot step on a qcow2 image (`node/qcow2.sh`): internal snapshots, taken and
/// deleted through QMP while the guest runs (`blockdev-snapshot-internal-sync`,
/// `blockdev-snapshot-delete-internal-sync`), with `qemu-img snapshot` while it is stopped; a
/// revert (`qemu-img snapshot -a`) needs the image free. `run` is the guest's run folder.
pub(crate) fn qcow2_lines(run: &str, disk: &str, op: &crate::plan::Op) -> Option<Vec<String>> {
    use crate::plan::Op;
    let (disk, run_q) = (quote(disk), quote(run));
    let qmp = |command: &str, name: &str| {
        quote(
            &serde_json::json!({
                "execute": command,
                "arguments": { "device": crate::driver::kvm::DISK_ID, "name": name },
            })
            .to_string(),
        )
    };
    let snap = |what: &str, command: &str, name: &str| {
        format!(
            "q2_snap {disk} {run_q} {what} {} {} || return 1",
            quote(name),
            qmp(command, name)
        )
    };
    let need = "q2_need || return $?".to_owned();
    Some(match op {
        Op::TakeSnapshot { name, .. } => {
            vec![need, snap("take", "blockdev-snapshot-internal-sync", name)]
        }
        Op::DeleteSnapshot { name } => vec![
            need,
            snap("delete", "blockdev-snapshot-delete-internal-sync", name),
        ],
        Op::RevertSnapshot { name, .. } => vec![
            format!("disk_free {disk} || return 1"),
            need,
            format!("q2_revert {disk} {} {run_q} || return 1", quote(name)),
        ],
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_volumes_are_told_apart() {
        assert_eq!(lv_name("xen01", "before"), "xen01.snap.before");
        assert_eq!(name_of_lv("xen01", "xen01.snap.before"), Some("before"));
        assert_eq!(name_of_lv("xen01", "xen01.backup"), None);
        assert_eq!(name_of_lv("xen0", "xen01.snap.before"), None);
        assert_eq!(name_of_lv("xen01", "xen01.snap.Bad"), None);
        assert_eq!(name_of_lv("xen01", "xen01.snap."), None);
    }
}
