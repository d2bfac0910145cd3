//! The node commands of a move (`node/move.sh`, and locked steps scripts for its phases): what
//! each node runs, in order, when apply carries a [`Move`] out. Pure: the executor sends them.

use super::{steps_script, sudo};
use crate::desired::{NodeSpec, Store, VpsSpec, console_home, console_sudoers, node_path};
use crate::moves::Move;
use crate::plan::{Op, Step, StepPaths};
use crate::{protocol, quote};
use model::values::ImageFormat;

/// `node/move.sh`: probe, send and receive.
const SCRIPT: &str = include_str!("../../node/move.sh");

/// How the disk is compressed on the way: `zstd -1` when both nodes have it, else `gzip -1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    /// `zstd -1 -T0`.
    Zstd,
    /// `gzip -1`.
    Gzip,
}

impl Codec {
    /// The word `move.sh` takes.
    pub fn word(self) -> &'static str {
        match self {
            Codec::Zstd => "zstd",
            Codec::Gzip => "gzip",
        }
    }

    /// The codec of a probe's `codec` line.
    pub fn parse(word: &str) -> Option<Codec> {
        match word {
            "zstd" => Some(Codec::Zstd),
            "gzip" => Some(Codec::Gzip),
            _ => None,
        }
    }

    /// What both ends can use.
    pub fn common(a: Codec, b: Codec) -> Codec {
        if a == Codec::Zstd && b == Codec::Zstd {
            Codec::Zstd
        } else {
            Codec::Gzip
        }
    }
}

/// `move.sh` with the marker header, run with an action and its arguments (already quoted).
fn move_command(spec: &NodeSpec, action: &str, args: &[&str]) -> String {
    let args: Vec<String> = args.iter().map(|a| quote(a)).collect();
    format!(
        "{}sh -c {} gitvps-move {} {action} {}",
        sudo(spec.sudo),
        quote(&format!("{}{SCRIPT}", protocol::sh_header())),
        quote(&spec.root),
        args.join(" ")
    )
}

/// The marker a verified copy leaves on the target: `FROM SHA256` (`state/<vps>.moved`).
fn marker(spec: &NodeSpec, m: &Move) -> String {
    node_path(&spec.root, &format!("var/lib/gitvps/state/{}.moved", m.vps))
}

/// Read only, on either node: the codec it has, and on the target whether it holds a verified
/// copy of the move's disk (`verified SHA256`).
pub fn probe_command(spec: &NodeSpec, m: &Move) -> String {
    let disk = if spec.node == m.to {
        &m.target.disk
    } else {
        &m.source.disk
    };
    move_command(spec, "probe", &[m.vps.as_str(), m.from.as_str(), disk])
}

/// On the source, under its lock: the disk, compressed, on stdout; its sha256 on stderr.
pub fn send_command(spec: &NodeSpec, m: &Move, codec: Codec) -> String {
    move_command(spec, "send", &[&m.source.disk, codec.word()])
}

/// On the target, under its lock: the compressed disk from stdin into the target's disk,
/// flushed; the sha256 of the source's size of it, read back, on stderr. Image files are
/// written sparse (the fresh image is all holes); a qcow2 image is the source's image file byte
/// for byte, written into an emptied file (the fresh image's own header and tables would
/// otherwise show through the holes).
pub fn recv_command(spec: &NodeSpec, m: &Move, codec: Codec) -> String {
    // move.sh's MODE: how the bytes are written into the target's disk.
    let mode = match spec.store {
        Store::File {
            format: ImageFormat::Qcow2,
            ..
        } => "image",
        Store::File { .. } => "sparse",
        Store::Lvm { .. } => "dense",
    };
    let bytes = m.bytes.to_string();
    move_command(spec, "recv", &[&m.target.disk, codec.word(), mode, &bytes])
}

/// A steps script run under the node's lock, after the sh lines `pre`: one phase of a move.
fn phase_command(spec: &NodeSpec, pre: &[String], steps: &[Step]) -> String {
    format!(
        "{}sh -c {} gitvps-move-steps {}",
        sudo(spec.sudo),
        quote(&phase_script(spec, pre, steps)),
        quote(&spec.root)
    )
}

/// The script of [`phase_command`].
fn phase_script(spec: &NodeSpec, pre: &[String], steps: &[Step]) -> String {
    let mut script = protocol::sh_header();
    script.push_str(
        "R=${1%/}\n\
         mkdir -p \"$R/var/lib/gitvps/state\" || exit 70\n\
         exec 9>\"$R/var/lib/gitvps/lock\" || exit 70\n\
         if ! flock -w \"$LOCK_WAIT_SECS\" 9; then echo \"$M_LOCKED\"; exit \"$EXIT_LOCKED\"; fi\n",
    );
    for l in pre {
        script.push_str(l);
        script.push('\n');
    }
    script.push_str(&steps_script(spec, steps));
    script
}

