//! Hypervisor drivers: turn planned steps into POSIX sh for the node.
//! Disks, installs, consoles and records are shared; each driver brings its domain steps.

pub mod kvm;
pub mod moving;
pub mod xen;

use std::fmt::Write as _;

use model::values::{Hypervisor, ImageFormat};

use crate::desired::{ConsoleSpec, NodeSpec, Store};
use crate::observe::SCRIPT as OBSERVE;
use crate::plan::{Op, Step};
use crate::{protocol, quote};

pub use crate::protocol::{EXIT_LOCKED, LOCK_WAIT_SECS};

/// The node's ISO cache: one file per ISO, named by its sha256, shared by the node's VPSes.
pub fn iso_cache_dir(root: &str) -> String {
    crate::desired::node_path(root, "var/cache/gitvps/iso")
}

/// Where the ISO with this sha256 is kept on the node.
pub fn iso_path(root: &str, sha256: &model::media::Sha256Hex) -> String {
    format!("{}/{}.iso", iso_cache_dir(root), sha256.as_str())
}

/// Where the cloud image with this sha256 is kept on the node (`method = "cloud-image"`).
pub fn cloud_image_path(root: &str, sha256: &model::media::Sha256Hex) -> String {
    format!(
        "{}/{}.img",
        crate::desired::node_path(root, "var/cache/gitvps/cloud"),
        sha256.as_str()
    )
}

/// The arguments every node script takes: root, backend, store, hypervisor.
pub fn args(root: &str, store: &Store, hv: Hypervisor) -> String {
    let (backend, place) = match store {
        Store::Lvm { vg } => ("lvm", vg.clone()),
        // The observe script adds the root itself.
        Store::File { dir, .. } => (
            "file",
            dir.strip_prefix(root.trim_end_matches('/'))
                .unwrap_or(dir)
                .to_owned(),
        ),
    };
    format!("{} {backend} {} {hv}", quote(root), quote(&place))
}

/// `sudo -n ` when the node's commands need it.
pub(crate) fn sudo(yes: bool) -> &'static str {
    if yes { "sudo -n " } else { "" }
}

/// The start of a command that runs a script under `sh`, through sudo when the node needs
/// it: `exec`, so the login shell hands its process over to it instead of forking once more
/// (the commands that run on every plan and every collection).
fn exec_sh(use_sudo: bool) -> &'static str {
    if use_sudo {
        "exec sudo -n sh -c "
    } else {
        "exec sh -c "
    }
}

/// The node-side shell functions a hypervisor's scripts need, put in front of them.
pub(crate) fn library(hv: Hypervisor) -> &'static str {
    match hv {
        Hypervisor::Xen => "",
        Hypervisor::Kvm => kvm::LIBRARY,
    }
}

/// The observe script for a hypervisor: its library, then `node/observe.sh`.
fn observe_script(hv: Hypervisor) -> String {
    format!("{}{OBSERVE}", library(hv))
}

/// The command that observes a node (no lock), stamped with the control machine's clock
/// `now` (Unix seconds): the fleet runs on one clock, so a node whose clock is off cannot
/// bring a disk's retention forward, and the node runs no `date` for it.
pub fn observe_command(spec: &NodeSpec, now: i64) -> String {
    observe_command_for(&spec.root, &spec.store, spec.hypervisor, spec.sudo, now)
}

/// [`observe_command`] from its parts.
pub fn observe_command_for(
    root: &str,
    store: &Store,
    hv: Hypervisor,
    use_sudo: bool,
    now: i64,
) -> String {
    format!(
        "{}{} gitvps-observe {} {now}",
        exec_sh(use_sudo),
        quote(&observe_script(hv)),
        args(root, store, hv)
    )
}

/// What `gitvps import` adds to the observe script on a KVM node (`node/import-kvm.sh`).
const IMPORT_KVM: &str = include_str!("../../node/import-kvm.sh");

/// The command `gitvps import` runs (read only, no lock, one exec): the observe report; on a
/// KVM node followed by a second line with each running guest's QEMU arguments.
pub fn import_command(spec: &NodeSpec, now: i64) -> String {
    // `long=1`: the observe also prints `xl list -l` (the guests' configs), which only
    // import reads.
    let script = match spec.hypervisor {
        Hypervisor::Xen => format!("long=1\n{}", observe_script(spec.hypervisor)),
        Hypervisor::Kvm => format!("{}{IMPORT_KVM}", observe_script(spec.hypervisor)),
    };
    format!(
        "{}{} gitvps-import {} {now}",
        exec_sh(spec.sudo),
        quote(&script),
        args(&spec.root, &spec.store, spec.hypervisor)
    )
}

/// The usage collect script (`node/collect.sh`), printing the framed document that
/// `gitvps-monitor`'s `report` module reads.
const COLLECT: &str = include_str!("../../node/collect.sh");

/// The collect script for a hypervisor: its library, then `node/collect.sh`.
fn collect_script(hv: Hypervisor) -> String {
    format!("{}{COLLECT}", library(hv))
}

/// The command that collects a node's usage counters (`gitvps monitor`): read only, no lock,
/// one exec.
pub fn collect_command(spec: &NodeSpec) -> String {
    format!(
        "{}{} gitvps-collect {}",
        exec_sh(spec.sudo),
        quote(&collect_script(spec.hypervisor)),
        args(&spec.root, &spec.store, spec.hypervisor)
    )
}

/// The apply command (`node/apply.sh`): takes the node's lock, observes (stamped with `now`,
/// as [`observe_command`]), prints [`Marker::Observed`](crate::protocol::Marker), then reads
/// `go` and the steps script from its input (anything else: it exits without acting).
pub fn apply_command(spec: &NodeSpec, now: i64) -> String {
    format!(
        "{}{} gitvps-apply {} {} {now}",
        exec_sh(spec.sudo),
        quote(&apply_envelope()),
        args(&spec.root, &spec.store, spec.hypervisor),
        quote(&observe_script(spec.hypervisor))
    )
}

/// The apply envelope: the marker variables, then `node/apply.sh`.
fn apply_envelope() -> String {
    format!(
        "{}{}",
        protocol::sh_header(),
        include_str!("../../node/apply.sh")
    )
}

