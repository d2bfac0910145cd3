//! The KVM driver: guests run by `qemu-system-x86_64`, driven over a QMP socket each, with the
//! guest's own kernel booted directly; configs are argument files in `etc/gitvps/kvm/<vps>.args`.

use std::fmt::Write as _;

use model::values::{Rate, VpsAddr};
use model::{KvmNetwork, VpsId};
use serde::Serialize;

use super::DomainOp;
use crate::desired::{NodeSpec, node_path};
use crate::plan::Step;
use crate::quote;

/// The node-side functions (QMP, start/stop, kernel, observe, taps and cgroups), put in front
/// of the observe and steps scripts of KVM nodes.
pub const LIBRARY: &str = concat!(
    include_str!("../../node/kvm.sh"),
    "\n",
    include_str!("../../node/kvm-host.sh"),
    "\n"
);

/// The guest arguments template shipped with gitvps; a repo may override it with its own
/// `templates/kvm.args.j2`.
pub const DEFAULT_TEMPLATE: &str = include_str!("../../../../templates/kvm.args.j2");

/// The id of a guest's first disk in its QEMU arguments (`templates/kvm.args.j2`'s `-drive
/// ...,id=d0`): the QMP commands of backups and snapshots name it.
pub(crate) const DISK_ID: &str = "d0";

/// The folder of a guest's run files (pidfile, sockets, kernel) on its node.
pub fn run_dir(root: &str, vps: &VpsId) -> String {
    node_path(root, &format!("var/lib/gitvps/kvm/{vps}"))
}

/// The serial console log of a guest's current run on its node.
pub fn console_log(root: &str, vps: &VpsId) -> String {
    node_path(root, &format!("var/log/gitvps/console/{vps}.log"))
}

/// The guest's arguments file on its node.
pub fn config_path(root: &str, vps: &VpsId) -> String {
    node_path(root, &format!("etc/gitvps/kvm/{vps}.args"))
}

/// The guest's serial console socket on its node.
pub fn console_socket(root: &str, vps: &VpsId) -> String {
    format!("{}/console.sock", run_dir(root, vps))
}

/// The tap a bridged guest's NIC uses: `gv-<vps>`, or a hash when that is longer than Linux's
/// 15 characters.
pub fn tap_name(vps: &VpsId) -> String {
    let name = format!("gv-{vps}");
    if name.len() <= 15 {
        name
    } else {
        format!("gv-{}", &crate::desired::sha256_hex(vps.as_str())[..12])
    }
}

/// A stable MAC address in QEMU's locally administered range (52:54:00) from the VPS id.
pub fn qemu_mac(vps: &VpsId) -> String {
    let h = crate::desired::sha256_hex(vps.as_str());
    format!("52:54:00:{}:{}:{}", &h[0..2], &h[2..4], &h[4..6])
}

/// A value inside a QEMU option list: commas doubled.
pub(crate) fn opt(s: &str) -> String {
    s.replace(',', ",,")
}

/// The console command a customer's key is forced to: the serial socket, raw, `Ctrl-]` leaves.
pub fn console_command(root: &str, vps: &VpsId) -> String {
    format!(
        "/usr/bin/socat STDIO,raw,echo=0,escape=0x1d UNIX-CONNECT:{}",
        console_socket(root, vps)
    )
}

/// The sudoers rule allowing exactly [`console_command`] (`,` `:` `=` `\` escaped as sudoers
/// wants them in arguments).
pub fn console_sudoers(root: &str, vps: &VpsId) -> String {
    let escaped: String = console_command(root, vps)
        .chars()
        .flat_map(|c| match c {
            ',' | ':' | '=' | '\\' => vec!['\\', c],
            c => vec![c],
        })
        .collect();
    format!("{vps} ALL=(root) NOPASSWD: {escaped}\n")
}

