//! Test harness: a real bare repo seeded with the example fleet, the hooks router called
//! in-process with `lambda_http` requests, and helpers to read what was committed.
#![allow(dead_code, unreachable_pub)]

pub mod stripe;

use std::path::{Path, PathBuf};

use git2::{Oid, Repository, Signature};
use hooks::{Config, Secret};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

pub const TOKEN_SECRET: &str = "test-token-secret-0123456789abcdef0123456789";
pub const WEBHOOK_SECRET: &str = "whsec_test_current";
pub const OLD_WEBHOOK_SECRET: &str = "whsec_test_old";

/// The project's example fleet: the files an inventory repo holds.
pub fn fleet_files() -> Vec<(String, Vec<u8>)> {
    let top = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut out = Vec::new();
    for f in ["products.toml", "pools.toml", "gitvps.toml"] {
        out.push((f.to_owned(), std::fs::read(top.join(f)).unwrap()));
    }
    for dir in ["inventory/nodes", "inventory/customers", "inventory/vps"] {
        let mut names: Vec<_> = std::fs::read_dir(top.join(dir))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.ends_with(".toml"))
            .collect();
        names.sort();
        for n in names {
            let rel = format!("{dir}/{n}");
            out.push((rel.clone(), std::fs::read(top.join(&rel)).unwrap()));
        }
    }
    out
}

/// A bare repo in a temp folder, seeded with the fleet on `main`.
pub struct Fleet {
    pub dir: tempfile::TempDir,
    pub bare: PathBuf,
}

impl Fleet {
    pub fn new() -> Fleet {
        Fleet::with(|_| {})
    }

    /// Seeds the fleet after `tweak` changed its files.
    pub fn with(tweak: impl FnOnce(&mut Vec<(String, Vec<u8>)>)) -> Fleet {
        let dir = tempfile::tempdir().unwrap();
        let bare = dir.path().join("inventory.git");
        let mut opts = git2::RepositoryInitOptions::new();
        opts.bare(true).initial_head("main");
        let repo = Repository::init_opts(&bare, &opts).unwrap();
        let mut files = fleet_files();
        tweak(&mut files);
        let refs: Vec<(&str, &[u8])> = files
            .iter()
            .map(|(p, b)| (p.as_str(), b.as_slice()))
            .collect();
        commit_files(
            &repo,
            "refs/heads/main",
            &refs,
            "Seed the example fleet",
            None,
        );
        Fleet { dir, bare }
    }

    /// The fleet with `[hooks]` of `gitvps.toml` replaced by `settings` (lines of the table).
    pub fn with_hooks(settings: &str) -> Fleet {
        Fleet::with(|files| set_hooks(files, settings))
    }

    /// The fleet with quotas too high to matter: for tests and benchmarks of throughput.
    pub fn unlimited() -> Fleet {
        Fleet::with_hooks("per_minute = 1000000\nper_day = 1000000\ntickets_per_day = 1000000")
    }

    pub fn repo(&self) -> Repository {
        Repository::open_bare(&self.bare).unwrap()
    }

    pub fn config(&self) -> Config {
        self.config_in("cache")
    }

    /// A config with its own cache folder (two apps on one repo need two).
    pub fn config_in(&self, cache: &str) -> Config {
        let mut cfg = Config::new(self.bare.to_str().unwrap(), Secret::new(TOKEN_SECRET));
        cfg.cache_dir = self.dir.path().join(cache);
        cfg.stripe.webhook_secrets =
            vec![Secret::new(OLD_WEBHOOK_SECRET), Secret::new(WEBHOOK_SECRET)];
        cfg.mail_url = Some(Secret::new(format!(
            "maildir://{}",
            self.maildir().display()
        )));
        cfg
    }

    /// The Maildir every app of the fleet sends its immediate mail (password resets) to.
    pub fn maildir(&self) -> PathBuf {
        self.dir.path().join("maildir")
    }

    /// The messages delivered to [`Fleet::maildir`], oldest first.
    pub fn delivered(&self) -> Vec<Vec<u8>> {
        mail::Maildir::new(&self.maildir())
            .new_messages()
            .unwrap()
            .iter()
            .map(|p| std::fs::read(p).unwrap())
            .collect()
    }

