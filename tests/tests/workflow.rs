//! The operator's workflow end to end (issue 22): the plan as a pull-request comment posted
//! through local stand-ins of the GitHub and GitLab comment APIs (created once, updated after),
//! drift shown by plan and recorded on the status branch, the fleet report, `gitvps node add`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use gitvps_tests as support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use support::fleet::{Fleet, Run};

/// One request the stand-in received.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    auth: String,
    body: String,
}

/// A stand-in of the comment APIs: GitHub's issue comments and GitLab's merge request notes,
/// kept in memory, every request recorded.
struct Forge {
    url: String,
    seen: Arc<Mutex<Vec<Seen>>>,
    comments: Arc<Mutex<Vec<(u64, String)>>>,
}

impl Forge {
    fn start() -> Forge {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let comments = Arc::new(Mutex::new(vec![(
            1,
            "Looks good, but check the node first.".to_owned(),
        )]));
        let (s, c) = (seen.clone(), comments.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { return };
                serve(conn, &s, &c);
            }
        });
        Forge {
            url,
            seen,
            comments,
        }
    }

    fn writes(&self) -> Vec<Seen> {
        let seen = self.seen.lock().unwrap();
        seen.iter().filter(|s| s.method != "GET").cloned().collect()
    }
}

/// Answers the requests of one connection, then closes it.
fn serve(conn: std::net::TcpStream, seen: &Mutex<Vec<Seen>>, comments: &Mutex<Vec<(u64, String)>>) {
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_owned();
    let target = parts.next().unwrap_or_default().to_owned();
    let (mut len, mut auth) = (0usize, String::new());
    loop {
        let mut h = String::new();
        reader.read_line(&mut h).unwrap();
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (k, v) = h.split_once(':').unwrap();
        match k.to_ascii_lowercase().as_str() {
            "content-length" => len = v.trim().parse().unwrap(),
            "authorization" | "private-token" => auth = v.trim().to_owned(),
            _ => {}
        }
    }
    let mut body = vec![0; len];
    reader.read_exact(&mut body).unwrap();
    let body = String::from_utf8(body).unwrap();
    let path = target.split('?').next().unwrap().to_owned();
    seen.lock().unwrap().push(Seen {
        method: method.clone(),
        path: path.clone(),
        auth: auth.clone(),
        body: body.clone(),
    });
    let text = |v: &serde_json::Value| v["body"].as_str().unwrap().to_owned();
    let (status, reply) = if auth != "Bearer gh-token" && auth != "gl-token" {
        (401, serde_json::json!({"message": "Bad credentials"}))
    } else {
        let mut cs = comments.lock().unwrap();
        let last = path.rsplit('/').next().unwrap().to_owned();
        match method.as_str() {
            "GET" if target.contains("page=1") => (
                200,
                serde_json::json!(
                    cs.iter()
                        .map(|(id, b)| serde_json::json!({"id": id, "body": b}))
                        .collect::<Vec<_>>()
                ),
            ),
            "GET" => (200, serde_json::json!([])),
            "POST" => {
                let id = 99 + cs.len() as u64;
                let b = text(&serde_json::from_str(&body).unwrap());
                cs.push((id, b));
                (201, serde_json::json!({"id": id}))
            }
            "PATCH" | "PUT" => {
                let id: u64 = last.parse().unwrap();
                let b = text(&serde_json::from_str(&body).unwrap());
                let c = cs.iter_mut().find(|(i, _)| *i == id).unwrap();
                c.1 = b;
                (200, serde_json::json!({"id": id}))
            }
            _ => (405, serde_json::json!({})),
        }
    };
    let reply = reply.to_string();
    let mut conn = conn;
    let _ = write!(
        conn,
        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{reply}",
        reply.len()
    );
}

fn two_vps() -> Fleet {
    let f = Fleet::new(&["node1"]);
    f.vps("xen10", "node1", "192.0.2.10", "");
    f.vps("xen11", "node1", "192.0.2.11", "power = \"stopped\"\n");
    f
}

