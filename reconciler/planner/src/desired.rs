//! Desired state per node, derived from the inventory: disks, rendered domain configs,
//! power and action generations. Pure: the same inventory always gives the same specs.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use model::values::{GuestType, Hypervisor, ImageFormat, Power, State};
use model::{Actions, Inventory, NodeId, Storage, VpsId};
use serde::Serialize;
use sha2::{Digest, Sha256};

/// Why the desired state could not be computed.
#[derive(Debug, thiserror::Error)]
pub enum DesiredError {
    /// The KVM arguments cannot be rendered.
    #[error(transparent)]
    KvmArgs(#[from] crate::driver::kvm::ArgsError),
    /// The template does not parse or render.
    #[error("templates/xen.cfg.j2 cannot render the config of {vps}")]
    Template {
        /// The VPS.
        vps: String,
        /// The cause.
        #[source]
        source: minijinja::Error,
    },
    /// The bootstrap scripts' inputs cannot be computed for a VPS.
    #[error("{vps}: cannot prepare its OS install")]
    Bootstrap {
        /// The VPS.
        vps: String,
        /// The cause.
        #[source]
        source: model::bootstraps::EnvError,
    },
    /// A file of the catalog was not loaded.
    #[error("bootstraps: {0} is listed by the catalog but was not read")]
    MissingFile(String),
    /// `rescue = true` but the bootstraps have no OS to build the rescue system from.
    #[error(
        "bootstraps: rescue mode builds its system from os/{RESCUE_OS}, which is not in the catalog"
    )]
    NoRescueOs,
    /// A VPS's product has no resources (the inventory was not validated).
    #[error("{vps}: its product `{product}` is not a plan")]
    NotAPlan {
        /// The VPS.
        vps: String,
        /// The product.
        product: String,
    },
}

/// Where a node keeps disks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(tag = "backend", rename_all = "lowercase")]
pub enum Store {
    /// LVM volume group.
    Lvm {
        /// The volume group.
        vg: String,
    },
    /// Image files in a folder (a path under the node root).
    File {
        /// The folder.
        dir: String,
        /// The images' format: `<vps>.img` raw images, or `<vps>.qcow2` (KVM). Plans saved
        /// before there was a choice have none: raw.
        #[serde(default)]
        format: ImageFormat,
    },
}

impl Store {
    /// The image format of a file store; `None` for LVM.
    pub fn image_format(&self) -> Option<ImageFormat> {
        match self {
            Store::Lvm { .. } => None,
            Store::File { format, .. } => Some(*format),
        }
    }
}

/// What one VPS should look like on its node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VpsSpec {
    /// The VPS (also the domain name).
    pub id: VpsId,
    /// Contract state.
    pub state: State,
    /// The plan it is on.
    pub product: String,
    /// Whether the domain should run.
    pub run: bool,
    /// Disk size, bytes.
    pub disk_bytes: u64,
    /// The disk device or image path on the node.
    pub disk_path: String,
    /// Adopted by `gitvps import` (`adopted = true`): its running domain keeps the config it
    /// had, its disk counts as installed, no console access yet.
    pub adopted: bool,
    /// Path of the domain config on the node.
    pub config_path: String,
    /// The config text.
    pub config: String,
    /// Its sha256, hex.
    pub config_sha256: String,
    /// Action generations asked for.
    pub actions: Actions,
    /// When it was destroyed, if the inventory says.
    pub destroyed: Option<NaiveDate>,
    /// How to install its OS; `None` when nothing is installed (no catalog, `hvm-iso`).
    pub install: Option<InstallSpec>,
    /// Console access for the customer's keys; `None`: nobody may reach the console.
    pub console: Option<ConsoleSpec>,
    /// A bridged KVM guest's tap, which must stay behind its filter while the guest runs.
    pub tap: Option<String>,
    /// `[restore]`: the backup to write onto the disk, with the repository it is in.
    pub restore: Option<RestoreSpec>,
    /// `[boot]` on a KVM node: the ISO its config attaches, which the node fetches first.
    pub iso: Option<IsoSpec>,
    /// `[[snapshot]]` and `[revert]`: the snapshots its node keeps of its disk.
    pub snapshots: crate::snapshot::SnapshotsSpec,
    /// `rescue = true` on an active VPS: the rescue system its config boots.
    pub rescue: Option<RescueSpec>,
    /// `rescue = true` while the VPS is not active: the rescue system waits (a plan note).
    pub rescue_waits: bool,
}

/// The OS of the bootstraps catalog a rescue system is built from.
pub const RESCUE_OS: &str = "debian-12";

/// The label of a rescue system's root filesystem (the VPS's own is `gitvps-root`): the rescue
/// kernel finds its root by it, never the VPS's disk.
pub const RESCUE_LABEL: &str = "gitvps-rescue";

/// The size of a rescue system's image (a sparse raw file: about 450 MiB of it is used).
pub const RESCUE_IMAGE_BYTES: u64 = 2 << 30;

