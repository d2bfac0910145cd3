//! Node preparation (`gitvps node prepare`): what a fresh Debian needs to be a node of its
//! kind, decided purely from what the node's probe printed; the probe and fix commands to send.
//!
//! The commands are `node/prepare.sh` (functions only) followed by generated calls, every
//! argument through [`quote()`]. The executor sends them; nothing here does I/O.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::desired::sha256_hex;
use crate::quote;
use model::values::{Hypervisor, ImageFormat, SshPublicKey};
use model::{KvmNetwork, Node, Storage};

/// The node-side functions (`node/prepare.sh`).
const SCRIPT: &str = include_str!("../node/prepare.sh");

/// Where the login user's sudo rule goes.
pub const SUDOERS_PATH: &str = "/etc/sudoers.d/gitvps";

/// Why a node cannot be prepared (nothing was changed).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PrepareError {
    /// `/etc/os-release` names another system.
    #[error(
        "the node runs {0} (ID in /etc/os-release), not Debian: node prepare only prepares Debian"
    )]
    NotDebian(String),
    /// The login user is not root and sudo does not work without a password.
    #[error(
        "{0} is not root and `sudo -n sh -c true` fails for it: log in as root (--login root) or as a user allowed sudo sh without a password"
    )]
    NoRoot(String),
    /// An interface of that name exists and is not a bridge.
    #[error(
        "the bridge name {0} is taken by an interface that is not a bridge: rename one of them"
    )]
    LinkClash(String),
    /// `/dev/<vg>` exists and is not a volume group.
    #[error(
        "the volume group name {0} clashes with /dev/{0}, which is not a volume group: choose another vg"
    )]
    VgClash(String),
    /// The image folder's path is taken by a file.
    #[error("the image folder {0} exists and is not a folder")]
    DirClash(String),
    /// The node file cannot work as it is.
    #[error("{0}")]
    NodeFile(String),
    /// The probe printed something else than facts.
    #[error("the node's probe printed an unexpected line: {0:?}")]
    Garbled(String),
    /// The probe did not report a fact it was asked for.
    #[error("the node's probe did not report {0}")]
    Missing(String),
}

/// What the node should be: from its file and the reconciler's public key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Xen or KVM.
    pub hypervisor: Hypervisor,
    /// The bridge the guests join (none for KVM user-mode networking).
    pub bridge: Option<String>,
    /// Where the disks go.
    pub storage: Storage,
    /// The node file's login user: created with the key and the sudo rule unless it is root.
    pub user: String,
    /// The reconciler's public key (`type base64`, no comment).
    pub key: String,
    /// The node file's `root` (`/` on a real node): the image folder lies under it.
    pub root: String,
}

impl Target {
    /// The target of a node file, with the public key the reconciler logs in with.
    pub fn of(node: &Node, key: &SshPublicKey) -> Result<Target, PrepareError> {
        let user = node.user.as_str().to_owned();
        if user != "root" && !node.sudo {
            return Err(PrepareError::NodeFile(format!(
                "{}: user = {user:?} without sudo = true cannot run the node's tools; set sudo = true or log in as root",
                node.id
            )));
        }
        let key = key.key_part().to_owned();
        let bridge = match node.hypervisor {
            Hypervisor::Xen => Some(crate::driver::xen::DEFAULT_BRIDGE.to_owned()),
            Hypervisor::Kvm => match node.kvm.as_ref().map(|k| &k.network) {
                Some(KvmNetwork::Bridge { bridge }) => Some(bridge.clone()),
                _ => None,
            },
        };
        Ok(Target {
            hypervisor: node.hypervisor,
            bridge,
            storage: node.storage.clone(),
            user,
            key,
            root: node.root.as_str().to_owned(),
        })
    }