fn comment(f: &Fleet, forge: &Forge, which: &str, md: &std::path::Path) -> Run {
    let event = f.dir.path().join("event.json");
    std::fs::write(
        &event,
        r#"{"action":"synchronize","pull_request":{"number":7}}"#,
    )
    .unwrap();
    let mut c = f.command(&["ci", "comment", which, "--file"]);
    c.arg(md)
        .env("GITHUB_API_URL", &forge.url)
        .env("GITHUB_REPOSITORY", "acme/fleet")
        .env("GITHUB_EVENT_PATH", &event)
        .env("GITHUB_TOKEN", "gh-token")
        .env("CI_API_V4_URL", format!("{}/api/v4", forge.url))
        .env("CI_PROJECT_ID", "17")
        .env("CI_MERGE_REQUEST_IID", "3")
        .env("GITVPS_GITLAB_TOKEN", "gl-token");
    c.output().unwrap().into()
}

/// The comment rendered from a real plan (real sshd, stand-in dom0), posted once and updated
/// on the next push, on GitHub and on GitLab; a broken inventory gives a comment of its errors.
#[test]
fn the_plan_is_one_comment_created_then_updated() {
    let f = two_vps();
    let md = f.dir.path().join("plan.md");
    let p = f.gitvps(&["plan", "--comment-markdown", md.to_str().unwrap()]);
    assert_eq!(p.code, 2, "{p:?}");
    let text = std::fs::read_to_string(&md).unwrap();
    let first = text.lines().next().unwrap();
    assert!(
        first.starts_with(
            "**gitvps** Plan: 7 to add, 0 to change, 0 to stop or remove, 0 action(s) on 1 node(s)."
        ),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "<details><summary>node1 ({}:{}): 7 step(s)</summary>",
            f.sshd.addr, f.sshd.port
        )),
        "{text}"
    );
    assert!(text.contains("\n+ xen10: start domain\n"), "{text}");
    assert!(text.trim_end().ends_with("<!-- gitvps-plan -->"), "{text}");
    assert!(!text.contains("PRIVATE KEY"), "{text}");

    for (flag, create, update, method) in [
        (
            "--github",
            "/repos/acme/fleet/issues/7/comments",
            "/repos/acme/fleet/issues/comments/",
            "PATCH",
        ),
        (
            "--gitlab",
            "/api/v4/projects/17/merge_requests/3/notes",
            "/api/v4/projects/17/merge_requests/3/notes/",
            "PUT",
        ),
    ] {
        let forge = Forge::start();
        let p = f.gitvps(&["plan", "--comment-markdown", md.to_str().unwrap()]);
        assert_eq!(p.code, 2, "{p:?}");
        let r = comment(&f, &forge, flag, &md);
        assert_eq!(r.code, 0, "{r:?}");
        assert!(r.stdout.contains("comment created"), "{r:?}");
        // The same plan again: nothing written.
        let r = comment(&f, &forge, flag, &md);
        assert!(r.stdout.contains("comment unchanged"), "{r:?}");
        // The next push: the plan changed, the same comment is updated.
        f.vps("xen12", "node1", "192.0.2.12", "");
        let p = f.gitvps(&["plan", "--comment-markdown", md.to_str().unwrap()]);
        assert_eq!(p.code, 2, "{p:?}");
        let r = comment(&f, &forge, flag, &md);
        assert!(r.stdout.contains("comment 100 updated"), "{r:?}");
        std::fs::remove_file(f.repo.join("inventory/vps/xen12.toml")).unwrap();
        let writes = forge.writes();
        assert_eq!(writes.len(), 2, "{writes:?}");
        assert_eq!(
            (writes[0].method.as_str(), writes[0].path.as_str()),
            ("POST", create)
        );
        assert_eq!(writes[1].method, method);
        assert_eq!(writes[1].path, format!("{update}100"));
        assert!(writes[1].body.contains("xen12"), "{writes:?}");
        let comments = forge.comments.lock().unwrap().clone();
        assert_eq!(
            comments.len(),
            2,
            "the customer's comment and ours: {comments:?}"
        );
        assert!(
            comments[1].1.contains("+ xen12: create disk"),
            "{comments:?}"
        );
        assert!(
            forge
                .seen
                .lock()
                .unwrap()
                .iter()
                .all(|s| !s.auth.is_empty()),
            "every request carries the token"
        );
        // A wrong token: the API's refusal is the command's error, naming no token.
        let mut c = f.command(&["ci", "comment", flag, "--file", md.to_str().unwrap()]);
        c.env("GITHUB_API_URL", &forge.url)
            .env("GITHUB_REPOSITORY", "acme/fleet")
            .env("GITHUB_TOKEN", "wrong-token")
            .env("CI_API_V4_URL", &forge.url)
            .env("CI_PROJECT_ID", "17")
            .env("CI_MERGE_REQUEST_IID", "3")
            .env("GITVPS_GITLAB_TOKEN", "wrong-token")
            .args(["--pr", "7"]);
        let r: Run = c.output().unwrap().into();
        assert_eq!(r.code, 1, "{r:?}");
        assert!(r.stderr.contains("401"), "{r:?}");
        assert!(!r.stderr.contains("wrong-token"), "{r:?}");
    }

    // A pull request that breaks the inventory: the comment shows the file:line errors, and the
    // check fails.
    f.edit(
        "inventory/vps/xen10.toml",
        "node = \"node1\"",
        "node = \"nodex\"",
    );
    let p = f.gitvps(&["plan", "--comment-markdown", md.to_str().unwrap()]);
    assert_eq!(p.code, 1, "{p:?}");
    let text = std::fs::read_to_string(&md).unwrap();
    assert!(
        text.starts_with("**gitvps** plan: the inventory has 1 problem(s)"),
        "{text}"
    );
    assert!(text.contains("inventory/vps/xen10.toml:3:"), "{text}");
    assert!(text.contains("<!-- gitvps-plan -->"), "{text}");
}

