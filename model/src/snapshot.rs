//! Customer snapshots of a VPS's disk as declared: a VPS file's `[[snapshot]]` list and its
//! `[revert]` request, the limit of its plan, and the room a snapshot takes on its node.

use chrono::{DateTime, Utc};

use crate::ids::SnapshotName;
use crate::inventory::Storage;
use crate::values::ImageFormat;

/// One snapshot a VPS file declares: the node takes it when it does not exist yet, and
/// deletes a snapshot the file no longer declares.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Snapshot {
    /// Its name (the id rules: safe as a logical volume's and a qcow2 snapshot's name).
    pub name: SnapshotName,
    /// When the customer (or operator) asked for it, in UTC.
    pub created: DateTime<Utc>,
}

/// `[revert]`: bring the disk back to a snapshot (the disk's later changes are lost), once per
/// generation, like `[restore]`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Revert {
    /// The snapshot, one of the VPS's `[[snapshot]]`.
    pub snapshot: SnapshotName,
    /// Bump it to revert again.
    pub generation: u64,
}

/// A VPS's snapshots: the list, the revert asked for and its own limit.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
pub struct Snapshots {
    /// `snapshot_limit` of the VPS file: replaces its plan's.
    pub limit: Option<u32>,
    /// `[[snapshot]]`, in the file's order.
    pub list: Vec<Snapshot>,
    /// `[revert]`.
    pub revert: Option<Revert>,
    /// Each of `list`'s index among the file's `[[snapshot]]` tables, for errors.
    #[serde(skip)]
    pub(crate) at: Vec<usize>,
}

impl Snapshots {
    /// Whether a snapshot of that name is declared.
    pub fn has(&self, name: &SnapshotName) -> bool {
        self.list.iter().any(|s| &s.name == name)
    }
}

/// The default `[backup] snapshot_cow_percent`: an LVM snapshot's copy-on-write area, in
/// percent of the disk.
pub const DEFAULT_COW_PERCENT: u32 = 20;

/// LVM's extent (the default 4 MiB): a logical volume's size is a whole number of them.
const EXTENT: u64 = 4 << 20;

/// The copy-on-write area of an LVM classic snapshot of a `disk`-byte volume: `percent` of it,
/// rounded up to whole extents, and at least one.
pub fn cow_bytes(disk: u64, percent: u32) -> u64 {
    let want = (u128::from(disk) * u128::from(percent)).div_ceil(100);
    let extents = want.div_ceil(u128::from(EXTENT)).max(1);
    u64::try_from(extents * u128::from(EXTENT)).unwrap_or(u64::MAX)
}

/// The room one snapshot of a `disk`-byte disk takes on `storage`: an LVM classic snapshot's
/// copy-on-write area; a qcow2 internal snapshot's worst case, the whole disk (once the guest
/// has rewritten every cluster, the image holds both copies). `None`: raw image files have no
/// snapshots.
pub fn space(storage: &Storage, disk: u64, cow_percent: u32) -> Option<u64> {
    match storage {
        Storage::Lvm { .. } => Some(cow_bytes(disk, cow_percent)),
        Storage::File {
            format: ImageFormat::Qcow2,
            ..
        } => Some(disk),
        Storage::File { .. } => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cow_is_a_share_of_the_disk_in_whole_extents() {
        assert_eq!(cow_bytes(10 << 30, 20), 2048 << 20);
        // 20 % of 1 GiB is 204.8 MiB: 52 extents of 4 MiB.
        assert_eq!(cow_bytes(1 << 30, 20), 208 << 20);
        assert_eq!(cow_bytes(1, 1), 4 << 20);
        assert_eq!(cow_bytes(u64::MAX, 100), u64::MAX);
    }

    #[test]
    fn a_snapshot_takes_its_area_on_lvm_the_whole_disk_on_qcow2_and_raw_files_have_none() {
        let lvm = Storage::Lvm {
            vg: "vg0".parse().unwrap(),
        };
        let file = |format| Storage::File {
            dir: "/var/lib/gitvps/disks".parse().unwrap(),
            format,
        };
        assert_eq!(space(&lvm, 10 << 30, 20), Some(2048 << 20));
        assert_eq!(
            space(&file(ImageFormat::Qcow2), 10 << 30, 20),
            Some(10 << 30)
        );
        assert_eq!(space(&file(ImageFormat::Raw), 10 << 30, 20), None);
    }
}
