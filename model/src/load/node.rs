//! Parsing one `inventory/nodes/<id>.toml`: how a node is reached, its hypervisor (with the
//! `[kvm]` settings of a KVM node), its storage, pools, capacity and overcommit.

use toml_edit::TableLike;

use super::build;
use crate::diag::Origin;
use crate::ids::*;
use crate::inventory::*;
use crate::read::{IfName, Obj, Reader, VirtCap};
use crate::values::*;

const NODE_KEYS: &[&str] = &[
    "address",
    "port",
    "user",
    "sudo",
    "host_key",
    "location",
    "country",
    "hypervisor",
    "kvm",
    "xen",
    "storage",
    "pools",
    "capacity",
    "overcommit",
    "maintenance",
    "root",
    "hvm",
];
const KVM_KEYS: &[&str] = &["accel", "network", "bridge", "forward_base"];
const XEN_KEYS: &[&str] = &["guest_type", "virt_caps"];
const STORAGE_KEYS: &[&str] = &["backend", "vg", "dir", "format"];
const RESOURCE_KEYS: &[&str] = &["ram", "disk", "vcpus"];

pub(super) fn parse_node(r: &mut Reader<'_>, id: NodeId, t: &dyn TableLike) -> Option<Node> {
    let n = Obj::new(t, "", None, NODE_KEYS);
    let mut o = r.origin(None);
    let address = n.req::<Host>(r, &mut o, "address");
    let port = n.opt::<u16>(r, &mut o, "port").unwrap_or(22);
    if port == 0 {
        n.error(r, "port", "must be 1 to 65535");
    }
    let user = n.opt::<UnixUser>(r, &mut o, "user");
    let sudo = n.opt::<bool>(r, &mut o, "sudo").unwrap_or(false);
    let host_key = n.req::<SshPublicKey>(r, &mut o, "host_key");
    let location = n.req::<String>(r, &mut o, "location");
    let country = n.req::<Country>(r, &mut o, "country");
    let hypervisor = n.req_kw::<Hypervisor>(r, &mut o, "hypervisor");
    let kvm = parse_kvm(r, &mut o, &n, hypervisor);
    let xen = parse_xen(r, &mut o, &n, hypervisor);
    let storage = n
        .required(r, "storage")
        .then(|| n.sub(r, &mut o, "storage", STORAGE_KEYS))
        .flatten()
        .and_then(|s| parse_storage(r, &mut o, &s, hypervisor));
    let pools = n.list::<PoolId>(r, &mut o, "pools");
    let capacity = n
        .required(r, "capacity")
        .then(|| n.sub(r, &mut o, "capacity", RESOURCE_KEYS))
        .flatten()
        .and_then(|c| parse_capacity(r, &mut o, &c));
    let mut overcommit = Overcommit::default();
    if let Some(oc) = n.sub(r, &mut o, "overcommit", RESOURCE_KEYS) {
        oc.set(r, &mut o, "ram", &mut overcommit.ram);
        oc.set(r, &mut o, "disk", &mut overcommit.disk);
        oc.set(r, &mut o, "vcpus", &mut overcommit.vcpus);
        oc.finish(r);
    }
    let maintenance = n.opt(r, &mut o, "maintenance").unwrap_or(false);
    let root = n
        .opt::<AbsPath>(r, &mut o, "root")
        .unwrap_or_else(|| AbsPath::new_unchecked("/"));
    let hvm = n.opt::<bool>(r, &mut o, "hvm");
    if hvm == Some(false) && hypervisor == Some(Hypervisor::Kvm) {
        n.error(
            r,
            "hvm",
            "a KVM node always boots full machines: remove hvm = false",
        );
    }
    build(r, &n, || {
        Some(Node {
            id,
            address: address?,
            port,
            user: user.unwrap_or_else(|| UnixUser::new_unchecked("gitvps")),
            sudo,
            host_key: host_key?,
            location: location?,
            country: country?,
            hypervisor: hypervisor?,
            kvm: kvm?,
            xen: xen?,
            storage: storage?,
            pools,
            capacity: capacity?,
            overcommit,
            maintenance,
            root,
            hvm: hvm.unwrap_or(true),
            origin: o,
        })
    })
}

