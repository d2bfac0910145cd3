//! The status branch: after an apply, what was observed of every VPS, one JSON file per VPS
//! (`status/<vps>.json`), and of every node (`nodes/<node>.json`: the last apply, its result,
//! the snapshot drift is measured from, the last drift seen), and what the collector saw
//! (`monitor/<vps>.json`: check states, counters); the hooks read the VPS and monitor files.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use chrono::{DateTime, Utc};
use model::status::{MONITOR_DIR, ObservedActions, STATUS_DIR, VpsMonitor, VpsStatus};
use model::values::Power;
use model::{NodeId, VpsId};

use crate::apply::NodeOutcome;
use planner::desired::Desired;
use planner::drift::{Drift, Snapshot};
use planner::observe::Observation;

/// Folder of the status branch that holds one `<node>.json` per node.
pub const NODES_DIR: &str = "nodes";

/// How the last apply ended on a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApplyResult {
    /// Every step ran.
    Applied,
    /// Nothing was to be done.
    NoChanges,
    /// A step failed.
    Failed,
    /// The node did not answer.
    Unreachable,
    /// Apply refused to act (stale plan, lock held).
    Refused,
}

impl ApplyResult {
    /// The result's words, as the fleet report prints them.
    pub fn as_str(self) -> &'static str {
        match self {
            ApplyResult::Applied => "applied",
            ApplyResult::NoChanges => "no changes",
            ApplyResult::Failed => "FAILED",
            ApplyResult::Unreachable => "UNREACHABLE",
            ApplyResult::Refused => "REFUSED",
        }
    }
}

/// What the status branch keeps of a node (`nodes/<node>.json`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NodeStatus {
    /// The node.
    pub node: NodeId,
    /// When the last apply ended.
    pub applied_at: DateTime<Utc>,
    /// How it ended.
    pub result: ApplyResult,
    /// Steps it carried out.
    #[serde(default)]
    pub steps: usize,
    /// Why it failed or was refused, or why the node did not answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The node as the last apply that reached it left it: drift is measured from here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<Snapshot>,
    /// When drift was last checked (`gitvps plan --drift-only --status`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drift_checked_at: Option<DateTime<Utc>>,
    /// What that check found changed outside gitvps (empty: nothing).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub drift: Vec<Drift>,
}

/// The node statuses after an apply: the outcome of each node, the snapshot of what was observed
/// after it (the previous snapshot where the node did not answer), and the drift record carried
/// over from `previous`.
pub fn node_statuses(
    outcomes: &BTreeMap<NodeId, NodeOutcome>,
    observed: &BTreeMap<NodeId, Observation>,
    previous: &BTreeMap<NodeId, NodeStatus>,
    at: DateTime<Utc>,
) -> Vec<NodeStatus> {
    outcomes
        .iter()
        .map(|(node, o)| {
            let (result, steps, message) = match o {
                NodeOutcome::NoChanges => (ApplyResult::NoChanges, 0, None),
                NodeOutcome::Applied { steps } => (ApplyResult::Applied, steps.len(), None),
                NodeOutcome::Failed { done, failures, .. } => (
                    ApplyResult::Failed,
                    done.len(),
                    failures.first().map(|f| {
                        format!("{}: {}: exit {}", f.step.vps, f.step.op.describe(), f.rc)
                    }),
                ),
                NodeOutcome::Unreachable(e) => (
                    ApplyResult::Unreachable,
                    0,
                    Some(model::diag::error_chain(e)),
                ),
                NodeOutcome::Refused(r) => (ApplyResult::Refused, 0, Some(r.to_string())),
            };
            let before = previous.get(node);
            let snapshot = match observed.get(node) {
                Some(Observation::Reachable(state)) => Some(Snapshot::of(state)),
                _ => before.and_then(|b| b.snapshot.clone()),
            };
            NodeStatus {
                node: node.clone(),
                applied_at: at,
                result,
                steps,
                message,
                snapshot,
                drift_checked_at: before.and_then(|b| b.drift_checked_at),
                drift: before.map(|b| b.drift.clone()).unwrap_or_default(),
            }
        })
        .collect()
}

/// The tip of the status branch: the local branch, else `origin/<branch>` (a fresh CI checkout).
fn tip<'r>(repo: &'r git2::Repository, branch: &str) -> Option<git2::Commit<'r>> {
    repo.find_reference(&format!("refs/heads/{branch}"))
        .or_else(|_| repo.find_reference(&format!("refs/remotes/origin/{branch}")))
        .ok()
        .and_then(|r| r.peel_to_commit().ok())
}