/// The steps as one sh script (`node/steps.sh`, then one function per step); it prints the
/// [`Marker`](crate::protocol::Marker)s `Begin`, then `Ok`, or `Out` lines and `Fail`; after a
/// failure the VPS's later steps print `Skip`, other VPSes go on; `Done` at the end.
pub fn steps_script(spec: &NodeSpec, steps: &[Step]) -> String {
    let mut s = format!(
        "{}{}",
        protocol::sh_header(),
        include_str!("../../node/steps.sh")
    );
    if spec.store.image_format() == Some(ImageFormat::Qcow2) {
        s.push_str(QCOW2_LIBRARY);
    }
    s.push_str(library(spec.hypervisor));
    if steps.iter().any(|st| {
        matches!(&st.op, Op::Install { spec } | Op::Reinstall { spec, .. } if spec.cloud.is_some())
    }) {
        s.push_str(CLOUD_LIBRARY);
    }
    if steps
        .iter()
        .any(|st| matches!(st.op, Op::CheckBackup { .. } | Op::Restore { .. }))
    {
        s.push_str(&crate::backup::steps_prelude(spec.hypervisor));
    }
    // One listing for the checks of every step that needs it, instead of one tool call each.
    if let Store::Lvm { vg } = &spec.store
        && steps
            .iter()
            .any(|st| matches!(st.op, Op::CreateDisk { .. } | Op::RemoveDisk { .. }))
    {
        let _ = writeln!(s, "lv_list {}", quote(vg));
    }
    if spec.hypervisor == Hypervisor::Xen && steps.iter().any(|st| st.op == Op::Start) {
        s.push_str("dom_list\n");
    }
    for (i, step) in steps.iter().enumerate() {
        let _ = writeln!(s, "s{i}() {{");
        for line in step_lines(spec, step) {
            let _ = writeln!(s, "  {line}");
        }
        if let Some(rec) = &step.record {
            let _ = writeln!(
                s,
                "  record {} {} || return 1",
                quote(step.vps.as_str()),
                quote(&rec.to_json())
            );
        }
        let _ = writeln!(s, "}}");
    }
    // One group per VPS (its steps in plan order), run side by side up to the node's bound:
    // first the groups that free something (stop, destroy, remove), then the others; the
    // node's own steps last, one after another.
    let mut groups: Vec<(&model::VpsId, Vec<usize>)> = Vec::new();
    for (i, step) in steps.iter().enumerate().filter(|(_, s)| !s.op.of_node()) {
        match groups.iter_mut().find(|(v, _)| *v == &step.vps) {
            Some((_, ix)) => ix.push(i),
            None => groups.push((&step.vps, vec![i])),
        }
    }
    let frees = |ix: &[usize]| {
        ix.iter().any(|&i| {
            matches!(
                steps[i].op,
                Op::Stop { .. }
                    | Op::Destroy { .. }
                    | Op::RemoveConfig
                    | Op::RemoveDisk { .. }
                    | Op::RemoveConsole { .. }
            )
        })
    };
    for (g, (_, ix)) in groups.iter().enumerate() {
        let _ = writeln!(s, "g{g}() {{");
        for &i in ix {
            let _ = writeln!(s, "  run {i} {} s{i}", steps[i].vps);
        }
        let _ = writeln!(s, "}}");
    }
    let _ = writeln!(s, "AT_ONCE={}", spec.vps_at_once.max(1));
    for phase in [true, false] {
        for (g, (_, ix)) in groups.iter().enumerate() {
            if frees(ix) == phase {
                let _ = writeln!(s, "group g{g}");
            }
        }
        s.push_str("finish\n");
    }
    let node_steps: Vec<usize> = (0..steps.len())
        .filter(|&i| steps[i].op.of_node())
        .collect();
    for &i in &node_steps {
        let _ = writeln!(s, "node_step {i} s{i}");
    }
    if !node_steps.is_empty() {
        s.push_str("[ \"$failed\" = \" \" ] || bad=1\n");
    }
    s.push_str("echo \"$M_DONE\"\n[ \"$bad\" = 0 ]\n");
    s
}

/// The steps script's functions for qcow2 images. e2fsprogs cannot read qcow2: a step that
/// works on the filesystem converts the image to a sparse raw copy beside it
/// (`IMAGE.raw-tmp`), works on that, converts it back into `IMAGE.new` and renames that over
/// the image. A failure at any point leaves the image as it was, and no temporary stays.
const QCOW2_LIBRARY: &str = include_str!("../../node/qcow2.sh");

/// The steps script's function for cloud images (`cloud_write`): checked, written and grown
/// with `qemu-img`.
const CLOUD_LIBRARY: &str = include_str!("../../node/cloud.sh");

/// The temporary raw copy of a qcow2 image the steps work on.
fn raw_tmp(disk: &str) -> String {
    format!("{disk}.raw-tmp")
}

/// Builds the OS in a folder with the shipped bootstrap scripts, then writes it into the disk
/// with `mke2fs -d` (no mount, no loop device). The build folders stay for inspection when a
/// script fails; the next attempt starts from scratch.
///
/// A qcow2 disk gets a raw file of its virtual size, made the same way, stored as the qcow2
/// image; the guest's kernel and initrd are taken from it at the same time into the guest's
/// run folder (`boot-vmlinuz`, `boot-initrd.img`), where starts copy them from.
fn install_lines(
    disk_path: &str,
    qcow2_run: Option<&str>,
    spec: &crate::desired::InstallSpec,
) -> Vec<String> {
    install_lines_labelled(disk_path, qcow2_run, spec, "gitvps-root")
}

/// [`install_lines`] with the root filesystem's label.
fn install_lines_labelled(
    disk_path: &str,
    qcow2_run: Option<&str>,
    spec: &crate::desired::InstallSpec,
    label: &str,
) -> Vec<String> {
    let disk = quote(disk_path);
    let ship = quote(&spec.ship_dir);
    let build = quote(&spec.build_dir);
    let mut lines = vec![format!("disk_free {disk} || return 1")];
    if qcow2_run.is_some() {
        lines.push("q2_need || return $?".into());
    }
    lines.push(format!(
        "rm -rf {ship} {build} && mkdir -p {ship} {build} || return 1"
    ));
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
    match qcow2_run {
        None => lines.push(format!(
            "mke2fs -q -F -t ext4 -L {label} -d {build} {disk} || return 1",
            label = quote(label)
        )),
        Some(run) => {
            let tmp = quote(&raw_tmp(disk_path));
            lines.extend([
                format!("size=$(q2_size {disk}) || return 1"),
                format!(
                    "rm -f {tmp} && truncate -s \"$size\" {tmp} || {{ rm -f {tmp}; return 1; }}"
                ),
                format!(
                    "mke2fs -q -F -t ext4 -L gitvps-root -d {build} {tmp} || {{ rm -f {tmp}; return 1; }}"
                ),
                format!(
                    "kvm_store_kernel {tmp} {} || {{ rm -f {tmp}; return 1; }}",
                    quote(run)
                ),
                format!("q2_pack {disk} || return 1"),
            ]);
        }
    }
    lines.push(format!("rm -rf {ship} {build}"));
    lines
}