/// `[capacity]`: what the node offers; `None` when a field did not parse.
fn parse_capacity(r: &mut Reader<'_>, o: &mut Origin, c: &Obj<'_>) -> Option<Capacity> {
    let ram = c.req(r, o, "ram");
    let disk = c.req(r, o, "disk");
    let vcpus = c.req(r, o, "vcpus");
    build(r, c, || {
        Some(Capacity {
            ram: ram?,
            disk: disk?,
            vcpus: vcpus?,
        })
    })
}

/// `[storage]`: logical volumes (`backend = "lvm"`, `vg`) or image files (`"file"`, `dir`,
/// `format`: raw, or qcow2 on a KVM node); a field of the other backend is an error.
fn parse_storage(
    r: &mut Reader<'_>,
    o: &mut Origin,
    s: &Obj<'_>,
    hypervisor: Option<Hypervisor>,
) -> Option<Storage> {
    let backend = s.req::<String>(r, o, "backend");
    let st = match backend.as_deref() {
        Some("lvm") => s.req::<VgName>(r, o, "vg").map(|vg| Storage::Lvm { vg }),
        Some("file") => {
            let dir = s.req::<AbsPath>(r, o, "dir");
            let format = s.kw::<ImageFormat>(r, o, "format");
            if format == Some(ImageFormat::Qcow2) && hypervisor == Some(Hypervisor::Xen) {
                s.error(
                    r,
                    "format",
                    "qcow2 images are for hypervisor = \"kvm\" (this node runs \"xen\", whose guests use raw images)",
                );
            }
            // A `format` that did not parse: the images' format is unknowable.
            match (dir, format) {
                (Some(dir), Some(format)) => Some(Storage::File { dir, format }),
                (Some(dir), None) if !s.has("format") => Some(Storage::File {
                    dir,
                    format: ImageFormat::Raw,
                }),
                _ => None,
            }
        }
        Some(other) => {
            s.error(
                r,
                "backend",
                format!(
                    "`{}` is not a storage backend: use \"lvm\", \"file\"",
                    other.escape_debug()
                ),
            );
            None
        }
        None => None,
    };
    if backend.as_deref() == Some("lvm") && s.has("format") {
        s.error(
            r,
            "format",
            "unknown field for the \"lvm\" backend: `format` belongs to the \"file\" backend (logical volumes are raw)",
        );
    }
    match &st {
        Some(Storage::Lvm { .. }) if s.has("dir") => s.error(
            r,
            "dir",
            "`dir` belongs to the \"file\" backend; \"lvm\" takes `vg`",
        ),
        Some(Storage::File { .. }) if s.has("vg") => s.error(
            r,
            "vg",
            "`vg` belongs to the \"lvm\" backend; \"file\" takes `dir`",
        ),
        _ => {}
    }
    s.finish(r);
    st
}

/// Whether the node runs another hypervisor than `table`'s (then its `[kvm]` or `[xen]`
/// table, if present, is an error).
fn other_hypervisor(
    r: &mut Reader<'_>,
    o: &mut Origin,
    n: &Obj<'_>,
    table: Hypervisor,
    hypervisor: Option<Hypervisor>,
) -> bool {
    let Some(runs) = hypervisor.filter(|h| *h != table) else {
        return false;
    };
    let key = table.to_string();
    if n.has(&key) {
        let span = n.span_of(&key);
        o.record(&key, r.src.pos_of(span.clone()));
        r.error(
            span,
            &key,
            format!(
                "only for hypervisor = \"{table}\" (this node runs \"{runs}\"); remove this table"
            ),
        );
    }
    true
}

