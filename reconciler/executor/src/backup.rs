//! `gitvps backup` on the nodes: per node over one SSH connection, list the VPSes' restic
//! snapshots, take the backups that are due (one VPS after another), then apply retention.
//!
//! The decisions (which backups are due, which snapshots a policy forgets) are
//! `gitvps-backup`'s; the node script and the parse of restic's answers are the planner's.
//! Secrets come from the environment, go to the node on the command's standard input only,
//! and are cut out of every message that comes back.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use model::backup::{BackupSettings, Frequency, Repository};
use model::{Inventory, NodeId, VpsId};
use planner::backup::{self as nodebk, Listed, RepoAccess, Taken};
use planner::desired::{Desired, NodeSpec};
use tokio::sync::Semaphore;

use crate::apply::{Access, target_of};
use crate::ssh::{Output, Session, SshError};

/// The repository's secrets, read from the environment variables `gitvps.toml` names.
#[derive(Clone)]
pub struct Secrets {
    password: String,
    s3: Option<(String, String)>,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secrets { .. }")
    }
}

/// Why a backup could not start, or a step of it failed. Messages never hold a secret.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// `gitvps.toml` names no repository.
    #[error("gitvps.toml has no [backup] repository (see docs/backup.md)")]
    NoRepository,
    /// A variable holding a secret is not set.
    #[error("the environment variable {0} is not set (it holds the backup repository's {1})")]
    MissingSecret(String, &'static str),
    /// A secret cannot be handed over.
    #[error(transparent)]
    Input(nodebk::BackupParseError),
    /// The SSH connection failed.
    #[error(transparent)]
    Ssh(#[from] SshError),
    /// restic (or the node script) failed: its reason, the secrets cut out.
    #[error("{node}: {what} failed (exit {status}): {reason}")]
    Failed {
        /// The node.
        node: NodeId,
        /// What was run.
        what: String,
        /// The exit status (-1: none).
        status: i64,
        /// The last lines it printed on stderr.
        reason: String,
    },
    /// restic's answer could not be read.
    #[error("{node}: {source}")]
    Parse {
        /// The node.
        node: NodeId,
        /// The cause.
        #[source]
        source: nodebk::BackupParseError,
    },
}

impl Secrets {
    /// Reads the password (and an S3 repository's keys) from the variables `settings` names.
    pub fn from_env(settings: &BackupSettings) -> Result<Secrets, BackupError> {
        Secrets::from_lookup(settings, |k| std::env::var(k).ok())
    }

    /// [`Secrets::from_env`] with another lookup (tests).
    pub fn from_lookup(
        settings: &BackupSettings,
        get: impl Fn(&str) -> Option<String>,
    ) -> Result<Secrets, BackupError> {
        let need = |name: &str, what: &'static str| {
            get(name)
                .filter(|v| !v.is_empty())
                .ok_or_else(|| BackupError::MissingSecret(name.to_owned(), what))
        };
        let password = need(settings.password_env.as_str(), "password")?;
        let s3 = match &settings.repository {
            Some(Repository::S3 {
                access_key_env,
                secret_key_env,
                ..
            }) => Some((
                need(access_key_env.as_str(), "S3 access key id")?,
                need(secret_key_env.as_str(), "S3 secret key")?,
            )),
            _ => None,
        };
        let s = Secrets { password, s3 };
        s.input()?;
        Ok(s)
    }

    /// The node scripts' standard input: one secret a line (see `planner::backup`).
    pub(crate) fn input(&self) -> Result<Vec<u8>, BackupError> {
        nodebk::secrets_input(
            &self.password,
            self.s3.as_ref().map(|(a, b)| (a.as_str(), b.as_str())),
        )
        .map_err(BackupError::Input)
    }

    /// `text` with every secret replaced by `[redacted]`.
    pub fn redact(&self, text: &str) -> String {
        let mut out = text.to_owned();
        let mut all = vec![self.password.as_str()];
        if let Some((a, b)) = &self.s3 {
            all.extend([a.as_str(), b.as_str()]);
        }
        for s in all.into_iter().filter(|s| s.len() >= 3) {
            out = out.replace(s, "[redacted]");
        }
        out
    }
}