/// A rescue system's image: the rescue OS built with the shipped bootstraps (through the node's
/// root cache) into a sparse raw file beside the final one, labelled `gitvps-rescue`, renamed
/// into place when whole. The VPS's disk is named nowhere in these lines.
fn rescue_lines(r: &crate::desired::RescueSpec) -> Vec<String> {
    let tmp = format!("{}.tmp", r.image);
    let q = quote(&tmp);
    let dir = quote(r.image.rsplit_once('/').map_or("/", |(d, _)| d));
    let mut lines = vec![format!(
        "mkdir -p {dir} && rm -f {q} && truncate -s {} {q} || return 1",
        crate::desired::RESCUE_IMAGE_BYTES
    )];
    // A failed build leaves the temporary file (never booted: observe lists `*.img` only),
    // which the next attempt starts by removing.
    lines.extend(install_lines_labelled(
        &tmp,
        None,
        &r.install,
        crate::desired::RESCUE_LABEL,
    ));
    lines.push(format!("mv -f {q} {} || return 1", quote(&r.image)));
    lines
}

/// How the node scripts name a store's disks: `lvm`, `raw` or `qcow2`.
fn disk_kind(store: &Store) -> &'static str {
    match store.image_format() {
        None => "lvm",
        Some(ImageFormat::Raw) => "raw",
        Some(ImageFormat::Qcow2) => "qcow2",
    }
}

/// A cloud image install (`node/cloud.sh`'s `cloud_write`): the image fetched into the node's
/// cache and checked (as an ISO is), the seed written beside the guest's run files, then the
/// image written onto the disk and grown to its size. A guest booting the image's own kernel
/// from a qcow2 disk gets it stored, as after an install.
fn cloud_lines(spec: &NodeSpec, step: &Step, c: &crate::desired::CloudSpec) -> Vec<String> {
    let disk = quote(&step.target.disk);
    let seed = quote(&c.seed_dir);
    let new = quote(&format!("{}.new", c.seed_dir));
    let kind = disk_kind(&spec.store);
    let mut lines = vec![
        format!("disk_free {disk} || return 1"),
        format!(
            "fetch_iso {} {} {} {} || return 1",
            quote(&c.url),
            quote(&c.sha256),
            c.max_bytes,
            quote(&c.path)
        ),
        format!("rm -rf {new} && mkdir -p {new} || return 1"),
    ];
    for (name, content) in &c.seed {
        lines.push(format!(
            "printf '%s' {} >{} || return 1",
            quote(content),
            quote(&format!("{}.new/{name}", c.seed_dir))
        ));
    }
    lines.push(format!("rm -rf {seed} && mv {new} {seed} || return 1"));
    // A qcow2 disk's kernel cannot be read at start: it is stored now, as after an install.
    let run = if kind == "qcow2" && c.kernel_boot {
        quote(&kvm::run_dir(&spec.root, &step.vps))
    } else {
        "''".into()
    };
    lines.push(format!(
        "cloud_write {} {} {disk} {kind} {} {run} || return $?",
        quote(&c.path),
        quote(&c.format),
        c.disk_bytes
    ));
    lines
}

/// The sh lines of one step. Each line stands alone; failures `return`.
fn step_lines(spec: &NodeSpec, step: &Step) -> Vec<String> {
    if spec.store.image_format() == Some(ImageFormat::Qcow2)
        && let Some(lines) = qcow2_lines(spec, step)
    {
        return lines;
    }
    if let Some(lines) =
        crate::snapshot::lines(&spec.store, step.vps.as_str(), &step.target.disk, &step.op)
    {
        return lines;
    }
    let disk = DiskAt {
        store: &spec.store,
        vps: step.vps.as_str(),
        path: quote(&step.target.disk),
    };
    match &step.op {
        Op::CreateDisk { bytes } => vec![disk.create(*bytes)],
        Op::GrowDisk { to, resize_fs, .. } => disk.grow(*to, *resize_fs),
        Op::Fsck { .. } => vec![format!("disk_free {} || return 1", disk.path), disk.fsck()],
        Op::RemoveDisk { .. } => disk.remove(),
        Op::Install { spec: i } | Op::Reinstall { spec: i, .. } => match &i.cloud {
            Some(c) => cloud_lines(spec, step, c),
            None => install_lines(&step.target.disk, None, i),
        },
        Op::Record { .. } => vec![":".into()],
        Op::BuildRescue { rescue } => rescue_lines(rescue),
        Op::DropRescue { images } => images
            .iter()
            .flat_map(|i| {
                let i = quote(i);
                [
                    format!("disk_free {i} || return 1"),
                    format!("rm -f {i} || return 1"),
                ]
            })
            .collect(),
        Op::FetchIso { iso } => vec![format!(
            "fetch_iso {} {} {} {}",
            quote(&iso.url),
            quote(&iso.sha256),
            iso.max_bytes,
            quote(&iso.path)
        )],
        Op::RemoveIso { path, .. } => vec![
            format!("unheld ISO {} || return 1", quote(path)),
            format!("rm -f {} || return 1", quote(path)),
        ],
        Op::CheckBackup { restore, max_bytes } => vec![crate::backup::step_line(
            &spec.root, restore, *max_bytes, None,
        )],
        Op::Restore { restore, max_bytes } => restore_lines(spec, step, restore, *max_bytes),
        Op::WriteConsole { spec, .. } => console_lines(step.vps.as_str(), spec),
        Op::RemoveConsole { home, sudoers_path } => vec![format!(
            "rm -f {} {} || return 1",
            quote(&format!("{home}/.ssh/authorized_keys")),
            quote(sudoers_path)
        )],
        Op::WriteConfig { content, .. } => {
            domain_lines(spec, step, DomainOp::WriteConfig { content })
        }
        Op::Start => domain_lines(spec, step, DomainOp::Start),
        Op::Stop { timeout_secs, .. } => domain_lines(
            spec,
            step,
            DomainOp::Stop {
                timeout_secs: *timeout_secs,
            },
        ),
        Op::Destroy { .. } => domain_lines(spec, step, DomainOp::Destroy),
        Op::Reboot { .. } => domain_lines(spec, step, DomainOp::Reboot),
        Op::RestoreFilter => domain_lines(spec, step, DomainOp::RestoreFilter),
        Op::RemoveConfig => domain_lines(spec, step, DomainOp::RemoveConfig),
        // Raw image files have no snapshots (validation refuses them): fail, saying so.
        Op::TakeSnapshot { .. } | Op::RevertSnapshot { .. } | Op::DeleteSnapshot { .. } => {
            vec!["echo 'gitvps: snapshots need LVM storage or qcow2 images' >&2; return 1".into()]
        }
    }
}