/// The node statuses on the status branch of the repository at `repo`, by node; none when the
/// branch or the repository does not exist yet. A file that does not parse is skipped (a newer
/// writer's format), with a warning.
pub fn read_nodes(repo: &Path, branch: &str) -> BTreeMap<NodeId, NodeStatus> {
    let mut out = BTreeMap::new();
    let Ok(repo) = git2::Repository::discover(repo) else {
        return out;
    };
    let Some(tree) = tip(&repo, branch).and_then(|c| c.tree().ok()) else {
        return out;
    };
    let Some(dir) = tree
        .get_name(NODES_DIR)
        .and_then(|e| repo.find_tree(e.id()).ok())
    else {
        return out;
    };
    for e in &dir {
        let Some(blob) = repo.find_blob(e.id()).ok() else {
            continue;
        };
        match serde_json::from_slice::<NodeStatus>(blob.content()) {
            Ok(s) => {
                out.insert(s.node.clone(), s);
            }
            Err(err) => tracing::warn!(
                file = e.name().unwrap_or_default(),
                "a node status on the status branch does not parse: {err}"
            ),
        }
    }
    out
}

/// Who commits to the status branch (the same bot as the hooks).
const BOT: (&str, &str) = ("gitvps-bot", "gitvps-bot@gitvps.invalid");

/// Why the status branch could not be written.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    /// A git operation failed.
    #[error("cannot {what} for the status branch")]
    Git {
        /// What was being done.
        what: &'static str,
        /// The cause.
        #[source]
        source: git2::Error,
    },
    /// A status could not be encoded.
    #[error("cannot encode the status of {vps}")]
    Json {
        /// The VPS.
        vps: String,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
}

fn git(what: &'static str) -> impl FnOnce(git2::Error) -> StatusError {
    move |source| StatusError::Git { what, source }
}

/// The status of every VPS of the nodes that answered, from what was observed after the
/// apply and the steps that failed. VPSes of unreachable nodes keep their previous file.
pub fn statuses(
    desired: &Desired,
    observed: &BTreeMap<NodeId, Observation>,
    outcomes: &BTreeMap<NodeId, NodeOutcome>,
    at: DateTime<Utc>,
) -> Vec<VpsStatus> {
    let mut out = Vec::new();
    for (node, spec) in &desired.nodes {
        let Some(Observation::Reachable(state)) = observed.get(node) else {
            continue;
        };
        let failures: BTreeMap<&str, String> = match outcomes.get(node) {
            Some(NodeOutcome::Failed { failures, .. }) => failures
                .iter()
                .map(|f| {
                    let last = f.tail.lines().last().unwrap_or("").trim();
                    (
                        f.step.vps.as_str(),
                        format!("{}: exit {}: {last}", f.step.op.describe(), f.rc),
                    )
                })
                .collect(),
            _ => BTreeMap::new(),
        };
        for id in spec.vps.keys() {
            let dom = state.domains.get(id.as_str());
            let up = dom.is_some_and(planner::observe::Domain::is_up);
            let rec = state.records.get(id.as_str()).cloned().unwrap_or_default();
            out.push(VpsStatus {
                vps: id.clone(),
                node: node.clone(),
                power: if up { Power::Running } else { Power::Stopped },
                domain_state: dom.map(|d| d.state.clone()),
                memory_mib: dom.filter(|_| up).map_or(0, |d| d.memory_mib),
                vcpus: dom.filter(|_| up).map_or(0, |d| d.vcpus),
                actions: ObservedActions {
                    reboot: rec.reboot,
                    fsck: rec.fsck,
                    reinstall: rec.reinstall,
                    revert: rec.revert,
                },
                last_error: failures.get(id.as_str()).cloned(),
                observed_at: at,
                // Apply does not list backups: write_branch keeps the previous list.
                backups: None,
                snapshots: (state.snapshots.get(id.as_str()))
                    .map(|m| m.keys().cloned().collect())
                    .unwrap_or_default(),
            });
        }
    }
    out
}

/// Commits `statuses` to `branch` of the repository at `repo`, on top of the branch (or of
/// `origin/<branch>` in a fresh CI checkout). Files of VPSes no longer in `known` are removed.
pub fn write_branch(
    repo: &Path,
    branch: &str,
    statuses: &[VpsStatus],
    known: &BTreeSet<VpsId>,
    message: &str,
) -> Result<git2::Oid, StatusError> {
    write_branch_with_nodes(repo, branch, statuses, known, &[], message)
}

