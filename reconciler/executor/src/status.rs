//! The status branch: after an apply, what was observed of every VPS, one JSON file per VPS
//! (`status/<vps>.json`), one commit per apply; the hooks read it for the customer panel.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use chrono::{DateTime, Utc};
use model::status::{ObservedActions, STATUS_DIR, VpsStatus};
use model::values::Power;
use model::{NodeId, VpsId};

use crate::apply::NodeOutcome;
use planner::desired::Desired;
use planner::observe::Observation;

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
                },
                last_error: failures.get(id.as_str()).cloned(),
                observed_at: at,
                // Apply does not list backups: write_branch keeps the previous list.
                backups: None,
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
    let repo = git2::Repository::discover(repo).map_err(git("open the repository"))?;
    let parent = repo
        .find_reference(&format!("refs/heads/{branch}"))
        .or_else(|_| repo.find_reference(&format!("refs/remotes/origin/{branch}")))
        .ok()
        .and_then(|r| r.peel_to_commit().ok());
    let old_dir = parent
        .as_ref()
        .and_then(|c| c.tree().ok())
        .and_then(|t| t.get_name(STATUS_DIR).map(|e| e.id()))
        .and_then(|id| repo.find_tree(id).ok());
    let mut dir = repo
        .treebuilder(old_dir.as_ref())
        .map_err(git("build the status folder"))?;
    // Keep only the files of VPSes the inventory still has.
    dir.filter(|e| {
        e.name()
            .ok()
            .and_then(|n| n.strip_suffix(".json"))
            .is_some_and(|id| known.contains(id))
    })
    .map_err(git("remove stale statuses"))?;
    for s in statuses {
        let json = serde_json::to_string_pretty(s).map_err(|source| StatusError::Json {
            vps: s.vps.to_string(),
            source,
        })? + "\n";
        let blob = repo.blob(json.as_bytes()).map_err(git("write a status"))?;
        dir.insert(format!("{}.json", s.vps), blob, 0o100_644)
            .map_err(git("add a status"))?;
    }
    let dir_id = dir.write().map_err(git("write the status folder"))?;
    let mut top = repo.treebuilder(None).map_err(git("build the tree"))?;
    top.insert(STATUS_DIR, dir_id, 0o040_000)
        .map_err(git("build the tree"))?;
    let tree = repo
        .find_tree(top.write().map_err(git("write the tree"))?)
        .map_err(git("read the tree"))?;
    let sig = git2::Signature::now(BOT.0, BOT.1).map_err(git("sign"))?;
    let parents: Vec<&git2::Commit<'_>> = parent.iter().collect();
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