/// The restore of a backup onto the stopped disk (`node/backup.sh`'s `restore`). A KVM guest on
/// a qcow2 image gets the kernel it boots from the restored disk, as after an install.
fn restore_lines(
    spec: &NodeSpec,
    step: &Step,
    r: &crate::desired::RestoreSpec,
    max_bytes: u64,
) -> Vec<String> {
    let disk = quote(&step.target.disk);
    let kind = disk_kind(&spec.store);
    let mut lines = vec![
        format!("disk_free {disk} || return 1"),
        crate::backup::step_line(
            &spec.root,
            r,
            max_bytes,
            Some((step.target.disk.as_str(), kind)),
        ),
    ];
    if kind == "qcow2" && spec.hypervisor == Hypervisor::Kvm {
        let tmp = quote(&raw_tmp(&step.target.disk));
        lines.extend([
            format!("q2_unpack {disk} || return 1"),
            format!(
                "kvm_store_kernel {tmp} {} || {{ rm -f {tmp}; return 1; }}",
                quote(&kvm::run_dir(&spec.root, &step.vps))
            ),
            format!("rm -f {tmp}"),
        ]);
    }
    lines
}

/// A raw disk (a logical volume or an image file) and the sh that works on it.
struct DiskAt<'a> {
    store: &'a Store,
    vps: &'a str,
    /// The quoted path.
    path: String,
}

impl DiskAt<'_> {
    /// The quoted `vg/lv` of the disk on LVM.
    fn lv(&self, vg: &str) -> String {
        quote(&format!("{vg}/{}", self.vps))
    }

    fn fsck(&self) -> String {
        format!(
            "e2fsck -f -p {}; rc=$?; [ $rc -le 2 ] || return $rc",
            self.path
        )
    }

    fn create(&self, bytes: u64) -> String {
        let disk = &self.path;
        match self.store {
            // `has_lv`: the run's one listing (`node/steps.sh`).
            Store::Lvm { vg } => format!(
                "if ! has_lv {vg_w} {lv}; then lvcreate -y -L {bytes}b -n {lv} {vg_w} || return 1; lv_made {lv}; fi",
                vg_w = quote(vg),
                lv = quote(self.vps),
            ),
            Store::File { dir, .. } => format!(
                // Raw images: qemu-img where installed, else a sparse file is the same thing.
                "if [ ! -e {disk} ]; then mkdir -p {} && if command -v qemu-img >/dev/null 2>&1; then qemu-img create -q -f raw {disk} {bytes}; else truncate -s {bytes} {disk}; fi || return 1; fi",
                quote(dir)
            ),
        }
    }

    fn grow(&self, to: u64, resize_fs: bool) -> Vec<String> {
        let disk = &self.path;
        let grow = match self.store {
            Store::Lvm { vg } => format!(
                "cur=$(lvs --noheadings --units b --nosuffix -o lv_size {} | tr -d ' ') || return 1\n  if [ \"$cur\" -lt {to} ]; then lvextend -L {to}b {} || return 1; fi",
                self.lv(vg),
                self.lv(vg)
            ),
            Store::File { .. } => format!(
                "if [ \"$(stat -c %s {disk})\" -lt {to} ]; then if command -v qemu-img >/dev/null 2>&1; then qemu-img resize -q -f raw {disk} {to}; else truncate -s {to} {disk}; fi || return 1; fi"
            ),
        };
        let mut lines = vec![format!("disk_free {disk} || return 1"), grow];
        if resize_fs {
            lines.push(self.fsck());
            lines.push(format!("resize2fs {disk} || return 1"));
        }
        lines
    }

    fn remove(&self) -> Vec<String> {
        let disk = &self.path;
        let remove = match self.store {
            Store::Lvm { vg } => format!(
                "if has_lv {} {}; then lvremove -f {} || return 1; lv_gone {}; fi",
                quote(vg),
                quote(self.vps),
                self.lv(vg),
                quote(self.vps)
            ),
            Store::File { .. } => format!("rm -f {disk} || return 1"),
        };
        vec![format!("disk_free {disk} || return 1"), remove]
    }
}

/// The console user of a VPS: its account, its keys and its one sudo rule.
fn console_lines(vps: &str, spec: &ConsoleSpec) -> Vec<String> {
    let name = quote(vps);
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

/// What a hypervisor does to a domain: each driver matches every one of these, so an
/// operation a driver cannot carry out does not compile.
#[derive(Debug, Clone, Copy)]
pub enum DomainOp<'a> {
    /// Write the domain's config (xl.cfg, or QEMU's arguments).
    WriteConfig {
        /// The config text.
        content: &'a str,
    },
    /// Start the domain.
    Start,
    /// Shut it down, destroying it after the timeout.
    Stop {
        /// Seconds to wait for a clean shutdown.
        timeout_secs: u32,
    },
    /// Destroy it at once.
    Destroy,
    /// Reboot it.
    Reboot,
    /// Put back the network filter of a running guest.
    RestoreFilter,
    /// Remove its config (and run folder).
    RemoveConfig,
}

/// The lines of a domain operation, from the node's driver.
fn domain_lines(spec: &NodeSpec, step: &Step, op: DomainOp<'_>) -> Vec<String> {
    match spec.hypervisor {
        Hypervisor::Xen => xen::domain_lines(&spec.root, step, op),
        Hypervisor::Kvm => kvm::domain_lines(spec, step, op),
    }
}