    /// The image folder as a path on the node (under `root`), for the `file` backend.
    pub fn image_dir(&self) -> Option<String> {
        match &self.storage {
            Storage::File { dir, .. } => {
                let dir = dir.as_str();
                let rel = dir
                    .strip_prefix(self.root.trim_end_matches('/'))
                    .unwrap_or(dir);
                Some(crate::desired::node_path(&self.root, rel))
            }
            Storage::Lvm { .. } => None,
        }
    }

    /// The Debian packages the node's kind needs.
    pub fn packages(&self) -> Vec<&'static str> {
        let mut p = vec!["util-linux", "e2fsprogs", "iproute2"];
        match self.hypervisor {
            Hypervisor::Xen => p.push("xen-system-amd64"),
            Hypervisor::Kvm => p.extend(["qemu-system-x86", "socat"]),
        }
        if self.hypervisor == Hypervisor::Kvm && self.bridge.is_some() {
            p.push("nftables");
        }
        match &self.storage {
            Storage::Lvm { .. } => p.push("lvm2"),
            Storage::File {
                format: ImageFormat::Qcow2,
                ..
            } => p.push("qemu-utils"),
            Storage::File { .. } => {}
        }
        if self.user != "root" {
            p.push("sudo");
        }
        p
    }

    /// The commands the node must have on PATH (from the packages above).
    fn commands(&self) -> Vec<&'static str> {
        let mut c = vec!["flock", "sha256sum", "mke2fs", "ip"];
        match self.hypervisor {
            Hypervisor::Xen => c.push("xl"),
            Hypervisor::Kvm => c.extend(["qemu-system-x86_64", "socat"]),
        }
        if let Storage::Lvm { .. } = self.storage {
            c.push("lvcreate");
        }
        if self.user != "root" {
            c.push("visudo");
        }
        c
    }

    /// The sudo rule docs/reconciler.md lists for a login user that is not root.
    pub fn sudoers(&self) -> String {
        format!(
            "# Written by gitvps node prepare: the rule docs/reconciler.md lists (root in all but name).\n{} ALL=(root) NOPASSWD: /bin/sh\n",
            self.user
        )
    }
}

/// How the login user becomes root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// It is root.
    Root,
    /// Through `sudo -n`.
    Sudo,
}

impl Access {
    fn prefix(self) -> &'static str {
        match self {
            Access::Root => "",
            Access::Sudo => "sudo -n ",
        }
    }
}

/// The command that tells whether the login user is root or may sudo (run as that user).
pub fn access_command() -> String {
    format!(
        "sh -c {} gitvps-prepare",
        quote(&format!("{SCRIPT}probe_access\n"))
    )
}

/// [`access_command`]'s answer: root, sudo, or the refusal naming `login`.
pub fn parse_access(out: &str, login: &str) -> Result<Access, PrepareError> {
    let facts = parse_lines(out)?;
    let get = |k: &str| {
        facts
            .get(&(k.to_owned(), "-".to_owned()))
            .cloned()
            .ok_or_else(|| PrepareError::Missing(k.into()))
    };
    if get("uid")? == "0" {
        return Ok(Access::Root);
    }
    if get("sudo")? == "yes" {
        return Ok(Access::Sudo);
    }
    Err(PrepareError::NoRoot(login.to_owned()))
}

/// Wraps calls after the functions, as root.
fn command(access: Access, calls: &str) -> String {
    format!(
        "{}sh -c {} gitvps-prepare",
        access.prefix(),
        quote(&format!("{SCRIPT}{calls}"))
    )
}

/// A call line: the function, then each argument quoted.
fn call(f: &str, args: &[&str]) -> String {
    let mut s = f.to_owned();
    for a in args {
        s.push(' ');
        s.push_str(&quote(a));
    }
    s.push('\n');
    s
}

/// The probe: every fact [`decide`] needs, one line each.
pub fn probe_command(t: &Target, access: Access) -> String {
    command(access, &probe_calls(t))
}

