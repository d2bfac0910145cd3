//! The git edge: a cached clone of the inventory repo, fetched per batch of requests; each
//! accepted change is validated and committed, the batch pushed once, decided again on a lost race.
//!
//! One committer thread owns the clone. Requests that arrive together form a batch: one
//! fetch, one commit per request (each validated with `Inventory::load`), one push. A push
//! that loses a race fetches and decides the whole batch again on the new head, up to
//! `Config::push_tries` times. Pushes to a local repo (a path) update the branch with a
//! compare-and-swap, so two processes never overwrite each other's commits.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use git2::{ErrorCode, FileMode, ObjectType, Oid, Repository, ResetType, Signature};
use model::status::{MONITOR_DIR, STATUS_DIR, VpsMonitor, VpsStatus};
use model::{Inventory, LoadError, VpsId};
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, oneshot};

use crate::catalog::Catalog;
use crate::config::{Config, redact_url};
use crate::decide::{Change, Decision, Edit, Refusal, decide};
use crate::tree::{DiskTree, Tree};

/// Name and e-mail of the commits the hooks write.
pub const BOT_NAME: &str = "gitvps-bot";
/// E-mail of the bot (a reserved domain: it receives nothing).
pub const BOT_EMAIL: &str = "gitvps-bot@gitvps.invalid";
/// Most requests handled in one batch.
pub const MAX_BATCH: usize = 256;
/// A snapshot older than this is refreshed before it authenticates a request.
pub const SNAPSHOT_MAX_AGE: Duration = Duration::from_secs(10);

/// Why the repo could not be read or written. Clonable: one failure answers a whole batch.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// A git operation failed.
    #[error("git: cannot {what}")]
    Git {
        /// What was being done.
        what: &'static str,
        /// The cause.
        #[source]
        source: Arc<git2::Error>,
    },
    /// The cache folder could not be prepared.
    #[error("cannot prepare the cache folder {path}")]
    Io {
        /// The folder.
        path: PathBuf,
        /// The cause.
        #[source]
        source: Arc<std::io::Error>,
    },
    /// Another process holds the cache folder.
    #[error("the cache folder {0} is in use by another process")]
    Locked(PathBuf),
    /// The branch does not exist in the repo.
    #[error("the repo has no branch `{0}`")]
    NoBranch(String),
    /// The inventory at the head does not load: nothing can be decided on it.
    #[error("the inventory at {head} is invalid")]
    Invalid {
        /// The commit.
        head: String,
        /// The cause.
        #[source]
        source: Arc<LoadError>,
    },
    /// The remote refused the push for another reason than a race.
    #[error("the push was refused: {0}")]
    Refused(String),
    /// Every try lost a race.
    #[error("the push lost {0} races in a row")]
    Busy(u32),
    /// The local repo has the branch checked out: pushing to it would leave its work tree
    /// behind. Serve a bare clone (`git clone --bare`).
    #[error("{0} has the branch checked out in a work tree; serve a bare clone of it")]
    CheckedOut(PathBuf),
    /// The committer thread is gone.
    #[error("the committer has stopped")]
    Stopped,
}

fn git(what: &'static str) -> impl FnOnce(git2::Error) -> StoreError {
    move |source| StoreError::Git {
        what,
        source: Arc::new(source),
    }
}

/// Why a change was not committed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ApplyError {
    /// The request is refused (not found, suspended, invalid...).
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// The repo failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The head a batch was decided on.
#[derive(Debug)]
pub struct Snapshot {
    /// The commit.
    pub head: Oid,
    /// Its inventory.
    pub inv: Arc<Inventory>,
    /// Its `bootstraps/` catalog, as the model reads it (what may be installed).
    pub bootstraps: Arc<model::bootstraps::Catalog>,
    /// Observed status per VPS, from the status branch (empty when there is none).
    pub status: Arc<BTreeMap<VpsId, VpsStatus>>,
    /// What the collector last saw per VPS (check states, counters), from the status branch.
    pub monitor: Arc<BTreeMap<VpsId, VpsMonitor>>,
    /// When it was taken.
    pub taken: Instant,
}

/// What a read sees: the snapshot and the files of its head.
pub struct View<'a> {
    /// The head.
    pub snapshot: &'a Arc<Snapshot>,
    /// Its files.
    pub tree: &'a dyn Tree,
}

/// A change that landed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    /// What it did.
    pub decision: Decision,
    /// The commit, or `None` when nothing needed to change.
    pub commit: Option<String>,
}

/// A change, with the session fingerprint of the token that asked for it (`None`: not a
/// customer's session, like a Stripe event).
#[derive(Debug, Clone)]
pub struct Asked {
    /// The change.
    pub change: Change,
    /// The password fingerprint the token was issued for: checked again on the head the
    /// commit is made on, so a token revoked a moment ago commits nothing.
    pub session: Option<crate::auth::Credential>,
}