/// A comment that holds the value of a secret is never posted.
#[test]
fn a_comment_with_a_secret_is_not_posted() {
    let f = Fleet::new(&[]);
    let forge = Forge::start();
    let md = f.dir.path().join("plan.md");
    std::fs::write(
        &md,
        "**gitvps** Plan: gh-token-of-the-workflow\n<!-- gitvps-plan -->\n",
    )
    .unwrap();
    let mut c = f.command(&["ci", "comment", "--github", "--pr", "7", "--file"]);
    c.arg(&md)
        .env("GITHUB_API_URL", &forge.url)
        .env("GITHUB_REPOSITORY", "acme/fleet")
        .env("GITHUB_TOKEN", "gh-token-of-the-workflow");
    let r: Run = c.output().unwrap().into();
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stderr.contains("contains the value of GITHUB_TOKEN"),
        "{r:?}"
    );
    assert!(forge.seen.lock().unwrap().is_empty(), "nothing was sent");
}

/// Drift: damage done out of band with the stand-in tools (a domain destroyed, a config edited,
/// a console user removed) is shown by plan before its steps, `--drift-only` exits 2 on it and
/// records it on the status branch, and the apply that repairs it leaves no drift.
#[test]
fn changes_outside_gitvps_are_shown_before_the_steps_and_recorded() {
    let f = two_vps();
    support::commit_all(&f.repo);
    let a = f.gitvps(&["apply", "--status"]);
    assert_eq!(a.code, 0, "{a:?}");
    let node: serde_json::Value =
        serde_json::from_str(&support::git(&f.repo, &["show", "status:nodes/node1.json"])).unwrap();
    assert_eq!(node["result"], "applied", "{node}");
    assert_eq!(node["steps"], 7, "{node}");
    assert!(
        node["snapshot"]["domains"]["xen10"]["up"]
            .as_bool()
            .unwrap(),
        "{node}"
    );
    let d = f.gitvps(&["plan", "--drift-only"]);
    assert_eq!(d.code, 0, "{d:?}");
    assert_eq!(
        d.stdout,
        "No changes outside gitvps since the last apply.\n"
    );

    // Out of band: the stand-in xl destroys a domain, an editor changes a config, someone
    // removes a console user.
    let r = f.on_node("node1", "xl", &["destroy", "xen10"]);
    assert_eq!(r.code, 0, "{r:?}");
    let cfg = f.root("node1").join("etc/xen/gitvps/xen11.cfg");
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(&cfg, text.replace("memory", "maxmem")).unwrap();
    let console = f.root("node1").join("var/lib/gitvps/console/xen10");
    assert!(console.join(".ssh/authorized_keys").is_file());
    std::fs::remove_dir_all(&console).unwrap();

    let p = f.gitvps(&["plan"]);
    assert_eq!(p.code, 2, "{p:?}");
    assert!(
        p.stdout.starts_with(
            "Changed outside gitvps since the last apply:\nnode1:\n  ~ xen10: its domain ran and is gone (destroyed or shut down)\n  ~ xen11: its domain config was edited\n  ~ xen10: its console user is gone\n\nnode1 ("
        ),
        "{p:?}"
    );
    assert!(p.stdout.contains("  + xen10: start domain\n"), "{p:?}");
    assert!(
        p.stdout.contains("; 3 change(s) outside gitvps.\n"),
        "{p:?}"
    );
    let d = f.gitvps(&["plan", "--drift-only", "--status"]);
    assert_eq!(d.code, 2, "{d:?}");
    assert!(!d.stdout.contains("start domain"), "only the drift: {d:?}");
    assert!(d.stderr.contains("Drift of 1 node(s) recorded"), "{d:?}");
    let node: serde_json::Value =
        serde_json::from_str(&support::git(&f.repo, &["show", "status:nodes/node1.json"])).unwrap();
    let kinds: Vec<&str> = node["drift"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        ["domain_gone", "config_edited", "console_removed"],
        "{node}"
    );
    let j = f.gitvps(&["plan", "--drift-only", "--json"]);
    let j: serde_json::Value = serde_json::from_str(&j.stdout).unwrap();
    assert_eq!(j["drift"]["node1"][0]["name"], "xen10", "{j}");

    // The apply repairs it; the last drift seen stays on the branch until the next check.
    let a = f.gitvps(&["apply", "--status"]);
    assert_eq!(a.code, 0, "{a:?}");
    let d = f.gitvps(&["plan", "--drift-only"]);
    assert_eq!(d.code, 0, "{d:?}");
    let node: serde_json::Value =
        serde_json::from_str(&support::git(&f.repo, &["show", "status:nodes/node1.json"])).unwrap();
    assert_eq!(node["drift"].as_array().map(Vec::len), Some(3), "{node}");
    assert_eq!(
        support::git(&f.repo, &["ls-tree", "--name-only", "-r", "status"]).trim(),
        "nodes/node1.json\nstatus/xen10.json\nstatus/xen11.json"
    );
}