/// The `[kvm]` table of a node: `Some(None)` for a Xen node, `Some(Some(..))` with defaults
/// filled for a KVM node, `None` when the settings cannot be known (an error is recorded).
fn parse_kvm(
    r: &mut Reader<'_>,
    o: &mut Origin,
    n: &Obj<'_>,
    hypervisor: Option<Hypervisor>,
) -> Option<Option<Kvm>> {
    if other_hypervisor(r, o, n, Hypervisor::Kvm, hypervisor) {
        return Some(None);
    }
    let Some(k) = n.sub(r, o, "kvm", KVM_KEYS) else {
        // Absent (defaults) or not a table (the error is recorded).
        return Some(Some(Kvm::default()));
    };
    let accel = k.kw::<Accel>(r, o, "accel").unwrap_or(Accel::Kvm);
    let mode = k.kw::<KvmNetworkMode>(r, o, "network");
    let bridge = k.opt::<IfName>(r, o, "bridge");
    let forward_base = k.opt::<u16>(r, o, "forward_base");
    let network = match mode {
        // A `network` that did not parse: which fields belong is unknowable.
        None if k.has("network") => None,
        None | Some(KvmNetworkMode::Bridge) => {
            if k.has("forward_base") {
                k.error(
                    r,
                    "forward_base",
                    "only with network = \"user\" (bridged guests are reached on their own addresses)",
                );
            }
            Some(KvmNetwork::Bridge {
                bridge: bridge.map_or_else(|| DEFAULT_KVM_BRIDGE.to_owned(), |b| b.0),
            })
        }
        Some(KvmNetworkMode::User) => user_network(r, &k, forward_base),
    };
    build(r, &k, || {
        Some(Some(Kvm {
            accel,
            network: network?,
        }))
    })
}

/// The `[xen]` table of a node: `Some(None)` for a KVM node, `Some(Some(..))` with defaults
/// filled for a Xen node (or one whose hypervisor did not parse), `None` when the settings
/// cannot be known (an error is recorded).
fn parse_xen(
    r: &mut Reader<'_>,
    o: &mut Origin,
    n: &Obj<'_>,
    hypervisor: Option<Hypervisor>,
) -> Option<Option<Xen>> {
    if other_hypervisor(r, o, n, Hypervisor::Xen, hypervisor) {
        return Some(None);
    }
    let Some(x) = n.sub(r, o, "xen", XEN_KEYS) else {
        return Some(Some(Xen::default()));
    };
    let guest_type = x.kw::<GuestType>(r, o, "guest_type");
    let type_unknown = guest_type.is_none() && x.has("guest_type");
    let virt_caps = x.has("virt_caps").then(|| {
        x.list::<VirtCap>(r, o, "virt_caps")
            .into_iter()
            .map(|c| c.0)
            .collect::<Vec<_>>()
    });
    let xen = Xen {
        guest_type: guest_type.unwrap_or(GuestType::Pvh),
        virt_caps,
    };
    if let Some(caps) = &xen.virt_caps
        && !type_unknown
        && !xen.runs(xen.guest_type)
    {
        let field = if x.has("guest_type") {
            "guest_type"
        } else {
            "virt_caps"
        };
        x.error(
            r,
            field,
            format!(
                "guest_type \"{}\" cannot run on this node: virt_caps [{}] lack {}",
                xen.guest_type,
                caps.join(" "),
                xen.guest_type.requirement()
            ),
        );
    }
    build(r, &x, || (!type_unknown).then_some(Some(xen)))
}

/// `network = "user"`: no bridge, and a `forward_base` that leaves room for 255 guests.
fn user_network(r: &mut Reader<'_>, k: &Obj<'_>, forward_base: Option<u16>) -> Option<KvmNetwork> {
    if k.has("bridge") {
        k.error(
            r,
            "bridge",
            "only with network = \"bridge\" (user-mode guests join no bridge)",
        );
    }
    if !k.has("forward_base") {
        k.error(
            r,
            "forward_base",
            "missing required field with network = \"user\": each VPS's SSH is forwarded from 127.0.0.1:(forward_base + last octet of its first IPv4)",
        );
    }
    if let Some(base) = forward_base
        && !(1024..=u16::MAX - 255).contains(&base)
    {
        k.error(
            r,
            "forward_base",
            format!(
                "must be 1024 to {}: forward_base + 255 (the highest last octet) must still be a port",
                u16::MAX - 255
            ),
        );
    }
    forward_base.map(|forward_base| KvmNetwork::User { forward_base })
}