type ReadFn = Box<dyn FnOnce(Result<&View<'_>, &StoreError>) + Send>;
type Reply = oneshot::Sender<Result<Committed, ApplyError>>;
/// Files as they were before an edit, to put back when it is refused.
type Saved = Vec<(PathBuf, Option<Vec<u8>>)>;

enum Job {
    Read(ReadFn),
    Apply { change: Box<Asked>, reply: Reply },
}

/// Counters of the committer (batches, commits, pushes, lost races), for tests and benchmarks.
#[derive(Debug, Default)]
pub struct PushStats {
    /// Batches handled (each one fetch).
    pub batches: AtomicU64,
    /// Commits made (before a lost race, made again after it).
    pub commits: AtomicU64,
    /// Pushes that landed.
    pub pushes: AtomicU64,
    /// Pushes that lost a race and were retried on the new head.
    pub lost_races: AtomicU64,
}

/// The git edge: the handle the HTTP handlers use to read and commit; cheap to clone.
#[derive(Clone)]
pub struct GitRepo {
    tx: mpsc::UnboundedSender<Job>,
    current: Arc<Mutex<Option<Arc<Snapshot>>>>,
    stats: Arc<PushStats>,
}

impl GitRepo {
    /// Starts the committer thread. The clone happens on the first request.
    pub fn start(cfg: &Config) -> GitRepo {
        crate::git_timeout::set_once(cfg.git_timeout);
        let (tx, rx) = mpsc::unbounded_channel();
        let current = Arc::new(Mutex::new(None));
        let stats = Arc::new(PushStats::default());
        let (shared, counters) = (current.clone(), stats.clone());
        let cfg = cfg.clone();
        let spawned = std::thread::Builder::new()
            .name("gitvps-committer".to_owned())
            .spawn(move || committer(cfg, rx, shared, counters));
        if let Err(e) = spawned {
            // Without the thread every request answers `Stopped`.
            tracing::error!(error = %e, "cannot start the committer thread");
        }
        GitRepo { tx, current, stats }
    }

    /// The committer's counters.
    pub fn stats(&self) -> &PushStats {
        &self.stats
    }

    /// Runs `f` on a freshly fetched head (batched with other requests).
    pub async fn read<R: Send + 'static>(
        &self,
        f: impl FnOnce(&View<'_>) -> R + Send + 'static,
    ) -> Result<R, StoreError> {
        let (tx, rx) = oneshot::channel();
        let job: ReadFn = Box::new(move |v| {
            let _ = tx.send(v.map(f).map_err(Clone::clone));
        });
        self.tx
            .send(Job::Read(job))
            .map_err(|_| StoreError::Stopped)?;
        rx.await.map_err(|_| StoreError::Stopped)?
    }

    /// The last snapshot, if recent; otherwise a fresh one.
    pub async fn snapshot(&self) -> Result<Arc<Snapshot>, StoreError> {
        let cached = self.current.lock().ok().and_then(|c| c.clone());
        match cached {
            Some(s) if s.taken.elapsed() < SNAPSHOT_MAX_AGE => Ok(s),
            _ => self.read(|v| v.snapshot.clone()).await,
        }
    }

    /// Decides, validates, commits and pushes one change; answers once it is pushed.
    pub async fn apply(&self, change: Change) -> Result<Committed, ApplyError> {
        self.submit(Asked {
            change,
            session: None,
        })
        .await
    }

    /// [`GitRepo::apply`] for a customer's session: the token's password `fingerprint` is
    /// checked against the head the commit is made on (a password changed since: refused).
    pub async fn apply_as(
        &self,
        change: Change,
        credential: crate::auth::Credential,
    ) -> Result<Committed, ApplyError> {
        self.submit(Asked {
            change,
            session: Some(credential),
        })
        .await
    }

    async fn submit(&self, asked: Asked) -> Result<Committed, ApplyError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Job::Apply {
                change: Box::new(asked),
                reply,
            })
            .map_err(|_| StoreError::Stopped)?;
        rx.await
            .map_err(|_| ApplyError::Store(StoreError::Stopped))?
    }
}

fn committer(
    cfg: Config,
    mut rx: mpsc::UnboundedReceiver<Job>,
    current: Arc<Mutex<Option<Arc<Snapshot>>>>,
    stats: Arc<PushStats>,
) {
    let mut clone: Option<Cache> = None;
    while let Some(first) = rx.blocking_recv() {
        let mut jobs = vec![first];
        while jobs.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(j) => jobs.push(j),
                Err(_) => break,
            }
        }
        let mut reads = Vec::new();
        let mut applies = Vec::new();
        for j in jobs {
            match j {
                Job::Read(f) => reads.push(f),
                Job::Apply { change, reply } => applies.push((change, reply)),
            }
        }
        let c = match &mut clone {
            Some(c) => c,
            None => match Cache::open(&cfg) {
                Ok(c) => clone.insert(c),
                Err(e) => {
                    log_store_error(&cfg, &e);
                    fail(reads, applies, &e);
                    continue;
                }
            },
        };
        stats.batches.fetch_add(1, Ordering::Relaxed);
        c.batch(reads, applies, &current, &stats);
    }
}

fn fail(reads: Vec<ReadFn>, applies: Vec<(Box<Asked>, Reply)>, e: &StoreError) {
    for r in reads {
        r(Err(e));
    }
    for (_, reply) in applies {
        let _ = reply.send(Err(ApplyError::Store(e.clone())));
    }
}

/// Logs a store error with its causes, with the repo URL's credentials removed.
fn log_store_error(cfg: &Config, e: &StoreError) {
    let text = crate::error_chain(e).replace(&cfg.repo, &redact_url(&cfg.repo));
    tracing::error!(error = %text, "inventory repo");
}

/// Whether the session that asked for `change` still holds on `inv` and `tree`, the head the
/// commit is made on: its customer exists, has the password the token was issued for, and has
/// not logged out everywhere since.
fn session_still_valid(
    inv: &Inventory,
    tree: &dyn Tree,
    change: &Change,
    cred: &crate::auth::Credential,
) -> Result<(), Refusal> {
    use crate::auth::Credential;
    let customer = change.customer();
    let same = match cred {
        Credential::Session(fp) => customer
            .and_then(|c| crate::auth::current_fingerprint(inv, tree, c))
            .is_some_and(|n| {
                n.iter()
                    .zip(fp.iter())
                    .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                    == 0
            }),
        Credential::ApiKey { id, hash } => customer
            .filter(|c| inv.customers.contains_key(*c))
            .and_then(|c| tree.read(&crate::apikeys::apikeys_path(c)))
            .is_some_and(|text| {
                crate::apikeys::parse_file(&text)
                    .iter()
                    .any(|k| &k.id == id && &k.hash == hash)
            }),
    };
    if same {
        Ok(())
    } else {
        tracing::info!(who = %change.who(), "refused: the session was revoked before the commit");
        Err(Refusal::Unauthorized)
    }
}

/// Whether a repo address is a folder on this machine (then pushes are compare-and-swap).
pub fn local_path(url: &str) -> Option<PathBuf> {
    if let Some(p) = url.strip_prefix("file://") {
        return Some(PathBuf::from(p));
    }
    if url.contains("://") {
        return None;
    }
    // scp-like `user@host:path`: a colon before any slash.
    match (url.find(':'), url.find('/')) {
        (Some(c), Some(s)) if c < s => None,
        (Some(_), None) => None,
        _ => Some(PathBuf::from(url)),
    }
}

/// The cached clone, owned by the committer thread.
struct Cache {
    cfg: Config,
    repo: Repository,
    workdir: PathBuf,
    /// Holds the advisory lock on the cache folder while the clone is in use.
    _lock: std::fs::File,
    /// The commit whose files the work tree holds.
    worktree_at: Option<Oid>,
    /// Inventory per tree id (the last one).
    inv_cache: Option<(Oid, Arc<Inventory>)>,
    /// Bootstraps catalog per `bootstraps/` tree id (`None`: no such folder), the last one.
    catalog_cache: Option<(Option<Oid>, Arc<model::bootstraps::Catalog>)>,
    /// Status per status-branch commit (the last one).
    status_cache: Option<(Oid, Observed)>,
}