/// Commits node statuses alone (the drift check), keeping everything else on the branch.
pub fn write_nodes(
    repo: &Path,
    branch: &str,
    nodes: &[NodeStatus],
    message: &str,
) -> Result<git2::Oid, StatusError> {
    let repo = git2::Repository::discover(repo).map_err(git("open the repository"))?;
    let parent = tip(&repo, branch);
    let mut top = repo
        .treebuilder(parent.as_ref().and_then(|c| c.tree().ok()).as_ref())
        .map_err(git("build the tree"))?;
    insert_nodes(&repo, parent.as_ref(), &mut top, nodes)?;
    commit_tree(&repo, branch, parent.as_ref(), top, message)
}

/// Writes `nodes/<node>.json` for each node into the top tree being built.
fn insert_nodes(
    repo: &git2::Repository,
    parent: Option<&git2::Commit<'_>>,
    top: &mut git2::TreeBuilder<'_>,
    nodes: &[NodeStatus],
) -> Result<(), StatusError> {
    if nodes.is_empty() {
        return Ok(());
    }
    let old = parent
        .and_then(|c| c.tree().ok())
        .and_then(|t| t.get_name(NODES_DIR).map(|e| e.id()))
        .and_then(|id| repo.find_tree(id).ok());
    let mut dir = repo
        .treebuilder(old.as_ref())
        .map_err(git("build the nodes folder"))?;
    for n in nodes {
        let json = serde_json::to_string_pretty(n).map_err(|source| StatusError::Json {
            vps: n.node.to_string(),
            source,
        })? + "\n";
        let blob = repo
            .blob(json.as_bytes())
            .map_err(git("write a node status"))?;
        dir.insert(format!("{}.json", n.node), blob, 0o100_644)
            .map_err(git("add a node status"))?;
    }
    let id = dir.write().map_err(git("write the nodes folder"))?;
    top.insert(NODES_DIR, id, 0o040_000)
        .map_err(git("build the tree"))?;
    Ok(())
}

/// Commits the tree built in `top` on `parent` and moves `branch` to it.
fn commit_tree(
    repo: &git2::Repository,
    branch: &str,
    parent: Option<&git2::Commit<'_>>,
    top: git2::TreeBuilder<'_>,
    message: &str,
) -> Result<git2::Oid, StatusError> {
    let tree = repo
        .find_tree(top.write().map_err(git("write the tree"))?)
        .map_err(git("read the tree"))?;
    let sig = git2::Signature::now(BOT.0, BOT.1).map_err(git("sign"))?;
    let parents: Vec<&git2::Commit<'_>> = parent.into_iter().collect();
    let oid = repo
        .commit(None, &sig, &sig, message, &tree, &parents)
        .map_err(git("commit"))?;
    repo.reference(
        &format!("refs/heads/{branch}"),
        oid,
        true,
        "gitvps apply --status",
    )
    .map_err(git("move the branch"))?;
    Ok(oid)
}

/// [`write_branch`] with the node statuses of the same apply, in one commit.
pub fn write_branch_with_nodes(
    repo: &Path,
    branch: &str,
    statuses: &[VpsStatus],
    known: &BTreeSet<VpsId>,
    nodes: &[NodeStatus],
    message: &str,
) -> Result<git2::Oid, StatusError> {
    let repo = git2::Repository::discover(repo).map_err(git("open the repository"))?;
    let parent = tip(&repo, branch);
    let parent_tree = parent.as_ref().and_then(|c| c.tree().ok());
    let (old_dir, mut dir) = vps_folder(&repo, parent_tree.as_ref(), STATUS_DIR, known)?;
    for s in statuses {
        // A status that does not list backups (apply's) keeps the list the branch has.
        let mut s = s.clone();
        if s.backups.is_none() {
            s.backups = old_dir
                .as_ref()
                .and_then(|d| read_status(&repo, d, &s.vps))
                .and_then(|old| old.backups);
        }
        let s = &s;
        let json = serde_json::to_string_pretty(s).map_err(|source| StatusError::Json {
            vps: s.vps.to_string(),
            source,
        })? + "\n";
        let blob = repo.blob(json.as_bytes()).map_err(git("write a status"))?;
        dir.insert(format!("{}.json", s.vps), blob, 0o100_644)
            .map_err(git("add a status"))?;
    }
    let dir_id = dir.write().map_err(git("write the status folder"))?;
    // Other folders of the branch (the nodes, the collector's) are kept.
    let mut top = repo
        .treebuilder(parent.as_ref().and_then(|c| c.tree().ok()).as_ref())
        .map_err(git("build the tree"))?;
    top.insert(STATUS_DIR, dir_id, 0o040_000)
        .map_err(git("build the tree"))?;
    insert_nodes(&repo, parent.as_ref(), &mut top, nodes)?;
    commit_tree(&repo, branch, parent.as_ref(), top, message)
}