/// The fleet view: VPSes by state, committed against capacity, free addresses per pool, and
/// the last apply with its result from the status branch, as text and JSON.
#[test]
fn the_fleet_report_shows_capacity_and_the_last_apply() {
    let f = two_vps();
    f.vps("xen12", "node1", "192.0.2.12", "state = \"suspended\"\n");
    support::commit_all(&f.repo);
    let r = f.gitvps(&["inventory", "fleet"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.starts_with("Fleet\nTestville\nNODE"), "{r:?}");
    let row = r.stdout.lines().find(|l| l.starts_with("node1 ")).unwrap();
    for cell in [
        "1 running, 1 stopped, 1 suspended",
        "2304 MiB / 64 GiB",
        "90 GiB / 2 TiB",
        "3 / 32",
        "test-1 249",
        "none recorded",
    ] {
        assert!(row.contains(cell), "{cell}: {row}");
    }
    let a = f.gitvps(&["apply", "--status"]);
    assert_eq!(a.code, 0, "{a:?}");
    let r = f.gitvps(&["inventory", "fleet"]);
    let row = r.stdout.lines().find(|l| l.starts_with("node1 ")).unwrap();
    assert!(row.contains(" UTC applied ("), "{row}");
    let j = f.gitvps(&["inventory", "fleet", "--json"]);
    let j: serde_json::Value = serde_json::from_str(&j.stdout).unwrap();
    let n = &j["fleet"][0];
    assert_eq!(n["node"], "node1", "{j}");
    assert_eq!(n["vps"]["suspended"], 1, "{j}");
    assert_eq!(n["ram_capacity"], 64u64 << 30, "{j}");
    assert_eq!(n["pools"][0]["free"], 249, "{j}");
    assert_eq!(n["last_apply"]["result"], "applied", "{j}");
    // The default tables are unchanged: the fleet view is asked for by name.
    let all = f.gitvps(&["inventory"]);
    assert!(!all.stdout.contains("Fleet\n"), "{all:?}");
}

/// `gitvps node add` against a real sshd on loopback: the fingerprint it shows is the one
/// `ssh-keygen -lf` gives for the daemon's key, the file pins exactly that key and loads; a
/// wrong expected fingerprint, or a node that exists, writes nothing.
#[test]
fn node_add_pins_the_host_key_it_showed() {
    let f = Fleet::new(&[]);
    let pubkey = f.sshd.dir.path().join("host_key.pub");
    let out = std::process::Command::new("ssh-keygen")
        .arg("-lf")
        .arg(&pubkey)
        .output()
        .unwrap();
    let fingerprint = String::from_utf8(out.stdout)
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .to_owned();
    assert!(fingerprint.starts_with("SHA256:"), "{fingerprint}");
    let address = format!("{}:{}", f.sshd.addr, f.sshd.port);
    let add_at = |name: &str, address: &str, pool: &str, extra: &[&str]| -> Run {
        let mut args = vec![
            "node",
            "add",
            name,
            "--address",
            address,
            "--user",
            "gitvps",
            "--sudo",
            "--kind",
            "kvm",
            "--location",
            "Testville",
            "--country",
            "US",
            "--pool",
            pool,
            "--storage",
            "file:/var/lib/gitvps/disks",
            "--ram",
            "16 GiB",
            "--disk",
            "500 GiB",
            "--vcpus",
            "8",
        ];
        args.extend_from_slice(extra);
        f.gitvps(&args)
    };
    let add = |name: &str, extra: &[&str]| add_at(name, &address, "test-1", extra);
    let r = add(
        "node9",
        &[
            "--expect-fingerprint",
            "SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        ],
    );
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("nothing written"), "{r:?}");
    assert!(!f.repo.join("inventory/nodes/node9.toml").exists());

    let r = add("node9", &["--expect-fingerprint", &fingerprint]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        r.stdout
            .contains(&format!("{address} presents ssh-ed25519 {fingerprint}\n")),
        "{r:?}"
    );
    let text = std::fs::read_to_string(f.repo.join("inventory/nodes/node9.toml")).unwrap();
    assert!(
        text.contains(&format!("host_key = \"{}\"\n", f.sshd.host_key)),
        "{text}"
    );
    assert!(text.contains("hypervisor = \"kvm\"\n"), "{text}");
    assert!(text.contains("sudo = true\n"), "{text}");
    let v = f.gitvps(&["validate"]);
    assert_eq!(v.code, 0, "{v:?}");
    let inv = f.gitvps(&["inventory", "nodes", "--json"]);
    assert!(inv.stdout.contains("\"node9\""), "{inv:?}");

    let r = add("node9", &[]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("exists already"), "{r:?}");
    // A pool that does not exist: the inventory's error, and no file.
    let r = add_at("node10", &address, "nowhere", &[]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("inventory/nodes/node10.toml"), "{r:?}");
    assert!(!f.repo.join("inventory/nodes/node10.toml").exists());
    // Nothing listens: a clear error naming the address.
    let r = add_at("node11", "127.0.0.1:1", "test-1", &[]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stderr.contains("cannot read the host key of 127.0.0.1:1"),
        "{r:?}"
    );
}

/// The home page names the hypervisors the nodes run and says what a plan guarantees, in both
/// languages, built with the real zola: the example fleet is all Xen and sells 4× node0109's
/// vCPUs; a KVM node that overcommits RAM changes both.
#[test]
fn the_site_says_what_runs_and_what_is_guaranteed() {
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path().join("work");
    for d in ["inventory", "bootstraps", "site"] {
        support::copy_tree(&support::top().join(d), &work.join(d));
    }
    let _ = std::fs::remove_dir_all(work.join("site/public"));
    for f in ["products.toml", "pools.toml", "gitvps.toml"] {
        std::fs::copy(support::top().join(f), work.join(f)).unwrap();
    }
    let build = |name: &str| -> (String, String) {
        let out = tmp.path().join(name);
        let r: Run = std::process::Command::new(support::bin())
            .arg("--repo")
            .arg(&work)
            .args(["site", "build", "--out", out.to_str().unwrap()])
            .current_dir(support::top())
            .output()
            .unwrap()
            .into();
        assert_eq!(r.code, 0, "{r:?}");
        let page = |p: &str| std::fs::read_to_string(out.join(p)).unwrap();
        (page("index.html"), page("zh/index.html"))
    };
    let (en, zh) = build("xen");
    assert!(
        en.contains("<h1>Virtual private servers on Xen</h1>"),
        "{en}"
    );
    assert!(zh.contains("<h1>基于 Xen 的虚拟专用服务器</h1>"), "{zh}");
    assert!(
        en.contains("Guaranteed to your VPS: memory, disk space. Shared with the other VPSes on its node, so not guaranteed at every moment: CPU time.</p>"),
        "{en}"
    );
    assert!(
        zh.contains("为您的 VPS 保证：内存、磁盘空间。与同一节点上的其他 VPS 共享"),
        "{zh}"
    );
    assert!(!en.contains("reserved"), "{en}");

    let alpha = work.join("inventory/nodes/alpha.toml");
    let text = std::fs::read_to_string(&alpha).unwrap();
    std::fs::write(
        &alpha,
        text.replace("hypervisor = \"xen\"", "hypervisor = \"kvm\"")
            + "overcommit = { ram = 1.5, disk = 1, vcpus = 1 }\n",
    )
    .unwrap();
    let (en, zh) = build("mixed");
    assert!(
        en.contains("<h1>Virtual private servers on Xen and KVM</h1>"),
        "{en}"
    );
    assert!(
        zh.contains("<h1>基于 Xen 和 KVM 的虚拟专用服务器</h1>"),
        "{zh}"
    );
    assert!(
        en.contains("Guaranteed to your VPS: disk space. Shared with the other VPSes on its node, so not guaranteed at every moment: memory, CPU time.</p>"),
        "{en}"
    );
}

/// `gitvps apply --reviewed`: the plan file records the commit, the tree and each node's
/// state; the reviewed plan is applied as it is when nothing moved; a node changed out of band
/// is refused (exit 3, saying what moved, nothing done) or re-planned with the difference
/// shown; another tree, or uncommitted changes, are refused.
#[test]
fn the_reviewed_plan_is_applied_only_while_nothing_moved() {
    let f = two_vps();
    support::commit_all(&f.repo);
    let plan_file = f.dir.path().join("plan.json");
    let plan = || {
        let p = f.gitvps(&["plan", "--out", plan_file.to_str().unwrap()]);
        assert!(p.code == 2 || p.code == 0, "{p:?}");
        serde_json::from_str::<serde_json::Value>(&std::fs::read_to_string(&plan_file).unwrap())
            .unwrap()
    };
    let head = |what: &str| {
        support::git(&f.repo, &["rev-parse", what])
            .trim()
            .to_owned()
    };
    let commit = |message: &str| {
        support::git(&f.repo, &["add", "-A"]);
        let id = ["-c", "user.name=t", "-c", "user.email=t@example.net"];
        support::git(&f.repo, &[&id[..], &["commit", "-qm", message]].concat());
    };
    let reviewed = |extra: &[&str]| {
        let mut args = vec!["apply", "--reviewed", plan_file.to_str().unwrap()];
        args.extend_from_slice(extra);
        f.gitvps(&args)
    };

    // Nothing moved: the reviewed plan, exactly.
    let p = plan();
    assert_eq!(p["made_from"]["commit"], head("HEAD"), "{p}");
    assert_eq!(p["made_from"]["tree"], head("HEAD^{tree}"), "{p}");
    assert_eq!(
        p["made_from"]["nodes"]["node1"]["digest"], p["nodes"][0]["digest"],
        "{p}"
    );
    let a = reviewed(&[]);
    assert_eq!(a.code, 0, "{a:?}");
    assert!(a.stdout.starts_with("Applying the reviewed plan "), "{a:?}");
    assert!(a.stdout.contains("node1: applied 7 step(s)"), "{a:?}");
    assert_eq!(f.gitvps(&["plan"]).code, 0);

    // A new VPS is reviewed; then xen10's domain is destroyed out of band.
    f.vps("xen12", "node1", "192.0.2.12", "");
    commit("xen12");
    plan();
    let r = f.on_node("node1", "xl", &["destroy", "xen10"]);
    assert_eq!(r.code, 0, "{r:?}");
    let a = reviewed(&[]);
    assert_eq!(a.code, 3, "{a:?}");
    assert_eq!(
        a.stdout,
        "Moved since the reviewed plan was made:\n  node1: xen10: its domain ran and is gone (destroyed or shut down)\nNothing applied (--if-moved refuse): plan and review again, or apply with --if-moved replan.\n"
    );
    assert_eq!(f.lv("node1", "xen12"), None, "nothing was done");
    // Re-planned: the difference is shown, then applied.
    let a = reviewed(&["--if-moved", "replan"]);
    assert_eq!(a.code, 0, "{a:?}");
    assert!(
        a.stdout.contains(
            "Planned again (--if-moved replan); what differs from the reviewed plan:\nnode1:\n  now:     + xen10: start domain\n"
        ),
        "{a:?}"
    );
    assert!(f.lv("node1", "xen12").is_some());
    assert!(f.domain("node1", "xen10").is_some());
    assert_eq!(f.gitvps(&["plan"]).code, 0);

    // Another tree: refused, naming the commits and the changed file; the setting
    // `[workflow] if_moved` chooses when no flag is given.
    plan();
    f.edit(
        "inventory/vps/xen11.toml",
        "power = \"stopped\"",
        "power = \"running\"",
    );
    f.edit(
        "gitvps.toml",
        "if_moved = \"refuse\"",
        "if_moved = \"replan\"",
    );
    // Uncommitted: refused too.
    let a = reviewed(&["--if-moved", "refuse"]);
    assert_eq!(a.code, 3, "{a:?}");
    assert!(
        a.stdout
            .contains("  uncommitted changes here: gitvps.toml, inventory/vps/xen11.toml\n"),
        "{a:?}"
    );
    commit("start xen11");
    let a = reviewed(&["--if-moved", "refuse"]);
    assert_eq!(a.code, 3, "{a:?}");
    assert!(
        a.stdout.contains(&format!(
            "  the inventory: the plan was made from commit {} (tree ",
            &head("HEAD~1")[..12]
        )),
        "{a:?}"
    );
    assert!(
        a.stdout
            .contains("; changed: gitvps.toml, inventory/vps/xen11.toml\n"),
        "{a:?}"
    );
    // The stand-in `xl` keeps a domain while it exists: a stopped VPS has none.
    let running = || f.domain("node1", "xen11").is_some();
    assert!(!running(), "nothing was done");
    // No flag: gitvps.toml says replan.
    let a = reviewed(&[]);
    assert_eq!(a.code, 0, "{a:?}");
    assert!(
        a.stdout.contains(
            "what differs from the reviewed plan:\nnode1:\n  now:     + xen11: start domain\n"
        ),
        "{a:?}"
    );
    assert!(running(), "{a:?}");
    // A bad setting names its file, line and field.
    f.edit(
        "gitvps.toml",
        "if_moved = \"replan\"",
        "if_moved = \"ignore\"",
    );
    let v = f.gitvps(&["validate"]);
    assert_eq!(v.code, 1, "{v:?}");
    assert!(
        v.stderr.contains(
            ": workflow.if_moved: `ignore` is not a choice for if_moved: use \"refuse\", \"replan\""
        ) && v.stderr.starts_with("gitvps.toml:"),
        "{v:?}"
    );
}
