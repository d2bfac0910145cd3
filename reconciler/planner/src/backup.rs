//! Backups on a node: the restic commands (`node/backup.sh`) that back a VPS's disk up from a
//! consistent point, list a VPS's snapshots and forget them, and the parse of restic's answers.
//!
//! The commands carry no secret: the password and S3 keys go on the command's standard input
//! ([`secrets_input`]), which the node script reads into its own and restic's environment.

use chrono::{DateTime, Utc};
use model::VpsId;
use model::backup::Repository;
use model::values::Hypervisor;

use crate::desired::{NodeSpec, Store, VpsSpec, node_path};
use crate::{driver, protocol, quote};

/// The node script.
const SCRIPT: &str = include_str!("../node/backup.sh");

/// The marker line of a backup taken: `@@backup SNAPSHOT_ID BYTES`.
pub const BACKUP_MARKER: &str = "@@backup";

/// The key a node logs in to an SFTP repository with, under its root (see `docs/operating.md`).
pub const SFTP_KEY: &str = "var/lib/gitvps/backup/id_ed25519";

/// The copy-on-write area of an LVM snapshot: a tenth of the disk, at least 256 MiB: what the
/// guest may write during its backup before the snapshot overflows (and the backup fails).
pub fn cow_mib(disk_bytes: u64) -> u64 {
    (disk_bytes / 10).div_ceil(1 << 20).max(256)
}

/// How a node reaches the repository: restic's repository string and, for SFTP, the login.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RepoAccess {
    /// `RESTIC_REPOSITORY`.
    pub repository: String,
    /// `user@host` of an SFTP repository.
    sftp_to: String,
    /// Its port.
    sftp_port: u16,
    /// The known_hosts line that pins its host key.
    known_hosts: String,
}

impl RepoAccess {
    /// The access to a repository of `gitvps.toml`.
    pub fn of(repo: &Repository) -> RepoAccess {
        match repo {
            Repository::Local { path } => RepoAccess {
                repository: path.to_string(),
                sftp_to: String::new(),
                sftp_port: 22,
                known_hosts: String::new(),
            },
            Repository::Sftp {
                host,
                port,
                user,
                host_key,
                path,
            } => {
                let name = if *port == 22 {
                    host.to_string()
                } else {
                    format!("[{host}]:{port}")
                };
                RepoAccess {
                    repository: format!("sftp:{user}@{host}:{path}"),
                    sftp_to: format!("{user}@{host}"),
                    sftp_port: *port,
                    known_hosts: format!("{name} {host_key}"),
                }
            }
            Repository::S3 {
                endpoint,
                bucket,
                prefix,
                ..
            } => RepoAccess {
                repository: match prefix {
                    Some(p) => format!("s3:{}/{bucket}/{p}", endpoint.trim_end_matches('/')),
                    None => format!("s3:{}/{bucket}", endpoint.trim_end_matches('/')),
                },
                sftp_to: String::new(),
                sftp_port: 22,
                known_hosts: String::new(),
            },
        }
    }
}

/// Where a VPS's disk is read from, and how its consistent point is made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A classic LVM snapshot of the VPS's volume (any hypervisor).
    Lvm {
        /// The volume group.
        vg: String,
        /// The volume.
        lv: String,
        /// The snapshot's copy-on-write size, MiB.
        cow_mib: u64,
    },
    /// The image of a stopped Xen guest on file storage (a running one is refused on the node).
    XenFile {
        /// The image.
        disk: String,
    },
    /// A KVM image: a running guest writes to an overlay during the backup (QMP
    /// `blockdev-snapshot-sync`, then `block-commit`); a stopped one's image is read as it is.
    KvmFile {
        /// The image.
        disk: String,
        /// The guest's run folder (its QMP socket).
        run: String,
    },
}