fn step(m: &Move, paths: &StepPaths, op: Op) -> Step {
    Step {
        vps: m.vps.clone(),
        op,
        record: None,
        target: paths.clone(),
    }
}

/// The steps that take a VPS's domain, config and disk off a node.
fn remove_all(m: &Move, paths: &StepPaths, why: &str) -> [Step; 3] {
    let reason = why.to_owned();
    [
        step(
            m,
            paths,
            Op::Destroy {
                reason: reason.clone(),
            },
        ),
        step(m, paths, Op::RemoveConfig),
        step(m, paths, Op::RemoveDisk { reason }),
    ]
}

/// Phase 1, on the target: whatever an interrupted move left there goes (never trusted),
/// and a fresh disk of the source's size is made.
pub fn prepare_command(spec: &NodeSpec, m: &Move) -> String {
    let why = format!("a copy left by an interrupted move from {}", m.from);
    let mut steps = remove_all(m, &m.target, &why).to_vec();
    steps.push(step(m, &m.target, Op::CreateDisk { bytes: m.bytes }));
    phase_command(
        spec,
        &[format!("rm -f {}", quote(&marker(spec, m)))],
        &steps,
    )
}

/// Phase 2, on the source: the domain is shut down (destroyed after the timeout).
pub fn stop_command(spec: &NodeSpec, m: &Move, timeout_secs: u32) -> String {
    let stop = Op::Stop {
        reason: format!("to move it to {}", m.to),
        timeout_secs,
    };
    phase_command(spec, &[], &[step(m, &m.source, stop)])
}

/// After a failed copy, on the target: the copy is discarded.
pub fn discard_command(spec: &NodeSpec, m: &Move) -> String {
    let why = format!("a failed copy from {}", m.from);
    let steps = [step(m, &m.target, Op::RemoveDisk { reason: why })];
    phase_command(
        spec,
        &[format!("rm -f {}", quote(&marker(spec, m)))],
        &steps,
    )
}

/// After a failed copy, on the source: the domain starts again from its own config.
pub fn restart_command(spec: &NodeSpec, m: &Move) -> String {
    phase_command(spec, &[], &[step(m, &m.source, Op::Start)])
}

/// Phase 4, on the target: the verified copy is marked (`FROM SHA256`), then the config and
/// the source's record are written and the domain started (when it must run).
pub fn finish_command(spec: &NodeSpec, m: &Move, v: &VpsSpec, sha256: &str) -> String {
    let mark = marker(spec, m);
    let pre = [format!(
        "printf '%s %s\\n' {} {} >{}.tmp && mv {}.tmp {} || exit 1",
        quote(m.from.as_str()),
        quote(sha256),
        quote(&mark),
        quote(&mark),
        quote(&mark)
    )];
    let mut write = step(
        m,
        &m.target,
        Op::WriteConfig {
            content: v.config.clone(),
            sha256: v.config_sha256.clone(),
            replaces: false,
        },
    );
    write.record = Some(m.record.clone().unwrap_or_else(|| crate::observe::Record {
        installed: true,
        ..crate::observe::Record::default()
    }));
    let mut steps = vec![write];
    if v.run {
        steps.push(step(m, &m.target, Op::Start));
    }
    phase_command(spec, &pre, &steps)
}

/// Phase 5, on the source, once the target runs: its record, domain, config and disk go, and
/// its console access (the customer's keys and the sudo rule of the source's console user).
pub fn cleanup_command(spec: &NodeSpec, m: &Move) -> String {
    let why = format!("moved to {}", m.to);
    let state = |ext: &str| {
        quote(&node_path(
            &spec.root,
            &format!("var/lib/gitvps/state/{}.{ext}", m.vps),
        ))
    };
    let pre = [format!(
        "rm -f {} {} || exit 1",
        state("json"),
        state("moved")
    )];
    let mut steps = remove_all(m, &m.source, &why).to_vec();
    steps.push(step(
        m,
        &m.source,
        Op::RemoveConsole {
            home: console_home(&spec.root, &m.vps),
            sudoers_path: console_sudoers(&spec.root, &m.vps),
        },
    ));
    phase_command(spec, &pre, &steps)
}