/// What the template sees.
#[derive(Serialize)]
pub struct ArgsVars<'a> {
    /// The VPS id.
    pub vps: &'a str,
    /// Its host name.
    pub hostname: &'a str,
    /// Memory, MiB.
    pub memory_mib: u64,
    /// vCPUs.
    pub vcpus: u32,
    /// `kvm` or `tcg`.
    pub accel: String,
    /// The disk, escaped for a QEMU option list.
    pub disk: String,
    /// `raw`, or `qcow2` on a node storing qcow2 images (set by `desired`).
    pub disk_format: &'a str,
    /// I/O operations per second, if capped.
    pub disk_iops: Option<u32>,
    /// Bytes per second, if capped.
    pub disk_bps: Option<u64>,
    /// The guest kernel extracted at start.
    pub kernel: String,
    /// The guest initrd extracted at start.
    pub initrd: String,
    /// `bridge` or `user`.
    pub network: &'a str,
    /// Bridge mode: the tap.
    pub tap: String,
    /// The NIC's MAC.
    pub mac: String,
    /// User mode: the network of the VPS's first address (`a.b.c.d/n`).
    pub net: String,
    /// User mode: its gateway.
    pub gateway: String,
    /// User mode: the VPS's first IPv4.
    pub ip: String,
    /// User mode: the port on 127.0.0.1 forwarded to the guest's SSH.
    pub forward_port: Option<u16>,
    /// The ISO attached as a read-only CD-ROM (`[boot]`), escaped for a QEMU option list;
    /// empty: none.
    pub cdrom: String,
    /// The CD-ROM boots first (`[boot] order = "cd"`): the firmware boots it, so the guest's
    /// own kernel is not loaded directly.
    pub boot_cd: bool,
    /// A cloud image's NoCloud seed folder (escaped for a QEMU option list), attached as a
    /// read-only FAT volume labelled `cidata` (QEMU's `vvfat`); empty: none.
    pub seed: String,
    /// The disk boots through the firmware (a cloud image with its own boot loader), not the
    /// guest's kernel taken from it.
    pub firmware: bool,
    /// `rescue = true`: the rescue system's image, escaped for a QEMU option list, attached
    /// before the VPS's disk and booted (its kernel, root labelled `gitvps-rescue`); empty:
    /// the VPS boots its own system.
    pub rescue: String,
}

impl ArgsVars<'_> {
    /// Boots the rescue system in `image` instead of the VPS's own (an ISO stays attached but
    /// is not booted).
    pub fn set_rescue(&mut self, image: &str) {
        self.rescue = opt(image);
        self.boot_cd = false;
        self.firmware = false;
    }
}

/// Why the arguments could not be rendered.
#[derive(Debug, thiserror::Error)]
pub enum ArgsError {
    /// The template failed.
    #[error("templates/kvm.args.j2 cannot render the arguments of {vps}")]
    Template {
        /// The VPS.
        vps: String,
        /// The cause.
        #[source]
        source: minijinja::Error,
    },
    /// The node's bridge is not an interface name (the inventory was not validated).
    #[error("{vps}: `{bridge}` is not a network interface name")]
    Bridge {
        /// The VPS.
        vps: String,
        /// The bridge.
        bridge: String,
    },
    /// A rendered line would be read as a directive or is empty where an argument is due.
    #[error(
        "templates/kvm.args.j2: {vps}: line `{line}` starts with `#gitvps`, which is gitvps's own"
    )]
    Reserved {
        /// The VPS.
        vps: String,
        /// The line.
        line: String,
    },
}

/// Host-side settings that are not QEMU arguments, kept as `#gitvps` directives in the file.
pub struct Plumbing<'a> {
    /// The bridge, in bridge mode.
    pub bridge: Option<&'a str>,
    /// cgroup `cpu.weight` (1 to 10000).
    pub cpu_weight: u32,
    /// CPU cap in percent of one CPU (0: none).
    pub cpu_cap: u32,
    /// Bridge mode: the addresses the guest may send from (its IPv4 addresses and IPv6 /64s).
    pub ips: &'a [VpsAddr],
    /// Bridge mode: the rate the guest may send at (the product's `bandwidth`).
    pub rate: Option<&'a Rate>,
}