/// What the status branch holds per VPS: apply's observed status, the collector's files.
type Observed = (
    Arc<BTreeMap<VpsId, VpsStatus>>,
    Arc<BTreeMap<VpsId, VpsMonitor>>,
);

/// What a batch committed on its base, before the push.
struct BatchCommits {
    /// The last commit (the base when nothing changed).
    head: Oid,
    /// The inventory at `head`.
    inv: Arc<Inventory>,
    /// Each request's answer, in order.
    results: Vec<Result<Committed, ApplyError>>,
    /// How many commits were made.
    made: usize,
}

enum PushError {
    Lost,
    Failed(StoreError),
}

impl Cache {
    fn open(cfg: &Config) -> Result<Cache, StoreError> {
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| StoreError::Io {
                path,
                source: Arc::new(source),
            }
        };
        if let Some(path) = local_path(&cfg.repo)
            && let Ok(r) = Repository::open(&path)
            && !r.is_bare()
            && r.head().ok().and_then(|h| h.name().ok().map(str::to_owned))
                == Some(format!("refs/heads/{}", cfg.branch))
        {
            return Err(StoreError::CheckedOut(path));
        }
        std::fs::create_dir_all(&cfg.cache_dir).map_err(io(&cfg.cache_dir))?;
        let key = crate::auth::hex(&Sha256::digest(cfg.repo.as_bytes())[..8]);
        let dir = cfg.cache_dir.join(format!("repo-{key}"));
        let lock_path = cfg.cache_dir.join(format!("repo-{key}.lock"));
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io(&lock_path))?;
        if lock.try_lock().is_err() {
            return Err(StoreError::Locked(dir));
        }
        let reuse = Repository::open(&dir).ok().filter(|r| {
            r.find_remote("origin")
                .ok()
                .is_some_and(|o| o.url().ok() == Some(cfg.repo.as_str()))
                && !r.is_bare()
        });
        let repo = match reuse {
            Some(r) => r,
            None => {
                if dir.exists() {
                    std::fs::remove_dir_all(&dir).map_err(io(&dir))?;
                }
                let started = Instant::now();
                let r = clone(cfg, &dir)?;
                tracing::info!(
                    repo = %redact_url(&cfg.repo),
                    ms = started.elapsed().as_millis() as u64,
                    "cloned"
                );
                r
            }
        };
        // The cache is rebuilt from the remote at will: no reflogs to write on every commit.
        repo.config()
            .and_then(|mut c| c.set_bool("core.logAllRefUpdates", false))
            .map_err(git("configure the clone"))?;
        let workdir = repo.workdir().map(Path::to_owned).unwrap_or(dir);
        Ok(Cache {
            cfg: cfg.clone(),
            repo,
            workdir,
            _lock: lock,
            worktree_at: None,
            inv_cache: None,
            catalog_cache: None,
            status_cache: None,
        })
    }

    fn branch_ref(&self) -> String {
        format!("refs/heads/{}", self.cfg.branch)
    }

    fn fetch(&self) -> Result<(), StoreError> {
        let mut remote = self
            .repo
            .find_remote("origin")
            .map_err(git("find the remote"))?;
        let mut opts = git2::FetchOptions::new();
        opts.remote_callbacks(self.cfg.remote.callbacks())
            .download_tags(git2::AutotagOption::None)
            .update_fetchhead(false);
        remote
            .fetch(
                &["+refs/heads/*:refs/remotes/origin/*"],
                Some(&mut opts),
                None,
            )
            .map_err(git("fetch"))
    }

    /// Fetches and puts the work tree on the head to decide on.
    fn sync(&mut self) -> Result<Oid, StoreError> {
        let remote_head = self.fetched_head()?;
        let base = if self.cfg.publish {
            remote_head
        } else {
            // Unpublished commits pile up on the local branch.
            self.repo
                .refname_to_id(&self.branch_ref())
                .unwrap_or(remote_head)
        };
        if self.worktree_at != Some(base) {
            let obj = self
                .repo
                .find_object(base, Some(ObjectType::Commit))
                .map_err(git("find the head"))?;
            let mut co = git2::build::CheckoutBuilder::new();
            co.force().remove_untracked(true);
            self.repo
                .reset(&obj, ResetType::Hard, Some(&mut co))
                .map_err(git("check out the head"))?;
            self.worktree_at = Some(base);
        }
        Ok(base)
    }

    fn tree_of(&self, commit: Oid) -> Result<Oid, StoreError> {
        self.repo
            .find_commit(commit)
            .map(|c| c.tree_id())
            .map_err(git("read a commit"))
    }

    fn snapshot(&mut self, head: Oid) -> Result<Arc<Snapshot>, StoreError> {
        let tree = self.tree_of(head)?;
        let inv = match &self.inv_cache {
            Some((t, inv)) if *t == tree => inv.clone(),
            _ => {
                let inv =
                    Arc::new(
                        Inventory::load(&self.workdir).map_err(|e| StoreError::Invalid {
                            head: head.to_string(),
                            source: Arc::new(e),
                        })?,
                    );
                self.inv_cache = Some((tree, inv.clone()));
                inv
            }
        };
        let bootstraps = self.bootstraps(head)?;
        let (status, monitor) = self.status(&inv.settings.reconciler.status_branch);
        Ok(Arc::new(Snapshot {
            head,
            inv,
            bootstraps,
            status,
            monitor,
            taken: Instant::now(),
        }))
    }

    /// The bootstraps catalog of `head`, read by the model from the work tree (checked out at
    /// `head`): the same parse and rules as `gitvps validate`. Cached per `bootstraps/` tree.
    fn bootstraps(&mut self, head: Oid) -> Result<Arc<model::bootstraps::Catalog>, StoreError> {
        let dir = self
            .repo
            .find_commit(head)
            .and_then(|c| c.tree())
            .map_err(git("read the head tree"))?
            .get_path(Path::new(model::bootstraps::DIR))
            .ok()
            .map(|e| e.id());
        if let Some((d, cat)) = &self.catalog_cache
            && *d == dir
        {
            return Ok(cat.clone());
        }
        let cat = Arc::new(
            model::bootstraps::Catalog::load(&self.workdir).map_err(|e| StoreError::Invalid {
                head: head.to_string(),
                source: Arc::new(e),
            })?,
        );
        self.catalog_cache = Some((dir, cat.clone()));
        Ok(cat)
    }

    /// The status and collector files of the status branch; empty when it does not exist or
    /// cannot be read.
    fn status(&mut self, branch: &str) -> Observed {
        let name = format!("refs/remotes/origin/{branch}");
        if !git2::Reference::is_valid_name(&name) {
            return Observed::default();
        }
        let Ok(commit) = self.repo.refname_to_id(&name) else {
            return Observed::default();
        };
        if let Some((c, s)) = &self.status_cache
            && *c == commit
        {
            return s.clone();
        }
        let out = (
            Arc::new(self.vps_files(commit, STATUS_DIR, |s: &VpsStatus| &s.vps)),
            Arc::new(self.vps_files(commit, MONITOR_DIR, |s: &VpsMonitor| &s.vps)),
        );
        self.status_cache = Some((commit, out.clone()));
        out
    }

    /// The `<vps>.json` files of folder `dir` of `commit` that parse and name their VPS.
    fn vps_files<T: serde::de::DeserializeOwned>(
        &self,
        commit: Oid,
        dir: &str,
        names: impl Fn(&T) -> &VpsId,
    ) -> BTreeMap<VpsId, T> {
        let mut out = BTreeMap::new();
        let dir = self
            .repo
            .find_commit(commit)
            .and_then(|c| c.tree())
            .and_then(|t| t.get_path(Path::new(dir)))
            .and_then(|e| self.repo.find_tree(e.id()));
        if let Ok(dir) = dir {
            for entry in dir.iter() {
                let Some(name) = entry.name().ok().and_then(|n| n.strip_suffix(".json")) else {
                    continue;
                };
                let Ok(id) = name.parse::<VpsId>() else {
                    continue;
                };
                let Ok(blob) = self.repo.find_blob(entry.id()) else {
                    continue;
                };
                match serde_json::from_slice::<T>(blob.content()) {
                    Ok(s) if names(&s) == &id => {
                        out.insert(id, s);
                    }
                    Ok(_) => tracing::warn!(file = name, "status file names another VPS"),
                    Err(e) => tracing::warn!(file = name, error = %e, "unreadable status file"),
                }
            }
        }
        out
    }

    fn publish_snapshot(current: &Mutex<Option<Arc<Snapshot>>>, s: &Arc<Snapshot>) {
        if let Ok(mut c) = current.lock() {
            *c = Some(s.clone());
        }
    }

    /// Fetches and publishes the snapshot of the head to decide on.
    fn prepare(
        &mut self,
        current: &Mutex<Option<Arc<Snapshot>>>,
    ) -> Result<(Oid, Arc<Snapshot>), StoreError> {
        let prepared = self
            .sync()
            .and_then(|base| Ok((base, self.snapshot(base)?)));
        match prepared {
            Ok((base, snap)) => {
                Self::publish_snapshot(current, &snap);
                Ok((base, snap))
            }
            Err(e) => {
                log_store_error(&self.cfg, &e);
                // The work tree may be half checked out: start over next time.
                self.worktree_at = None;
                Err(e)
            }
        }
    }

    /// Answers the reads, then decides, commits and pushes the changes of one batch; decides
    /// them again on the new head after a lost race, up to `push_tries` times.
    fn batch(
        &mut self,
        mut reads: Vec<ReadFn>,
        applies: Vec<(Box<Asked>, Reply)>,
        current: &Mutex<Option<Arc<Snapshot>>>,
        stats: &PushStats,
    ) {
        let tries = self.cfg.push_tries.max(1);
        for attempt in 1..=tries {
            let t0 = Instant::now();
            let (base, snap) = match self.prepare(current) {
                Ok(p) => p,
                Err(e) => {
                    fail(reads, applies, &e);
                    return;
                }
            };
            let synced = t0.elapsed();
            let tree = DiskTree::new(&self.workdir);
            for r in reads.drain(..) {
                r(Ok(&View {
                    snapshot: &snap,
                    tree: &tree,
                }));
            }
            if applies.is_empty() {
                return;
            }
            let BatchCommits {
                head,
                inv,
                results,
                made,
            } = self.commit_all(&applies, base, &snap);
            stats.commits.fetch_add(made as u64, Ordering::Relaxed);
            let applied = t0.elapsed();
            if head != base {
                self.worktree_at = Some(head);
                let pushed = if self.cfg.publish {
                    self.push(base, head)
                } else {
                    Ok(())
                };
                tracing::debug!(
                    attempt,
                    requests = applies.len(),
                    commits = made,
                    fetch_us = synced.as_micros() as u64,
                    commit_us = (applied - synced).as_micros() as u64,
                    push_us = (t0.elapsed() - applied).as_micros() as u64,
                    "batch"
                );
                match pushed {
                    Ok(()) => {
                        stats.pushes.fetch_add(1, Ordering::Relaxed);
                        self.landed(head, inv, &snap, current);
                    }
                    Err(PushError::Lost) => {
                        stats.lost_races.fetch_add(1, Ordering::Relaxed);
                        tracing::info!(attempt, "push lost a race; fetching and re-applying");
                        if attempt < tries {
                            std::thread::sleep(race_backoff(attempt));
                        }
                        continue;
                    }
                    Err(PushError::Failed(e)) => {
                        log_store_error(&self.cfg, &e);
                        self.worktree_at = None;
                        fail(Vec::new(), applies, &e);
                        return;
                    }
                }
            }
            for ((_, reply), result) in applies.into_iter().zip(results) {
                let _ = reply.send(result);
            }
            return;
        }
        self.worktree_at = None;
        fail(Vec::new(), applies, &StoreError::Busy(tries));
    }

    /// Decides and commits each change of a batch on `base`, one commit after the other.
    fn commit_all(
        &mut self,
        applies: &[(Box<Asked>, Reply)],
        base: Oid,
        snap: &Snapshot,
    ) -> BatchCommits {
        let mut head = base;
        let mut inv = snap.inv.clone();
        // The hooks never write under bootstraps/: the base's catalog holds for the batch.
        let cat = crate::catalog::catalog(snap.bootstraps.clone());
        // Identical requests pending in one batch (a customer clicking reboot five times)
        // are coalesced: the first is decided and committed, the others get its answer.
        let mut results: Vec<Result<Committed, ApplyError>> = Vec::with_capacity(applies.len());
        for (i, (asked, _)) in applies.iter().enumerate() {
            let same = applies[..i].iter().position(|(earlier, _)| {
                earlier.change == asked.change && earlier.session == asked.session
            });
            let r = match same.and_then(|j| results.get(j)) {
                Some(first) => first.clone(),
                None => self.apply_one(asked, &cat, &mut head, &mut inv),
            };
            results.push(r);
        }
        let made = results
            .iter()
            .filter_map(|r| r.as_ref().ok().and_then(|c| c.commit.as_deref()))
            .collect::<std::collections::BTreeSet<&str>>()
            .len();
        BatchCommits {
            head,
            inv,
            results,
            made,
        }
    }

    /// After a push landed: moves the local branch and publishes the pushed head's snapshot.
    fn landed(
        &mut self,
        head: Oid,
        inv: Arc<Inventory>,
        snap: &Snapshot,
        current: &Mutex<Option<Arc<Snapshot>>>,
    ) {
        if let Err(e) = self
            .repo
            .reference(&self.branch_ref(), head, true, "gitvps-hooks: pushed")
        {
            tracing::warn!(error = %e, "cannot move the local branch");
        }
        if let Ok(tree) = self.tree_of(head) {
            self.inv_cache = Some((tree, inv.clone()));
        }
        let snap = Arc::new(Snapshot {
            head,
            inv,
            bootstraps: snap.bootstraps.clone(),
            status: snap.status.clone(),
            monitor: snap.monitor.clone(),
            taken: Instant::now(),
        });
        Self::publish_snapshot(current, &snap);
    }

    fn apply_one(
        &mut self,
        asked: &Asked,
        cat: &Catalog,
        head: &mut Oid,
        inv: &mut Arc<Inventory>,
    ) -> Result<Committed, ApplyError> {
        let change = &asked.change;
        let tree = DiskTree::new(&self.workdir);
        if let Some(cred) = &asked.session {
            session_still_valid(inv, &tree, change, cred)?;
        }
        let edit = decide(change, inv, cat, &tree)?;
        self.try_edit(change, edit, head, inv)
    }

    fn try_edit(
        &mut self,
        change: &Change,
        edit: Edit,
        head: &mut Oid,
        inv: &mut Arc<Inventory>,
    ) -> Result<Committed, ApplyError> {
        if edit.writes.is_empty() {
            return Ok(Committed {
                decision: edit.decision,
                commit: None,
            });
        }
        let saved = self.write(&edit.writes)?;
        match Inventory::load(&self.workdir) {
            Ok(new_inv) => match self.commit(&edit, *head) {
                Ok(c) => {
                    *head = c;
                    *inv = Arc::new(new_inv);
                    tracing::info!(who = %change.who(), commit = %c, message = %edit.message, "committed");
                    Ok(Committed {
                        decision: edit.decision,
                        commit: Some(c.to_string()),
                    })
                }
                Err(e) => {
                    self.restore(saved)?;
                    Err(e.into())
                }
            },
            Err(LoadError::Invalid(d)) => {
                self.restore(saved)?;
                let first: Vec<String> = d.iter().take(5).map(|x| x.to_string()).collect();
                tracing::warn!(who = %change.who(), problems = %first.join(" | "), "refused: the change would make the inventory invalid");
                match edit.fallback {
                    Some(fb) => self.try_edit(change, *fb, head, inv),
                    None => Err(Refusal::Invalid.into()),
                }
            }
            Err(e @ LoadError::Io { .. }) => {
                self.restore(saved)?;
                Err(StoreError::Invalid {
                    head: head.to_string(),
                    source: Arc::new(e),
                }
                .into())
            }
        }
    }

    /// Writes files in the work tree; returns what was there before.
    fn write(&self, writes: &[(String, Option<String>)]) -> Result<Saved, StoreError> {
        let mut saved = Vec::new();
        for (rel, text) in writes {
            let path = self.workdir.join(rel);
            let io = |source| StoreError::Io {
                path: path.clone(),
                source: Arc::new(source),
            };
            let before = match std::fs::read(&path) {
                Ok(b) => Some(b),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                Err(e) => return Err(io(e)),
            };
            saved.push((path.clone(), before));
            match text {
                Some(t) => {
                    if let Some(parent) = path.parent() {
                        std::fs::create_dir_all(parent).map_err(io)?;
                    }
                    std::fs::write(&path, t).map_err(io)?;
                }
                None => match std::fs::remove_file(&path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(io(e)),
                },
            }
        }
        Ok(saved)
    }

    fn restore(&mut self, saved: Saved) -> Result<(), StoreError> {
        for (path, before) in saved.into_iter().rev() {
            let r = match before {
                Some(b) => std::fs::write(&path, b),
                None => std::fs::remove_file(&path),
            };
            if let Err(source) = r {
                self.worktree_at = None;
                return Err(StoreError::Io {
                    path,
                    source: Arc::new(source),
                });
            }
        }
        Ok(())
    }

    fn commit(&self, edit: &Edit, parent: Oid) -> Result<Oid, StoreError> {
        let repo = &self.repo;
        let parent = repo.find_commit(parent).map_err(git("read the head"))?;
        let base_tree = parent.tree().map_err(git("read the head tree"))?;
        let mut b = git2::build::TreeUpdateBuilder::new();
        for (path, text) in &edit.writes {
            match text {
                Some(t) => {
                    let blob = repo.blob(t.as_bytes()).map_err(git("write a blob"))?;
                    b.upsert(path.as_str(), blob, FileMode::Blob);
                }
                None => {
                    b.remove(path.as_str());
                }
            }
        }
        let tree_id = b
            .create_updated(repo, &base_tree)
            .map_err(git("write a tree"))?;
        let tree = repo.find_tree(tree_id).map_err(git("read a tree"))?;
        let sig = Signature::now(BOT_NAME, BOT_EMAIL).map_err(git("sign"))?;
        repo.commit(None, &sig, &sig, &edit.message, &tree, &[&parent])
            .map_err(git("commit"))
    }

    fn push(&self, base: Oid, head: Oid) -> Result<(), PushError> {
        match local_path(&self.cfg.repo) {
            Some(path) => self.push_local(&path, base, head),
            None => self.push_remote(base, head),
        }
    }

    /// Copies the new objects into the local bare repo, then moves its branch from `base` to
    /// `head` only if it is still at `base` (libgit2's own local push overwrites the branch
    /// whatever it holds, which would lose another process's commits).
    fn push_local(&self, path: &Path, base: Oid, head: Oid) -> Result<(), PushError> {
        let failed = |what| move |e| PushError::Failed(git(what)(e));
        let dst = Repository::open(path).map_err(failed("open the repo"))?;
        copy_objects(&self.repo, &dst, base, head).map_err(failed("copy objects"))?;
        match dst.reference_matching(&self.branch_ref(), head, true, base, "gitvps-hooks") {
            Ok(_) => Ok(()),
            Err(e) if matches!(e.code(), ErrorCode::Modified | ErrorCode::Locked) => {
                Err(PushError::Lost)
            }
            Err(e) => Err(failed("update the branch")(e)),
        }
    }

    fn push_remote(&self, base: Oid, head: Oid) -> Result<(), PushError> {
        // libgit2 pushes references, not commits: name the commit first. The local branch
        // moves only once the push landed.
        const OUTGOING: &str = "refs/gitvps/outgoing";
        self.repo
            .reference(OUTGOING, head, true, "gitvps-hooks: to push")
            .map_err(|e| PushError::Failed(git("name the commit to push")(e)))?;
        let mut remote = self
            .repo
            .find_remote("origin")
            .map_err(|e| PushError::Failed(git("find the remote")(e)))?;
        let rejected: std::cell::RefCell<Option<String>> = std::cell::RefCell::new(None);
        let said: std::cell::RefCell<String> = std::cell::RefCell::new(String::new());
        let mut cbs = self.cfg.remote.callbacks();
        cbs.push_update_reference(|_, status| {
            if let Some(msg) = status {
                *rejected.borrow_mut() = Some(msg.to_owned());
            }
            Ok(())
        });
        // What the server's hooks print (`remote: ...`): the reason of a refusal.
        cbs.sideband_progress(|bytes| {
            remote_says(&mut said.borrow_mut(), bytes);
            true
        });
        let mut opts = git2::PushOptions::new();
        opts.remote_callbacks(cbs);
        let spec = format!("{OUTGOING}:{}", self.branch_ref());
        let r = remote.push(&[spec.as_str()], Some(&mut opts));
        drop(opts);
        match r {
            Err(e) if e.code() == ErrorCode::NotFastForward => Err(PushError::Lost),
            Err(e) => Err(PushError::Failed(git("push")(e))),
            Ok(()) => match rejected.into_inner() {
                None => Ok(()),
                // The server refused the update. A lost race moved the remote branch away
                // from the base the batch was decided on (`fetch first`, `failed to update
                // ref`); a refusal (a protected branch, a hook) leaves it there, and trying
                // again would only be refused again.
                Some(status) => match self.remote_head() {
                    Ok(now) if now != base => Err(PushError::Lost),
                    Ok(_) => Err(PushError::Failed(StoreError::Refused(refusal_text(
                        &status,
                        &said.into_inner(),
                    )))),
                    Err(e) => Err(PushError::Failed(e)),
                },
            },
        }
    }

    /// The remote's branch as a fresh fetch sees it.
    fn remote_head(&self) -> Result<Oid, StoreError> {
        self.fetched_head()
    }

    /// Fetches and returns the remote's branch. A branch missing from one fetch is fetched
    /// again a few times (20, 40, 60 ms later) before it is reported missing: a reader of a
    /// local repo can miss a branch that another process is updating at that instant (the ref
    /// file is renamed into place while the folder is listed), which once answered a customer
    /// "no branch `main`" in a push storm. A branch that is really missing still fails in
    /// about a tenth of a second.
    fn fetched_head(&self) -> Result<Oid, StoreError> {
        let remote_ref = format!("refs/remotes/origin/{}", self.cfg.branch);
        let mut attempt = 1;
        loop {
            self.fetch()?;
            match self.repo.refname_to_id(&remote_ref) {
                Ok(id) => return Ok(id),
                Err(_) if attempt < MISSING_BRANCH_TRIES => {
                    tracing::info!(
                        attempt,
                        "the branch was missing from a fetch; fetching again"
                    );
                    std::thread::sleep(Duration::from_millis(20 * u64::from(attempt)));
                    attempt += 1;
                }
                Err(_) => return Err(StoreError::NoBranch(self.cfg.branch.clone())),
            }
        }
    }
}