/// The calls of the probe.
fn probe_calls(t: &Target) -> String {
    let mut calls = call("probe_os", &[]);
    calls += &call("probe_pkg", &t.packages());
    calls += &call("probe_cmd", &t.commands());
    if let Some(b) = &t.bridge {
        calls += &call("probe_link", &[b]);
    }
    match &t.storage {
        Storage::Lvm { vg } => calls += &call("probe_vg", &[vg.as_str()]),
        Storage::File { .. } => {
            let dir = t.image_dir().unwrap_or_default();
            calls += &call("probe_dir", &[&dir]);
        }
    }
    if t.user != "root" {
        calls += &call("probe_user", &[&t.user, &t.key]);
        calls += &call("probe_file", &[SUDOERS_PATH]);
    }
    calls
}

/// `(kind, name) → state` from `KIND STATE NAME` lines.
type Facts = BTreeMap<(String, String), String>;

fn parse_lines(out: &str) -> Result<Facts, PrepareError> {
    let mut facts = Facts::new();
    for line in out.lines().filter(|l| !l.trim().is_empty()) {
        let mut parts = line.splitn(3, ' ');
        let (Some(kind), Some(state), Some(name)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(PrepareError::Garbled(line.chars().take(200).collect()));
        };
        // `os ID VERSION`: the state is the ID, the version the name.
        let (name, state) = if kind == "os" {
            ("-".to_owned(), format!("{state} {name}"))
        } else {
            (name.to_owned(), state.to_owned())
        };
        facts.insert((kind.to_owned(), name), state);
    }
    Ok(facts)
}

/// One thing that is or is not as the node needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// What it is (`package lvm2`, `bridge xenbr0`, ...).
    pub what: String,
    /// How it stands.
    pub state: State,
}

/// How a [`Check`] stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    /// Already as needed.
    Ok,
    /// `--fix` changes it (what it does).
    Fix(String),
    /// Only the operator can do it (what to do).
    Manual(String),
}

/// What to do to a node: the checks in order, and the fix calls for those that need one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Every check.
    pub checks: Vec<Check>,
    /// The calls of the fix (empty: nothing to change).
    calls: String,
}

impl Decision {
    /// True when everything is as needed.
    pub fn all_ok(&self) -> bool {
        self.checks.iter().all(|c| c.state == State::Ok)
    }

    /// True when some check needs the operator.
    pub fn manual(&self) -> bool {
        self.checks
            .iter()
            .any(|c| matches!(c.state, State::Manual(_)))
    }

    /// The command that fixes what can be fixed; `None` when nothing can.
    pub fn fix_command(&self, access: Access) -> Option<String> {
        (!self.calls.is_empty()).then(|| command(access, &self.calls))
    }

    /// The report: one line per check, `ok`, `would change` (or `changed` after a fix) or
    /// `manual`.
    pub fn render(&self, fixed: bool) -> String {
        let mut out = String::new();
        for c in &self.checks {
            let _ = match &c.state {
                State::Ok => writeln!(out, "  ok            {}", c.what),
                State::Fix(how) if fixed => writeln!(out, "  changed       {}: {how}", c.what),
                State::Fix(how) => writeln!(out, "  would change  {}: {how}", c.what),
                State::Manual(how) => writeln!(out, "  manual        {}: {how}", c.what),
            };
        }
        out
    }
}