/// What a backup run is asked to do.
#[derive(Debug, Clone)]
pub struct RunSpec {
    /// The time the due backups and retention are decided at; backups are stamped with it
    /// when given (`--now`), else with the control machine's clock as each starts.
    pub now: DateTime<Utc>,
    /// Whether `now` was given, so restic must stamp the backups with it.
    pub stamp: bool,
    /// Only decide and print, act on nothing.
    pub dry_run: bool,
    /// Only these VPSes (none: all).
    pub only: Vec<VpsId>,
}

/// What happened to one VPS.
#[derive(Debug, Default)]
pub struct VpsOutcome {
    /// The backup was due (and was taken, or would be in a dry run).
    pub due: bool,
    /// The backup taken, or why it failed.
    pub taken: Option<Result<Taken, String>>,
    /// The snapshots retention forgets (forgot, in a dry run: would forget).
    pub forget: Vec<String>,
    /// Why forgetting failed, if it did.
    pub forget_error: Option<String>,
    /// Its snapshots after the run, newest first.
    pub snapshots: Vec<Listed>,
}

/// What happened on one node.
#[derive(Debug)]
pub enum NodeRun {
    /// Each VPS with a backup policy on the node.
    Done(BTreeMap<VpsId, VpsOutcome>),
    /// Nothing could be done: unreachable, or the repository could not be listed.
    Failed(String),
}

impl NodeRun {
    /// Whether anything failed.
    pub fn failed(&self) -> bool {
        match self {
            NodeRun::Failed(_) => true,
            NodeRun::Done(v) => v
                .values()
                .any(|o| matches!(o.taken, Some(Err(_))) || o.forget_error.is_some()),
        }
    }
}

/// The VPSes of a node whose backups are on, within `only`.
fn backed_up(inv: &Inventory, spec: &NodeSpec, only: &[VpsId]) -> Vec<VpsId> {
    spec.vps
        .keys()
        .filter(|id| only.is_empty() || only.contains(id))
        .filter(|id| {
            inv.vps
                .get(*id)
                .and_then(|v| inv.backup_policy_of(v))
                .is_some_and(|p| p.schedule.every != Frequency::Off)
        })
        .cloned()
        .collect()
}

/// Runs a backup on every given node, nodes in parallel, each node's VPSes in sequence.
pub async fn run_all(
    inv: &Arc<Inventory>,
    desired: &Arc<Desired>,
    nodes: &[NodeId],
    access: &Access,
    secrets: &Secrets,
    run: &RunSpec,
) -> Result<BTreeMap<NodeId, NodeRun>, BackupError> {
    let repo = inv
        .settings
        .backup
        .repository
        .as_ref()
        .ok_or(BackupError::NoRepository)?;
    let repo = Arc::new(RepoAccess::of(repo));
    let sem = Arc::new(Semaphore::new(access.parallelism.max(1)));
    let mut tasks = tokio::task::JoinSet::new();
    for id in nodes {
        let Some(spec) = desired.nodes.get(id) else {
            continue;
        };
        let vps = backed_up(inv, spec, &run.only);
        if vps.is_empty() {
            continue;
        }
        let (inv, desired, repo, access, secrets, run, sem, id) = (
            inv.clone(),
            desired.clone(),
            repo.clone(),
            access.clone(),
            secrets.clone(),
            run.clone(),
            sem.clone(),
            id.clone(),
        );
        tasks.spawn(async move {
            let _permit = sem.acquire_owned().await;
            let Some(spec) = desired.nodes.get(&id) else {
                return (id, NodeRun::Failed("not in the inventory".into()));
            };
            let out = match run_node(&inv, spec, &repo, &access, &secrets, &run, &vps).await {
                Ok(v) => NodeRun::Done(v),
                Err(e) => NodeRun::Failed(secrets.redact(&model::diag::error_chain(&e))),
            };
            (id, out)
        });
    }
    let mut out = BTreeMap::new();
    while let Some(r) = tasks.join_next().await {
        if let Ok((id, o)) = r {
            out.insert(id, o);
        }
    }
    Ok(out)
}