/// A VPS's rescue system (`rescue = true`): [`RESCUE_OS`] installed from the bootstraps (the
/// node's root cache makes that a copy) with the customer's keys for root and the VPS's host
/// name and addresses, in a raw image of its own beside the VPS's disk, which is attached as
/// the second disk and never mounted. The image's name holds a hash of what it was built from,
/// so changed keys or addresses build a new one; leaving rescue removes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct RescueSpec {
    /// The image's name on the node, `<vps>.<hash>` (as observe reports it).
    pub name: String,
    /// Its path: `var/lib/gitvps/rescue/<name>.img` under the node root.
    pub image: String,
    /// How its root is built.
    pub install: InstallSpec,
}

/// The folder of the rescue images on a node.
pub fn rescue_dir(root: &str) -> String {
    node_path(root, "var/lib/gitvps/rescue")
}

/// The path of the rescue image named `name` (`<vps>.<hash>`).
pub fn rescue_image(root: &str, name: &str) -> String {
    format!("{}/{name}.img", rescue_dir(root))
}

/// A VPS's rescue system when it is asked and may run: an active VPS on a node that can boot
/// it.
fn rescue_spec(
    inv: &Inventory,
    v: &model::Vps,
    node: &model::Node,
    root: &str,
    boot: &Bootstraps,
) -> Result<Option<RescueSpec>, DesiredError> {
    if !v.rescue || v.state != State::Active || model::media::rescue_unsupported(node).is_some() {
        return Ok(None);
    }
    let os: model::OsId = RESCUE_OS.parse().map_err(|_| DesiredError::NoRescueOs)?;
    if !boot.catalog.os.contains_key(&os) {
        return Err(DesiredError::NoRescueOs);
    }
    let as_rescue = model::Vps {
        os,
        appliance: None,
        ..v.clone()
    };
    let dir = rescue_dir(root);
    let Some(mut install) = install_spec_in(
        inv,
        &as_rescue,
        root,
        boot,
        format!("{dir}/ship/{}", v.id),
        format!("{dir}/build/{}", v.id),
        RESCUE_IMAGE_BYTES,
    )?
    else {
        return Err(DesiredError::NoRescueOs);
    };
    install
        .exports
        .push_str(&format!("export VPS_ROOT_LABEL='{RESCUE_LABEL}'\n"));
    let mut what = install.exports.clone();
    for (p, text) in &install.files {
        what.push_str(p);
        what.push('\0');
        what.push_str(text);
        what.push('\0');
    }
    let name = format!("{}.{}", v.id, &sha256_hex(&what)[..12]);
    Ok(Some(RescueSpec {
        image: rescue_image(root, &name),
        name,
        install,
    }))
}

/// An ISO a node fetches into its cache before a guest's config attaches it (`[boot]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct IsoSpec {
    /// Where it is fetched from (http or https; redirects stay on them).
    pub url: String,
    /// Its sha256, checked before it is kept (also its file name in the cache).
    pub sha256: String,
    /// The most bytes fetched: a larger ISO is refused.
    pub max_bytes: u64,
    /// Its path in the node's cache.
    pub path: String,
    /// Whether the guest boots it before its disk (`order = "cd"`): an installer or a live
    /// system, so no login prompt of the installed OS is awaited.
    #[serde(default)]
    pub boots_first: bool,
}

/// A restore of a backup onto a VPS's disk (`[restore]`), as the node carries it out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct RestoreSpec {
    /// Done once per generation.
    pub generation: u64,
    /// restic's snapshot id (short or full).
    pub snapshot: String,
    /// The VPS the backup was taken of (this one, or another of the same customer).
    pub from: VpsId,
    /// How the node reaches the repository (no secret: those come with the apply's input).
    pub repo: crate::backup::RepoAccess,
}

/// The console user of a VPS on its node (named after the VPS, as in DTC-Xen): an
/// `authorized_keys` whose every key may only run `xl console <vps>`, and the sudo rule for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct ConsoleSpec {
    /// The console user's home on the node.
    pub home: String,
    /// The `authorized_keys` text.
    pub keys: String,
    /// Its sha256, as observe reports it.
    pub keys_sha256: String,
    /// Number of keys.
    pub count: usize,
    /// Path of the sudoers drop-in on the node.
    pub sudoers_path: String,
    /// Its text.
    pub sudoers: String,
}

/// The console user's home on a node.
pub fn console_home(root: &str, vps: &VpsId) -> String {
    node_path(root, &format!("var/lib/gitvps/console/{vps}"))
}

/// The sudo rule that lets a VPS's console user reach its console.
pub fn console_sudoers(root: &str, vps: &VpsId) -> String {
    node_path(root, &format!("etc/sudoers.d/gitvps-console-{vps}"))
}