/// The folder `name` of `top` (if any) and a builder of its new content: its `<vps>.json`
/// files of VPSes the inventory still has (`known`).
fn vps_folder<'r>(
    repo: &'r git2::Repository,
    top: Option<&git2::Tree<'_>>,
    name: &str,
    known: &BTreeSet<VpsId>,
) -> Result<(Option<git2::Tree<'r>>, git2::TreeBuilder<'r>), StatusError> {
    let old = top
        .and_then(|t| t.get_name(name).map(|e| e.id()))
        .and_then(|id| repo.find_tree(id).ok());
    let mut dir = repo
        .treebuilder(old.as_ref())
        .map_err(git("build a folder of the branch"))?;
    dir.filter(|e| {
        e.name()
            .ok()
            .and_then(|n| n.strip_suffix(".json"))
            .is_some_and(|id| known.contains(id))
    })
    .map_err(git("remove the files of VPSes gone"))?;
    Ok((old, dir))
}

/// Commits the collector's files (`monitor/<vps>.json`) of `entries` to `branch`, keeping
/// everything else on it; files of VPSes no longer in `known` are removed. Returns `None`
/// when nothing changed (no commit is made).
pub fn write_monitor(
    repo: &Path,
    branch: &str,
    entries: &[VpsMonitor],
    known: &BTreeSet<VpsId>,
    message: &str,
) -> Result<Option<git2::Oid>, StatusError> {
    let repo = git2::Repository::discover(repo).map_err(git("open the repository"))?;
    let parent = tip(&repo, branch);
    let parent_tree = parent.as_ref().and_then(|c| c.tree().ok());
    let (old_dir, mut dir) = vps_folder(&repo, parent_tree.as_ref(), MONITOR_DIR, known)?;
    for m in entries {
        let json = serde_json::to_string_pretty(m).map_err(|source| StatusError::Json {
            vps: m.vps.to_string(),
            source,
        })? + "\n";
        let blob = repo
            .blob(json.as_bytes())
            .map_err(git("write a monitor file"))?;
        dir.insert(format!("{}.json", m.vps), blob, 0o100_644)
            .map_err(git("add a monitor file"))?;
    }
    let dir_id = dir.write().map_err(git("write the monitor folder"))?;
    if old_dir.as_ref().map(git2::Tree::id) == Some(dir_id) {
        return Ok(None);
    }
    let mut top = repo
        .treebuilder(parent_tree.as_ref())
        .map_err(git("build the tree"))?;
    top.insert(MONITOR_DIR, dir_id, 0o040_000)
        .map_err(git("build the tree"))?;
    commit_tree(&repo, branch, parent.as_ref(), top, message).map(Some)
}

/// The status file of `vps` in the status folder `dir`, if it is there and reads.
fn read_status(repo: &git2::Repository, dir: &git2::Tree<'_>, vps: &VpsId) -> Option<VpsStatus> {
    let entry = dir.get_name(&format!("{vps}.json"))?;
    let blob = repo.find_blob(entry.id()).ok()?;
    serde_json::from_slice(blob.content()).ok()
}

/// The statuses on `branch` now (of the repository at `repo`), by VPS.
pub fn read_branch(repo: &Path, branch: &str) -> Result<BTreeMap<VpsId, VpsStatus>, StatusError> {
    let repo = git2::Repository::discover(repo).map_err(git("open the repository"))?;
    let Some(tree) = repo
        .find_reference(&format!("refs/heads/{branch}"))
        .or_else(|_| repo.find_reference(&format!("refs/remotes/origin/{branch}")))
        .ok()
        .and_then(|r| r.peel_to_commit().ok())
        .and_then(|c| c.tree().ok())
    else {
        return Ok(BTreeMap::new());
    };
    let Some(dir) = tree
        .get_name(STATUS_DIR)
        .and_then(|e| repo.find_tree(e.id()).ok())
    else {
        return Ok(BTreeMap::new());
    };
    let mut out = BTreeMap::new();
    for e in &dir {
        let Some(id) = e
            .name()
            .ok()
            .and_then(|n| n.strip_suffix(".json"))
            .and_then(|n| n.parse::<VpsId>().ok())
        else {
            continue;
        };
        if let Some(s) = read_status(&repo, &dir, &id) {
            out.insert(id, s);
        }
    }
    Ok(out)
}