/// The disk steps of a qcow2 image (`None`: the step is not about the disk). Every step that
/// writes the image writes a new one beside it and renames it over the old one (a copy of the
/// image when it holds internal snapshots, which stay); the snapshot steps are
/// [`crate::snapshot::qcow2_lines`].
fn qcow2_lines(spec: &NodeSpec, step: &Step) -> Option<Vec<String>> {
    let disk = quote(&step.target.disk);
    let tmp = quote(&raw_tmp(&step.target.disk));
    let run = kvm::run_dir(&spec.root, &step.vps);
    let check = [
        format!("disk_free {disk} || return 1"),
        "q2_need || return $?".to_owned(),
    ];
    let fsck_tmp =
        format!("e2fsck -f -p {tmp}; rc=$?; if [ $rc -gt 2 ]; then rm -f {tmp}; return $rc; fi");
    Some(match &step.op {
        Op::CreateDisk { bytes } => {
            let dir = match &spec.store {
                Store::File { dir, .. } => dir.as_str(),
                Store::Lvm { .. } => return None,
            };
            vec![
                "q2_need || return $?".to_owned(),
                format!(
                    "if [ ! -e {disk} ]; then mkdir -p {} && qemu-img create -q -f qcow2 {disk} {bytes} || return 1; fi",
                    quote(dir)
                ),
            ]
        }
        Op::GrowDisk { to, resize_fs, .. } => {
            let mut lines = check.to_vec();
            lines.push(format!("cur=$(q2_size {disk}) || return 1"));
            if *resize_fs {
                // Grown and resized on the raw copy: the image changes once, at the end. An
                // image with internal snapshots is grown by qemu-img first (the raw copy goes
                // back into it, keeping the snapshots, and needs its size).
                lines.extend([
                    format!(
                        "if [ \"$cur\" -lt {to} ] && [ \"$(q2_nsnap {disk})\" -gt 0 ]; then qemu-img resize -q -f qcow2 {disk} {to} || return 1; fi"
                    ),
                    format!("q2_unpack {disk} || return 1"),
                    format!(
                        "if [ \"$cur\" -lt {to} ]; then truncate -s {to} {tmp} || {{ rm -f {tmp}; return 1; }}; fi"
                    ),
                    fsck_tmp,
                    format!("resize2fs {tmp} || {{ rm -f {tmp}; return 1; }}"),
                    format!("q2_pack {disk} || return 1"),
                ]);
            } else {
                lines.push(format!(
                    "if [ \"$cur\" -lt {to} ]; then qemu-img resize -q -f qcow2 {disk} {to} || return 1; fi"
                ));
            }
            lines
        }
        Op::Fsck { .. } => {
            let mut lines = check.to_vec();
            lines.extend([
                format!("q2_unpack {disk} || return 1"),
                fsck_tmp,
                // The kernel the guest boots is refreshed from the disk (best effort: the
                // filesystem check is what was asked for).
                format!(
                    "kvm_store_kernel {tmp} {} || echo 'gitvps: the stored guest kernel was not refreshed' >&2",
                    quote(&run)
                ),
                format!("q2_pack {disk} || return 1"),
            ]);
            lines
        }
        Op::Install { spec: install } | Op::Reinstall { spec: install, .. } => {
            match &install.cloud {
                Some(c) => cloud_lines(spec, step, c),
                None => install_lines(&step.target.disk, Some(&run), install),
            }
        }
        Op::RemoveDisk { .. } => vec![
            format!("disk_free {disk} || return 1"),
            format!("rm -f {disk} || return 1"),
        ],
        op @ (Op::TakeSnapshot { .. } | Op::DeleteSnapshot { .. } | Op::RevertSnapshot { .. }) => {
            crate::snapshot::qcow2_lines(&run, &step.target.disk, op)?
        }
        _ => return None,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::observe::Record;
    use crate::plan::StepPaths;

    fn step(op: Op, record: Option<Record>) -> Step {
        Step {
            vps: "xen02".parse().unwrap(),
            op,
            record,
            target: StepPaths {
                disk: "/srv/node 1/dev/vg0/xen02".into(),
                config: "/srv/node 1/etc/xen/gitvps/xen02.cfg".into(),
            },
        }
    }

    fn restore_spec() -> crate::desired::RestoreSpec {
        crate::desired::RestoreSpec {
            generation: 1,
            snapshot: "0123abcd".into(),
            from: "xen01".parse().unwrap(),
            repo: crate::backup::RepoAccess::of(&model::backup::Repository::Local {
                path: "/srv/backup".parse().unwrap(),
            }),
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
                        cloud: None,
                    }),
                },
                None,
            ),
            step(
                Op::Install {
                    spec: Box::new(crate::desired::InstallSpec {
                        os: "debian-12-cloud".into(),
                        appliance: None,
                        ship_dir: "/srv/node 1/var/lib/gitvps/bootstraps/xen02".into(),
                        build_dir: "/srv/node 1/var/lib/gitvps/build/xen02".into(),
                        files: Vec::new(),
                        exports: String::new(),
                        cloud: Some(crate::desired::CloudSpec {
                            url: "https://example.net/it's.qcow2".into(),
                            sha256: "ab".repeat(32),
                            max_bytes: 1 << 30,
                            format: "qcow2".into(),
                            path: "/srv/node 1/var/cache/gitvps/cloud/x.img".into(),
                            kernel_boot: true,
                            seed_dir: "/srv/node 1/var/lib/gitvps/seed/xen02".into(),
                            instance_id: "gitvps-xen02-0".into(),
                            seed: vec![("user-data".into(), "#cloud-config\nfqdn: \"it's\"\n".into())],
                            disk_bytes: 20 << 30,
                        }),
                    }),
                },
                None,
            ),
            step(
                Op::CheckBackup {
                    restore: Box::new(restore_spec()),
                    max_bytes: 1 << 30,
                },
                None,
            ),
            step(
                Op::Restore {
                    restore: Box::new(restore_spec()),
                    max_bytes: 1 << 30,
                },
                Some(Record {
                    restore: 1,
                    installed: true,
                    ..Record::default()
                }),
            ),
            step(Op::Record { note: "x".into() }, Some(Record::default())),
            step(
                Op::BuildRescue {
                    rescue: Box::new(crate::desired::RescueSpec {
                        name: "xen02.0123456789ab".into(),
                        image: "/srv/node 1/var/lib/gitvps/rescue/xen02.0123456789ab.img".into(),
                        install: crate::desired::InstallSpec {
                            os: "debian-12".into(),
                            appliance: None,
                            ship_dir: "/srv/node 1/var/lib/gitvps/rescue/ship/xen02".into(),
                            build_dir: "/srv/node 1/var/lib/gitvps/rescue/build/xen02".into(),
                            files: vec![("bootstraps/lib/install".into(), "#!/bin/sh\necho 'hi'\n".into())],
                            exports: "export OS_ID='debian-12'\nexport VPS_ROOT_LABEL='gitvps-rescue'\n".into(),
                            cloud: None,
                        },
                    }),
                },
                None,
            ),
            step(
                Op::DropRescue {
                    images: vec!["/srv/node 1/var/lib/gitvps/rescue/xen02.0123456789ab.img".into()],
                },
                None,
            ),
            step(Op::RestoreFilter, None),
            step(Op::RemoveConfig, None),
            step(Op::RemoveDisk { reason: "x".into() }, None),
            step(
                Op::TakeSnapshot {
                    name: "before".into(),
                    cow_bytes: 4 << 20,
                },
                None,
            ),
            step(
                Op::RevertSnapshot {
                    name: "before".into(),
                    generation: 1,
                    cow_bytes: 4 << 20,
                },
                Some(Record {
                    revert: 1,
                    ..Record::default()
                }),
            ),
            step(
                Op::DeleteSnapshot {
                    name: "before".into(),
                },
                None,
            ),
            Step {
                vps: "node1".parse().unwrap(),
                ..step(
                    Op::RemoveIso {
                        sha256: "ab".repeat(32),
                        path: format!("/srv/node 1/var/cache/gitvps/iso/{}.iso", "ab".repeat(32)),
                    },
                    None,
                )
            },
        ]
    }

    fn node(root: &str, store: Store, hypervisor: Hypervisor, sudo: bool) -> NodeSpec {
        NodeSpec {
            node: "n1".parse().unwrap(),
            address: "192.0.2.1:22".into(),
            root: root.into(),
            sudo,
            hypervisor,
            accel: None,
            boot_timeout_secs: 300,
            vps_at_once: 4,
            store,
            vps: std::collections::BTreeMap::new(),
        }
    }

    pub(crate) fn sh_syntax_ok(script: &str) {
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
                format: ImageFormat::Raw,
            },
            Store::File {
                dir: format!("{root}/var/lib/gitvps/disks"),
                format: ImageFormat::Qcow2,
            },
        ] {
            for hv in [Hypervisor::Xen, Hypervisor::Kvm] {
                sh_syntax_ok(&steps_script(
                    &node(root, store.clone(), hv, false),
                    &every_op(),
                ));
            }
            let script = steps_script(&node(root, store, Hypervisor::Xen, false), &every_op());
            // The hostile config text only ever appears inside single quotes.
            let quoted = "'name = \"xen02\"\n# it'\\''s '\\''; rm -rf / #\n'";
            assert!(script.contains(quoted), "{script}");
        }
        // The scripts themselves are snapshots in the_apply_scripts_of_every_hypervisor_and_store.
    }

    /// The steps runtime as a node runs it: a step whose output ends without a newline (a
    /// console's last line) and fails still reports its `fail` marker on a line of its own, and
    /// its VPS's next step is skipped.
    /// Runs the steps runtime (`node/steps.sh`) with `body` after it, as a node does; returns
    /// the markers, the whole output and whether the script succeeded.
    fn run_steps(body: &str) -> (Vec<crate::protocol::Marker>, String, bool) {
        let script = format!(
            "{}{}{body}",
            crate::protocol::sh_header(),
            include_str!("../../node/steps.sh")
        );
        let out = std::process::Command::new("sh")
            .args(["-c", &script, "gitvps-steps", "/"])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let markers = text
            .lines()
            .filter_map(crate::protocol::Marker::parse)
            .collect();
        (markers, text, out.status.success())
    }

    /// Serves `body` at `/x.iso` and a redirect to `file:///etc/passwd` at `/redir`, over HTTP
    /// on loopback, one connection after another; returns the base URL.
    fn serve_iso(body: Vec<u8>) -> String {
        use std::io::{BufRead, BufReader, Write};
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", l.local_addr().unwrap());
        std::thread::spawn(move || {
            for c in l.incoming() {
                let Ok(mut c) = c else { continue };
                let mut line = String::new();
                let mut r = BufReader::new(c.try_clone().unwrap());
                let _ = r.read_line(&mut line);
                loop {
                    let mut h = String::new();
                    if r.read_line(&mut h).unwrap_or(0) == 0 || h.trim().is_empty() {
                        break;
                    }
                }
                if line.contains("/redir") {
                    let _ = c.write_all(
                        b"HTTP/1.1 302 Found\r\nLocation: file:///etc/passwd\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                    );
                } else {
                    let _ = write!(
                        c,
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        body.len()
                    );
                    let _ = c.write_all(&body);
                }
            }
        });
        base
    }

    /// `fetch_iso` with the node's real curl against a real HTTP server: the right ISO is kept
    /// under its sha256; a wrong sha256 (both sums named), an ISO over the bound, a redirect to
    /// `file:` and an unreachable URL each fail with the reason and keep nothing.
    #[test]
    fn fetch_iso_keeps_only_a_checked_iso_within_its_bound_over_http() {
        use crate::protocol::Marker;
        let body = b"not really an ISO, but bytes all the same\n".repeat(100);
        let sha = crate::desired::sha256_hex(std::str::from_utf8(&body).unwrap());
        let wrong = "0".repeat(64);
        let base = serve_iso(body.clone());
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let dir = tempfile::tempdir().unwrap();
        let at = |n: &str| dir.path().join(format!("cache/{n}.iso"));
        let q = |p: &std::path::Path| quote(p.to_str().unwrap());
        let n = body.len();
        let script = format!(
            "s0() {{ fetch_iso '{base}/x.iso' {sha} {n} {}; }}\n\
             s1() {{ fetch_iso '{base}/x.iso' {wrong} {n} {}; }}\n\
             s2() {{ fetch_iso '{base}/x.iso' {sha} 10 {}; }}\n\
             s3() {{ fetch_iso '{base}/redir' {sha} {n} {}; }}\n\
             s4() {{ fetch_iso 'http://{closed}/x.iso' {sha} {n} {}; }}\n\
             s5() {{ fetch_iso '{base}/x.iso' {sha} {n} {}; }}\n\
             run 0 a s0\nrun 1 b s1\nrun 2 c s2\nrun 3 d s3\nrun 4 e s4\nrun 5 f s5\necho \"$M_DONE\"\n",
            q(&at("good")),
            q(&at("wrong")),
            q(&at("big")),
            q(&at("redir")),
            q(&at("closed")),
            q(&at("good")),
        );
        let (markers, text, _) = run_steps(&script);
        assert!(markers.contains(&Marker::Ok(0)), "{text}");
        assert_eq!(std::fs::read(at("good")).unwrap(), body);
        // Fetched again into the cache: checked and kept.
        assert!(markers.contains(&Marker::Ok(5)), "{text}");
        for (step, name, why) in [
            (
                1,
                "wrong",
                format!("sha256 mismatch for {base}/x.iso: expected {wrong}, got {sha}"),
            ),
            (2, "big", "is larger than 10 bytes: refused".to_owned()),
            (3, "redir", "Protocol \"file\" not supported".to_owned()),
            (4, "closed", "Failed to connect".to_owned()),
        ] {
            assert!(
                markers
                    .iter()
                    .any(|m| matches!(m, Marker::Fail { step: s, .. } if *s == step)),
                "step {step}: {text}"
            );
            assert!(text.contains(&why), "step {step}: no `{why}` in {text}");
            assert!(!at(name).exists(), "{name} kept");
            assert!(!dir.path().join(format!("cache/{name}.iso.part")).exists());
        }
    }

    /// The removal of cached ISOs, run by the node's real sh against real files: it comes
    /// after the VPSes' groups; a free ISO goes; one a process holds open stays, the step
    /// failing with the pid; after a VPS's failed step the removals are skipped.
    #[test]
    fn cached_isos_go_after_the_vps_steps_unless_held_or_a_vps_failed() {
        use crate::protocol::Marker;
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_str().unwrap();
        let spec = node(
            root,
            Store::Lvm { vg: "vg0".into() },
            Hypervisor::Xen,
            false,
        );
        let cache = |h: &str| dir.path().join(format!("var/cache/gitvps/iso/{h}.iso"));
        let remove = |h: &str| Step {
            vps: "node1".parse().unwrap(),
            ..step(
                Op::RemoveIso {
                    sha256: h.to_owned(),
                    path: cache(h).to_str().unwrap().to_owned(),
                },
                None,
            )
        };
        let (free, held) = ("ab".repeat(32), "cd".repeat(32));
        std::fs::create_dir_all(cache("x").parent().unwrap()).unwrap();
        for h in [&free, &held] {
            std::fs::write(cache(h), "iso").unwrap();
        }
        let mut holder = std::process::Command::new("sleep")
            .arg("60")
            .stdin(std::fs::File::open(cache(&held)).unwrap())
            .spawn()
            .unwrap();
        let run = |steps: &[Step]| {
            let script = steps_script(&spec, steps);
            let out = std::process::Command::new("sh")
                .args(["-c", &script, "gitvps-steps", root])
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            let markers: Vec<Marker> = text.lines().filter_map(Marker::parse).collect();
            (script, markers, text, out.status.success())
        };
        // A VPS's step first in the plan: the node's steps still run after every group.
        let record = step(Op::Record { note: "x".into() }, Some(Record::default()));
        let (script, markers, text, ok) = run(&[remove(&held), record.clone(), remove(&free)]);
        let (g, n) = (
            script.find("group g0").unwrap(),
            script.find("node_step 0 s0").unwrap(),
        );
        assert!(g < n && script.contains("node_step 2 s2"), "{script}");
        assert!(
            markers.contains(&Marker::Ok(1)) && markers.contains(&Marker::Ok(2)),
            "{text}"
        );
        assert!(!cache(&free).exists());
        assert!(markers.contains(&Marker::Fail { step: 0, rc: 1 }), "{text}");
        let why = format!(
            "the ISO {} is in use by process {} (sleep): not touching it",
            cache(&held).display(),
            holder.id()
        );
        assert!(text.contains(&why), "no `{why}` in {text}");
        assert!(cache(&held).exists());
        assert!(!ok, "a held ISO fails the apply");
        // Let go of it: a VPS's failed step (`xl` is not here) skips the removal all the same.
        holder.kill().unwrap();
        holder.wait().unwrap();
        let (_, markers, text, ok) = run(&[step(Op::Start, None), remove(&held)]);
        assert!(
            matches!(markers.first(), Some(Marker::Begin(0))) && markers.contains(&Marker::Skip(1)),
            "{text}"
        );
        assert!(cache(&held).exists() && !ok);
        // With every VPS's step done, it goes.
        let (_, markers, text, ok) = run(&[record, remove(&held)]);
        assert!(markers.contains(&Marker::Ok(1)) && ok, "{text}");
        assert!(!cache(&held).exists());
    }

    #[test]
    fn a_failing_step_is_reported_even_when_its_output_lacks_a_final_newline() {
        use crate::protocol::Marker;
        let (markers, text, _) = run_steps(
            "s0() { printf 'login: '; return 3; }\ns1() { :; }\nrun 0 v s0\nrun 1 v s1\necho \"$M_DONE\"\n",
        );
        assert_eq!(
            markers,
            [
                Marker::Begin(0),
                Marker::Out {
                    step: 0,
                    text: "login: ".into()
                },
                Marker::Fail { step: 0, rc: 3 },
                Marker::Skip(1),
                Marker::Done,
            ],
            "{text}"
        );
    }

    /// Groups of different VPSes run side by side: the second VPS's step finishes while the
    /// first's is still running; the first VPS's failure skips only its own later step; the
    /// script ends with `done` and a non-zero status.
    #[test]
    fn groups_of_vpses_run_side_by_side_and_fail_alone() {
        use crate::protocol::Marker;
        let (markers, text, ok) = run_steps(
            "s0() { sleep 1; echo oops; return 2; }\ns1() { :; }\ns2() { :; }\ng0() {\n  run 0 a s0\n  run 1 a s1\n}\ng1() {\n  run 2 b s2\n}\nAT_ONCE=4\ngroup g0\ngroup g1\nfinish\necho \"$M_DONE\"\n[ \"$bad\" = 0 ]\n",
        );
        let at = |m: &Marker| markers.iter().position(|x| x == m);
        let fail = Marker::Fail { step: 0, rc: 2 };
        assert!(at(&Marker::Ok(2)) < at(&fail), "not side by side:\n{text}");
        for m in [
            Marker::Begin(0),
            Marker::Out {
                step: 0,
                text: "oops".into(),
            },
            fail.clone(),
            Marker::Skip(1),
            Marker::Done,
        ] {
            assert!(at(&m).is_some(), "no {m:?} in:\n{text}");
        }
        assert_eq!(markers.last(), Some(&Marker::Done), "{text}");
        assert!(!ok);
    }

    /// Runs shellcheck (Debian's `shellcheck`, which the test command installs) on a script;
    /// warnings and errors fail.
    pub(crate) fn shellcheck(what: &str, script: &str) {
        let out = std::process::Command::new("shellcheck")
            .args(["-s", "sh", "-S", "warning", "-"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .and_then(|mut c| {
                use std::io::Write as _;
                c.stdin.take().unwrap().write_all(script.as_bytes())?;
                c.wait_with_output()
            })
            .expect("shellcheck runs (scripts/deps install test installs it)");
        assert!(
            out.status.success(),
            "shellcheck on {what}:\n{}",
            String::from_utf8_lossy(&out.stdout)
        );
    }

    /// The generated scripts of every hypervisor and storage, as the node gets them: shellcheck
    /// finds nothing to warn about, and each is a snapshot a reviewer reads.
    #[test]
    fn the_apply_scripts_of_every_hypervisor_and_store() {
        let root = "/srv/node 1";
        let disks = format!("{root}/var/lib/gitvps/disks");
        let stores = [
            ("lvm", Store::Lvm { vg: "vg0".into() }),
            (
                "file_raw",
                Store::File {
                    dir: disks.clone(),
                    format: ImageFormat::Raw,
                },
            ),
            (
                "file_qcow2",
                Store::File {
                    dir: disks,
                    format: ImageFormat::Qcow2,
                },
            ),
        ];
        shellcheck("the apply envelope", &apply_envelope());
        for hv in [Hypervisor::Xen, Hypervisor::Kvm] {
            shellcheck(&format!("observe ({hv})"), &observe_script(hv));
            shellcheck(&format!("collect ({hv})"), &collect_script(hv));
            for (name, store) in &stores {
                let script = steps_script(&node(root, store.clone(), hv, false), &every_op());
                shellcheck(&format!("the steps of {hv} on {name}"), &script);
                insta::assert_snapshot!(format!("steps_{hv}_{name}"), script);
            }
        }
    }

    #[test]
    fn qcow2_disks_are_written_beside_and_renamed() {
        let root = "/srv/node 1";
        let spec = node(
            root,
            Store::File {
                dir: format!("{root}/var/lib/gitvps/disks"),
                format: ImageFormat::Qcow2,
            },
            Hypervisor::Kvm,
            false,
        );
        let script = steps_script(&spec, &every_op());
        // The disk is the step's target, quoted; its temporaries sit beside it.
        let disk = "'/srv/node 1/dev/vg0/xen02'";
        let tmp = "'/srv/node 1/dev/vg0/xen02.raw-tmp'";
        for want in [
            format!("qemu-img create -q -f qcow2 {disk} 32212254720"),
            format!("q2_unpack {disk} || return 1"),
            format!(
                "e2fsck -f -p {tmp}; rc=$?; if [ $rc -gt 2 ]; then rm -f {tmp}; return $rc; fi"
            ),
            format!("resize2fs {tmp} || {{ rm -f {tmp}; return 1; }}"),
            format!("q2_pack {disk} || return 1"),
            format!(
                "mke2fs -q -F -t ext4 -L gitvps-root -d '/srv/node 1/var/lib/gitvps/build/xen02' {tmp} || {{ rm -f {tmp}; return 1; }}"
            ),
            format!(
                "kvm_store_kernel {tmp} '/srv/node 1/var/lib/gitvps/kvm/xen02' || {{ rm -f {tmp}; return 1; }}"
            ),
            format!("rm -f {disk} || return 1"),
            "q2_size() {".to_owned(),
        ] {
            assert!(script.contains(&want), "no `{want}` in\n{script}");
        }
        // No raw-only command reaches a qcow2 image.
        assert!(
            !script.contains(&format!("e2fsck -f -p {disk}")),
            "{script}"
        );
        assert!(!script.contains("-f raw '/srv"), "{script}");
        // Every step that touches the disk checks first that nothing holds it.
        for (i, step) in every_op().iter().enumerate() {
            let lines = step_lines(&spec, step);
            if matches!(
                step.op,
                Op::GrowDisk { .. }
                    | Op::Fsck { .. }
                    | Op::Install { .. }
                    | Op::Reinstall { .. }
                    | Op::Restore { .. }
                    | Op::RemoveDisk { .. }
            ) {
                assert_eq!(
                    lines[0],
                    format!("disk_free {disk} || return 1"),
                    "step {i}"
                );
            }
        }
        // Raw nodes keep their steps, and the qcow2 functions are not sent to them.
        let raw = steps_script(
            &node(
                root,
                Store::File {
                    dir: format!("{root}/var/lib/gitvps/disks"),
                    format: ImageFormat::Raw,
                },
                Hypervisor::Kvm,
                false,
            ),
            &every_op(),
        );
        assert!(!raw.contains("q2_"), "{raw}");
        assert!(raw.contains(&format!("e2fsck -f -p {disk}")), "{raw}");
    }

    #[test]
    fn node_commands_are_valid_sh_and_use_sudo_when_asked() {
        for (sudo, hypervisor) in [
            (false, Hypervisor::Xen),
            (true, Hypervisor::Xen),
            (true, Hypervisor::Kvm),
        ] {
            let spec = node("/", Store::Lvm { vg: "vg0".into() }, hypervisor, sudo);
            let apply = apply_command(&spec, 1_700_000_000);
            let observe = observe_command(&spec, 1_700_000_000);
            let collect = collect_command(&spec);
            assert_eq!(collect.starts_with("exec sudo -n sh -c "), sudo);
            sh_syntax_ok(&collect);
            assert_eq!(apply.starts_with("exec sudo -n sh -c "), sudo);
            assert_eq!(observe.starts_with("exec sudo -n sh -c "), sudo);
            sh_syntax_ok(&apply);
            sh_syntax_ok(&observe);
        }
    }
}