/// The highest send rate written, in bytes per second (100 Gb/s): nftables refuses a limit
/// whose one second of nanoseconds times (rate + burst) overflows 64 bits, and no node's link
/// is faster.
pub const MAX_RATE_BYTES: u64 = 12_500_000_000;

/// The `#gitvps` words of a bridged guest's filter and rate, every value built from typed
/// values (nothing the shell or nft would read as syntax): `mac=52:54:00:..`, `ip4=A,B` (its
/// IPv4 addresses), `ip6=P::/64,..` (its /64s with the first four groups written out, which the
/// node turns into the 64-bit prefix its neighbour-advertisement check compares), and
/// `rate=N`, the send rate in bytes per second (rounded up, at most [`MAX_RATE_BYTES`]), unless
/// the product has no rate (or 0, which xl takes as no limit).
pub fn guard_words(vps: &VpsId, ips: &[VpsAddr], rate: Option<&Rate>) -> String {
    let mut out = format!(" mac={}", qemu_mac(vps));
    let v4: Vec<String> = ips
        .iter()
        .filter_map(|a| match a {
            VpsAddr::V4(ip) => Some(ip.to_string()),
            VpsAddr::V6(_) => None,
        })
        .collect();
    let v6: Vec<String> = ips
        .iter()
        .filter_map(|a| match a {
            VpsAddr::V6(net) => {
                let g = net.network().segments();
                Some(format!(
                    "{:04x}:{:04x}:{:04x}:{:04x}::/64",
                    g[0], g[1], g[2], g[3]
                ))
            }
            VpsAddr::V4(_) => None,
        })
        .collect();
    if !v4.is_empty() {
        let _ = write!(out, " ip4={}", v4.join(","));
    }
    if !v6.is_empty() {
        let _ = write!(out, " ip6={}", v6.join(","));
    }
    if let Some(bits) = rate.map(Rate::bits_per_sec).filter(|b| *b > 0) {
        let _ = write!(out, " rate={}", bits.div_ceil(8).min(MAX_RATE_BYTES));
    }
    out
}

/// The complete arguments file of a guest: gitvps's own lines (name, pidfile, QMP, serial
/// console, daemonize), `#gitvps` directives, then the template's lines; one argument per line,
/// the template's comments and blank lines dropped.
pub fn args_file(
    root: &str,
    vps: &VpsId,
    tmpl: &minijinja::Template<'_, '_>,
    vars: &ArgsVars<'_>,
    plumbing: &Plumbing<'_>,
) -> Result<String, ArgsError> {
    let run = run_dir(root, vps);
    let rendered = tmpl.render(vars).map_err(|source| ArgsError::Template {
        vps: vps.to_string(),
        source,
    })?;
    let mut out = format!(
        "# {vps}: written by gitvps (templates/kvm.args.j2); edits here are overwritten.\n"
    );
    let mut directive = format!(
        "#gitvps cpu-weight={} cpu-cap={}",
        plumbing.cpu_weight, plumbing.cpu_cap
    );
    if let Some(br) = plumbing.bridge {
        // The bridge name reaches the node's `ip` commands: only an interface name may.
        model::values::check_interface_name(br).map_err(|_| ArgsError::Bridge {
            vps: vps.to_string(),
            bridge: br.to_owned(),
        })?;
        let _ = write!(directive, " tap={} bridge={br}", tap_name(vps));
        directive.push_str(&guard_words(vps, plumbing.ips, plumbing.rate));
    }
    out.push_str(&directive);
    out.push('\n');
    for a in [
        "-name".to_owned(),
        format!("{vps},process=gitvps-{vps}"),
        "-no-user-config".into(),
        "-nodefaults".into(),
        "-display".into(),
        "none".into(),
        "-daemonize".into(),
        "-pidfile".into(),
        format!("{run}/qemu.pid"),
        "-qmp".into(),
        format!(
            "unix:{},server=on,wait=off",
            opt(&format!("{run}/qmp.sock"))
        ),
        "-chardev".into(),
        format!(
            "socket,id=ser0,path={},server=on,wait=off,logfile={},logappend=off",
            opt(&format!("{run}/console.sock")),
            opt(&console_log(root, vps))
        ),
        "-serial".into(),
        "chardev:ser0".into(),
    ] {
        out.push_str(&a);
        out.push('\n');
    }
    for line in rendered.lines() {
        let line = line.trim();
        if line.is_empty() || (line.starts_with('#') && !line.starts_with("#gitvps")) {
            continue;
        }
        if line.starts_with("#gitvps") {
            return Err(ArgsError::Reserved {
                vps: vps.to_string(),
                line: line.to_owned(),
            });
        }
        out.push_str(line);
        out.push('\n');
    }
    Ok(out)
}

