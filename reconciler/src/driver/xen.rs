//! The Xen driver: `xl` for domains, LVM or image files for disks, `e2fsck`/`resize2fs`.
//! It only translates steps into sh; deciding what to do is the planner's job.

use std::fmt::Write as _;

use crate::desired::{Store, node_path};
use crate::observe::SCRIPT as OBSERVE;
use crate::plan::{Op, Step};
use crate::ssh::quote;

/// Exit code of the apply script when another apply holds the node's lock too long.
pub const EXIT_LOCKED: u32 = 75;

/// Seconds an apply waits for another apply on the same node to finish.
pub const LOCK_WAIT_SECS: u32 = 600;

/// The arguments every node script takes: root, backend, store.
pub fn args(root: &str, store: &Store) -> String {
    let (backend, place) = match store {
        Store::Lvm { vg } => ("lvm", vg.clone()),
        // The observe script adds the root itself.
        Store::File { dir } => (
            "file",
            dir.strip_prefix(root.trim_end_matches('/'))
                .unwrap_or(dir)
                .to_owned(),
        ),
    };
    format!("{} {backend} {}", quote(root), quote(&place))
}

/// `sudo -n ` when the node's commands need it.
fn sudo(yes: bool) -> &'static str {
    if yes { "sudo -n " } else { "" }
}

/// The command that observes a node (no lock).
pub fn observe_command(root: &str, store: &Store, use_sudo: bool) -> String {
    format!(
        "{}sh -c {} gitvps-observe {}",
        sudo(use_sudo),
        quote(OBSERVE),
        args(root, store)
    )
}

/// The apply command: takes the node's lock, observes, prints `@@observed`, then reads
/// `go` and the steps script from its input (anything else: it exits without acting).
pub fn apply_command(root: &str, store: &Store, use_sudo: bool) -> String {
    let prologue = format!(
        r#"R=${{1%/}}
mkdir -p "$R/var/lib/gitvps/state" || exit 70
exec 9>"$R/var/lib/gitvps/lock" || exit 70
if ! flock -w {LOCK_WAIT_SECS} 9; then echo "@@locked"; exit {EXIT_LOCKED}; fi
sh -c "$4" gitvps-observe "$1" "$2" "$3" || exit $?
echo "@@observed"
IFS= read -r go || exit 0
[ "$go" = go ] || exit 0
steps=$(mktemp) || exit 70
cat >"$steps"
sh "$steps" "$R"
rc=$?
rm -f "$steps"
exit $rc
"#
    );
    format!(
        "{}sh -c {} gitvps-apply {} {}",
        sudo(use_sudo),
        quote(&prologue),
        args(root, store),
        quote(OBSERVE)
    )
}

/// The steps as one sh script; it prints `@@begin N`, then `@@ok N`, or `@@out ...` lines and
/// `@@fail N RC`; after a failure the VPS's later steps print `@@skip N`, other VPSes go on.
pub fn steps_script(root: &str, store: &Store, steps: &[Step]) -> String {
    let mut s = String::from(
        r#"set -u
R=$1
PATH="$R/usr/local/sbin:$R/usr/sbin:$R/sbin:/usr/local/sbin:/usr/sbin:/sbin:/usr/local/bin:/usr/bin:/bin"
export PATH
LC_ALL=C
export LC_ALL
log=$(mktemp) || exit 70
trap 'rm -f "$log"' EXIT
# VPSes with a failed step: their later steps are skipped, the others go on.
failed=" "
record() {
  d="$R/var/lib/gitvps/state"
  mkdir -p "$d" && printf '%s\n' "$2" >"$d/.$1.tmp" && mv "$d/.$1.tmp" "$d/$1.json"
}
run() {
  i=$1
  v=$2
  shift 2
  case $failed in
    *" $v "*) echo "@@skip $i"; return 0 ;;
  esac
  echo "@@begin $i"
  if "$@" >"$log" 2>&1; then
    echo "@@ok $i"
  else
    rc=$?
    tail -n 30 "$log" | sed 's/^/@@out /'
    echo "@@fail $i $rc"
    failed="$failed$v "
  fi
}
"#,
    );
    for (i, step) in steps.iter().enumerate() {
        let _ = writeln!(s, "s{i}() {{");
        for line in step_lines(root, store, step) {
            let _ = writeln!(s, "  {line}");
        }
        if let Some(rec) = &step.record {
            let json = serde_json::to_string(rec).unwrap_or_else(|_| "{}".into());
            let _ = writeln!(
                s,
                "  record {} {} || return 1",
                quote(step.vps.as_str()),
                quote(&json)
            );
        }
        let _ = writeln!(s, "}}");
    }
    for (i, step) in steps.iter().enumerate() {
        let _ = writeln!(s, "run {i} {} s{i}", step.vps);
    }
    s.push_str("echo @@done\n[ \"$failed\" = \" \" ]\n");
    s
}