/// Decides, from the probe's output, what is fine, what `--fix` changes and what only the
/// operator can do; refuses a node that is not Debian or whose names clash.
pub fn decide(t: &Target, probe_out: &str) -> Result<Decision, PrepareError> {
    let facts = parse_lines(probe_out)?;
    let get = |kind: &str, name: &str| {
        facts
            .get(&(kind.to_owned(), name.to_owned()))
            .map(String::as_str)
            .ok_or_else(|| PrepareError::Missing(format!("{kind} {name}")))
    };
    let os = get("os", "-")?;
    let (id, version) = os.split_once(' ').unwrap_or((os, ""));
    if id != "debian" {
        return Err(PrepareError::NotDebian(os.to_owned()));
    }
    let mut checks = vec![Check {
        what: format!("system: Debian {version}"),
        state: State::Ok,
    }];
    let mut calls = String::new();
    // Clashes first: nothing is changed on a node that is refused.
    let bridge = match &t.bridge {
        Some(b) => match get("link", b)? {
            "bridge" => Some((b, true)),
            "missing" => Some((b, false)),
            _ => return Err(PrepareError::LinkClash(b.clone())),
        },
        None => None,
    };
    let storage = match &t.storage {
        Storage::Lvm { vg } => match get("vg", vg.as_str())? {
            "vg" => Check {
                what: format!("volume group {vg}"),
                state: State::Ok,
            },
            "missing" => Check {
                what: format!("volume group {vg}"),
                state: State::Manual(format!(
                    "create it on the disk meant for guests: vgcreate {} DEVICE",
                    quote(vg.as_str())
                )),
            },
            _ => return Err(PrepareError::VgClash(vg.as_str().to_owned())),
        },
        Storage::File { .. } => {
            let dir = t.image_dir().unwrap_or_default();
            match get("dir", &dir)? {
                "dir" => Check {
                    what: format!("image folder {dir}"),
                    state: State::Ok,
                },
                "missing" => {
                    calls += &call("fix_dir", &[&dir]);
                    Check {
                        what: format!("image folder {dir}"),
                        state: State::Fix("mkdir, mode 0700".into()),
                    }
                }
                _ => return Err(PrepareError::DirClash(dir)),
            }
        }
    };
    let missing: Vec<&str> = t
        .packages()
        .into_iter()
        .filter(|p| get("pkg", p).map(|s| s != "installed").unwrap_or(true))
        .collect();
    for p in t.packages() {
        checks.push(Check {
            what: format!("package {p}"),
            state: if missing.contains(&p) {
                State::Fix("apt-get install (the node's own apt sources)".into())
            } else {
                State::Ok
            },
        });
    }
    if !missing.is_empty() {
        calls += &call("fix_packages", &missing);
    }
    for c in t.commands() {
        let state = match get("cmd", c)? {
            "yes" => State::Ok,
            _ if !missing.is_empty() => State::Fix("from the packages above".into()),
            _ => State::Manual("not on PATH although its package is installed".into()),
        };
        checks.push(Check {
            what: format!("command {c}"),
            state,
        });
    }
    if let Some((b, present)) = bridge {
        let state = if present {
            State::Ok
        } else {
            calls += &call("fix_bridge", &[b]);
            State::Fix("ip link add type bridge, up (add the uplink and the address yourself: docs/operating.md)".into())
        };
        checks.push(Check {
            what: format!("bridge {b}"),
            state,
        });
    }
    checks.push(storage);
    if t.user != "root" {
        let u = &t.user;
        let user_ok = get("user", u)? == "yes";
        if !user_ok {
            calls += &call("fix_user", &[u]);
        }
        checks.push(Check {
            what: format!("user {u}"),
            state: if user_ok {
                State::Ok
            } else {
                State::Fix("useradd with a home".into())
            },
        });
        let key_ok = user_ok && get("authkey", u)? == "yes";
        if !key_ok {
            calls += &call("fix_authkey", &[u, &t.key]);
        }
        checks.push(Check {
            what: format!("authorized key of {u}"),
            state: if key_ok {
                State::Ok
            } else {
                State::Fix("append the reconciler's public key".into())
            },
        });
        let rule = t.sudoers();
        let rule_ok = get("file", SUDOERS_PATH)? == sha256_hex(&rule);
        if !rule_ok {
            calls += &call("fix_sudoers", &[SUDOERS_PATH, &rule]);
        }
        checks.push(Check {
            what: format!("sudo rule {SUDOERS_PATH}"),
            state: if rule_ok {
                State::Ok
            } else {
                State::Fix(format!(
                    "write `{u} ALL=(root) NOPASSWD: /bin/sh`, checked with visudo -c"
                ))
            },
        });
    }
    Ok(Decision { checks, calls })
}