impl Source {
    /// The source of a VPS on its node.
    pub fn of(spec: &NodeSpec, vps: &VpsSpec) -> Source {
        match (&spec.store, spec.hypervisor) {
            (Store::Lvm { vg }, _) => Source::Lvm {
                vg: vg.clone(),
                lv: vps.id.to_string(),
                cow_mib: cow_mib(vps.disk_bytes),
            },
            (Store::File { .. }, Hypervisor::Xen) => Source::XenFile {
                disk: vps.disk_path.clone(),
            },
            (Store::File { .. }, Hypervisor::Kvm) => Source::KvmFile {
                disk: vps.disk_path.clone(),
                run: driver::kvm::run_dir(&spec.root, &vps.id),
            },
        }
    }

    /// The script's arguments after `KIND`.
    fn args(&self) -> Vec<String> {
        match self {
            Source::Lvm { vg, lv, cow_mib } => {
                vec!["lvm".into(), vg.clone(), lv.clone(), cow_mib.to_string()]
            }
            Source::XenFile { disk } => vec!["xen-file".into(), disk.clone()],
            Source::KvmFile { disk, run } => {
                let overlay = format!("{disk}.backup-overlay");
                let snap = serde_json::json!({
                    "execute": "blockdev-snapshot-sync",
                    "arguments": {"device": crate::driver::kvm::DISK_ID, "snapshot-file": overlay, "format": "qcow2"},
                });
                let commit = serde_json::json!({
                    "execute": "block-commit",
                    "arguments": {"device": crate::driver::kvm::DISK_ID, "job-id": "gitvps-backup"},
                });
                vec![
                    "kvm-file".into(),
                    disk.clone(),
                    run.clone(),
                    snap.to_string(),
                    commit.to_string(),
                ]
            }
        }
    }
}

/// The node script with its header and the functions it needs for the hypervisor.
fn script(hv: Hypervisor) -> String {
    format!("{}{}{SCRIPT}", protocol::sh_header(), driver::library(hv))
}

/// The script's quoted arguments: the repository access, the operation and its arguments.
fn words(root: &str, repo: &RepoAccess, op: &str, args: &[String]) -> String {
    let mut words = vec![
        root.to_owned(),
        repo.repository.clone(),
        repo.known_hosts.clone(),
        repo.sftp_to.clone(),
        repo.sftp_port.to_string(),
        node_path(root, SFTP_KEY),
        op.to_owned(),
    ];
    words.extend_from_slice(args);
    let quoted: Vec<String> = words.iter().map(|w| quote(w)).collect();
    quoted.join(" ")
}

fn command(spec: &NodeSpec, repo: &RepoAccess, op: &str, args: &[String]) -> String {
    format!(
        "{}sh -c {} gitvps-backup {}",
        driver::sudo(spec.sudo),
        quote(&script(spec.hypervisor)),
        words(&spec.root, repo, op, args)
    )
}

/// The variable of a steps script that holds this script ([`steps_prelude`]).
const SCRIPT_VAR: &str = "BACKUP_SH";

/// What a steps script with restore steps defines first: the script, in [`SCRIPT_VAR`].
pub(crate) fn steps_prelude(hv: Hypervisor) -> String {
    format!("{SCRIPT_VAR}={}\n", quote(&script(hv)))
}

/// The restore steps' sh line: `check` (the snapshot is a backup of `from` that fits in
/// `max_bytes`; nothing is touched) or `restore` onto `disk` of `kind` (`lvm`, `raw`, `qcow2`).
/// The secrets the steps script took from apply's input go on the script's input.
pub(crate) fn step_line(
    root: &str,
    r: &crate::desired::RestoreSpec,
    max_bytes: u64,
    target: Option<(&str, &str)>,
) -> String {
    let mut args = vec![
        r.from.to_string(),
        r.snapshot.clone(),
        max_bytes.to_string(),
    ];
    let op = match target {
        Some((disk, kind)) => {
            args.extend([disk.to_owned(), kind.to_owned()]);
            "restore"
        }
        None => "check",
    };
    format!(
        "printf '%s\\n%s\\n%s\\n' \"$rs_pw\" \"$rs_ak\" \"$rs_sk\" | sh -c \"${SCRIPT_VAR}\" gitvps-backup {} || return 1",
        words(root, &r.repo, op, &args)
    )
}

