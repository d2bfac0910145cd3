//! The Xen driver: domains with `xl`, configs in `etc/xen/gitvps/<vps>.cfg`.
//! Disks, installs and consoles are shared with the other drivers (`driver/mod.rs`).

use model::VpsId;
use model::media::BootOrder;
use model::values::GuestType;
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::DomainOp;
use crate::desired::{DesiredError, node_path};
use crate::plan::Step;
use crate::quote;

/// The domain config template shipped with gitvps; a repo may override it with its own
/// `templates/xen.cfg.j2`.
pub const DEFAULT_TEMPLATE: &str = include_str!("../../../../templates/xen.cfg.j2");

/// The bridge VPS interfaces join.
pub const DEFAULT_BRIDGE: &str = "xenbr0";

/// A stable MAC address in Xen's OUI (00:16:3e) from the VPS id.
pub fn xen_mac(vps: &VpsId) -> String {
    let h = Sha256::digest(vps.as_str().as_bytes());
    format!("00:16:3e:{:02x}:{:02x}:{:02x}", h[0] & 0x7f, h[1], h[2])
}

/// What `templates/xen.cfg.j2` is rendered with.
#[derive(Serialize)]
struct ConfigVars<'a> {
    vps: &'a str,
    guest_type: GuestType,
    /// `hda` for HVM (an emulated disk its firmware boots from, PV drivers too); `xvda`
    /// (PV only) for PV and PVH.
    disk_vdev: &'a str,
    memory_mib: u64,
    vcpus: u32,
    cpu_weight: u32,
    cpu_cap: u32,
    disk: &'a str,
    mac: String,
    ips: Vec<String>,
    bridge: &'a str,
    rate: Option<&'a str>,
    hostname: &'a str,
    /// The ISO attached as a read-only CD-ROM (`[boot]`), which makes the domain HVM.
    cdrom: Option<&'a str>,
    /// HVM's `boot =`: `dc` (CD-ROM first) with an installer ISO, `c` (the disk) otherwise.
    boot: &'static str,
    /// `rescue = true`: the rescue system's image, the domain's first disk (`xvda`; its
    /// grub.cfg finds the root labelled `gitvps-rescue`); the VPS's disk is then `xvdb`.
    rescue: Option<&'a str>,
}

/// The `xl.cfg` of a VPS of this guest type from the template. The vif's `ip=` carries every
/// address the VPS owns, IPv4 and its IPv6 /64s, so Xen's anti-spoofing covers both.
///
/// A `cdrom` (the `[boot]` ISO's path in the node's cache, and the boot order) makes the domain
/// HVM whatever its guest type, since only an HVM domain's firmware boots a CD: the ISO is a
/// read-only `hdc` beside the disk as `hda`. Ejecting it brings the guest type back.
pub(crate) fn config(
    tmpl: &minijinja::Template<'_, '_>,
    v: &model::Vps,
    res: &model::Resources,
    disk_path: &str,
    guest_type: GuestType,
    cdrom: Option<(&str, BootOrder)>,
    rescue: Option<&str>,
) -> Result<String, DesiredError> {
    let guest_type = if cdrom.is_some() {
        GuestType::Hvm
    } else {
        guest_type
    };
    let vars = ConfigVars {
        vps: v.id.as_str(),
        guest_type,
        disk_vdev: match (guest_type, rescue) {
            (GuestType::Hvm, _) => "hda",
            (GuestType::Pv | GuestType::Pvh, None) => "xvda",
            (GuestType::Pv | GuestType::Pvh, Some(_)) => "xvdb",
        },
        memory_mib: res.ram.as_mib(),
        vcpus: res.vcpus,
        cpu_weight: res.cpu_weight,
        cpu_cap: res.cpu_cap,
        disk: disk_path,
        mac: xen_mac(&v.id),
        ips: v.ips.iter().map(ToString::to_string).collect(),
        bridge: DEFAULT_BRIDGE,
        rate: res.bandwidth.as_ref().map(model::values::Rate::as_str),
        hostname: v.hostname.as_str(),
        cdrom: cdrom.map(|(path, _)| path),
        boot: match cdrom {
            Some((_, BootOrder::Cd)) => "dc",
            Some((_, BootOrder::Disk)) => "cd",
            None => "c",
        },
        rescue,
    };
    Ok(tmpl
        .render(&vars)
        .map_err(|source| DesiredError::Template {
            vps: v.id.to_string(),
            source,
        })?
        + "\n")
}

