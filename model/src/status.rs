//! Observed state of one VPS, as `gitvps apply` writes it to `status/<vps>.json` on the status
//! branch (`reconciler.status_branch`) and the hooks read it back for the customer panel; and
//! what the collector last saw of it (`monitor/<vps>.json`: check states, counters).

use chrono::{DateTime, Utc};

use crate::ids::{NodeId, VpsId};
use crate::values::{Power, parse_keyword};

/// Folder of the status branch that holds one `<vps>.json` per VPS.
pub const STATUS_DIR: &str = "status";

/// What the reconciler last saw of a VPS on its node.
///
/// Written by apply, read by the hooks (`GET /api/me`). Unknown fields are ignored when
/// reading, so the reconciler may add fields without breaking older readers.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct VpsStatus {
    /// The VPS.
    pub vps: VpsId,
    /// The node it was observed on.
    pub node: NodeId,
    /// Whether the domain was running.
    #[serde(with = "power_serde")]
    pub power: Power,
    /// The hypervisor's own word for the domain state (`xl list` flags like `-b----`),
    /// or `None` when no domain exists.
    #[serde(default)]
    pub domain_state: Option<String>,
    /// Memory the domain had, in MiB (0 when it does not run).
    #[serde(default)]
    pub memory_mib: u64,
    /// Virtual CPUs the domain had (0 when it does not run).
    #[serde(default)]
    pub vcpus: u32,
    /// The action generations the node has carried out.
    #[serde(default)]
    pub actions: ObservedActions,
    /// The last error apply met on this VPS, if any.
    #[serde(default)]
    pub last_error: Option<String>,
    /// When the node was observed (RFC 3339).
    pub observed_at: DateTime<Utc>,
    /// The VPS's backups in the restic repository, newest first, as `gitvps backup run
    /// --status` last listed them; `None` when never listed (files written before backups
    /// existed, or by an apply that does not list them: apply keeps the previous list).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backups: Option<Vec<BackupEntry>>,
    /// The snapshots of its disk the node holds (`[[snapshot]]` names), as the apply observed
    /// them; left out when none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub snapshots: Vec<String>,
}

/// One backup of a VPS, as the panel shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BackupEntry {
    /// restic's snapshot id (64 hex digits).
    pub id: String,
    /// Its short id (the first 8), as restic prints it.
    pub short_id: String,
    /// When it was taken (UTC).
    pub time: DateTime<Utc>,
    /// The size of the disk it holds, in bytes.
    pub size_bytes: u64,
}

/// The last generation of each action that the node performed (`[actions]` counters).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ObservedActions {
    /// Reboots done.
    #[serde(default)]
    pub reboot: u64,
    /// Filesystem checks done.
    #[serde(default)]
    pub fsck: u64,
    /// Reinstalls done.
    #[serde(default)]
    pub reinstall: u64,
    /// Snapshot reverts done (`[revert]` generation); left out while 0.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub revert: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Folder of the status branch that holds the collector's `<vps>.json` per VPS.
pub const MONITOR_DIR: &str = "monitor";

/// What the collector last saw of a VPS: its service checks and its usage counters.
///
/// Written by `gitvps monitor --status` (and the demo) after a collection, read by the hooks
/// (`GET /api/me`). Holds no secret: labels, states and a probe's one-line answer.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct VpsMonitor {
    /// The VPS.
    pub vps: VpsId,
    /// When the collection ran (UTC).
    pub collected_at: DateTime<Utc>,
    /// The counters of its last reading, if it was read at all.
    #[serde(default)]
    pub counters: Option<LiveCounters>,
    /// Its service checks, in the order of its `[monitor] checks`.
    #[serde(default)]
    pub checks: Vec<CheckStatus>,
}

/// A VPS's usage counters as of one reading: totals since its domain started (they restart
/// at zero after a reboot).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LiveCounters {
    /// When they were read (UTC).
    pub at: DateTime<Utc>,
    /// CPU time of all its vCPUs, in milliseconds.
    pub cpu_ms: u64,
    /// Bytes received.
    pub net_rx_bytes: u64,
    /// Bytes sent.
    pub net_tx_bytes: u64,
    /// Bytes read from its disks.
    pub disk_read_bytes: u64,
    /// Bytes written to its disks.
    pub disk_write_bytes: u64,
}

/// The state of a service check as the panel shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckLive {
    /// Passing, or not failed often enough yet to count as down.
    Up,
    /// Failed `[monitor] check_failures` times in a row, or more.
    Down,
    /// Not probed: the VPS is stopped or suspended.
    Paused,
}

/// One service check of a VPS.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CheckStatus {
    /// The check as people read it (`ssh 192.0.2.10:22`).
    pub name: String,
    /// Its kind (`ping`, `ssh`, `http`, ...).
    pub kind: String,
    /// Up, down or paused.
    pub state: CheckLive,
    /// Since when it has had its up or down status (UTC).
    pub since: DateTime<Utc>,
    /// Failures in a row (0 after a pass).
    #[serde(default)]
    pub failures: u32,
    /// What the last probe found: an answer, or why it failed (one line).
    #[serde(default)]
    pub detail: String,
    /// When it was last probed (UTC).
    #[serde(default)]
    pub checked: Option<DateTime<Utc>>,
}

/// The path of a VPS's collector file on the status branch.
pub fn monitor_path(vps: &VpsId) -> String {
    format!("{MONITOR_DIR}/{vps}.json")
}

/// The path of a VPS's status file on the status branch.
pub fn status_path(vps: &VpsId) -> String {
    format!("{STATUS_DIR}/{vps}.json")
}

mod power_serde {
    use crate::values::{Keyword, Power};

    pub(super) fn serialize<S: serde::Serializer>(p: &Power, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(Keyword::as_str(*p))
    }

    pub(super) fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Power, D::Error> {
        let s = <String as serde::Deserialize>::deserialize(d)?;
        super::parse_keyword(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    // The JSON round trip is tested in the hooks crate, which reads these files (the model has
    // no JSON dependency).
    #[test]
    fn the_status_file_is_named_after_the_vps() {
        let id: crate::ids::VpsId = "xen02".parse().unwrap();
        assert_eq!(super::status_path(&id), "status/xen02.json");
    }
}