    /// Every file of every commit of `main` that holds `needle`, as `commit:path`, and every
    /// commit message holding it.
    pub fn history_holding(&self, needle: &str) -> Vec<String> {
        let repo = self.repo();
        let mut w = repo.revwalk().unwrap();
        w.push(self.head()).unwrap();
        let mut out = Vec::new();
        for oid in w {
            let c = repo.find_commit(oid.unwrap()).unwrap();
            if c.message().unwrap_or_default().contains(needle) {
                out.push(format!("{}: message", c.id()));
            }
            c.tree()
                .unwrap()
                .walk(git2::TreeWalkMode::PreOrder, |dir, e| {
                    if let Ok(blob) = repo.find_blob(e.id())
                        && String::from_utf8_lossy(blob.content()).contains(needle)
                    {
                        out.push(format!("{}:{dir}{}", c.id(), e.name().unwrap_or("?")));
                    }
                    git2::TreeWalkResult::Ok
                })
                .unwrap();
        }
        out
    }

    pub fn head(&self) -> Oid {
        self.repo().refname_to_id("refs/heads/main").unwrap()
    }

    /// A file at the head of `main`.
    pub fn file(&self, path: &str) -> Option<String> {
        let repo = self.repo();
        let c = repo.find_commit(self.head()).unwrap();
        let e = c.tree().unwrap().get_path(Path::new(path)).ok()?;
        let blob = repo.find_blob(e.id()).ok()?;
        Some(String::from_utf8(blob.content().to_vec()).unwrap())
    }

    /// Commit messages of `main`, newest first.
    pub fn messages(&self) -> Vec<String> {
        let repo = self.repo();
        let mut w = repo.revwalk().unwrap();
        w.push(self.head()).unwrap();
        w.map(|o| {
            repo.find_commit(o.unwrap())
                .unwrap()
                .message()
                .unwrap()
                .trim()
                .to_owned()
        })
        .collect()
    }

    pub fn commit_count(&self) -> usize {
        self.messages().len()
    }

    /// The paths the head commit of `main` added, changed or removed, sorted.
    pub fn head_changes(&self) -> Vec<String> {
        let repo = self.repo();
        let head = repo.find_commit(self.head()).unwrap();
        let parent = head.parent(0).unwrap();
        let diff = repo
            .diff_tree_to_tree(
                Some(&parent.tree().unwrap()),
                Some(&head.tree().unwrap()),
                None,
            )
            .unwrap();
        let mut out: Vec<String> = diff
            .deltas()
            .filter_map(|d| {
                d.new_file()
                    .path()
                    .or_else(|| d.old_file().path())
                    .map(|p| p.to_string_lossy().into_owned())
            })
            .collect();
        out.sort();
        out
    }

    /// Commits an admin change straight to the bare repo (like a merged pull request).
    pub fn admin_commit(&self, branch: &str, files: &[(&str, &[u8])], message: &str) {
        let repo = self.repo();
        let r = format!("refs/heads/{branch}");
        let parent = repo.refname_to_id(&r).ok();
        commit_files(&repo, &r, files, message, parent);
    }
}

/// Replaces `from` with `to` in the file `path` of the seed.
pub fn replace_in(files: &mut [(String, Vec<u8>)], path: &str, from: &str, to: &str) {
    for (p, b) in files.iter_mut() {
        if p == path {
            *b = String::from_utf8(b.clone())
                .unwrap()
                .replace(from, to)
                .into_bytes();
        }
    }
}

/// Replaces the `[hooks]` table (the last of the example `gitvps.toml`) with `settings`.
pub fn set_hooks(files: &mut [(String, Vec<u8>)], settings: &str) {
    for (p, b) in files.iter_mut() {
        if p == "gitvps.toml" {
            let text = String::from_utf8(b.clone()).unwrap();
            let start = text.find("[hooks]").expect("gitvps.toml has [hooks] last");
            *b = format!("{}[hooks]\n{settings}\n", &text[..start]).into_bytes();
        }
    }
}

/// Writes `files` on top of `parent` (or an empty tree) and moves `refname` to the commit.
pub fn commit_files(
    repo: &Repository,
    refname: &str,
    files: &[(&str, &[u8])],
    message: &str,
    parent: Option<Oid>,
) -> Oid {
    let base = match parent {
        Some(p) => repo.find_commit(p).unwrap().tree().unwrap(),
        None => {
            let empty = repo.treebuilder(None).unwrap().write().unwrap();
            repo.find_tree(empty).unwrap()
        }
    };
    let top = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut b = git2::build::TreeUpdateBuilder::new();
    for (path, bytes) in files {
        let blob = repo.blob(bytes).unwrap();
        // Scripts copied from the project keep their executable bit.
        let exec = std::fs::metadata(top.join(path))
            .is_ok_and(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o111 != 0);
        let mode = if exec {
            git2::FileMode::BlobExecutable
        } else {
            git2::FileMode::Blob
        };
        b.upsert(*path, blob, mode);
    }
    let tree = repo
        .find_tree(b.create_updated(repo, &base).unwrap())
        .unwrap();
    let sig = Signature::now("admin", "admin@example.net").unwrap();
    let parents: Vec<git2::Commit<'_>> = parent
        .map(|p| repo.find_commit(p).unwrap())
        .into_iter()
        .collect();
    let parent_refs: Vec<&git2::Commit<'_>> = parents.iter().collect();
    repo.commit(Some(refname), &sig, &sig, message, &tree, &parent_refs)
        .unwrap()
}