/// Lists the snapshots of every VPS of `nodes` that has backups, from the nodes (in parallel).
pub async fn list_all(
    inv: &Arc<Inventory>,
    desired: &Arc<Desired>,
    nodes: &[NodeId],
    access: &Access,
    secrets: &Secrets,
    only: &[VpsId],
) -> Result<BTreeMap<NodeId, Result<Vec<Listed>, String>>, BackupError> {
    let run = RunSpec {
        now: Utc::now(),
        stamp: false,
        dry_run: true,
        only: only.to_vec(),
    };
    let runs = run_all(inv, desired, nodes, access, secrets, &run).await?;
    Ok(runs
        .into_iter()
        .map(|(n, r)| {
            let l = match r {
                NodeRun::Failed(why) => Err(why),
                NodeRun::Done(v) => Ok(v.into_values().flat_map(|o| o.snapshots).collect()),
            };
            (n, l)
        })
        .collect())
}

struct Node<'a> {
    sess: Session,
    spec: &'a NodeSpec,
    repo: &'a RepoAccess,
    input: Vec<u8>,
    secrets: &'a Secrets,
}

impl Node<'_> {
    async fn exec(&self, what: &str, cmd: &str) -> Result<Output, BackupError> {
        let out = self.sess.exec(cmd, Some(&self.input)).await?;
        if out.success() {
            return Ok(out);
        }
        let reason = self.secrets.redact(&out.tail(4));
        tracing::warn!(node = %self.spec.node, %what, %reason, "backup step failed");
        Err(BackupError::Failed {
            node: self.spec.node.clone(),
            what: what.to_owned(),
            status: out.status.map_or(-1, i64::from),
            reason,
        })
    }

    async fn list(&self, vps: &[VpsId]) -> Result<Vec<Listed>, BackupError> {
        let out = self
            .exec(
                "restic snapshots",
                &nodebk::list_command(self.spec, self.repo, vps),
            )
            .await?;
        nodebk::parse_list(&out.stdout).map_err(|source| BackupError::Parse {
            node: self.spec.node.clone(),
            source,
        })
    }
}

async fn run_node(
    inv: &Inventory,
    spec: &NodeSpec,
    repo: &RepoAccess,
    access: &Access,
    secrets: &Secrets,
    run: &RunSpec,
    vps: &[VpsId],
) -> Result<BTreeMap<VpsId, VpsOutcome>, BackupError> {
    let Some(node) = inv.nodes.get(&spec.node) else {
        return Ok(BTreeMap::new());
    };
    let sess = Session::connect(&target_of(node), &access.creds, access.timeouts).await?;
    let n = Node {
        sess,
        spec,
        repo,
        input: secrets.input()?,
        secrets,
    };
    let result = node_steps(inv, &n, run, vps).await;
    n.sess.close().await;
    result
}