/// Clones the inventory repo into `dir`; a branch missing from the clone is tried again like
/// one missing from a fetch ([`Cache::fetched_head`]), from an empty folder each time.
fn clone(cfg: &Config, dir: &Path) -> Result<Repository, StoreError> {
    let mut attempt = 1;
    loop {
        let mut fetch = git2::FetchOptions::new();
        fetch.remote_callbacks(cfg.remote.callbacks());
        match git2::build::RepoBuilder::new()
            .branch(&cfg.branch)
            .fetch_options(fetch)
            .clone(&cfg.repo, dir)
        {
            Ok(r) => return Ok(r),
            Err(e) if e.code() == ErrorCode::NotFound && attempt < MISSING_BRANCH_TRIES => {
                tracing::info!(
                    attempt,
                    "the branch was missing from a clone; cloning again"
                );
                if dir.exists() {
                    std::fs::remove_dir_all(dir).map_err(|source| StoreError::Io {
                        path: dir.to_owned(),
                        source: Arc::new(source),
                    })?;
                }
                std::thread::sleep(Duration::from_millis(20 * u64::from(attempt)));
                attempt += 1;
            }
            Err(e) if e.code() == ErrorCode::NotFound => {
                return Err(StoreError::NoBranch(cfg.branch.clone()));
            }
            Err(e) => return Err(git("clone the inventory repo")(e)),
        }
    }
}