/// The statuses on the branch with their backup lists replaced by `lists`: what `gitvps
/// backup run --status` commits. A VPS with no status yet (never applied with `--status`)
/// gets none; the second value names them.
pub fn with_backups(
    current: BTreeMap<VpsId, VpsStatus>,
    lists: &BTreeMap<VpsId, Vec<model::status::BackupEntry>>,
) -> (Vec<VpsStatus>, Vec<VpsId>) {
    let mut out = Vec::new();
    let mut missing = Vec::new();
    for (id, list) in lists {
        match current.get(id) {
            Some(s) => {
                let mut s = s.clone();
                s.backups = Some(list.clone());
                out.push(s);
            }
            None => missing.push(id.clone()),
        }
    }
    (out, missing)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn status(vps: &str, backups: Option<Vec<model::status::BackupEntry>>) -> VpsStatus {
        VpsStatus {
            vps: vps.parse().unwrap(),
            node: "node1".parse().unwrap(),
            power: Power::Running,
            domain_state: None,
            memory_mib: 0,
            vcpus: 0,
            actions: ObservedActions::default(),
            last_error: None,
            observed_at: "2026-12-06T03:00:00Z".parse().unwrap(),
            backups,
            snapshots: Vec::new(),
        }
    }

    /// `backup run --status` sets the lists; a later apply (which lists no backups) keeps them.
    #[test]
    fn backup_lists_survive_an_apply() {
        let d = tempfile::tempdir().unwrap();
        git2::Repository::init(d.path()).unwrap();
        let known: BTreeSet<VpsId> = ["xen02".parse().unwrap()].into();
        let apply = || {
            write_branch(
                d.path(),
                "status",
                &[status("xen02", None)],
                &known,
                "apply",
            )
            .unwrap();
        };
        apply();
        let entry = model::status::BackupEntry {
            id: "ab".repeat(32),
            short_id: "abababab".into(),
            time: "2026-12-06T03:00:00Z".parse().unwrap(),
            size_bytes: 64 << 20,
        };
        let lists: BTreeMap<VpsId, _> = [
            ("xen02".parse().unwrap(), vec![entry.clone()]),
            ("xen03".parse().unwrap(), vec![]),
        ]
        .into();
        let (with, missing) = with_backups(read_branch(d.path(), "status").unwrap(), &lists);
        assert_eq!(missing, vec!["xen03".parse::<VpsId>().unwrap()]);
        write_branch(d.path(), "status", &with, &known, "backup").unwrap();
        apply();
        let now = read_branch(d.path(), "status").unwrap();
        assert_eq!(
            now[&"xen02".parse::<VpsId>().unwrap()].backups,
            Some(vec![entry])
        );
    }

    /// The collector's files sit beside apply's: an apply keeps them, the collector keeps the
    /// statuses, an unchanged collection commits nothing, a VPS gone loses its file.
    #[test]
    fn monitor_files_and_statuses_keep_each_other() {
        let d = tempfile::tempdir().unwrap();
        git2::Repository::init(d.path()).unwrap();
        let both: BTreeSet<VpsId> = ["xen02".parse().unwrap(), "xen03".parse().unwrap()].into();
        let m = |vps: &str| VpsMonitor {
            vps: vps.parse().unwrap(),
            collected_at: "2026-12-06T03:00:00Z".parse().unwrap(),
            counters: None,
            checks: Vec::new(),
        };
        let first =
            write_monitor(d.path(), "status", &[m("xen02"), m("xen03")], &both, "c1").unwrap();
        assert!(first.is_some());
        write_branch(d.path(), "status", &[status("xen02", None)], &both, "apply").unwrap();
        let again = write_monitor(d.path(), "status", &[m("xen02"), m("xen03")], &both, "c2");
        assert_eq!(again.unwrap(), None, "nothing changed, no commit");
        assert_eq!(
            read_branch(d.path(), "status").unwrap().len(),
            1,
            "apply's file kept"
        );
        let only: BTreeSet<VpsId> = ["xen02".parse().unwrap()].into();
        write_monitor(d.path(), "status", &[m("xen02")], &only, "c3")
            .unwrap()
            .unwrap();
        let repo = git2::Repository::open(d.path()).unwrap();
        let tree = tip(&repo, "status").unwrap().tree().unwrap();
        assert!(tree.get_path(Path::new("monitor/xen02.json")).is_ok());
        assert!(tree.get_path(Path::new("monitor/xen03.json")).is_err());
        assert!(tree.get_path(Path::new("status/xen02.json")).is_ok());
    }
}
