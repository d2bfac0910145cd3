//! Backups end to end (issue 19): real restic, a repository in a local folder and over SFTP to a
//! real sshd on loopback, the Xen path against the stand-in nodes (LVM snapshots of node-sim)
//! behind a real sshd, and the `gitvps` binary as an operator runs it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use gitvps_tests as support;

use std::path::{Path, PathBuf};
use std::process::Command;

use support::fleet::{Fleet, Run};

/// The repository password of these tests: it must never show in output or on a node.
const PASSWORD: &str = "Pa55-never-seen-9f3k";

/// A fleet with node1 (LVM) running xen10 on a 64 MiB plan backed up daily at 03:00 UTC
/// (keeping 100 daily), and `repo` (the `[backup]` tables of gitvps.toml) as its repository.
fn fleet(repo: &str) -> Fleet {
    let f = Fleet::new(&["node1"]);
    let mut products = std::fs::read_to_string(f.repo.join("products.toml")).unwrap();
    products.push_str(
        "\n[[product]]\nid = \"tiny\"\nname = \"Tiny VPS\"\nperiod_months = 1\nprice = \"1.00\"\nsetup_fee = \"0.00\"\ncommission = \"0.00\"\ndisk = \"64 MiB\"\nram = \"256 MiB\"\nvcpus = 1\ntraffic = \"1024 MiB\"\nprivate = true\n[product.backup]\nevery = \"daily\"\nhour = 3\nkeep_daily = 100\nkeep_weekly = 0\nkeep_monthly = 0\n",
    );
    std::fs::write(f.repo.join("products.toml"), products).unwrap();
    let mut settings = std::fs::read_to_string(f.repo.join("gitvps.toml")).unwrap();
    settings.push_str(&format!("\n[backup]\n{repo}"));
    std::fs::write(f.repo.join("gitvps.toml"), settings).unwrap();
    f.vps("xen10", "node1", "192.0.2.10", "");
    f.edit(
        "inventory/vps/xen10.toml",
        "product = \"advanced\"",
        "product = \"tiny\"",
    );
    f.converge();
    // What the guest wrote: a mark 1 MiB into its disk.
    write_at(
        &f.root("node1").join("dev/vg0/xen10"),
        1 << 20,
        b"the guest's data",
    );
    f
}

fn write_at(path: &Path, at: u64, data: &[u8]) {
    use std::io::{Seek, SeekFrom, Write};
    let mut file = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    file.seek(SeekFrom::Start(at)).unwrap();
    file.write_all(data).unwrap();
}

/// `restic ARGS` on this machine, against `repo`.
fn restic(repo: &Path, args: &[&str]) -> std::process::Output {
    Command::new("restic")
        .arg("-r")
        .arg(repo)
        .args(["--no-cache"])
        .args(args)
        .env("RESTIC_PASSWORD", PASSWORD)
        .output()
        .expect("restic runs (scripts/deps install test installs it)")
}

fn init(repo: &Path) {
    let o = restic(repo, &["init"]);
    assert!(o.status.success(), "{}", support::output_text(&o));
}

fn backup(f: &Fleet, password: &str, args: &[&str]) -> Run {
    let mut a = vec!["backup"];
    a.extend_from_slice(args);
    f.command(&a)
        .env("GITVPS_RESTIC_PASSWORD", password)
        .output()
        .unwrap()
        .into()
}

fn local(f: &Fleet) -> PathBuf {
    f.dir.path().join("restic-repo")
}

fn times(f: &Fleet) -> Vec<String> {
    let l = backup(f, PASSWORD, &["list", "--json"]);
    assert_eq!(l.code, 0, "{l:?}");
    let v: serde_json::Value = serde_json::from_str(&l.stdout).unwrap();
    let mut t: Vec<String> = v["xen10"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|b| b["time"].as_str().unwrap().to_owned())
                .collect()
        })
        .unwrap_or_default();
    t.sort();
    t
}

/// Nothing of the password is on the node, and no snapshot is left behind.
fn node_is_clean(f: &Fleet) {
    node_is_clean_but(f, &["xen10"]);
}