/// How long to wait before the next try after losing the race `attempt` (from 1): a random
/// time up to 10 ms doubled per lost race (at most 1,280 ms), so that processes pushing to one
/// repo in step fall out of step instead of losing to each other again. With six writers in a
/// storm on a busy machine a cap of 320 ms still let one lose 20 races in a row (a `busy`
/// answer); the higher cap spreads the losers over seconds instead.
fn race_backoff(attempt: u32) -> Duration {
    let cap_ms = 10u64 << attempt.saturating_sub(1).min(RACE_BACKOFF_DOUBLINGS);
    let r = crate::config::random_bytes::<8>()
        .map(u64::from_le_bytes)
        .unwrap_or(cap_ms / 2);
    Duration::from_millis(r % (cap_ms + 1))
}

/// How often the wait after a lost race doubles, from 10 ms.
const RACE_BACKOFF_DOUBLINGS: u32 = 7;

/// Tries of a fetch whose branch is missing before it is believed missing (see
/// [`Cache::fetched_head`]).
const MISSING_BRANCH_TRIES: u32 = 4;

/// Most bytes kept of what the remote prints while it refuses a push.
const REMOTE_SAYS_MAX: usize = 1024;

/// Appends the remote's progress output to `said`, printable characters only, up to
/// [`REMOTE_SAYS_MAX`] bytes.
fn remote_says(said: &mut String, bytes: &[u8]) {
    for c in String::from_utf8_lossy(bytes).chars() {
        if said.len() >= REMOTE_SAYS_MAX {
            return;
        }
        match c {
            '\r' | '\n' | '\t' => said.push(' '),
            c if c.is_control() => {}
            c => said.push(c),
        }
    }
}