/// Template variables for one VPS on a KVM node.
pub fn vars<'a>(
    v: &'a model::Vps,
    inv: &model::Inventory,
    node: &model::Node,
    res: &model::Resources,
    root: &str,
    disk: &str,
    kvm: &model::Kvm,
) -> ArgsVars<'a> {
    let run = run_dir(root, &v.id);
    let first = v.ipv4().next();
    let boot = v.boot.as_ref().and_then(|b| {
        let iso = model::media::resolve(
            b,
            &inv.settings.boot.library,
            inv.settings.boot.max_iso_size,
        )?;
        Some((opt(&super::iso_path(root, &iso.sha256)), b.order))
    });
    let pool = first.and_then(|ip| {
        node.pools
            .iter()
            .filter_map(|p| inv.pools.get(p))
            .find(|p| p.network.contains(&ip))
    });
    ArgsVars {
        vps: v.id.as_str(),
        hostname: v.hostname.as_str(),
        memory_mib: res.ram.as_mib(),
        vcpus: res.vcpus,
        accel: kvm.accel.to_string(),
        disk: opt(disk),
        disk_format: "raw",
        disk_iops: res.disk_iops,
        disk_bps: res.disk_bandwidth.as_ref().map(|b| b.bytes_per_sec()),
        kernel: format!("{run}/vmlinuz"),
        initrd: format!("{run}/initrd.img"),
        network: match &kvm.network {
            KvmNetwork::Bridge { .. } => "bridge",
            KvmNetwork::User { .. } => "user",
        },
        tap: tap_name(&v.id),
        mac: qemu_mac(&v.id),
        net: pool.map(|p| p.network.to_string()).unwrap_or_default(),
        gateway: pool.map(|p| p.gateway.to_string()).unwrap_or_default(),
        ip: first.map(|i| i.to_string()).unwrap_or_default(),
        forward_port: node.forward_port(v),
        boot_cd: boot
            .as_ref()
            .is_some_and(|(_, o)| *o == model::media::BootOrder::Cd),
        cdrom: boot.map(|(p, _)| p).unwrap_or_default(),
        rescue: String::new(),
        seed: String::new(),
        firmware: false,
    }
}

/// Waits for the login prompt of a guest that boots an OS gitvps installed (others: nothing to
/// wait for; a guest booting an ISO first runs an installer or a live system), on the console
/// output after byte `offset`.
fn wait_login(spec: &NodeSpec, step: &Step, offset: &str) -> String {
    let boots_installed = spec
        .vps
        .get(&step.vps)
        .is_some_and(|v| v.install.is_some() && !v.iso.as_ref().is_some_and(|iso| iso.boots_first));
    if !boots_installed || spec.boot_timeout_secs == 0 {
        return ":".into();
    }
    format!(
        "kvm_wait_login {} {} {} {} \"{offset}\" || return $?",
        quote(step.vps.as_str()),
        quote(&run_dir(&spec.root, &step.vps)),
        quote(&console_log(&spec.root, &step.vps)),
        spec.boot_timeout_secs
    )
}