/// The console of a VPS: for an active VPS whose customer has keys. On Xen the keys run
/// `xl console`; on KVM they reach the guest's serial socket with `socat`.
fn console_spec(
    inv: &Inventory,
    v: &model::Vps,
    root: &str,
    hv: Hypervisor,
) -> Option<ConsoleSpec> {
    let keys = &inv.customers.get(&v.customer)?.ssh_keys;
    if v.state != State::Active || keys.is_empty() {
        return None;
    }
    let (command, sudoers) = match hv {
        Hypervisor::Xen => {
            let xl = node_path(root, "usr/sbin/xl");
            (
                format!("{xl} console {}", v.id),
                format!("{} ALL=(root) NOPASSWD: {xl} console {}\n", v.id, v.id),
            )
        }
        Hypervisor::Kvm => (
            crate::driver::kvm::console_command(root, &v.id),
            crate::driver::kvm::console_sudoers(root, &v.id),
        ),
    };
    let text: String = keys
        .iter()
        .map(|k| {
            format!(
                "restrict,pty,command=\"sudo -n {command}\" {}\n",
                k.as_str()
            )
        })
        .collect();
    Some(ConsoleSpec {
        home: console_home(root, &v.id),
        keys_sha256: sha256_hex(&text),
        keys: text,
        count: keys.len(),
        sudoers_path: console_sudoers(root, &v.id),
        sudoers,
    })
}

/// An OS install for one VPS: the files to ship to the node and the scripts' environment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct InstallSpec {
    /// The OS.
    pub os: String,
    /// The appliance, if any.
    pub appliance: Option<String>,
    /// Where the bootstrap files go on the node (`GITVPS_BOOTSTRAPS` is `<dir>/bootstraps`).
    pub ship_dir: String,
    /// The folder the root is built in (`TARGET`), then copied into the disk by `mke2fs -d`.
    pub build_dir: String,
    /// Repo-relative path and content of each file shipped.
    pub files: Vec<(String, String)>,
    /// `export NAME='value'` lines for the scripts.
    pub exports: String,
    /// `method = "cloud-image"`: the image written to the disk instead of running the scripts
    /// (`files` and `exports` are then empty).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cloud: Option<CloudSpec>,
}

impl InstallSpec {
    /// Whether the installed disk is one ext4 filesystem that gitvps checks and grows (every
    /// install but a cloud image booted through the firmware, which is partitioned).
    pub fn whole_disk_fs(&self) -> bool {
        self.cloud.as_ref().is_none_or(|c| c.kernel_boot)
    }
}

/// A cloud image install: the image the node fetches into its cache, writes to the disk and
/// grows to the product's size, and the NoCloud seed beside it (`docs/boot-media.md`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct CloudSpec {
    /// Where it is fetched from (http or https; redirects stay on them).
    pub url: String,
    /// Its sha256, checked before it is kept.
    pub sha256: String,
    /// The most bytes fetched.
    pub max_bytes: u64,
    /// The file's format: `raw` or `qcow2`.
    pub format: String,
    /// Its path in the node's cache.
    pub path: String,
    /// The guest boots the image's own kernel directly (`boot = "kernel"`), not through the
    /// firmware.
    pub kernel_boot: bool,
    /// The seed's folder on the node, which QEMU presents as a FAT volume labelled `cidata`.
    pub seed_dir: String,
    /// The instance id of this install.
    pub instance_id: String,
    /// The seed's files: name and content.
    pub seed: Vec<(String, String)>,
    /// The disk's size (the product's): the image is grown to it; a larger image is refused.
    pub disk_bytes: u64,
}

/// The bootstrap catalog and the files it ships, read from a repo.
#[derive(Debug, Clone, Default)]
pub struct Bootstraps {
    /// The catalog.
    pub catalog: model::bootstraps::Catalog,
    /// Content of every catalog file, by repo-relative path.
    pub files: BTreeMap<String, String>,
    /// Mirrors, proxy and keyring for the scripts (the per-VPS paths are filled in).
    pub run: model::bootstraps::RunVars,
}

/// What one node should hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeSpec {
    /// The node.
    pub node: NodeId,
    /// `host:port`, for messages.
    pub address: String,
    /// The node root (`/` on a real node).
    pub root: String,
    /// Commands run through `sudo -n`.
    pub sudo: bool,
    /// The hypervisor, which picks the driver.
    pub hypervisor: Hypervisor,
    /// KVM nodes: the accelerator their guests are started with.
    pub accel: Option<model::values::Accel>,
    /// Seconds a started guest with an installed OS may take to reach its login prompt
    /// (KVM; 0: not waited for).
    pub boot_timeout_secs: u32,
    /// VPSes whose steps run side by side on this node (`[reconciler] vps_at_once`).
    pub vps_at_once: u32,
    /// Disk storage.
    pub store: Store,
    /// Its VPSes, by id.
    pub vps: BTreeMap<VpsId, VpsSpec>,
}

/// The desired state of the fleet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Desired {
    /// Nodes by id.
    pub nodes: BTreeMap<NodeId, NodeSpec>,
    /// Days a destroyed VPS's disk is kept.
    pub retention_days: u32,
    /// Seconds a graceful shutdown may take.
    pub shutdown_timeout_secs: u32,
    /// Whether each node may take a VPS moved to it (`crate::moves`).
    pub room: BTreeMap<NodeId, Room>,
}