#[test]
fn backups_to_a_local_repository_with_retention_on_a_synthetic_calendar() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    let f = fleet(&format!("[backup.local]\npath = \"{}\"\n", repo.display()));
    let _ = local(&f);
    init(&repo);

    // A dry run decides and does nothing.
    let d = backup(
        &f,
        PASSWORD,
        &["run", "--dry-run", "--now", "2026-11-02T04:00:00Z"],
    );
    assert_eq!(d.code, 0, "{d:?}");
    assert!(
        d.stdout.contains("node1 xen10: would back up; 0 kept"),
        "{d:?}"
    );
    assert!(times(&f).is_empty());

    // The first backup holds what the guest wrote.
    let r = backup(&f, PASSWORD, &["run", "--now", "2026-11-02T04:00:00Z"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("node1 xen10: backed up "), "{r:?}");
    assert!(r.stdout.contains("(64.0 MiB); 1 kept"), "{r:?}");
    assert!(!format!("{r:?}").contains(PASSWORD));
    let dump = restic(&repo, &["dump", "latest", "xen10.img"]);
    assert!(dump.status.success(), "{}", support::output_text(&dump));
    assert_eq!(dump.stdout.len(), 64 << 20);
    assert_eq!(&dump.stdout[1 << 20..(1 << 20) + 16], b"the guest's data");
    node_is_clean(&f);
    assert!(
        f.domain("node1", "xen10").is_some(),
        "the VPS keeps running"
    );

    // Once a day: the same day again is not due.
    let again = backup(&f, PASSWORD, &["run", "--now", "2026-11-02T23:00:00Z"]);
    assert!(
        again.stdout.contains("node1 xen10: not due; 1 kept"),
        "{again:?}"
    );

    // A calendar of backups, then a policy of 3 daily, 2 weekly, 1 monthly.
    let days = [
        "2026-11-09", // Monday, ISO week 46
        "2026-11-16", // week 47
        "2026-11-20", // week 47, Friday
        "2026-11-23", // week 48
        "2026-11-30", // week 49, Monday
        "2026-12-01",
        "2026-12-02",
        "2026-12-03", // Thursday, week 49
    ];
    for day in days {
        let r = backup(&f, PASSWORD, &["run", "--now", &format!("{day}T04:00:00Z")]);
        assert_eq!(r.code, 0, "{day}: {r:?}");
        assert!(r.stdout.contains("backed up"), "{day}: {r:?}");
    }
    assert_eq!(times(&f).len(), 9);
    f.edit(
        "products.toml",
        "keep_daily = 100\nkeep_weekly = 0\nkeep_monthly = 0",
        "keep_daily = 3\nkeep_weekly = 2\nkeep_monthly = 1",
    );
    let r = backup(&f, PASSWORD, &["run", "--now", "2026-12-03T05:00:00Z"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        r.stdout.contains("node1 xen10: not due; forgot 5; 4 kept"),
        "{r:?}"
    );
    // Daily: 12-03, 12-02, 12-01; weekly: week 49 (12-03) and week 48 (11-23); monthly:
    // December (12-03). Nothing else.
    assert_eq!(
        times(&f),
        [
            "2026-11-23T04:00:00Z",
            "2026-12-01T04:00:00Z",
            "2026-12-02T04:00:00Z",
            "2026-12-03T04:00:00Z",
        ]
    );
    let human = backup(&f, PASSWORD, &["list"]);
    assert!(
        human
            .stdout
            .contains("  2026-12-03 04:00:00 UTC  64.0 MiB\n"),
        "{human:?}"
    );

    // The list goes to the status branch, and an apply keeps it.
    support::commit_all(&f.repo);
    let a = f.gitvps(&["apply", "--status"]);
    assert_eq!(a.code, 0, "{a:?}");
    let s = backup(
        &f,
        PASSWORD,
        &["run", "--status", "--now", "2026-12-03T06:00:00Z"],
    );
    assert_eq!(s.code, 0, "{s:?}");
    assert!(
        s.stdout.contains("Status: backups of 1 VPS(es) written"),
        "{s:?}"
    );
    let a = f.gitvps(&["apply", "--status"]);
    assert_eq!(a.code, 0, "{a:?}");
    let status: serde_json::Value = serde_json::from_str(&support::git(
        &f.repo,
        &["show", "status:status/xen10.json"],
    ))
    .unwrap();
    let list = status["backups"].as_array().unwrap();
    assert_eq!(list.len(), 4, "{status}");
    assert_eq!(list[0]["time"], "2026-12-03T04:00:00Z");
    assert_eq!(list[0]["size_bytes"], 64 << 20);
    assert_eq!(
        list[0]["short_id"].as_str().unwrap(),
        &list[0]["id"].as_str().unwrap()[..8]
    );
}

#[test]
fn a_wrong_password_fails_with_restics_reason_and_leaves_the_vps_running() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    let f = fleet(&format!("[backup.local]\npath = \"{}\"\n", repo.display()));
    init(&repo);
    let wrong = "Wr0ng-but-secret-too";
    let r = backup(&f, wrong, &["run", "--now", "2026-11-02T04:00:00Z"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stdout.contains("node1: FAILED, nothing done: "), "{r:?}");
    assert!(r.stdout.contains("wrong password"), "{r:?}");
    assert!(!format!("{r:?}").contains(wrong), "{r:?}");
    assert!(
        f.domain("node1", "xen10").is_some(),
        "the VPS keeps running"
    );
    node_is_clean(&f);
    // No password at all: refused before any node is touched.
    let none: Run = f
        .command(&["backup", "run"])
        .env_remove("GITVPS_RESTIC_PASSWORD")
        .output()
        .unwrap()
        .into();
    assert_eq!(none.code, 1, "{none:?}");
    assert!(
        none.stderr
            .contains("the environment variable GITVPS_RESTIC_PASSWORD is not set"),
        "{none:?}"
    );
    // A repository that is not there: restic's reason.
    std::fs::remove_dir_all(&repo).unwrap();
    let r = backup(&f, PASSWORD, &["run", "--now", "2026-11-02T04:00:00Z"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stdout
            .contains("Is there a repository at the following location?"),
        "{r:?}"
    );
    assert!(f.domain("node1", "xen10").is_some());
}

#[test]
fn a_full_volume_group_fails_the_backup_and_removes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    let f = fleet(&format!("[backup.local]\npath = \"{}\"\n", repo.display()));
    init(&repo);
    // Shrink vg0 to what its volume takes: no room for the snapshot's 256 MiB.
    let r: Run = Command::new(support::bin())
        .args(["node-sim", "install", "--root"])
        .arg(f.root("node1"))
        .args(["--vg", "vg0=64MiB"])
        .output()
        .unwrap()
        .into();
    assert_eq!(r.code, 0, "{r:?}");
    let b = backup(&f, PASSWORD, &["run", "--now", "2026-11-02T04:00:00Z"]);
    assert_eq!(b.code, 1, "{b:?}");
    assert!(
        b.stdout.contains("backup FAILED: ")
            && b.stdout
                .contains("Volume group \"vg0\" has insufficient free space"),
        "{b:?}"
    );
    assert!(f.domain("node1", "xen10").is_some());
    node_is_clean(&f);
}

#[test]
fn backups_over_sftp_to_a_real_sshd() {
    let dir = tempfile::tempdir().unwrap();
    let server = support::Sshd::start();
    let repo = dir.path().join("sftp-repo");
    init(&repo);
    let cfg = |port: u16| {
        format!(
            "[backup.sftp]\nhost = \"127.0.0.1\"\nport = {port}\nuser = \"{}\"\nhost_key = \"{}\"\npath = \"{}\"\n",
            server.user,
            server.host_key,
            repo.display()
        )
    };
    let f = fleet(&cfg(server.port));
    // The node's own key, authorized on the backup server (docs/operating.md).
    let key = f.root("node1").join("var/lib/gitvps/backup/id_ed25519");
    std::fs::create_dir_all(key.parent().unwrap()).unwrap();
    let public = support::keygen(&key, "node1-backup");
    let ak = server.dir.path().join("authorized_keys");
    let mut keys = std::fs::read_to_string(&ak).unwrap();
    keys.push_str(&format!("{public}\n"));
    std::fs::write(&ak, keys).unwrap();

    let r = backup(&f, PASSWORD, &["run", "--now", "2026-11-02T04:00:00Z"]);
    assert_eq!(r.code, 0, "{r:?}\n{}", server.log());
    assert!(r.stdout.contains("node1 xen10: backed up "), "{r:?}");
    let snaps = restic(&repo, &["snapshots", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&snaps.stdout).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 1, "{v}");
    assert_eq!(v[0]["hostname"], "node1");
    assert!(
        v[0]["tags"]
            .as_array()
            .unwrap()
            .contains(&serde_json::json!("vps=xen10"))
    );
    node_is_clean(&f);

    // The backup server's host key is pinned: another key is refused.
    let other = support::Sshd::start();
    f.edit("gitvps.toml", &server.host_key, &other.host_key);
    let r = backup(&f, PASSWORD, &["run", "--now", "2026-11-03T04:00:00Z"]);
    assert_eq!(r.code, 1, "{r:?}");
    // ssh says why on its own stderr, which restic may report before or after its own
    // "unable to start the sftp session" (seen both ways under load).
    assert!(
        r.stdout.contains("Host key verification failed")
            || r.stdout.contains("unable to start the sftp session"),
        "{r:?}"
    );
    assert!(f.domain("node1", "xen10").is_some());
    node_is_clean(&f);
}

/// The ids of a VPS's snapshots, newest first, as `gitvps backup list --json` gives them.
fn ids(f: &Fleet, vps: &str) -> Vec<String> {
    let l = backup(f, PASSWORD, &["list", "--json"]);
    assert_eq!(l.code, 0, "{l:?}");
    let v: serde_json::Value = serde_json::from_str(&l.stdout).unwrap();
    v[vps]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|b| b["id"].as_str().unwrap().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn apply(f: &Fleet, password: Option<&str>) -> Run {
    let mut c = f.command(&["apply"]);
    match password {
        Some(p) => c.env("GITVPS_RESTIC_PASSWORD", p),
        None => c.env_remove("GITVPS_RESTIC_PASSWORD"),
    };
    c.output().unwrap().into()
}

fn read_at(path: &Path, at: usize, len: usize) -> Vec<u8> {
    std::fs::read(path).unwrap()[at..at + len].to_vec()
}

/// `[restore]` by an admin commit: the backup is checked in the repository first (another
/// VPS's backup is refused before anything stops), then the VPS stops, the backup is written
/// onto its disk and it starts again; once per generation. Also into a new VPS with `from`.
#[test]
fn a_restore_by_commit_writes_the_backup_back_once_and_refuses_another_vpss() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    let f = fleet(&format!("[backup.local]\npath = \"{}\"\n", repo.display()));
    init(&repo);
    // Another customer's VPS, with a backup of its own.
    f.vps("xen11", "node1", "192.0.2.11", "");
    f.edit(
        "inventory/vps/xen11.toml",
        "customer = \"c-0001\"\nproduct = \"advanced\"",
        "customer = \"c-0002\"\nproduct = \"tiny\"",
    );
    f.converge();
    let disk = f.root("node1").join("dev/vg0/xen10");
    write_at(
        &f.root("node1").join("dev/vg0/xen11"),
        1 << 20,
        b"another customer",
    );
    let r = backup(&f, PASSWORD, &["run", "--now", "2026-11-02T04:00:00Z"]);
    assert_eq!(r.code, 0, "{r:?}");
    let mine = ids(&f, "xen10");
    let theirs = ids(&f, "xen11");
    assert_eq!((mine.len(), theirs.len()), (1, 1), "{r:?}");
    // The guest changes its disk after the backup.
    write_at(&disk, 1 << 20, b"changed later!!!");

    // Another customer's VPS as `from`: refused by validation, at its line.
    f.edit(
        "inventory/vps/xen10.toml",
        "expires = 2027-01-01\n",
        &format!(
            "expires = 2027-01-01\n\n[restore]\nsnapshot = \"{}\"\nfrom = \"xen11\"\ngeneration = 1\n",
            &theirs[0][..8]
        ),
    );
    let v = f.gitvps(&["validate"]);
    assert_ne!(v.code, 0, "{v:?}");
    assert!(
        v.stderr.contains(
            "inventory/vps/xen10.toml:12:8: restore.from: `xen11` is not a VPS of customer c-0001"
        ),
        "{v:?}"
    );
    let a = apply(&f, Some(PASSWORD));
    assert_ne!(a.code, 0, "{a:?}");
    assert_eq!(read_at(&disk, 1 << 20, 16), b"changed later!!!");

    // Another VPS's snapshot as if it were this one's: the check refuses it on the node and
    // the VPS keeps running, its disk untouched.
    f.edit("inventory/vps/xen10.toml", "from = \"xen11\"\n", "");
    let plan = f.gitvps(&["plan"]);
    assert!(
        plan.stdout.contains(&format!(
            "! xen10: check that backup {} is one of xen10's",
            &theirs[0][..8]
        )) && plan.stdout.contains("xen10: restore backup")
            && plan.stdout.contains("ERASES THE DISK"),
        "{plan:?}"
    );
    let a = apply(&f, Some(PASSWORD));
    assert_eq!(a.code, 1, "{a:?}");
    assert!(
        a.stdout.contains(&format!(
            "snapshot {} is not a backup of xen10 in the repository",
            &theirs[0][..8]
        )),
        "{a:?}"
    );
    assert!(f.domain("node1", "xen10").is_some(), "still running");
    assert_eq!(read_at(&disk, 1 << 20, 16), b"changed later!!!");

    // Its own snapshot, but no password where apply runs: refused before anything stops.
    f.edit(
        "inventory/vps/xen10.toml",
        &format!("snapshot = \"{}\"", &theirs[0][..8]),
        &format!("snapshot = \"{}\"", mine[0]),
    );
    let a = apply(&f, None);
    assert_eq!(a.code, 1, "{a:?}");
    assert!(
        a.stdout.contains("no restic password came with this apply"),
        "{a:?}"
    );
    assert!(f.domain("node1", "xen10").is_some(), "still running");
    assert_eq!(read_at(&disk, 1 << 20, 16), b"changed later!!!");

    // With it: stopped, restored, started; the bytes of the backup are back.
    let a = apply(&f, Some(PASSWORD));
    assert_eq!(a.code, 0, "{a:?}");
    assert_eq!(read_at(&disk, 1 << 20, 16), b"the guest's data");
    assert_eq!(std::fs::metadata(&disk).unwrap().len(), 64 << 20);
    assert!(f.domain("node1", "xen10").is_some(), "started again");
    assert_eq!(f.record("node1", "xen10")["restore"], 1);
    assert!(!format!("{a:?}").contains(PASSWORD));
    node_is_clean_but(&f, &["xen10", "xen11"]);
    // Once per generation: the next apply restores nothing.
    write_at(&disk, 1 << 20, b"written after!!!");
    let again = apply(&f, Some(PASSWORD));
    assert_eq!(again.code, 0, "{again:?}");
    assert!(!again.stdout.contains("restore"), "{again:?}");
    assert_eq!(read_at(&disk, 1 << 20, 16), b"written after!!!");

    // Into a new VPS of the same customer: its disk starts from xen10's backup.
    f.vps(
        "xen12",
        "node1",
        "192.0.2.12",
        &format!(
            "\n[restore]\nsnapshot = \"{}\"\nfrom = \"xen10\"\ngeneration = 1\n",
            mine[0]
        ),
    );
    f.edit(
        "inventory/vps/xen12.toml",
        "product = \"advanced\"",
        "product = \"tiny\"",
    );
    let a = apply(&f, Some(PASSWORD));
    assert_eq!(a.code, 0, "{a:?}");
    let new = f.root("node1").join("dev/vg0/xen12");
    assert_eq!(read_at(&new, 1 << 20, 16), b"the guest's data");
    assert!(f.domain("node1", "xen12").is_some());
    assert!(!a.stdout.contains("install debian"), "{a:?}");
    let p = f.gitvps(&["plan"]);
    assert_eq!(p.code, 0, "nothing left to do: {p:?}");
}

/// Nothing of the password is on the node, and the VG holds exactly these volumes.
fn node_is_clean_but(f: &Fleet, lvs: &[&str]) {
    let grep = Command::new("grep")
        .args(["-r", "-l", "-a", PASSWORD])
        .arg(f.root("node1"))
        .output()
        .unwrap();
    assert!(
        grep.stdout.is_empty(),
        "the password is in {}",
        String::from_utf8_lossy(&grep.stdout)
    );
    let l = f.on_node("node1", "lvs", &["--noheadings", "-o", "lv_name", "vg0"]);
    let want: String = lvs.iter().map(|v| format!("  {v}\n")).collect();
    assert_eq!(l.stdout, want, "{l:?}");
}