/// The sh lines of a domain step: every [`DomainOp`], QEMU's way.
pub(super) fn domain_lines(spec: &NodeSpec, step: &Step, op: DomainOp<'_>) -> Vec<String> {
    let root = spec.root.as_str();
    let name = quote(step.vps.as_str());
    let cfg = quote(&step.target.config);
    let run = quote(&run_dir(root, &step.vps));
    let log = console_log(root, &step.vps);
    match op {
        DomainOp::WriteConfig { content } => {
            let dir = node_path(root, "etc/gitvps/kvm");
            vec![
                format!("mkdir -p {} || return 1", quote(&dir)),
                format!(
                    "printf '%s' {} >{cfg}.tmp && mv {cfg}.tmp {cfg} || return 1",
                    quote(content)
                ),
            ]
        }
        DomainOp::Start => vec![
            format!(
                "mkdir -p {run} {} || return 1",
                quote(log.rsplit_once('/').map_or("/", |(d, _)| d))
            ),
            format!("if ! kvm_alive {run}; then"),
            format!("  disk_free {} || return 1", quote(&step.target.disk)),
            format!("  kvm_net_up {name} {cfg} || return $?"),
            format!(
                "  kvm_start {name} {cfg} {run} {} || return $?",
                quote(&log)
            ),
            format!("  kvm_limits {name} {run} {cfg}"),
            format!("  {}", wait_login(spec, step, "0")),
            "fi".into(),
        ],
        DomainOp::Stop { timeout_secs } => vec![
            format!("kvm_stop {name} {run} {timeout_secs} || return $?"),
            format!("kvm_limits_clear {name}"),
            format!("kvm_net_down {name} {cfg} || return $?"),
        ],
        DomainOp::Destroy => vec![
            format!("kvm_destroy {name} {run} || return $?"),
            format!("kvm_limits_clear {name}"),
            format!("[ ! -f {cfg} ] || kvm_net_down {name} {cfg} || return $?"),
        ],
        DomainOp::RestoreFilter => vec![format!("kvm_net_guard {name} {cfg} || return $?")],
        DomainOp::Reboot => vec![
            format!("off=$(stat -c %s {} 2>/dev/null) || off=0", quote(&log)),
            format!("kvm_reset {name} {run} || return $?"),
            wait_login(spec, step, "$off"),
        ],
        DomainOp::RemoveConfig => vec![
            format!(
                "if kvm_alive {run}; then echo {} >&2; return 1; fi",
                quote(&format!(
                    "gitvps: {}: its QEMU still runs: not removing its files",
                    step.vps
                ))
            ),
            format!("rm -rf {cfg} {run} || return 1"),
        ],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guard_words_name_every_address_and_the_rate_in_bytes() {
        let vps: VpsId = "xen10".parse().unwrap();
        let ips: Vec<VpsAddr> = [
            "192.0.2.10",
            "2001:db8::/64",
            "192.0.2.11",
            "fd00:1:2:3::/64",
        ]
        .iter()
        .map(|a| a.parse().unwrap())
        .collect();
        let rate: Rate = "10MB/s".parse().unwrap();
        assert_eq!(
            guard_words(&vps, &ips, Some(&rate)),
            format!(
                " mac={} ip4=192.0.2.10,192.0.2.11 ip6=2001:0db8:0000:0000::/64,fd00:0001:0002:0003::/64 rate=10000000",
                qemu_mac(&vps)
            )
        );
        // Bits are rounded up to bytes; no rate, or 0 (xl's no limit), writes none; the rate is
        // capped where nftables would overflow.
        let odd: Rate = "9b/s".parse().unwrap();
        assert!(guard_words(&vps, &ips[..1], Some(&odd)).ends_with(" ip4=192.0.2.10 rate=2"));
        assert!(guard_words(&vps, &ips[..1], None).ends_with(" ip4=192.0.2.10"));
        let zero: Rate = "0Mb/s".parse().unwrap();
        assert!(guard_words(&vps, &ips[..1], Some(&zero)).ends_with(" ip4=192.0.2.10"));
        let huge: Rate = "999GB/s".parse().unwrap();
        assert!(guard_words(&vps, &[], Some(&huge)).ends_with(" rate=12500000000"));
    }
}