/// A token for a customer, minted as the login does (no argon2: fast).
pub fn token_for(fleet: &Fleet, customer: &str) -> String {
    token_at(fleet, customer, chrono::Utc::now().timestamp(), 3600)
}

pub fn token_at(fleet: &Fleet, customer: &str, now: i64, ttl: i64) -> String {
    let inv = inventory_at_head(fleet);
    let id: model::CustomerId = customer.parse().unwrap();
    let fp = hooks::auth::password_fingerprint(inv.customers[&id].password_hash.as_ref());
    hooks::auth::issue_token(&Secret::new(TOKEN_SECRET), &id, &fp, now, ttl).0
}

/// Checks out a commit into a temp folder and loads it.
pub fn inventory_at(fleet: &Fleet, commit: Oid) -> Result<model::Inventory, model::LoadError> {
    let repo = fleet.repo();
    let out = tempfile::tempdir().unwrap();
    let tree = repo.find_commit(commit).unwrap().tree().unwrap();
    tree.walk(git2::TreeWalkMode::PreOrder, |dir, e| {
        if e.kind() == Some(git2::ObjectType::Blob) {
            let p = out.path().join(dir).join(e.name().unwrap());
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, repo.find_blob(e.id()).unwrap().content()).unwrap();
            if e.filemode() == i32::from(git2::FileMode::BlobExecutable) {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
            }
        }
        git2::TreeWalkResult::Ok
    })
    .unwrap();
    model::Inventory::load(out.path())
}

pub fn inventory_at_head(fleet: &Fleet) -> model::Inventory {
    inventory_at(fleet, fleet.head()).unwrap()
}

/// Calls the router in-process with a request built as `lambda_http` hands it over.
pub async fn call(
    app: &axum::Router,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> (u16, Value) {
    let mut b = lambda_http::http::Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", "application/json");
    if let Some(t) = token {
        b = b.header("authorization", format!("Bearer {t}"));
    }
    let req: lambda_http::Request = b
        .body(match body {
            Some(s) => lambda_http::Body::from(s.to_owned()),
            None => lambda_http::Body::Empty,
        })
        .unwrap();
    send(app, req).await
}

/// `POST /api/login` with a customer (id or e-mail) and a password.
pub async fn login(app: &axum::Router, customer: &str, password: &str) -> (u16, Value) {
    let body = serde_json::json!({"customer": customer, "password": password});
    call(app, "POST", "/api/login", None, Some(&body.to_string())).await
}

pub async fn send(app: &axum::Router, req: lambda_http::Request) -> (u16, Value) {
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status().as_u16();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let v = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
    };
    (status, v)
}

/// Signs a webhook payload exactly as Stripe does: `t=<unix>,v1=<hex HMAC-SHA256 of "t.payload">`.
pub fn stripe_signature(payload: &str, secret: &str, t: i64) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{t}.{payload}").as_bytes());
    let sig: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("t={t},v1={sig}")
}

/// A `checkout.session.completed` event as Stripe sends it (the fields we read, and more).
pub fn checkout_event(
    id: &str,
    session: &str,
    created: i64,
    amount: i64,
    metadata: Value,
) -> String {
    serde_json::json!({
        "id": id,
        "object": "event",
        "api_version": "2025-03-31.basil",
        "created": created,
        "livemode": false,
        "pending_webhooks": 1,
        "request": {"id": null, "idempotency_key": null},
        "type": "checkout.session.completed",
        "data": {"object": {
            "id": session,
            "object": "checkout.session",
            "amount_subtotal": amount,
            "amount_total": amount,
            "currency": "usd",
            "customer": "cus_test_1",
            "customer_details": {"email": "jane@example.net", "name": "Jane Doe"},
            "livemode": false,
            "metadata": metadata,
            "mode": "payment",
            "payment_intent": "pi_test_1",
            "payment_status": "paid",
            "status": "complete",
            "url": null
        }}
    })
    .to_string()
}

pub async fn webhook(app: &axum::Router, payload: &str, signature: Option<&str>) -> (u16, Value) {
    let mut b = lambda_http::http::Request::builder()
        .method("POST")
        .uri("/api/webhooks/stripe")
        .header("content-type", "application/json");
    if let Some(s) = signature {
        b = b.header("stripe-signature", s);
    }
    send(
        app,
        b.body(lambda_http::Body::from(payload.to_owned())).unwrap(),
    )
    .await
}