/// Builds the OS in a folder with the shipped bootstrap scripts, then writes it into the disk
/// with `mke2fs -d` (no mount, no loop device). The build folders stay for inspection when a
/// script fails; the next attempt starts from scratch.
fn install_lines(disk: &str, spec: &crate::desired::InstallSpec) -> Vec<String> {
    let ship = quote(&spec.ship_dir);
    let build = quote(&spec.build_dir);
    let mut lines = vec![format!(
        "rm -rf {ship} {build} && mkdir -p {ship} {build} || return 1"
    )];
    let mut dirs: Vec<String> = spec
        .files
        .iter()
        .filter_map(|(p, _)| p.rsplit_once('/').map(|(d, _)| d.to_owned()))
        .collect();
    dirs.sort();
    dirs.dedup();
    for d in dirs {
        lines.push(format!(
            "mkdir -p {} || return 1",
            quote(&format!("{}/{d}", spec.ship_dir))
        ));
    }
    for (path, content) in &spec.files {
        lines.push(format!(
            "printf '%s' {} >{} || return 1",
            quote(content),
            quote(&format!("{}/{path}", spec.ship_dir))
        ));
    }
    // The exports may hold multi-line values (SSH keys): keep them verbatim, one per line.
    lines.push(format!(
        "(\n{}sh \"$GITVPS_BOOTSTRAPS/lib/install\"\n) || return $?",
        spec.exports
    ));
    lines.push(format!(
        "mke2fs -q -F -t ext4 -L gitvps-root -d {build} {disk} || return 1"
    ));
    lines.push(format!("rm -rf {ship} {build}"));
    lines
}