async fn node_steps(
    inv: &Inventory,
    n: &Node<'_>,
    run: &RunSpec,
    vps: &[VpsId],
) -> Result<BTreeMap<VpsId, VpsOutcome>, BackupError> {
    let mut listed = group(n.list(vps).await?, vps);
    // The backups due: the pure decision over the whole inventory, restricted to this node.
    let last: BTreeMap<VpsId, DateTime<Utc>> = listed
        .iter()
        .filter_map(|(id, l)| l.first().map(|s| (id.clone(), s.time)))
        .collect();
    let mut out: BTreeMap<VpsId, VpsOutcome> = vps
        .iter()
        .map(|id| (id.clone(), VpsOutcome::default()))
        .collect();
    let due: Vec<VpsId> = ::backup::due(inv, &last, run.now)
        .into_iter()
        .map(|d| d.vps)
        .filter(|id| out.contains_key(id))
        .collect();
    for id in &due {
        let Some(o) = out.get_mut(id) else { continue };
        o.due = true;
        if run.dry_run {
            continue;
        }
        let Some(v) = n.spec.vps.get(id) else {
            continue;
        };
        // Stamped on the control machine's clock (the fleet runs on one clock, as observe
        // does): `--now` when given, else the moment this backup starts.
        let at = if run.stamp {
            run.now
        } else {
            chrono::Utc::now()
        };
        let cmd = nodebk::backup_command(n.spec, n.repo, v, Some(at));
        tracing::info!(node = %n.spec.node, vps = %id, "backing up");
        let taken = match n.exec(&format!("the backup of {id}"), &cmd).await {
            Ok(o) => nodebk::parse_taken(&o.stdout).map_err(|e| e.to_string()),
            Err(e) => Err(model::diag::error_chain(&e)),
        };
        o.taken = Some(taken);
    }
    if due.iter().any(|id| matches!(out[id].taken, Some(Ok(_)))) {
        listed = group(n.list(vps).await?, vps);
    }
    // Retention, per VPS, over its snapshots as they are now.
    let mut forget_all = Vec::new();
    for id in vps {
        let Some(policy) = inv.vps.get(id).and_then(|v| inv.backup_policy_of(v)) else {
            continue;
        };
        let snaps: Vec<::backup::Snapshot> = listed
            .get(id)
            .into_iter()
            .flatten()
            .map(|l| ::backup::Snapshot {
                id: l.id.clone(),
                time: l.time,
            })
            .collect();
        let forget: Vec<String> = ::backup::retain(&snaps, &policy.keep)
            .forget
            .into_iter()
            .map(|s| s.id)
            .collect();
        forget_all.extend(forget.iter().cloned());
        if let Some(o) = out.get_mut(id) {
            o.forget = forget;
        }
    }
    if !forget_all.is_empty() && !run.dry_run {
        let res = match nodebk::forget_command(n.spec, n.repo, &forget_all) {
            Ok(cmd) => n.exec("restic forget --prune", &cmd).await.map(|_| ()),
            Err(e) => Err(BackupError::Input(e)),
        };
        match res {
            Ok(()) => listed = group(n.list(vps).await?, vps),
            Err(e) => {
                let why = model::diag::error_chain(&e);
                for o in out.values_mut().filter(|o| !o.forget.is_empty()) {
                    o.forget_error = Some(why.clone());
                }
            }
        }
    }
    for (id, o) in &mut out {
        o.snapshots = listed.remove(id).unwrap_or_default();
    }
    Ok(out)
}

/// Snapshots by VPS (each newest first), for the VPSes asked about only.
fn group(list: Vec<Listed>, vps: &[VpsId]) -> BTreeMap<VpsId, Vec<Listed>> {
    let mut out: BTreeMap<VpsId, Vec<Listed>> = BTreeMap::new();
    for l in list.into_iter().filter(|l| vps.contains(&l.vps)) {
        out.entry(l.vps.clone()).or_default().push(l);
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn settings(s3: bool) -> BackupSettings {
        let mut b = BackupSettings::default();
        if s3 {
            b.repository = Some(Repository::S3 {
                endpoint: "https://s3.example.net".into(),
                bucket: "b".into(),
                prefix: None,
                access_key_env: "AK".parse().unwrap(),
                secret_key_env: "SK".parse().unwrap(),
            });
        }
        b
    }

    #[test]
    fn secrets_come_from_the_named_variables_and_never_show() {
        let env = |k: &str| match k {
            "GITVPS_RESTIC_PASSWORD" => Some("correct horse".to_owned()),
            "AK" => Some("AKIDEXAMPLE".to_owned()),
            _ => None,
        };
        let e = Secrets::from_lookup(&settings(true), env).unwrap_err();
        assert_eq!(
            e.to_string(),
            "the environment variable SK is not set (it holds the backup repository's S3 secret key)"
        );
        let s = Secrets::from_lookup(&settings(false), env).unwrap();
        assert_eq!(format!("{s:?}"), "Secrets { .. }");
        assert_eq!(
            s.redact("Fatal: wrong password correct horse for x"),
            "Fatal: wrong password [redacted] for x"
        );
        let e = Secrets::from_lookup(&settings(false), |_| Some("a\nb".into())).unwrap_err();
        assert!(!e.to_string().contains("a\nb"), "{e}");
    }
}