/// The lines `changed KIND NAME` a fix printed, for the report.
pub fn changed_lines(out: &str) -> usize {
    out.lines().filter(|l| l.starts_with("changed ")).count()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn target(hv: Hypervisor, storage: Storage, user: &str) -> Target {
        Target {
            hypervisor: hv,
            bridge: Some("xenbr0".into()),
            storage,
            user: user.into(),
            key: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExample".into(),
            root: "/".into(),
        }
    }

    fn file_store() -> Storage {
        Storage::File {
            dir: "/srv/images".parse().unwrap(),
            format: ImageFormat::Raw,
        }
    }

    /// A fresh Debian: nothing of a node there.
    fn fresh(t: &Target) -> String {
        let mut s = "os debian 12\n".to_owned();
        for p in t.packages() {
            s += &format!("pkg missing {p}\n");
        }
        for c in ["flock", "sha256sum", "mke2fs"] {
            s += &format!("cmd yes {c}\n");
        }
        for c in [
            "ip",
            "xl",
            "visudo",
            "qemu-system-x86_64",
            "socat",
            "lvcreate",
        ] {
            s += &format!("cmd no {c}\n");
        }
        s + "link missing xenbr0\ndir missing /srv/images\nvg missing vg0\nuser missing gitvps\nauthkey no gitvps\nfile missing /etc/sudoers.d/gitvps\n"
    }

    /// The same node after a fix.
    fn prepared(t: &Target) -> String {
        fresh(t)
            .replace("pkg missing", "pkg installed")
            .replace("cmd no", "cmd yes")
            .replace("link missing", "link bridge")
            .replace("dir missing", "dir dir")
            .replace("user missing", "user yes")
            .replace("authkey no", "authkey yes")
            .replace(
                "file missing",
                &format!("file {}", sha256_hex(&t.sudoers())),
            )
    }

    #[test]
    fn a_fresh_debian_gets_everything_and_a_prepared_one_nothing() {
        let t = target(Hypervisor::Xen, file_store(), "gitvps");
        let d = decide(&t, &fresh(&t)).unwrap();
        assert!(!d.all_ok() && !d.manual());
        let fix = d.fix_command(Access::Sudo).unwrap();
        assert!(fix.starts_with("sudo -n sh -c "), "{fix}");
        for f in [
            "fix_packages util-linux e2fsprogs iproute2 xen-system-amd64 sudo",
            "fix_bridge xenbr0",
            "fix_dir /srv/images",
            "fix_user gitvps",
            "fix_authkey gitvps ",
            "fix_sudoers /etc/sudoers.d/gitvps ",
        ] {
            assert!(fix.contains(f), "{f} missing from the fix");
        }
        let text = d.render(false);
        assert!(text.contains("would change  bridge xenbr0"), "{text}");
        assert!(text.contains("ok            system: Debian 12"), "{text}");
        let again = decide(&t, &prepared(&t)).unwrap();
        assert!(again.all_ok(), "{}", again.render(false));
        assert_eq!(again.fix_command(Access::Root), None);
    }

    #[test]
    fn the_image_folder_lies_under_the_node_root() {
        let mut t = target(Hypervisor::Xen, file_store(), "gitvps");
        assert_eq!(t.image_dir().as_deref(), Some("/srv/images"));
        t.root = "/srv/sim".into();
        assert_eq!(t.image_dir().as_deref(), Some("/srv/sim/srv/images"));
        t.storage = Storage::File {
            dir: "/srv/sim/disks".parse().unwrap(),
            format: ImageFormat::Raw,
        };
        assert_eq!(t.image_dir().as_deref(), Some("/srv/sim/disks"));
    }

    #[test]
    fn a_changed_sudo_rule_is_rewritten() {
        let t = target(Hypervisor::Xen, file_store(), "gitvps");
        let probe = prepared(&t).replace(
            &sha256_hex(&t.sudoers()),
            &sha256_hex("gitvps ALL=(ALL) ALL\n"),
        );
        let d = decide(&t, &probe).unwrap();
        assert!(d.fix_command(Access::Root).is_some());
        let fix = &d.calls;
        assert!(
            fix.contains("fix_sudoers") && !fix.contains("fix_user"),
            "{fix}"
        );
    }

    #[test]
    fn refusals_change_nothing() {
        let t = target(Hypervisor::Xen, file_store(), "gitvps");
        let ubuntu = fresh(&t).replace("os debian 12", "os ubuntu 24.04");
        assert_eq!(
            decide(&t, &ubuntu),
            Err(PrepareError::NotDebian("ubuntu 24.04".into()))
        );
        let clash = fresh(&t).replace("link missing xenbr0", "link other xenbr0");
        assert_eq!(
            decide(&t, &clash),
            Err(PrepareError::LinkClash("xenbr0".into()))
        );
        let lvm = target(
            Hypervisor::Xen,
            Storage::Lvm {
                vg: "vg0".parse().unwrap(),
            },
            "gitvps",
        );
        let vg = fresh(&lvm).replace("vg missing vg0", "vg other vg0");
        assert_eq!(decide(&lvm, &vg), Err(PrepareError::VgClash("vg0".into())));
        let dir = fresh(&t).replace("dir missing", "dir other");
        assert_eq!(
            decide(&t, &dir),
            Err(PrepareError::DirClash("/srv/images".into()))
        );
        assert_eq!(
            parse_access("uid 1000 -\nsudo no -\n", "admin"),
            Err(PrepareError::NoRoot("admin".into()))
        );
        assert_eq!(
            parse_access("uid 0 -\nsudo no -\n", "root"),
            Ok(Access::Root)
        );
        assert_eq!(parse_access("uid 7 -\nsudo yes -\n", "a"), Ok(Access::Sudo));
        assert!(matches!(
            decide(&t, "Welcome to the node!\n"),
            Err(PrepareError::Missing(_) | PrepareError::Garbled(_))
        ));
        assert!(matches!(
            decide(&t, "os debian 12\n"),
            Err(PrepareError::Missing(_))
        ));
    }

    #[test]
    fn a_missing_volume_group_is_the_operators() {
        let t = target(
            Hypervisor::Kvm,
            Storage::Lvm {
                vg: "vg0".parse().unwrap(),
            },
            "root",
        );
        let d = decide(&t, &fresh(&t)).unwrap();
        assert!(d.manual(), "{}", d.render(false));
        assert!(d.render(false).contains("vgcreate vg0 DEVICE"));
        let fix = &d.calls;
        assert!(
            !fix.contains("fix_user") && !fix.contains("fix_sudoers"),
            "{fix}"
        );
        assert!(
            fix.contains("lvm2") && fix.contains("qemu-system-x86"),
            "{fix}"
        );
    }

    #[test]
    fn every_word_is_quoted() {
        let mut t = target(Hypervisor::Xen, file_store(), "gitvps");
        t.key = "ssh-ed25519 AAAA'$(reboot)".into();
        let d = decide(&t, &fresh(&t)).unwrap();
        let fix = d.fix_command(Access::Root).unwrap();
        assert!(
            d.calls.contains(r"'ssh-ed25519 AAAA'\''$(reboot)'"),
            "{}",
            d.calls
        );
        crate::driver::tests::shellcheck("the prepare fix", &format!("{SCRIPT}{}", d.calls));
        crate::driver::tests::shellcheck("the prepare access", &format!("{SCRIPT}probe_access\n"));
        let calls = probe_calls(&t);
        assert!(
            calls.contains(r"probe_user gitvps 'ssh-ed25519 AAAA'\''$(reboot)'"),
            "{calls}"
        );
        crate::driver::tests::shellcheck("the prepare probe", &format!("{SCRIPT}{calls}"));
        assert!(probe_command(&t, Access::Sudo).starts_with("sudo -n sh -c '"));
        assert!(fix.starts_with("sh -c '"));
    }
}