/// `restic backup` of one VPS's disk from a consistent point, tagged `vps=ID` and
/// `bytes=SIZE`, with the node as restic's host; at `time` (UTC) instead of now when given.
/// Prints [`BACKUP_MARKER`] on success. Holds the node's lock while the disk is read.
pub fn backup_command(
    spec: &NodeSpec,
    repo: &RepoAccess,
    vps: &VpsSpec,
    time: Option<DateTime<Utc>>,
) -> String {
    let mut args = vec![
        vps.id.to_string(),
        spec.node.to_string(),
        time.map_or_else(String::new, |t| t.format("%Y-%m-%d %H:%M:%S").to_string()),
    ];
    args.extend(Source::of(spec, vps).args());
    command(spec, repo, "backup", &args)
}

/// `restic snapshots --json` of these VPSes (all of them at once).
pub fn list_command(spec: &NodeSpec, repo: &RepoAccess, vps: &[VpsId]) -> String {
    let args: Vec<String> = vps.iter().map(ToString::to_string).collect();
    command(spec, repo, "snapshots", &args)
}

/// `restic forget --prune ID...`. The ids must be restic's (hex); others are refused here.
pub fn forget_command(
    spec: &NodeSpec,
    repo: &RepoAccess,
    ids: &[String],
) -> Result<String, BackupParseError> {
    if let Some(bad) = ids.iter().find(|i| !is_snapshot_id(i)) {
        return Err(BackupParseError::Id(bad.escape_debug().to_string()));
    }
    Ok(command(spec, repo, "forget", ids))
}

/// The command's standard input: the password, then the S3 keys (empty lines when none).
/// A secret holding a line break cannot be sent that way and is refused (without its value).
pub fn secrets_input(
    password: &str,
    s3: Option<(&str, &str)>,
) -> Result<Vec<u8>, BackupParseError> {
    let (ak, sk) = s3.unwrap_or(("", ""));
    for (what, v) in [
        ("the repository password", password),
        ("the S3 access key id", ak),
        ("the S3 secret key", sk),
    ] {
        if v.contains(['\n', '\r', '\0']) {
            return Err(BackupParseError::Secret(what));
        }
    }
    Ok(format!("{password}\n{ak}\n{sk}\n").into_bytes())
}

/// restic's snapshot ids: 64 lowercase hex digits (a short id: at least 8).
pub fn is_snapshot_id(s: &str) -> bool {
    (8..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Why restic's answer could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BackupParseError {
    /// `restic snapshots --json` printed something else.
    #[error("restic's snapshot list is not the JSON expected: {0}")]
    List(String),
    /// A backup ended without its marker line.
    #[error("the backup printed no `@@backup ID BYTES` line")]
    NoMarker,
    /// Not a snapshot id.
    #[error("`{0}` is not a restic snapshot id")]
    Id(String),
    /// A secret that cannot go on a line.
    #[error("{0} holds a line break: it cannot be handed to restic")]
    Secret(&'static str),
}

/// One snapshot of a VPS as restic lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// The VPS (its `vps=ID` tag).
    pub vps: VpsId,
    /// restic's id.
    pub id: String,
    /// When it was taken.
    pub time: DateTime<Utc>,
    /// The node it was taken on (restic's host).
    pub host: String,
    /// The disk's size (its `bytes=N` tag; 0 when missing).
    pub bytes: u64,
}

#[derive(serde::Deserialize)]
struct RawSnapshot {
    id: String,
    time: DateTime<chrono::FixedOffset>,
    #[serde(default)]
    hostname: String,
    #[serde(default)]
    tags: Vec<String>,
}

/// Parses `restic snapshots --json`; snapshots without a valid `vps=ID` tag are not ours and
/// are left out. Sorted by VPS, then newest first.
pub fn parse_list(stdout: &[u8]) -> Result<Vec<Listed>, BackupParseError> {
    let text = String::from_utf8_lossy(stdout);
    let text = text.trim();
    if text.is_empty() || text == "null" {
        return Ok(Vec::new());
    }
    let raw: Vec<RawSnapshot> = serde_json::from_str(text).map_err(|e| {
        BackupParseError::List(format!(
            "{e} in `{}`",
            text.chars().take(120).collect::<String>()
        ))
    })?;
    let mut out: Vec<Listed> = raw
        .into_iter()
        .filter(|r| is_snapshot_id(&r.id))
        .filter_map(|r| {
            let tag = |k: &str| {
                r.tags
                    .iter()
                    .find_map(|t| t.strip_prefix(k).map(str::to_owned))
            };
            let vps: VpsId = tag("vps=")?.parse().ok()?;
            Some(Listed {
                vps,
                bytes: tag("bytes=").and_then(|b| b.parse().ok()).unwrap_or(0),
                id: r.id,
                time: r.time.with_timezone(&Utc),
                host: r.hostname,
            })
        })
        .collect();
    out.sort_by(|a, b| {
        (&a.vps, std::cmp::Reverse(a.time), &a.id).cmp(&(&b.vps, std::cmp::Reverse(b.time), &b.id))
    });
    Ok(out)
}

/// A backup taken: the marker line's snapshot id and size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Taken {
    /// restic's snapshot id.
    pub id: String,
    /// Bytes read from the disk.
    pub bytes: u64,
}