/// Whether a node may take a VPS moved to it: not in maintenance, and within its capacity
/// (the capacity rule of `gitvps validate`, with the VPSes the inventory puts on it).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Room {
    /// `maintenance = true` in its node file.
    pub maintenance: bool,
    /// What is overcommitted beyond what the node sells, if anything.
    pub over: Option<String>,
}

/// A node's [`Room`] from the inventory.
fn room_of(n: &model::Node, used: Option<&model::Usage>) -> Room {
    let sell = n.sellable();
    let over = used.and_then(|u| {
        let mut over = Vec::new();
        if u.disk > sell.disk.0 {
            over.push(format!(
                "disk: its VPSes take {}, it sells {}",
                model::values::Size(u.disk),
                sell.disk
            ));
        }
        if u.ram > sell.ram.0 {
            over.push(format!(
                "RAM: its VPSes take {}, it sells {}",
                model::values::Size(u.ram),
                sell.ram
            ));
        }
        if u.vcpus > u64::from(sell.vcpus) {
            over.push(format!(
                "vCPUs: its VPSes take {}, it sells {}",
                u.vcpus, sell.vcpus
            ));
        }
        (!over.is_empty()).then(|| over.join("; "))
    });
    Room {
        maintenance: n.maintenance,
        over,
    }
}

/// A path under a node root: `/x` for root `/`, `/srv/node/x` for root `/srv/node`.
pub fn node_path(root: &str, rel: &str) -> String {
    let rel = rel.trim_start_matches('/');
    if root == "/" {
        format!("/{rel}")
    } else {
        format!("{}/{rel}", root.trim_end_matches('/'))
    }
}