/// Phase 6, on the target: the move is done; its marker goes.
pub fn unmark_command(spec: &NodeSpec, m: &Move) -> String {
    format!("{}rm -f {}", sudo(spec.sudo), quote(&marker(spec, m)))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::desired::{config_path, disk_path};
    use crate::driver::tests::{sh_syntax_ok, shellcheck};
    use crate::moves::Decision;
    use model::values::{Hypervisor, ImageFormat};

    fn spec(name: &str, root: &str, store: Store, hv: Hypervisor) -> NodeSpec {
        NodeSpec {
            node: name.parse().unwrap(),
            address: format!("{name}:22"),
            root: root.into(),
            sudo: true,
            hypervisor: hv,
            accel: None,
            boot_timeout_secs: 0,
            vps_at_once: 1,
            store,
            vps: std::collections::BTreeMap::new(),
        }
    }

    /// The move of `xen10` (64 MiB) from `from` to `to`.
    fn a_move(from: &NodeSpec, to: &NodeSpec) -> Move {
        let id: model::VpsId = "xen10".parse().unwrap();
        Move {
            vps: id.clone(),
            from: from.node.clone(),
            to: to.node.clone(),
            bytes: 64 << 20,
            source: StepPaths {
                disk: disk_path(from, &id),
                config: config_path(from, &id),
            },
            target: StepPaths {
                disk: disk_path(to, &id),
                config: config_path(to, &id),
            },
            record: None,
            resumes: false,
            decision: Decision::Go,
        }
    }

    /// A qcow2 image is received into an emptied file (the source's image file, byte for byte);
    /// a raw image into the fresh sparse one, a logical volume densely.
    #[test]
    fn a_qcow2_image_is_received_into_an_emptied_file() {
        let qcow2 = spec(
            "node2",
            "/srv/node2",
            Store::File {
                dir: "/srv/node2/var/lib/gitvps/disks".into(),
                format: ImageFormat::Qcow2,
            },
            Hypervisor::Kvm,
        );
        let lvm = spec(
            "node1",
            "/srv/node1",
            Store::Lvm { vg: "vg0".into() },
            Hypervisor::Kvm,
        );
        let m = a_move(&lvm, &qcow2);
        assert!(
            recv_command(&qcow2, &m, Codec::Zstd)
                .ends_with(" recv /srv/node2/var/lib/gitvps/disks/xen10.qcow2 zstd image 67108864"),
            "{}",
            recv_command(&qcow2, &m, Codec::Zstd)
        );
        assert!(recv_command(&lvm, &m, Codec::Zstd).ends_with(" zstd dense 67108864"));
    }

    /// Every command of a move, on both kinds of storage and both hypervisors, with roots that
    /// need quoting: valid sh, and each phase's script clean under shellcheck.
    #[test]
    fn every_command_is_valid_quoted_sh() {
        for hv in [Hypervisor::Xen, Hypervisor::Kvm] {
            let from = spec("node1", "/srv/node 1", Store::Lvm { vg: "vg0".into() }, hv);
            let dir = "/srv/it's 2/var/lib/gitvps/disks".to_owned();
            let to = spec(
                "node2",
                "/srv/it's 2",
                Store::File {
                    dir,
                    format: ImageFormat::Raw,
                },
                hv,
            );
            let m = a_move(&from, &to);
            let id = m.vps.clone();
            let v = VpsSpec {
                id: id.clone(),
                state: model::values::State::Active,
                product: "tiny".into(),
                run: true,
                disk_bytes: 64 << 20,
                disk_path: m.target.disk.clone(),
                adopted: false,
                config_path: m.target.config.clone(),
                config: "name = 'xen10'\n".into(),
                config_sha256: "0".repeat(64),
                actions: model::Actions::default(),
                destroyed: None,
                install: None,
                console: None,
                tap: None,
                restore: None,
                iso: None,
                rescue: None,
                rescue_waits: false,
                snapshots: Default::default(),
            };
            let sha = "a".repeat(64);
            for cmd in [
                probe_command(&from, &m),
                probe_command(&to, &m),
                send_command(&from, &m, Codec::Zstd),
                recv_command(&to, &m, Codec::Gzip),
                prepare_command(&to, &m),
                stop_command(&from, &m, 60),
                discard_command(&to, &m),
                restart_command(&from, &m),
                finish_command(&to, &m, &v, &sha),
                cleanup_command(&from, &m),
                unmark_command(&to, &m),
            ] {
                assert!(cmd.starts_with("sudo -n "), "{cmd}");
                sh_syntax_ok(&cmd);
            }
            assert!(recv_command(&to, &m, Codec::Gzip).ends_with(
                " recv '/srv/it'\\''s 2/var/lib/gitvps/disks/xen10.img' gzip sparse 67108864"
            ));
            // The source's console access goes with the rest: no key of the customer's stays
            // on the old node.
            let cleanup = cleanup_command(&from, &m);
            assert!(
                cleanup.contains("/srv/node 1/var/lib/gitvps/console/xen10/.ssh/authorized_keys")
                    && cleanup.contains("/srv/node 1/etc/sudoers.d/gitvps-console-xen10"),
                "{cleanup}"
            );
            let stop = Op::Stop {
                reason: "to move it".into(),
                timeout_secs: 60,
            };
            let pre = [format!("rm -f {}", quote(&marker(&to, &m)))];
            shellcheck(
                &format!("a move's phase ({hv})"),
                &phase_script(&from, &pre, &[step(&m, &m.source, stop)]),
            );
        }
    }
}