/// Reads [`BACKUP_MARKER`] from a backup's output.
pub fn parse_taken(stdout: &[u8]) -> Result<Taken, BackupParseError> {
    let text = String::from_utf8_lossy(stdout);
    text.lines()
        .rev()
        .find_map(|l| {
            let mut w = l.strip_prefix(BACKUP_MARKER)?.split_whitespace();
            let id = w.next().filter(|i| is_snapshot_id(i))?;
            let bytes = w.next()?.parse().ok()?;
            Some(Taken {
                id: id.to_owned(),
                bytes,
            })
        })
        .ok_or(BackupParseError::NoMarker)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use model::values::ImageFormat;

    fn spec(root: &str, store: Store, hv: Hypervisor, sudo: bool) -> NodeSpec {
        NodeSpec {
            node: "node1".parse().unwrap(),
            address: "192.0.2.1:22".into(),
            root: root.into(),
            sudo,
            hypervisor: hv,
            accel: None,
            boot_timeout_secs: 0,
            vps_at_once: 1,
            store,
            vps: Default::default(),
        }
    }

    fn vps(root: &str, store: &Store) -> VpsSpec {
        let id: VpsId = "xen02".parse().unwrap();
        let disk_path = match store {
            Store::Lvm { vg } => node_path(root, &format!("dev/{vg}/xen02")),
            Store::File { dir, format } => format!("{dir}/xen02.{}", format.extension()),
        };
        VpsSpec {
            id,
            state: model::values::State::Active,
            product: "advanced".into(),
            run: true,
            disk_bytes: 30 << 30,
            disk_path,
            adopted: false,
            config_path: String::new(),
            config: String::new(),
            config_sha256: String::new(),
            actions: Default::default(),
            destroyed: None,
            install: None,
            console: None,
            tap: None,
            restore: None,
            iso: None,
            rescue: None,
            rescue_waits: false,
            snapshots: Default::default(),
        }
    }

    fn sftp() -> Repository {
        Repository::Sftp {
            host: "192.0.2.20".parse().unwrap(),
            port: 2222,
            user: "restic".parse().unwrap(),
            host_key:
                "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"
                    .parse()
                    .unwrap(),
            path: "/srv/restic/gitvps".parse().unwrap(),
        }
    }

    #[test]
    fn repositories_as_restic_names_them() {
        let a = RepoAccess::of(&sftp());
        assert_eq!(a.repository, "sftp:restic@192.0.2.20:/srv/restic/gitvps");
        assert_eq!(a.sftp_to, "restic@192.0.2.20");
        assert!(
            a.known_hosts
                .starts_with("[192.0.2.20]:2222 ssh-ed25519 AAAA"),
            "{a:?}"
        );
        let local = RepoAccess::of(&Repository::Local {
            path: "/mnt/backup".parse().unwrap(),
        });
        assert_eq!(local.repository, "/mnt/backup");
        assert!(local.sftp_to.is_empty());
    }

    /// Every command is valid sh that shellcheck finds nothing in, and carries no secret: the
    /// password goes on stdin only.
    #[test]
    fn commands_are_valid_sh_and_hold_no_secret() {
        let root = "/srv/node 1";
        let stores = [
            Store::Lvm { vg: "vg0".into() },
            Store::File {
                dir: format!("{root}/var/lib/gitvps/disks"),
                format: ImageFormat::Qcow2,
            },
        ];
        for store in stores {
            for hv in [Hypervisor::Xen, Hypervisor::Kvm] {
                let s = spec(root, store.clone(), hv, true);
                let v = vps(root, &store);
                let repo = RepoAccess::of(&sftp());
                let at = "2026-12-06T03:00:00Z".parse().ok();
                for cmd in [
                    backup_command(&s, &repo, &v, at),
                    list_command(&s, &repo, std::slice::from_ref(&v.id)),
                    forget_command(&s, &repo, &["0123abcd".into()]).unwrap(),
                ] {
                    assert!(cmd.starts_with("sudo -n sh -c "), "{cmd}");
                    driver::tests::sh_syntax_ok(&cmd);
                    assert!(!cmd.contains("hunter2"));
                }
                driver::tests::shellcheck(&format!("backup ({hv})"), &script(hv));
            }
        }
        let lvm = backup_command(
            &spec(
                root,
                Store::Lvm { vg: "vg0".into() },
                Hypervisor::Xen,
                false,
            ),
            &RepoAccess::of(&sftp()),
            &vps(root, &Store::Lvm { vg: "vg0".into() }),
            "2026-12-06T03:00:00Z".parse().ok(),
        );
        assert!(
            lvm.ends_with(" backup xen02 node1 '2026-12-06 03:00:00' lvm vg0 xen02 3072"),
            "{lvm}"
        );
    }

    #[test]
    fn secrets_go_one_a_line_and_line_breaks_are_refused() {
        assert_eq!(secrets_input("hunter2", None).unwrap(), b"hunter2\n\n\n");
        assert_eq!(
            secrets_input("p", Some(("AK", "SK"))).unwrap(),
            b"p\nAK\nSK\n"
        );
        let e = secrets_input("two\nlines", None).unwrap_err();
        assert_eq!(
            e.to_string(),
            "the repository password holds a line break: it cannot be handed to restic"
        );
        assert!(
            forget_command(
                &spec("/", Store::Lvm { vg: "vg0".into() }, Hypervisor::Xen, false),
                &RepoAccess::of(&sftp()),
                &["--help".into()]
            )
            .is_err()
        );
    }

    #[test]
    fn restic_lists_and_markers_parse() {
        let json = r#"[{"time":"2026-12-05T03:00:01.5+01:00","tree":"t","paths":["/xen02.img"],"hostname":"node1","username":"root","tags":["vps=xen02","bytes=1048576"],"id":"aaaaaaaa11111111aaaaaaaa11111111aaaaaaaa11111111aaaaaaaa11111111","short_id":"aaaaaaaa"},
{"time":"2026-12-06T03:00:00Z","hostname":"node1","tags":["vps=xen02","bytes=2"],"id":"bbbbbbbb11111111aaaaaaaa11111111aaaaaaaa11111111aaaaaaaa11111111"},
{"time":"2026-12-06T03:00:00Z","hostname":"node1","tags":["other"],"id":"cccccccc11111111aaaaaaaa11111111aaaaaaaa11111111aaaaaaaa11111111"}]"#;
        let l = parse_list(json.as_bytes()).unwrap();
        assert_eq!(l.len(), 2, "an untagged snapshot is not ours");
        assert_eq!(l[0].bytes, 2, "newest first");
        assert_eq!(l[1].time.to_rfc3339(), "2026-12-05T02:00:01.500+00:00");
        assert_eq!(l[1].bytes, 1 << 20);
        assert!(parse_list(b"null").unwrap().is_empty());
        assert!(parse_list(b"Fatal: wrong password").is_err());
        let t = parse_taken(b"x\n@@backup 0123456789abcdef 4096\n").unwrap();
        assert_eq!((t.id.as_str(), t.bytes), ("0123456789abcdef", 4096));
        assert_eq!(
            parse_taken(b"@@backup xyz 1"),
            Err(BackupParseError::NoMarker)
        );
    }
}