/// The sh lines of one step. Each line stands alone; failures `return`.
fn step_lines(root: &str, store: &Store, step: &Step) -> Vec<String> {
    let name = quote(step.vps.as_str());
    let disk = quote(&step.target.disk);
    let cfg = quote(&step.target.config);
    let lv = |vg: &str| quote(&format!("{vg}/{}", step.vps));
    let exists = format!("xl list {name} >/dev/null 2>&1");
    match &step.op {
        Op::CreateDisk { bytes } => match store {
            Store::Lvm { vg } => vec![format!(
                "if ! lvs {} >/dev/null 2>&1; then lvcreate -y -L {bytes}b -n {name} {} || return 1; fi",
                lv(vg),
                quote(vg)
            )],
            Store::File { dir } => vec![format!(
                // Raw images: qemu-img where installed, else a sparse file is the same thing.
                "if [ ! -e {disk} ]; then mkdir -p {} && if command -v qemu-img >/dev/null 2>&1; then qemu-img create -q -f raw {disk} {bytes}; else truncate -s {bytes} {disk}; fi || return 1; fi",
                quote(dir)
            )],
        },
        Op::GrowDisk { to, resize_fs, .. } => {
            let grow = match store {
                Store::Lvm { vg } => format!(
                    "cur=$(lvs --noheadings --units b --nosuffix -o lv_size {} | tr -d ' ') || return 1\n  if [ \"$cur\" -lt {to} ]; then lvextend -L {to}b {} || return 1; fi",
                    lv(vg),
                    lv(vg)
                ),
                Store::File { .. } => format!(
                    "if [ \"$(stat -c %s {disk})\" -lt {to} ]; then if command -v qemu-img >/dev/null 2>&1; then qemu-img resize -q -f raw {disk} {to}; else truncate -s {to} {disk}; fi || return 1; fi"
                ),
            };
            let mut lines = vec![grow];
            if *resize_fs {
                lines.push(format!(
                    "e2fsck -f -p {disk}; rc=$?; [ $rc -le 2 ] || return $rc"
                ));
                lines.push(format!("resize2fs {disk} || return 1"));
            }
            lines
        }
        Op::WriteConfig { content, .. } => {
            let dir = node_path(root, "etc/xen/gitvps");
            vec![
                format!("mkdir -p {} || return 1", quote(&dir)),
                format!(
                    "printf '%s' {} >{cfg}.tmp && mv {cfg}.tmp {cfg} || return 1",
                    quote(content)
                ),
            ]
        }
        Op::Start => vec![format!(
            "if ! {exists}; then xl create -q {cfg} || return 1; fi"
        )],
        Op::Stop { timeout_secs, .. } => vec![format!(
            "if {exists}; then timeout {timeout_secs} xl shutdown -w {name} || {{ ! {exists} || xl destroy {name}; }} || return 1; fi"
        )],
        Op::Destroy { .. } => vec![format!(
            "if {exists}; then xl destroy {name} || return 1; fi"
        )],
        Op::Reboot { .. } => vec![format!("xl reboot {name} || return 1")],
        Op::Fsck { .. } => vec![format!(
            "e2fsck -f -p {disk}; rc=$?; [ $rc -le 2 ] || return $rc"
        )],
        Op::Install { spec } | Op::Reinstall { spec, .. } => install_lines(&disk, spec),
        Op::Record { .. } => vec![":".into()],
        Op::WriteConsole { spec, .. } => {
            let home = quote(&spec.home);
            let keys = quote(&format!("{}/.ssh/authorized_keys", spec.home));
            let rule = quote(&spec.sudoers_path);
            let rule_dir = quote(spec.sudoers_path.rsplit_once('/').map_or("/", |(d, _)| d));
            vec![
                format!(
                    "useradd --system --home-dir {home} --no-create-home --shell /bin/sh {name}; rc=$?; [ $rc -eq 0 ] || [ $rc -eq 9 ] || return $rc"
                ),
                format!(
                    "mkdir -p {home}/.ssh && printf '%s' {} >{keys}.tmp && chmod 644 {keys}.tmp && mv {keys}.tmp {keys} || return 1",
                    quote(&spec.keys)
                ),
                format!(
                    "mkdir -p {rule_dir} && printf '%s' {} >{rule}.tmp && chmod 440 {rule}.tmp && mv {rule}.tmp {rule} || return 1",
                    quote(&spec.sudoers)
                ),
            ]
        }
        Op::RemoveConsole { home, sudoers_path } => vec![format!(
            "rm -f {} {} || return 1",
            quote(&format!("{home}/.ssh/authorized_keys")),
            quote(sudoers_path)
        )],
        Op::RemoveConfig => vec![format!("rm -f {cfg} || return 1")],
        Op::RemoveDisk { .. } => match store {
            Store::Lvm { vg } => vec![format!(
                "if lvs {} >/dev/null 2>&1; then lvremove -f {} || return 1; fi",
                lv(vg),
                lv(vg)
            )],
            Store::File { .. } => vec![format!("rm -f {disk} || return 1")],
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observe::Record;
    use crate::plan::Target;

    fn step(op: Op, record: Option<Record>) -> Step {
        Step {
            vps: "xen02".parse().unwrap(),
            op,
            record,
            target: Target {
                disk: "/srv/node 1/dev/vg0/xen02".into(),
                config: "/srv/node 1/etc/xen/gitvps/xen02.cfg".into(),
            },
        }
    }

    fn every_op() -> Vec<Step> {
        vec![
            step(
                Op::CreateDisk {
                    bytes: 32_212_254_720,
                },
                Some(Record::default()),
            ),
            step(
                Op::GrowDisk {
                    from: 1,
                    to: 2,
                    resize_fs: true,
                },
                None,
            ),
            step(
                Op::WriteConfig {
                    content: "name = \"xen02\"\n# it's '; rm -rf / #\n".into(),
                    sha256: "00".into(),
                    replaces: false,
                },
                None,
            ),
            step(
                Op::Stop {
                    reason: "x".into(),
                    timeout_secs: 120,
                },
                None,
            ),
            step(Op::Destroy { reason: "x".into() }, None),
            step(Op::Start, None),
            step(
                Op::Reboot { generation: 3 },
                Some(Record {
                    reboot: 3,
                    ..Record::default()
                }),
            ),
            step(
                Op::Fsck { generation: 1 },
                Some(Record {
                    fsck: 1,
                    ..Record::default()
                }),
            ),
            step(
                Op::Reinstall {
                    generation: 1,
                    spec: Box::new(crate::desired::InstallSpec {
                        os: "debian-12".into(),
                        appliance: None,
                        ship_dir: "/srv/node 1/var/lib/gitvps/bootstraps/xen02".into(),
                        build_dir: "/srv/node 1/var/lib/gitvps/build/xen02".into(),
                        files: vec![("bootstraps/lib/install".into(), "#!/bin/sh\necho 'hi'\n".into())],
                        exports: "export OS_ID='debian-12'\nexport TARGET='/srv/node 1/var/lib/gitvps/build/xen02'\n".into(),
                    }),
                },
                None,
            ),
            step(Op::Record { note: "x".into() }, Some(Record::default())),
            step(Op::RemoveConfig, None),
            step(Op::RemoveDisk { reason: "x".into() }, None),
        ]
    }

    fn sh_syntax_ok(script: &str) {
        let out = std::process::Command::new("sh")
            .args(["-n", "-c", script])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}\n{script}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    #[test]
    fn every_step_is_valid_sh_with_every_word_quoted() {
        let root = "/srv/node 1";
        for store in [
            Store::Lvm { vg: "vg0".into() },
            Store::File {
                dir: format!("{root}/var/lib/gitvps/disks"),
            },
        ] {
            let script = steps_script(root, &store, &every_op());
            sh_syntax_ok(&script);
            // The hostile config text only ever appears inside single quotes.
            let quoted = "'name = \"xen02\"\n# it'\\''s '\\''; rm -rf / #\n'";
            assert!(script.contains(quoted), "{script}");
        }
        insta::assert_snapshot!(steps_script(
            root,
            &Store::Lvm { vg: "vg0".into() },
            &every_op()
        ));
    }

    #[test]
    fn node_commands_are_valid_sh_and_use_sudo_when_asked() {
        let store = Store::Lvm { vg: "vg0".into() };
        for sudo in [false, true] {
            let apply = apply_command("/", &store, sudo);
            let observe = observe_command("/", &store, sudo);
            assert_eq!(apply.starts_with("sudo -n sh -c "), sudo);
            assert_eq!(observe.starts_with("sudo -n sh -c "), sudo);
            sh_syntax_ok(&apply);
            sh_syntax_ok(&observe);
        }
    }
}