/// The text of a refused push: the server's status of the branch, and what its hooks said.
fn refusal_text(status: &str, said: &str) -> String {
    let said = said.split_whitespace().collect::<Vec<_>>().join(" ");
    if said.is_empty() {
        status.to_owned()
    } else {
        format!("{status} (the remote said: {said})")
    }
}

/// Copies the commits `base..head` with their trees and blobs into `dst`, skipping what it
/// already has (a tree it has is complete).
fn copy_objects(
    src: &Repository,
    dst: &Repository,
    base: Oid,
    head: Oid,
) -> Result<(), git2::Error> {
    let src_odb = src.odb()?;
    let dst_odb = dst.odb()?;
    let copy = |oid: Oid| -> Result<(), git2::Error> {
        if !dst_odb.exists(oid) {
            let o = src_odb.read(oid)?;
            dst_odb.write(o.kind(), o.data())?;
        }
        Ok(())
    };
    fn copy_tree(
        src: &Repository,
        has: &dyn Fn(Oid) -> bool,
        copy: &dyn Fn(Oid) -> Result<(), git2::Error>,
        oid: Oid,
    ) -> Result<(), git2::Error> {
        if has(oid) {
            return Ok(());
        }
        let tree = src.find_tree(oid)?;
        for entry in tree.iter() {
            match entry.kind() {
                Some(ObjectType::Tree) => copy_tree(src, has, copy, entry.id())?,
                Some(ObjectType::Blob) => copy(entry.id())?,
                _ => {}
            }
        }
        copy(oid)
    }
    let has = |oid: Oid| dst_odb.exists(oid);
    let mut walk = src.revwalk()?;
    walk.push(head)?;
    walk.hide(base)?;
    let mut commits = Vec::new();
    for oid in walk {
        commits.push(oid?);
    }
    // Oldest first, each commit after its tree: a reader never finds a dangling reference.
    for oid in commits.into_iter().rev() {
        let c = src.find_commit(oid)?;
        copy_tree(src, &has, &copy, c.tree_id())?;
        copy(oid)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;
    use crate::decide::Decision;
    use std::collections::BTreeSet;

    #[test]
    fn local_paths_are_told_from_urls() {
        assert_eq!(
            local_path("/srv/inv.git"),
            Some(PathBuf::from("/srv/inv.git"))
        );
        assert_eq!(
            local_path("file:///srv/inv.git"),
            Some(PathBuf::from("/srv/inv.git"))
        );
        assert_eq!(local_path("./inv.git"), Some(PathBuf::from("./inv.git")));
        assert_eq!(local_path("https://github.com/a/b.git"), None);
        assert_eq!(local_path("ssh://git@host/b.git"), None);
        assert_eq!(local_path("git@github.com:a/b.git"), None);
    }

    /// A bare repo with the example fleet on `main`, and a config on it.
    fn fleet() -> (tempfile::TempDir, Config) {
        let dir = tempfile::tempdir().unwrap();
        let bare = dir.path().join("inv.git");
        let mut opts = git2::RepositoryInitOptions::new();
        opts.bare(true).initial_head("main");
        let repo = Repository::init_opts(&bare, &opts).unwrap();
        let top = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let mut b = git2::build::TreeUpdateBuilder::new();
        let mut add = |rel: &str| {
            let blob = repo.blob(&std::fs::read(top.join(rel)).unwrap()).unwrap();
            b.upsert(rel, blob, FileMode::Blob);
        };
        for f in ["products.toml", "pools.toml", "gitvps.toml"] {
            add(f);
        }
        for d in ["inventory/nodes", "inventory/customers", "inventory/vps"] {
            for e in std::fs::read_dir(top.join(d)).unwrap() {
                let name = e.unwrap().file_name().into_string().unwrap();
                if name.ends_with(".toml") {
                    add(&format!("{d}/{name}"));
                }
            }
        }
        let empty = repo.treebuilder(None).unwrap().write().unwrap();
        let tree = b
            .create_updated(&repo, &repo.find_tree(empty).unwrap())
            .unwrap();
        let sig = Signature::now("admin", "admin@example.net").unwrap();
        repo.commit(
            Some("refs/heads/main"),
            &sig,
            &sig,
            "seed",
            &repo.find_tree(tree).unwrap(),
            &[],
        )
        .unwrap();
        let mut cfg = Config::new(bare.to_str().unwrap(), Secret::new("k"));
        cfg.cache_dir = dir.path().join("cache");
        (dir, cfg)
    }

    fn edit(path: &str, text: &str) -> Edit {
        Edit {
            writes: vec![(path.to_owned(), Some(text.to_owned()))],
            message: format!("write {path}"),
            decision: Decision::Ticket {
                ticket: "t-0001".parse().unwrap(),
            },
            fallback: None,
        }
    }

    fn change() -> Change {
        Change::Action {
            customer: "c-0001".parse().unwrap(),
            vps: "xen02".parse().unwrap(),
            kind: model::edit::ActionKind::Reboot,
        }
    }

    #[test]
    fn an_edit_that_breaks_the_inventory_is_refused_and_undone() {
        let (_d, cfg) = fleet();
        let mut c = Cache::open(&cfg).unwrap();
        let base = c.sync().unwrap();
        let snap = c.snapshot(base).unwrap();
        let (mut head, mut inv) = (base, snap.inv.clone());
        let path = "inventory/vps/xen02.toml";
        let original = std::fs::read_to_string(c.workdir.join(path)).unwrap();
        let broken = original.replace("power = \"running\"", "power = \"sideways\"");
        assert_ne!(broken, original);
        let r = c.try_edit(&change(), edit(path, &broken), &mut head, &mut inv);
        assert!(
            matches!(r, Err(ApplyError::Refused(Refusal::Invalid))),
            "{r:?}"
        );
        assert_eq!(head, base, "nothing committed");
        assert_eq!(
            std::fs::read_to_string(c.workdir.join(path)).unwrap(),
            original
        );
        // A new file that breaks it is removed again.
        let r = c.try_edit(
            &change(),
            edit("inventory/vps/Bad.toml", "x = 1\n"),
            &mut head,
            &mut inv,
        );
        assert!(r.is_err());
        assert!(!c.workdir.join("inventory/vps/Bad.toml").exists());
        // With a fallback, the fallback is committed instead.
        let mut e = edit(path, &broken);
        e.fallback = Some(Box::new(edit(
            "billing/payments/evt_1.toml",
            "event = \"evt_1\"\n",
        )));
        let r = c.try_edit(&change(), e, &mut head, &mut inv).unwrap();
        assert!(r.commit.is_some());
        assert_ne!(head, base);
        let msg = c
            .repo
            .find_commit(head)
            .unwrap()
            .message()
            .unwrap()
            .to_owned();
        assert_eq!(msg, "write billing/payments/evt_1.toml");
    }

    #[test]
    fn a_push_after_the_remote_moved_loses_the_race_and_overwrites_nothing() {
        let (_d, cfg) = fleet();
        let mut c = Cache::open(&cfg).unwrap();
        let base = c.sync().unwrap();
        let snap = c.snapshot(base).unwrap();
        let (mut head, mut inv) = (base, snap.inv.clone());
        let cat = crate::catalog::catalog(snap.bootstraps.clone());
        let asked = Asked {
            change: change(),
            session: None,
        };
        c.apply_one(&asked, &cat, &mut head, &mut inv).unwrap();
        assert_ne!(head, base);
        // Someone else pushes in between.
        let bare = Repository::open_bare(&cfg.repo).unwrap();
        let theirs = {
            let parent = bare.find_commit(base).unwrap();
            let sig = Signature::now("admin", "a@example.net").unwrap();
            bare.commit(
                Some("refs/heads/main"),
                &sig,
                &sig,
                "admin change",
                &parent.tree().unwrap(),
                &[&parent],
            )
            .unwrap()
        };
        assert!(matches!(c.push(base, head), Err(PushError::Lost)));
        assert_eq!(
            bare.refname_to_id("refs/heads/main").unwrap(),
            theirs,
            "not overwritten"
        );
        // A batch re-applies on the new head.
        let (tx, rx) = oneshot::channel();
        let current = Mutex::new(None);
        let stats = PushStats::default();
        let asked = Asked {
            change: change(),
            session: None,
        };
        c.batch(Vec::new(), vec![(Box::new(asked), tx)], &current, &stats);
        let done = rx.blocking_recv().unwrap().unwrap();
        assert_eq!(
            done.decision,
            Decision::Action {
                vps: "xen02".parse().unwrap(),
                action: "reboot",
                generation: 1
            }
        );
        let new_head = bare.refname_to_id("refs/heads/main").unwrap();
        assert_eq!(
            bare.find_commit(new_head).unwrap().parent_id(0).unwrap(),
            theirs
        );
    }

    #[test]
    fn the_wait_after_a_lost_race_is_random_and_bounded() {
        for attempt in 1..=12 {
            let cap = Duration::from_millis(10 << (attempt - 1).min(RACE_BACKOFF_DOUBLINGS));
            let waits: BTreeSet<Duration> = (0..32).map(|_| race_backoff(attempt)).collect();
            assert!(waits.iter().all(|w| *w <= cap), "{attempt}: {waits:?}");
            assert!(waits.len() > 1, "{attempt}: always {waits:?}");
        }
    }

    #[test]
    fn what_the_remote_says_is_kept_printable_and_bounded() {
        let mut said = String::new();
        remote_says(&mut said, b"main is protected\x1b[31m\r\n");
        assert_eq!(
            refusal_text("pre-receive hook declined", &said),
            "pre-receive hook declined (the remote said: main is protected[31m)"
        );
        remote_says(&mut said, &[b'x'; 4096]);
        assert_eq!(said.len(), REMOTE_SAYS_MAX);
        assert_eq!(refusal_text("declined", ""), "declined");
    }

    #[test]
    fn status_files_round_trip_through_json() {
        let s = VpsStatus {
            vps: "xen02".parse().unwrap(),
            node: "node0109".parse().unwrap(),
            power: model::values::Power::Stopped,
            domain_state: None,
            memory_mib: 0,
            vcpus: 0,
            actions: model::status::ObservedActions {
                reboot: 3,
                fsck: 0,
                reinstall: 1,
            },
            last_error: Some("xl create failed".into()),
            observed_at: "2026-05-01T12:00:00Z".parse().unwrap(),
            backups: None,
        };
        let text = serde_json::to_string(&s).unwrap();
        assert!(text.contains("\"power\":\"stopped\""), "{text}");
        assert!(
            text.contains("\"observed_at\":\"2026-05-01T12:00:00Z\""),
            "{text}"
        );
        assert_eq!(serde_json::from_str::<VpsStatus>(&text).unwrap(), s);
        // Minimal files (fields defaulted) and refusals.
        let min = r#"{"vps":"xen02","node":"n1","power":"running","observed_at":"2026-05-01T12:00:00+02:00"}"#;
        assert_eq!(
            serde_json::from_str::<VpsStatus>(min)
                .unwrap()
                .actions
                .reboot,
            0
        );
        for bad in [
            r#"{"vps":"xen02","node":"n1","power":"on","observed_at":"2026-05-01T12:00:00Z"}"#,
            r#"{"vps":"../x","node":"n1","power":"running","observed_at":"2026-05-01T12:00:00Z"}"#,
            r#"{"vps":"xen02","node":"n1","power":"running"}"#,
        ] {
            assert!(serde_json::from_str::<VpsStatus>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_work_tree_with_the_branch_checked_out_is_refused() {
        let (d, mut cfg) = fleet();
        let work = d.path().join("work");
        Repository::clone(&cfg.repo, &work).unwrap();
        cfg.repo = work.to_str().unwrap().to_owned();
        assert!(matches!(Cache::open(&cfg), Err(StoreError::CheckedOut(_))));
    }

    #[test]
    fn a_second_process_on_the_same_cache_is_refused() {
        let (_d, cfg) = fleet();
        let _c = Cache::open(&cfg).unwrap();
        assert!(matches!(Cache::open(&cfg), Err(StoreError::Locked(_))));
    }

    #[test]
    fn identical_requests_in_one_batch_are_coalesced_into_one_commit() {
        let (_d, cfg) = fleet();
        let mut c = Cache::open(&cfg).unwrap();
        let stats = PushStats::default();
        let current = Mutex::new(None);
        let mut rxs = Vec::new();
        let mut applies = Vec::new();
        for _ in 0..3 {
            let (tx, rx) = oneshot::channel();
            let asked = Asked {
                change: change(),
                session: None,
            };
            applies.push((Box::new(asked), tx));
            rxs.push(rx);
        }
        c.batch(Vec::new(), applies, &current, &stats);
        let answers: Vec<Committed> = rxs
            .into_iter()
            .map(|rx| rx.blocking_recv().unwrap().unwrap())
            .collect();
        assert!(answers.iter().all(|a| a == &answers[0]), "{answers:?}");
        assert_eq!(stats.commits.load(Ordering::Relaxed), 1);
    }
}