/// Hex sha256 of a text.
pub fn sha256_hex(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The config templates of a repo: Xen's `xl.cfg` and KVM's QEMU arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Templates {
    /// `templates/xen.cfg.j2`.
    pub xen: String,
    /// `templates/kvm.args.j2`.
    pub kvm: String,
}

impl Default for Templates {
    fn default() -> Self {
        Templates {
            xen: crate::driver::xen::DEFAULT_TEMPLATE.to_owned(),
            kvm: crate::driver::kvm::DEFAULT_TEMPLATE.to_owned(),
        }
    }
}

/// Computes every node's desired state from the inventory and the config templates.
pub fn desired(
    inv: &Inventory,
    templates: &Templates,
    boot: &Bootstraps,
) -> Result<Desired, DesiredError> {
    let mut env = minijinja::Environment::new();
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    let bad = |source| DesiredError::Template {
        vps: "(any)".into(),
        source,
    };
    env.add_template("xen.cfg", &templates.xen).map_err(bad)?;
    env.add_template("kvm.args", &templates.kvm)
        .map_err(|source| crate::driver::kvm::ArgsError::Template {
            vps: "(any)".into(),
            source,
        })?;
    let tmpl = env.get_template("xen.cfg").map_err(bad)?;
    let kvm_tmpl =
        env.get_template("kvm.args")
            .map_err(|source| crate::driver::kvm::ArgsError::Template {
                vps: "(any)".into(),
                source,
            })?;
    let mut nodes: BTreeMap<NodeId, NodeSpec> = inv
        .nodes
        .values()
        .map(|n| (n.id.clone(), node_spec(inv, n)))
        .collect();
    for v in inv.vps.values() {
        let (Some(spec), Some(node)) = (nodes.get_mut(&v.node), inv.nodes.get(&v.node)) else {
            continue;
        };
        let plan = inv.resources_of(v).ok_or_else(|| DesiredError::NotAPlan {
            vps: v.id.to_string(),
            product: v.product.to_string(),
        })?;
        // A VPS the traffic policy throttled gets `[traffic] throttle_rate` until it is lifted.
        let throttled;
        let res = if v.throttled {
            throttled = model::Resources {
                bandwidth: Some(inv.settings.traffic.throttle_rate.clone()),
                ..plan.clone()
            };
            &throttled
        } else {
            plan
        };
        let disk_path = disk_path(spec, &v.id);
        let rescue = rescue_spec(inv, v, node, &spec.root, boot)?;
        let install = install_spec(inv, v, &spec.root, boot, res.disk.bytes())?;
        let cloud = install.as_ref().and_then(|i| i.cloud.as_ref());
        let (config, tap) = match &node.kvm {
            Some(kvm) if node.hypervisor == Hypervisor::Kvm => kvm_config(
                inv,
                node,
                kvm,
                spec,
                v,
                res,
                rescue.as_ref().map(|r| r.image.as_str()),
                &kvm_tmpl,
                cloud,
            )?,
            _ => {
                // The rescue system runs as PVH (or PV) whatever the VPS's own type; an ISO
                // stays out of it.
                let (guest_type, cdrom) = match &rescue {
                    Some(_) => (
                        model::media::rescue_guest_type(node).unwrap_or(GuestType::Pvh),
                        None,
                    ),
                    None => (
                        inv.guest_type_of(v).unwrap_or(GuestType::Pvh),
                        xen_cdrom(inv, v, &spec.root),
                    ),
                };
                let config = crate::driver::xen::config(
                    &tmpl,
                    v,
                    res,
                    &disk_path,
                    guest_type,
                    cdrom.as_ref().map(|(p, o)| (p.as_str(), *o)),
                    rescue.as_ref().map(|r| r.image.as_str()),
                )?;
                (config, None)
            }
        };
        let config_path = config_path(spec, &v.id);
        let run = v.state == State::Active && v.power == Power::Running;
        let console = console_spec(inv, v, &spec.root, spec.hypervisor);
        spec.vps.insert(
            v.id.clone(),
            VpsSpec {
                id: v.id.clone(),
                state: v.state,
                product: v.product.to_string(),
                run,
                disk_bytes: res.disk.bytes(),
                disk_path,
                adopted: v.adopted,
                config_path,
                config_sha256: sha256_hex(&config),
                config,
                actions: v.actions,
                destroyed: v.destroyed,
                install,
                console,
                tap,
                restore: restore_spec(inv, v),
                snapshots: crate::snapshot::SnapshotsSpec {
                    names: (v.snapshots.list.iter())
                        .map(|s| s.name.to_string())
                        .collect(),
                    // A qcow2 internal snapshot allocates nothing when taken.
                    cow_bytes: match spec.store {
                        Store::Lvm { .. } => inv.snapshot_space_of(v).unwrap_or(0),
                        Store::File { .. } => 0,
                    },
                    revert: (v.snapshots.revert.as_ref())
                        .map(|r| (r.snapshot.to_string(), r.generation)),
                },
                iso: iso_spec(inv, v, &spec.root),
                rescue_waits: v.rescue && rescue.is_none(),
                rescue,
            },
        );
    }
    let usage = inv.usage();
    let room = (inv.nodes.values())
        .map(|n| (n.id.clone(), room_of(n, usage.get(&n.id))))
        .collect();
    Ok(Desired {
        nodes,
        room,
        retention_days: inv.settings.reconciler.retention_days,
        shutdown_timeout_secs: inv.settings.reconciler.shutdown_timeout_secs,
    })
}

/// A Xen VPS's `[boot]` ISO: its path in the node's cache and the boot order.
fn xen_cdrom(
    inv: &Inventory,
    v: &model::Vps,
    root: &str,
) -> Option<(String, model::media::BootOrder)> {
    let b = v.boot.as_ref()?;
    let iso = iso_spec(inv, v, root)?;
    Some((iso.path, b.order))
}

/// A VPS's `[boot]` ISO as its node fetches it; `None` without one.
fn iso_spec(inv: &Inventory, v: &model::Vps, root: &str) -> Option<IsoSpec> {
    let boot = v.boot.as_ref()?;
    let iso = model::media::resolve(
        boot,
        &inv.settings.boot.library,
        inv.settings.boot.max_iso_size,
    )?;
    Some(IsoSpec {
        path: crate::driver::iso_path(root, &iso.sha256),
        url: iso.url.as_str().to_owned(),
        sha256: iso.sha256.as_str().to_owned(),
        max_bytes: iso.max_bytes,
        boots_first: boot.order == model::media::BootOrder::Cd,
    })
}

/// A VPS's `[restore]` with the repository of `gitvps.toml` (validation requires one).
fn restore_spec(inv: &Inventory, v: &model::Vps) -> Option<RestoreSpec> {
    let r = v.restore.as_ref()?;
    let repo = inv.settings.backup.repository.as_ref()?;
    Some(RestoreSpec {
        generation: r.generation,
        snapshot: r.snapshot.as_str().to_owned(),
        from: r.source(&v.id).clone(),
        repo: crate::backup::RepoAccess::of(repo),
    })
}

/// A node's spec before its VPSes are added.
fn node_spec(inv: &Inventory, n: &model::Node) -> NodeSpec {
    let root = n.root.as_str().to_owned();
    let store = match &n.storage {
        Storage::Lvm { vg } => Store::Lvm { vg: vg.to_string() },
        Storage::File { dir, format } => Store::File {
            dir: node_path(&root, dir.as_str()),
            format: *format,
        },
    };
    NodeSpec {
        node: n.id.clone(),
        address: format!("{}:{}", n.address, n.port),
        root,
        sudo: n.sudo,
        hypervisor: n.hypervisor,
        accel: n.kvm.as_ref().map(|k| k.accel),
        boot_timeout_secs: inv.settings.reconciler.boot_timeout_secs,
        vps_at_once: inv.settings.reconciler.vps_at_once,
        store,
        vps: BTreeMap::new(),
    }
}

/// Where a VPS's disk is on its node.
pub fn disk_path(spec: &NodeSpec, vps: &VpsId) -> String {
    match &spec.store {
        Store::Lvm { vg } => node_path(&spec.root, &format!("dev/{vg}/{vps}")),
        Store::File { dir, format } => format!("{dir}/{vps}.{}", format.extension()),
    }
}

/// Where a VPS's domain config is on its node.
pub fn config_path(spec: &NodeSpec, vps: &VpsId) -> String {
    match spec.hypervisor {
        Hypervisor::Xen => node_path(&spec.root, &format!("etc/xen/gitvps/{vps}.cfg")),
        Hypervisor::Kvm => crate::driver::kvm::config_path(&spec.root, vps),
    }
}

/// A KVM guest's arguments file, and its tap when it is bridged.
#[allow(clippy::too_many_arguments)]
fn kvm_config(
    inv: &Inventory,
    node: &model::Node,
    kvm: &model::Kvm,
    spec: &NodeSpec,
    v: &model::Vps,
    res: &model::Resources,
    rescue: Option<&str>,
    tmpl: &minijinja::Template<'_, '_>,
    cloud: Option<&CloudSpec>,
) -> Result<(String, Option<String>), DesiredError> {
    let disk_path = disk_path(spec, &v.id);
    let mut vars = crate::driver::kvm::vars(v, inv, node, res, &spec.root, &disk_path, kvm);
    if spec.store.image_format() == Some(ImageFormat::Qcow2) {
        vars.disk_format = "qcow2";
    }
    if let Some(c) = cloud {
        vars.seed = crate::driver::kvm::opt(&c.seed_dir);
        vars.firmware = !c.kernel_boot;
    }
    // Last: the rescue system boots its own kernel, whatever the VPS's media.
    if let Some(image) = rescue {
        vars.set_rescue(image);
    }
    let bridge = match &kvm.network {
        model::KvmNetwork::Bridge { bridge } => Some(bridge.as_str()),
        model::KvmNetwork::User { .. } => None,
    };
    let plumbing = crate::driver::kvm::Plumbing {
        bridge,
        // Xen's credit weight (256 by default) on cgroup's scale (100 by default).
        cpu_weight: (res.cpu_weight.saturating_mul(100) / 256).clamp(1, 10_000),
        cpu_cap: res.cpu_cap,
        ips: &v.ips,
        rate: res.bandwidth.as_ref(),
    };
    let config = crate::driver::kvm::args_file(&spec.root, &v.id, tmpl, &vars, &plumbing)?;
    Ok((config, bridge.map(|_| crate::driver::kvm::tap_name(&v.id))))
}

/// The install of a VPS's OS, or `None` when its OS is not in the catalog or installs nothing.
fn install_spec(
    inv: &Inventory,
    v: &model::Vps,
    root: &str,
    boot: &Bootstraps,
    disk_bytes: u64,
) -> Result<Option<InstallSpec>, DesiredError> {
    install_spec_in(
        inv,
        v,
        root,
        boot,
        node_path(root, &format!("var/lib/gitvps/bootstraps/{}", v.id)),
        node_path(root, &format!("var/lib/gitvps/build/{}", v.id)),
        disk_bytes,
    )
}

/// [`install_spec`] with the folders the files are shipped to and the root is built in.
fn install_spec_in(
    inv: &Inventory,
    v: &model::Vps,
    root: &str,
    boot: &Bootstraps,
    ship_dir: String,
    build_dir: String,
    disk_bytes: u64,
) -> Result<Option<InstallSpec>, DesiredError> {
    let Some(os) = boot.catalog.os.get(&v.os) else {
        return Ok(None);
    };
    if !os.method.installs() || v.state == State::Destroyed {
        return Ok(None);
    }
    let mut env = boot
        .catalog
        .env_for(inv, v)
        .map_err(|source| DesiredError::Bootstrap {
            vps: v.id.to_string(),
            source,
        })?;
    if let Some(img) = os.method.cloud_image() {
        return Ok(Some(InstallSpec {
            os: v.os.to_string(),
            appliance: v.appliance.as_ref().map(ToString::to_string),
            ship_dir,
            build_dir,
            files: Vec::new(),
            exports: String::new(),
            cloud: Some(cloud_spec(inv, v, root, boot, img, &env, disk_bytes)?),
        }));
    }
    env.run = model::bootstraps::RunVars {
        bootstraps: Some(format!("{ship_dir}/bootstraps")),
        target: Some(build_dir.clone()),
        cache: Some(node_path(root, "var/cache/gitvps")),
        ..boot.run.clone()
    };
    let mut files = Vec::new();
    for p in boot.catalog.files_for(&v.os, v.appliance.as_ref()) {
        let text = boot
            .files
            .get(&p)
            .ok_or_else(|| DesiredError::MissingFile(p.clone()))?;
        files.push((p, text.clone()));
    }
    Ok(Some(InstallSpec {
        os: v.os.to_string(),
        appliance: v.appliance.as_ref().map(ToString::to_string),
        ship_dir,
        build_dir,
        files,
        exports: env.shell_exports(),
        cloud: None,
    }))
}

/// Where a VPS's NoCloud seed is kept on its node.
pub fn seed_dir(root: &str, vps: &VpsId) -> String {
    node_path(root, &format!("var/lib/gitvps/seed/{vps}"))
}

/// The cloud image install of a VPS: the image from the node's cache, and its seed.
fn cloud_spec(
    inv: &Inventory,
    v: &model::Vps,
    root: &str,
    boot: &Bootstraps,
    img: &model::bootstraps::CloudImage,
    env: &model::bootstraps::BootstrapEnv,
    disk_bytes: u64,
) -> Result<CloudSpec, DesiredError> {
    let script = match &v.appliance {
        Some(a) => {
            let p = format!(
                "{}/{a}/{}",
                model::bootstraps::APPLIANCES_DIR,
                model::bootstraps::FIRSTBOOT
            );
            Some(
                boot.files
                    .get(&p)
                    .ok_or_else(|| DesiredError::MissingFile(p.clone()))?
                    .as_str(),
            )
        }
        None => None,
    };
    let instance = crate::cloudinit::instance_id(env, v.actions.reinstall);
    let seed = crate::cloudinit::seed(
        env,
        &crate::driver::kvm::qemu_mac(&v.id),
        &instance,
        script
            .map(|script| crate::cloudinit::FirstBoot { script })
            .as_ref(),
    );
    Ok(CloudSpec {
        url: img.url.as_str().to_owned(),
        sha256: img.sha256.as_str().to_owned(),
        max_bytes: img.size.bytes().min(inv.settings.boot.max_iso_size.bytes()),
        format: img.format.to_string(),
        path: crate::driver::cloud_image_path(root, &img.sha256),
        kernel_boot: img.boot == model::bootstraps::CloudBoot::Kernel,
        seed_dir: seed_dir(root, &v.id),
        instance_id: instance,
        seed: (seed.files().iter())
            .map(|(n, c)| ((*n).to_owned(), (*c).to_owned()))
            .collect(),
        disk_bytes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_under_a_root() {
        assert_eq!(
            node_path("/", "etc/xen/gitvps/x.cfg"),
            "/etc/xen/gitvps/x.cfg"
        );
        assert_eq!(node_path("/srv/n1", "/dev/vg0/x"), "/srv/n1/dev/vg0/x");
    }

    #[test]
    fn the_example_fleet_renders() {
        let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let inv = Inventory::load(&repo).unwrap();
        let d = desired(&inv, &Templates::default(), &Bootstraps::default()).unwrap();
        let xen02 = &d.nodes[&"node0109".parse::<NodeId>().unwrap()].vps
            [&"xen02".parse::<VpsId>().unwrap()];
        insta::assert_snapshot!(xen02.config);
        assert_eq!(xen02.disk_path, "/dev/vg0/xen02");
        assert_eq!(xen02.disk_bytes, 30 << 30);
        assert!(xen02.run);
        let xen01 = &d.nodes[&"node0109".parse::<NodeId>().unwrap()].vps
            [&"xen01".parse::<VpsId>().unwrap()];
        assert!(!xen01.run, "power = stopped");
        let xen04 = &d.nodes[&"node0201".parse::<NodeId>().unwrap()].vps
            [&"xen04".parse::<VpsId>().unwrap()];
        assert_eq!(xen04.disk_path, "/var/lib/gitvps/disks/xen04.img");
    }

    /// The repo's own inventory, with xen02 and its node.
    fn xen02() -> (Inventory, NodeId, VpsId) {
        let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let inv = Inventory::load(&repo).unwrap();
        (inv, "node0109".parse().unwrap(), "xen02".parse().unwrap())
    }

    /// What the planner wants of xen02 in `inv`.
    fn xen02_spec(inv: &Inventory) -> VpsSpec {
        let d = desired(inv, &Templates::default(), &Bootstraps::default()).unwrap();
        d.nodes[&"node0109".parse::<NodeId>().unwrap()].vps[&"xen02".parse::<VpsId>().unwrap()]
            .clone()
    }

    /// A cloud image OS (issue 18) on a KVM node: the install carries the image, the disk's
    /// size and the seed; the guest's arguments attach the seed as a `cidata` vvfat drive and
    /// boot through the firmware (no `-kernel`), or the image's kernel with `boot = "kernel"`;
    /// a reinstall changes the instance id.
    #[test]
    fn a_cloud_image_vps_gets_its_seed_and_its_boot() {
        let (mut inv, node, id) = xen02();
        let n = inv.nodes.get_mut(&node).unwrap();
        n.hypervisor = Hypervisor::Kvm;
        n.kvm = Some(model::Kvm::default());
        let v = inv.vps.get_mut(&id).unwrap();
        v.os = "debian-12-cloud".parse().unwrap();
        v.appliance = None;
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("bootstraps/os/debian-12-cloud");
        std::fs::create_dir_all(&dir).unwrap();
        let meta = |boot: &str| {
            format!(
                "name = \"Debian 12 (cloud)\"\nfamily = \"debian\"\nmethod = \"cloud-image\"\nrelease = \"bookworm\"\n[cloud_image]\nurl = \"https://cloud.example.net/d.qcow2\"\nsha256 = \"{}\"\nsize = \"400 MiB\"\nboot = \"{boot}\"\n",
                "ab".repeat(32)
            )
        };
        let spec = |inv: &Inventory, boot: &str| {
            std::fs::write(dir.join("meta.toml"), meta(boot)).unwrap();
            let b = Bootstraps {
                catalog: model::bootstraps::Catalog::load(tmp.path()).unwrap(),
                ..Bootstraps::default()
            };
            let d = desired(inv, &Templates::default(), &b).unwrap();
            d.nodes[&node].vps[&id].clone()
        };
        let v = spec(&inv, "firmware");
        let install = v.install.as_ref().expect("an install");
        let cloud = install.cloud.as_ref().expect("a cloud image install");
        assert!(install.files.is_empty() && install.exports.is_empty());
        assert_eq!(cloud.url, "https://cloud.example.net/d.qcow2");
        assert_eq!(cloud.max_bytes, 400 << 20);
        assert_eq!(cloud.disk_bytes, v.disk_bytes);
        assert_eq!(cloud.seed_dir, "/var/lib/gitvps/seed/xen02");
        assert_eq!(cloud.instance_id, "gitvps-xen02-0");
        let names: Vec<&str> = cloud.seed.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["meta-data", "user-data", "network-config"]);
        assert!(
            v.config.contains(
                "\nif=none,id=seed0,format=raw,readonly=on,file.driver=vvfat,file.dir=/var/lib/gitvps/seed/xen02,file.label=cidata\n-device\nvirtio-blk-pci,drive=seed0\n"
            ),
            "{}",
            v.config
        );
        assert!(!v.config.contains("-kernel"), "{}", v.config);
        let kernel = spec(&inv, "kernel");
        assert!(kernel.config.contains("\n-kernel\n") && kernel.config.contains("cidata"));
        inv.vps.get_mut(&id).unwrap().actions.reinstall = 3;
        let again = spec(&inv, "kernel");
        let cloud = again.install.unwrap().cloud.unwrap();
        assert_eq!(cloud.instance_id, "gitvps-xen02-3");
        assert!(cloud.seed[0].1.contains("instance-id: \"gitvps-xen02-3\""));
    }

    /// xen02's config as each guest type, chosen by the VPS, its plan or its node.
    #[test]
    fn each_guest_type_renders() {
        let (base, node, id) = xen02();
        let render = |inv: &Inventory| xen02_spec(inv).config;
        let mut by_vps = base.clone();
        by_vps.vps.get_mut(&id).unwrap().guest_type = Some(GuestType::Pv);
        let pv = render(&by_vps);
        insta::assert_snapshot!("xen_pv", pv);
        let mut by_node = base.clone();
        by_node
            .nodes
            .get_mut(&node)
            .unwrap()
            .xen
            .as_mut()
            .unwrap()
            .guest_type = GuestType::Pv;
        assert_eq!(render(&by_node), pv, "the node's default");
        let mut by_plan = by_node.clone();
        let plan = by_plan.vps[&id].product.clone();
        if let Some(model::ProductKind::Plan(r)) =
            by_plan.products.get_mut(&plan).map(|p| &mut p.kind)
        {
            r.guest_type = Some(GuestType::Hvm);
        }
        let hvm = render(&by_plan);
        insta::assert_snapshot!("xen_hvm", hvm);
        by_plan.vps.get_mut(&id).unwrap().guest_type = Some(GuestType::Pvh);
        let pvh = render(&by_plan);
        assert_eq!(
            pvh,
            render(&base),
            "the VPS's own type wins over its plan's"
        );
        insta::assert_snapshot!("xen_pvh", pvh);
    }

    /// A `[boot]` ISO on a Xen node makes the domain HVM with the ISO as a read-only CD-ROM
    /// from the node's cache, booted first or second as `order` says; ejecting it gives the
    /// VPS its own guest type back.
    #[test]
    fn a_xen_iso_boots_an_hvm_domain_from_a_cdrom() {
        use model::media::{Boot, BootOrder, IsoSource};
        let (base, _, id) = xen02();
        let render = |inv: &Inventory| {
            let v = xen02_spec(inv);
            (v.config, v.iso)
        };
        let sha = "ab".repeat(32);
        let mut with_iso = base.clone();
        with_iso.vps.get_mut(&id).unwrap().boot = Some(Boot {
            iso: IsoSource::Url {
                url: "https://example.net/install.iso".parse().unwrap(),
                sha256: sha.parse().unwrap(),
            },
            order: BootOrder::Cd,
        });
        let (cfg, iso) = render(&with_iso);
        let iso = iso.expect("the node fetches the ISO");
        assert_eq!(iso.path, format!("/var/cache/gitvps/iso/{sha}.iso"));
        insta::assert_snapshot!("xen_iso", cfg);
        assert!(
            cfg.contains("type = \"hvm\"") && cfg.contains("boot = \"dc\""),
            "{cfg}"
        );
        with_iso
            .vps
            .get_mut(&id)
            .unwrap()
            .boot
            .as_mut()
            .unwrap()
            .order = BootOrder::Disk;
        assert!(render(&with_iso).0.contains("boot = \"cd\""));
        let (ejected, iso) = render(&base);
        assert!(iso.is_none());
        assert!(
            !ejected.contains("cdrom") && ejected.contains("type = \"pvh\""),
            "{ejected}"
        );
    }
}