/// The sh lines of a domain step: every [`DomainOp`], `xl`'s way.
pub(super) fn domain_lines(root: &str, step: &Step, op: DomainOp<'_>) -> Vec<String> {
    let name = quote(step.vps.as_str());
    let cfg = quote(&step.target.config);
    let exists = format!("xl list {name} >/dev/null 2>&1");
    match op {
        DomainOp::WriteConfig { content } => {
            let dir = quote(&node_path(root, "etc/xen/gitvps"));
            vec![
                // `test` is the shell's own: no `mkdir` for each config once the folder is there.
                format!("[ -d {dir} ] || mkdir -p {dir} || return 1"),
                format!(
                    "printf '%s' {} >{cfg}.tmp && mv {cfg}.tmp {cfg} || return 1",
                    quote(content)
                ),
            ]
        }
        // A create that fails (a guest type this Xen cannot run: no device model, no HVM)
        // says which type, after `xl`'s own message, and leaves no half-built domain.
        // `has_dom`: the run's one `xl list` (`node/steps.sh`); after a failed create the
        // domain is looked for again. `xl create` leaves a process behind that watches the
        // domain (its reboots) for as long as it lives and keeps every descriptor it inherits:
        // the script's own are closed, or it would hold the node's lock (fd 9) and every later
        // apply would wait for it and fail (seen on real Xen).
        DomainOp::Start => vec![format!(
            "if ! has_dom {name}; then xl create -q {cfg} 3>&- 4>&- 5>&- 6>&- 7>&- 8>&- 9>&- || {{ echo \"xl create of\" {name} \"failed, guest $(grep -m1 '^type =' {cfg})\" >&2; ! {exists} || xl destroy {name}; return 1; }}; dom_made {name}; fi"
        )],
        DomainOp::Stop { timeout_secs } => vec![format!(
            "if {exists}; then timeout {timeout_secs} xl shutdown -w {name} || {{ ! {exists} || xl destroy {name}; }} || return 1; fi; dom_gone {name}"
        )],
        DomainOp::Destroy => vec![format!(
            "if {exists}; then xl destroy {name} || return 1; fi; dom_gone {name}"
        )],
        DomainOp::Reboot => vec![format!("xl reboot {name} || return 1")],
        DomainOp::RemoveConfig => vec![format!("rm -f {cfg} || return 1")],
        // Xen's own vif scripts set up a domain's network when it starts; gitvps keeps no
        // filter of its own there, and the planner asks for this on KVM bridges only
        // (`VpsSpec::tap`), so there is nothing to restore.
        DomainOp::RestoreFilter => vec![":".into()],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The process `xl create` leaves watching the domain must not inherit the node's lock
    /// (fd 9, `node/apply.sh`) nor any other descriptor of the script.
    #[test]
    fn xl_create_gets_none_of_the_scripts_descriptors() {
        let step = Step {
            vps: "xen02".parse().unwrap(),
            op: crate::plan::Op::Start,
            record: None,
            target: crate::plan::StepPaths {
                disk: "/dev/vg0/xen02".into(),
                config: "/etc/xen/gitvps/xen02.cfg".into(),
            },
        };
        let lines = domain_lines("/", &step, DomainOp::Start);
        let line = &lines[0];
        let create = &line[line.find("xl create").unwrap()..line.find("||").unwrap()];
        for fd in 3..=9 {
            assert!(create.contains(&format!(" {fd}>&-")), "fd {fd}: {line}");
        }
    }

    #[test]
    fn macs_are_stable_and_local_to_xen() {
        let id: VpsId = "xen02".parse().unwrap();
        assert_eq!(xen_mac(&id), xen_mac(&id));
        assert!(xen_mac(&id).starts_with("00:16:3e:"));
        assert_ne!(xen_mac(&id), xen_mac(&"xen03".parse().unwrap()));
    }
}
