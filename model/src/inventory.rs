//! The typed inventory: catalog, pools, nodes, customers and VPSes, as loaded from the repo.
//! Types only carry values that already passed their grammar; cross-file rules live in `validate`.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

use chrono::{Months, NaiveDate};
use ipnet::{Ipv4Net, Ipv6Net};

use crate::diag::Origin;
use crate::ids::{ApplianceId, CustomerId, NodeId, OsId, PoolId, ProductId, VpsId};
use crate::settings::Settings;
use crate::values::*;

/// The whole desired state of a hosting business.
#[derive(Debug, Clone)]
pub struct Inventory {
    /// Repo-wide settings (`gitvps.toml`).
    pub settings: Settings,
    /// Currency every price is in (`products.toml`).
    pub currency: Currency,
    /// The product catalog, base products and renewals.
    pub products: BTreeMap<ProductId, Product>,
    /// IP pools (`pools.toml`).
    pub pools: BTreeMap<PoolId, Pool>,
    /// dom0 nodes (`inventory/nodes/`).
    pub nodes: BTreeMap<NodeId, Node>,
    /// Customers (`inventory/customers/`).
    pub customers: BTreeMap<CustomerId, Customer>,
    /// VPSes (`inventory/vps/`).
    pub vps: BTreeMap<VpsId, Vps>,
}

/// A product of the catalog: a plan with resources, or a renewal of one.
#[derive(Debug, Clone)]
pub struct Product {
    /// Its id.
    pub id: ProductId,
    /// Name shown to customers.
    pub name: String,
    /// A plan, or a renewal of a plan.
    pub kind: ProductKind,
    /// How many months one payment buys (0 for a traffic block, which lasts the rest of the
    /// VPS's traffic period).
    pub period_months: u32,
    /// Price per period.
    pub price: Money,
    /// Charged once, on the first order.
    pub setup_fee: Money,
    /// Paid to a reseller per period.
    pub commission: Money,
    /// Hidden from the public catalog.
    pub private: bool,
    /// Where it was defined.
    pub origin: Origin,
}

impl Product {
    /// The plan this product sells or renews (a traffic block: itself, which no VPS is on).
    pub fn plan_id(&self) -> &ProductId {
        match &self.kind {
            ProductKind::Plan(_) | ProductKind::TrafficBlock { .. } => &self.id,
            ProductKind::Renewal { renews } => renews,
        }
    }

    /// The resources, for a plan.
    pub fn resources(&self) -> Option<&Resources> {
        match &self.kind {
            ProductKind::Plan(r) => Some(r),
            ProductKind::Renewal { .. } | ProductKind::TrafficBlock { .. } => None,
        }
    }

    /// The extra traffic, for a traffic block.
    pub fn traffic_block(&self) -> Option<Size> {
        match &self.kind {
            ProductKind::TrafficBlock { size } => Some(*size),
            ProductKind::Plan(_) | ProductKind::Renewal { .. } => None,
        }
    }
}

/// What kind of product it is.
#[derive(Debug, Clone)]
pub enum ProductKind {
    /// A plan that a VPS can be on.
    Plan(Resources),
    /// A renewal offer for an existing VPS of another plan.
    Renewal {
        /// The plan it renews.
        renews: ProductId,
    },
    /// Extra traffic for a VPS on a metered plan (`traffic_block = "100 GiB"`): added to the
    /// quota of the traffic period it is bought in.
    TrafficBlock {
        /// How much traffic it adds.
        size: Size,
    },
}

/// A traffic block bought for a VPS (`[[traffic_block]]` in its file): `size` more traffic in
/// the period starting `period`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TrafficBlock {
    /// The first day of the traffic period it counts in.
    pub period: NaiveDate,
    /// The traffic it adds.
    pub size: Size,
    /// The invoice that sold it.
    pub invoice: crate::policy::InvoiceNumber,
}

/// What a plan gives a VPS.
#[derive(Debug, Clone, PartialEq)]
pub struct Resources {
    /// Disk size.
    pub disk: Size,
    /// Memory.
    pub ram: Size,
    /// Virtual CPUs.
    pub vcpus: u32,
    /// Monthly traffic quota.
    pub traffic: Size,
    /// Network rate limit of the VPS's interface, if any.
    pub bandwidth: Option<Rate>,
    /// Xen credit2 weight (1 to 65535, 256 by default).
    pub cpu_weight: u32,
    /// CPU cap in percent of one CPU (0: none).
    pub cpu_cap: u32,
    /// Disk I/O operations per second cap (1 to 1000000), if any. KVM only: QEMU's
    /// `throttling.iops-total`; the Xen driver ignores it.
    pub disk_iops: Option<u32>,
    /// Disk throughput cap, if any. KVM only: QEMU's `throttling.bps-total`; the Xen
    /// driver ignores it.
    pub disk_bandwidth: Option<ByteRate>,
    /// Backups of its VPSes (`[product.backup]`; off when absent).
    pub backup: crate::backup::BackupPolicy,
    /// The Xen guest type of its VPSes (their node's `[xen] guest_type` when absent); KVM
    /// nodes ignore it.
    pub guest_type: Option<GuestType>,
    /// How many snapshots of its disk a VPS may keep (`snapshot_limit`; 0, the default: none).
    pub snapshot_limit: u32,
}

/// An IP pool.
#[derive(Debug, Clone)]
pub struct Pool {
    /// Its id.
    pub id: PoolId,
    /// Location name, as customers see it.
    pub location: String,
    /// The IPv4 network.
    pub network: Ipv4Net,
    /// The gateway address.
    pub gateway: Ipv4Addr,
    /// DNS resolvers handed to VPSes.
    pub dns: Vec<IpAddr>,
    /// Addresses never handed out.
    pub reserved: Vec<Ipv4Range>,
    /// Reverse DNS zone layout.
    pub rdns_zone: RdnsZone,
    /// IPv6 prefix; each VPS gets a /64 from it.
    pub ipv6: Option<Ipv6Net>,
    /// Where it was defined.
    pub origin: Origin,
}

/// Why an address of a pool cannot be given to a VPS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unusable {
    /// Outside the network.
    Outside,
    /// The network address.
    Network,
    /// The broadcast address.
    Broadcast,
    /// The gateway.
    Gateway,
    /// In a reserved range.
    Reserved,
    /// One of the pool's DNS resolvers.
    Dns,
}

impl Pool {
    /// The netmask, derived from the network.
    pub fn netmask(&self) -> Ipv4Addr {
        self.network.netmask()
    }

    /// The broadcast address, derived from the network.
    pub fn broadcast(&self) -> Ipv4Addr {
        self.network.broadcast()
    }

    /// Why `ip` cannot be handed out, or `None` when it can.
    pub fn unusable(&self, ip: Ipv4Addr) -> Option<Unusable> {
        let small = self.network.prefix_len() >= 31;
        if !self.network.contains(&ip) {
            Some(Unusable::Outside)
        } else if ip == self.gateway {
            Some(Unusable::Gateway)
        } else if !small && ip == self.network.network() {
            Some(Unusable::Network)
        } else if !small && ip == self.network.broadcast() {
            Some(Unusable::Broadcast)
        } else if self.reserved.iter().any(|r| r.contains(ip)) {
            Some(Unusable::Reserved)
        } else if self.dns.contains(&IpAddr::V4(ip)) {
            Some(Unusable::Dns)
        } else {
            None
        }
    }

    /// Addresses that could ever be handed out.
    pub fn usable_count(&self) -> u64 {
        self.network
            .hosts()
            .filter(|ip| self.unusable(*ip).is_none())
            .count() as u64
    }
}

/// How a node stores VPS disks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Storage {
    /// Logical volumes in a volume group.
    Lvm {
        /// The volume group.
        vg: VgName,
    },
    /// Image files in a folder.
    File {
        /// The folder.
        dir: AbsPath,
        /// The images' format (`raw` by default; `qcow2` on KVM nodes only).
        format: ImageFormat,
    },
}

/// What a node can hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capacity {
    /// Memory for guests.
    pub ram: Size,
    /// Disk for guests.
    pub disk: Size,
    /// Virtual CPUs for guests.
    pub vcpus: u32,
}

/// How far each resource of a node may be overcommitted.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Overcommit {
    /// Memory ratio.
    pub ram: Ratio,
    /// Disk ratio.
    pub disk: Ratio,
    /// vCPU ratio.
    pub vcpus: Ratio,
}

impl Default for Overcommit {
    fn default() -> Self {
        Overcommit {
            ram: Ratio::ONE,
            disk: Ratio::ONE,
            vcpus: Ratio::ONE,
        }
    }
}

/// Settings of a KVM node (`[kvm]` in its file), defaults filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kvm {
    /// How guests' CPUs run: hardware KVM or software TCG.
    pub accel: Accel,
    /// How guests are connected.
    pub network: KvmNetwork,
}

impl Default for Kvm {
    /// `accel = "kvm"`, `network = "bridge"`, `bridge = "br0"`.
    fn default() -> Self {
        Kvm {
            accel: Accel::Kvm,
            network: KvmNetwork::Bridge {
                bridge: DEFAULT_KVM_BRIDGE.to_owned(),
            },
        }
    }
}

/// Settings of a Xen node (`[xen]` in its file), defaults filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Xen {
    /// The guest type of its VPSes when neither their plan nor their file names one.
    pub guest_type: GuestType,
    /// The words of `xl info`'s `virt_caps` line, when the node file states them: which guest
    /// types the node can run. `None`: not stated, every type is taken to run.
    pub virt_caps: Option<Vec<String>>,
}

impl Default for Xen {
    /// `guest_type = "pvh"`, capabilities not stated.
    fn default() -> Self {
        Xen {
            guest_type: GuestType::Pvh,
            virt_caps: None,
        }
    }
}

impl Xen {
    /// Whether the node can run guests of this type, as far as its file says.
    pub fn runs(&self, t: GuestType) -> bool {
        self.virt_caps.as_deref().is_none_or(|caps| t.runs_on(caps))
    }
}

/// The bridge a KVM node's guests join when its file names none.
pub const DEFAULT_KVM_BRIDGE: &str = "br0";

/// How a KVM node connects its guests, with the settings of that mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KvmNetwork {
    /// Each guest's tap joins a Linux bridge.
    Bridge {
        /// The bridge interface (a valid Linux interface name, `br0` by default).
        bridge: String,
    },
    /// QEMU user-mode networking: each guest's SSH (port 22) is forwarded from
    /// `127.0.0.1:(forward_base + last octet of the guest's first IPv4 address)`.
    User {
        /// The port of last octet 0 (1024 to 65280, so that every octet gives a port).
        forward_base: u16,
    },
}

impl KvmNetwork {
    /// The mode, as written in `[kvm] network`.
    pub fn mode(&self) -> KvmNetworkMode {
        match self {
            KvmNetwork::Bridge { .. } => KvmNetworkMode::Bridge,
            KvmNetwork::User { .. } => KvmNetworkMode::User,
        }
    }
}

/// The host port that forwards to a user-mode guest's SSH: `forward_base` plus the last
/// octet of `ipv4` (the guest's first IPv4 address); `None` past 65535.
pub fn ssh_forward_port(forward_base: u16, ipv4: Ipv4Addr) -> Option<u16> {
    forward_base.checked_add(u16::from(ipv4.octets()[3]))
}

/// A dom0.
#[derive(Debug, Clone)]
pub struct Node {
    /// Its id (the file name).
    pub id: NodeId,
    /// Where sshd listens.
    pub address: Host,
    /// sshd port.
    pub port: u16,
    /// The user the reconciler logs in as.
    pub user: UnixUser,
    /// Run node commands through `sudo -n` (when `user` is not root).
    pub sudo: bool,
    /// The pinned SSH host key.
    pub host_key: SshPublicKey,
    /// Location name.
    pub location: String,
    /// ISO country code.
    pub country: Country,
    /// The hypervisor it runs.
    pub hypervisor: Hypervisor,
    /// KVM settings: `Some` (defaults filled in) exactly when `hypervisor` is
    /// [`Hypervisor::Kvm`], `None` for Xen.
    pub kvm: Option<Kvm>,
    /// Xen settings: `Some` (defaults filled in) exactly when `hypervisor` is
    /// [`Hypervisor::Xen`], `None` for KVM.
    pub xen: Option<Xen>,
    /// Disk storage.
    pub storage: Storage,
    /// Pools its VPSes take addresses from, in order of preference.
    pub pools: Vec<PoolId>,
    /// What it can hold.
    pub capacity: Capacity,
    /// Allowed overcommit.
    pub overcommit: Overcommit,
    /// No new placements while true.
    pub maintenance: bool,
    /// Every path gitvps touches on the node sits under this folder (`/` on a real node).
    pub root: AbsPath,
    /// Whether the node can run full (HVM) machines, which boot ISOs: always on KVM; on Xen
    /// `hvm = false` says the CPU has no VT-x/AMD-V there (a nested node).
    pub hvm: bool,
    /// Where it was defined.
    pub origin: Origin,
}

impl Node {
    /// Capacity after overcommit: what may be sold.
    pub fn sellable(&self) -> Capacity {
        Capacity {
            ram: Size(self.overcommit.ram.scale(self.capacity.ram.0)),
            disk: Size(self.overcommit.disk.scale(self.capacity.disk.0)),
            vcpus: u32::try_from(self.overcommit.vcpus.scale(self.capacity.vcpus.into()))
                .unwrap_or(u32::MAX),
        }
    }

    /// The host port `127.0.0.1:N` that forwards to `vps`'s SSH on this node: `Some`
    /// only on a KVM node with `network = "user"` and a VPS with an IPv4 address.
    ///
    /// It is `forward_base` plus the last octet of the VPS's first IPv4 address (see
    /// [`ssh_forward_port`]); validation keeps it unique among the node's VPSes and
    /// within 65535. It does not check that `vps` is on this node.
    pub fn forward_port(&self, vps: &Vps) -> Option<u16> {
        match self.kvm.as_ref()?.network {
            KvmNetwork::User { forward_base } => ssh_forward_port(forward_base, vps.ipv4().next()?),
            KvmNetwork::Bridge { .. } => None,
        }
    }
}

/// A customer.
#[derive(Debug, Clone)]
pub struct Customer {
    /// Its id (the file name).
    pub id: CustomerId,
    /// Full name.
    pub name: String,
    /// Company, if any.
    pub company: Option<String>,
    /// Where invoices and reminders go; none: nothing is mailed to this customer.
    pub email: Option<Email>,
    /// Country (ISO 3166-1 alpha-2): the tax rate of invoices.
    pub country: Option<Country>,
    /// Postal address for invoices, one line each.
    pub address: Vec<String>,
    /// VAT or other tax id, printed on invoices.
    pub tax_id: Option<String>,
    /// The reseller who brought this customer (another customer): earns the products'
    /// `commission` per paid period.
    pub reseller: Option<CustomerId>,
    /// Language of mail and site.
    pub language: Language,
    /// Login for the customer panel (argon2 PHC string), if the customer may log in.
    pub password_hash: Option<PasswordHash>,
    /// Keys for the console of every VPS of the customer.
    pub ssh_keys: Vec<SshPublicKey>,
    /// Where it was defined.
    pub origin: Origin,
}

/// Action counters: bump one to ask for the action once.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Actions {
    /// Reboot generation.
    pub reboot: u64,
    /// Filesystem check generation.
    pub fsck: u64,
    /// Reinstall generation (erases the disk).
    pub reinstall: u64,
}

/// Monitoring wishes for a VPS.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Monitor {
    /// Where alerts go (the customer's e-mail when absent).
    pub alert_email: Option<Email>,
    /// Services to check.
    pub checks: Vec<ServiceCheck>,
}

/// One service check of a VPS (`checks = ["ssh", { service = "http", port = 8080 }]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceCheck {
    /// What is checked.
    pub service: Check,
    /// The address probed: one the VPS owns (checked at load); its first address when absent.
    pub address: Option<IpAddr>,
    /// The TCP port, when not the service's own ([`Check::default_port`]); never for ping.
    pub port: Option<u16>,
    /// Seconds the probe may take (1 to 60), when not `[monitor] check_timeout_secs`.
    pub timeout_secs: Option<u32>,
}

impl ServiceCheck {
    /// A check of `service` on the VPS's first address, its own port and the default timeout.
    pub fn plain(service: Check) -> ServiceCheck {
        ServiceCheck {
            service,
            address: None,
            port: None,
            timeout_secs: None,
        }
    }
}

/// A VPS: the contract and the machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vps {
    /// Its id: the file name, the domain name and the console user.
    pub id: VpsId,
    /// Who owns it.
    pub customer: CustomerId,
    /// The plan it is on.
    pub product: ProductId,
    /// The node it runs on.
    pub node: NodeId,
    /// IPv4 addresses and IPv6 /64s.
    pub ips: Vec<VpsAddr>,
    /// Host name inside the VPS.
    pub hostname: Hostname,
    /// Operating system.
    pub os: OsId,
    /// Appliance installed on top of the OS.
    pub appliance: Option<ApplianceId>,
    /// The Xen guest type, overriding its plan's and its node's (Xen nodes only).
    pub guest_type: Option<GuestType>,
    /// Desired power state.
    pub power: Power,
    /// Contract state.
    pub state: State,
    /// Who suspended it, with `state = Suspended`; `None` there means an operator.
    pub suspension: Option<Suspension>,
    /// When it was suspended, with `state = Suspended` (billing writes it): starts the clock
    /// of `billing.terminate_days`.
    pub suspended: Option<NaiveDate>,
    /// The traffic policy throttled its network to `[traffic] throttle_rate` for the rest of
    /// the period (`throttled = true`).
    pub throttled: bool,
    /// Traffic blocks bought (`[[traffic_block]]`), each for one traffic period.
    pub traffic_blocks: Vec<TrafficBlock>,
    /// First registered.
    pub created: NaiveDate,
    /// Paid until.
    pub expires: NaiveDate,
    /// When it was destroyed (starts the disk retention clock).
    pub destroyed: Option<NaiveDate>,
    /// Action counters.
    pub actions: Actions,
    /// Monitoring.
    pub monitor: Monitor,
    /// Reverse DNS names the customer chose (`[ptr]`), by address: each address is one of the
    /// VPS's IPv4 addresses or inside one of its /64s. Others get [`Vps::hostname`].
    pub ptr: BTreeMap<IpAddr, Hostname>,
    /// `[backup]`: this VPS's changes to its plan's backup policy.
    pub backup: crate::backup::BackupOverride,
    /// Adopted by `gitvps import`: its domain runs the config it had before gitvps, which
    /// gitvps neither rewrites nor restarts, and its disk is taken as installed; console
    /// access waits too. Removing the mark hands the VPS over to gitvps entirely.
    pub adopted: bool,
    /// `[restore]`: a backup to write onto the disk (erasing it), once per generation.
    pub restore: Option<crate::backup::Restore>,
    /// `[boot]`: the ISO attached as a CD-ROM and the boot order; `None`: none attached.
    pub boot: Option<crate::media::Boot>,
    /// `[[snapshot]]`, `[revert]` and `snapshot_limit`: the customer's snapshots of the disk.
    pub snapshots: crate::snapshot::Snapshots,
    /// `rescue = true`: the VPS runs the node's rescue system with its own disk attached as a
    /// second disk (never mounted by gitvps); removing it boots its own system again.
    pub rescue: bool,
    /// Where it was defined.
    pub origin: Origin,
}

impl Vps {
    /// Whether `ip` is one of this VPS's addresses: one of its IPv4 addresses, or inside one
    /// of its IPv6 /64s.
    pub fn owns(&self, ip: IpAddr) -> bool {
        self.ips.iter().any(|a| a.contains(ip))
    }

    /// The IPv4 addresses.
    pub fn ipv4(&self) -> impl Iterator<Item = Ipv4Addr> + '_ {
        self.ips.iter().filter_map(|a| match a {
            VpsAddr::V4(v) => Some(*v),
            VpsAddr::V6(_) => None,
        })
    }

    /// The IPv6 /64s.
    pub fn ipv6(&self) -> impl Iterator<Item = Ipv6Net> + '_ {
        self.ips.iter().filter_map(|a| match a {
            VpsAddr::V6(v) => Some(*v),
            VpsAddr::V4(_) => None,
        })
    }

    /// The reverse names of one of its addresses: an IPv4 address gets the customer's `[ptr]`
    /// name or the host name; a /64 one for its host address `::1` and one per address of it
    /// named in `[ptr]`.
    pub fn reverse_names_of(&self, addr: &VpsAddr) -> Vec<(IpAddr, &Hostname)> {
        let host = addr.host();
        let mut out = vec![(host, self.ptr.get(&host).unwrap_or(&self.hostname))];
        if let VpsAddr::V6(_) = addr {
            out.extend(
                self.ptr
                    .iter()
                    .filter(|(ip, _)| **ip != host && addr.contains(**ip))
                    .map(|(ip, n)| (*ip, n)),
            );
        }
        out
    }

    /// [`Vps::reverse_names_of`] every address, in the order of `ips`.
    pub fn reverse_names(&self) -> Vec<(IpAddr, &Hostname)> {
        self.ips
            .iter()
            .flat_map(|a| self.reverse_names_of(a))
            .collect()
    }

    /// Whether the VPS counts against its node's capacity.
    pub fn holds_resources(&self) -> bool {
        self.state != State::Destroyed
    }
}

/// Adds whole months to a date, clamping to the month's last day (Jan 31 + 1 month = Feb 28/29).
pub fn add_months(d: NaiveDate, months: u32) -> NaiveDate {
    d.checked_add_months(Months::new(months))
        .unwrap_or(NaiveDate::MAX)
}

impl Inventory {
    /// Runs the cross-file rules on an inventory built or edited in memory.
    ///
    /// [`Inventory::load`] already does this; use it after an edit, before committing.
    pub fn check(&self) -> crate::diag::Diagnostics {
        crate::diag::Diagnostics(crate::validate::validate(
            self,
            &crate::load::Broken::default(),
        ))
        .sorted()
    }

    /// A VPS's backup policy: its plan's with its own `[backup]` applied (`None` when its
    /// product is unknown).
    pub fn backup_policy_of(&self, vps: &Vps) -> Option<crate::backup::BackupPolicy> {
        self.resources_of(vps).map(|r| r.backup.with(&vps.backup))
    }

    /// How many snapshots a VPS may keep: its own `snapshot_limit`, else its plan's (0 when
    /// its product is unknown).
    pub fn snapshot_limit_of(&self, vps: &Vps) -> u32 {
        vps.snapshots
            .limit
            .or_else(|| self.resources_of(vps).map(|r| r.snapshot_limit))
            .unwrap_or(0)
    }

    /// The room one snapshot of a VPS's disk takes on its node (see
    /// [`crate::snapshot::space`]); `None` when its node or plan is unknown or its node's
    /// storage cannot take snapshots (raw image files).
    pub fn snapshot_space_of(&self, vps: &Vps) -> Option<u64> {
        let node = self.nodes.get(&vps.node)?;
        let disk = self.resources_of(vps)?.disk.0;
        crate::snapshot::space(
            &node.storage,
            disk,
            self.settings.backup.snapshot_cow_percent,
        )
    }

    /// The disk room a VPS's snapshots are accounted for on its node: its limit's worth, so
    /// that a snapshot it may take always has room (0 on storage without snapshots).
    pub fn snapshot_reserve_of(&self, vps: &Vps) -> u64 {
        self.snapshot_space_of(vps)
            .unwrap_or(0)
            .saturating_mul(u64::from(self.snapshot_limit_of(vps)))
    }

    /// The traffic quota of `vps` in the period starting `period`: its plan's `traffic` and
    /// the blocks bought for that period. A plan with no quota (0) stays unmetered; `None` when
    /// its product is unknown or not a plan.
    pub fn traffic_quota(&self, vps: &Vps, period: NaiveDate) -> Option<Size> {
        let plan = self.resources_of(vps)?.traffic;
        if plan.bytes() == 0 {
            return Some(plan);
        }
        let bought = vps
            .traffic_blocks
            .iter()
            .filter(|b| b.period == period)
            .fold(plan.bytes(), |acc, b| acc.saturating_add(b.size.bytes()));
        Some(Size(bought))
    }

    /// The traffic blocks the catalog offers (public ones), in id order.
    pub fn traffic_block_offers(&self) -> impl Iterator<Item = (&Product, Size)> + '_ {
        self.products
            .values()
            .filter(|p| !p.private)
            .filter_map(|p| p.traffic_block().map(|s| (p, s)))
    }

    /// The plan resources of a VPS's product, if the product exists and is a plan.
    pub fn resources_of(&self, vps: &Vps) -> Option<&Resources> {
        self.products.get(&vps.product).and_then(Product::resources)
    }

    /// The Xen guest type of a VPS: its own `guest_type`, else its plan's, else its node's
    /// `[xen] guest_type`. `None` when its node is unknown or runs KVM.
    pub fn guest_type_of(&self, vps: &Vps) -> Option<GuestType> {
        let xen = self.nodes.get(&vps.node)?.xen.as_ref()?;
        Some(
            vps.guest_type
                .or_else(|| self.resources_of(vps).and_then(|r| r.guest_type))
                .unwrap_or(xen.guest_type),
        )
    }

    /// Renewal offers for a plan: the plan itself (renewing at its own price) and its renewal products.
    pub fn renewals_of<'a>(
        &'a self,
        plan: &'a ProductId,
    ) -> impl Iterator<Item = &'a Product> + 'a {
        self.products.values().filter(move |p| p.plan_id() == plan)
    }

    /// Resources in use on every node (destroyed VPSes excluded).
    pub fn usage(&self) -> BTreeMap<&NodeId, Usage> {
        let mut out: BTreeMap<&NodeId, Usage> =
            self.nodes.keys().map(|n| (n, Usage::default())).collect();
        for v in self.vps.values().filter(|v| v.holds_resources()) {
            let (Some(u), Some(r)) = (out.get_mut(&v.node), self.resources_of(v)) else {
                continue;
            };
            u.add(r);
            let snaps = self.snapshot_reserve_of(v);
            u.snapshots += snaps;
            u.disk += snaps;
            u.ipv4 += v.ipv4().count() as u64;
        }
        out
    }
}

/// Resources used on a node.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Usage {
    /// Memory, bytes.
    pub ram: u64,
    /// Disk, bytes.
    pub disk: u64,
    /// vCPUs.
    pub vcpus: u64,
    /// VPSes counted.
    pub vps: u64,
    /// IPv4 addresses in use.
    pub ipv4: u64,
    /// Disk, bytes, reserved for snapshots (each VPS's `snapshot_limit` of them; part of
    /// `disk`).
    pub snapshots: u64,
}

impl Usage {
    /// Adds one VPS's plan.
    pub fn add(&mut self, r: &Resources) {
        self.ram += r.ram.0;
        self.disk += r.disk.0;
        self.vcpus += u64::from(r.vcpus);
        self.vps += 1;
    }

    /// Whether `r` still fits under `cap`.
    pub fn fits(&self, r: &Resources, cap: &Capacity) -> bool {
        self.ram + r.ram.0 <= cap.ram.0
            && self.disk + r.disk.0 <= cap.disk.0
            && self.vcpus + u64::from(r.vcpus) <= u64::from(cap.vcpus)
    }

    /// The highest fraction of capacity in use, over RAM, disk and vCPUs.
    pub fn load(&self, cap: &Capacity) -> f64 {
        #[allow(clippy::cast_precision_loss)]
        let frac = |used: u64, cap: u64| {
            if cap == 0 {
                1.0
            } else {
                used as f64 / cap as f64
            }
        };
        frac(self.ram, cap.ram.0)
            .max(frac(self.disk, cap.disk.0))
            .max(frac(self.vcpus, cap.vcpus.into()))
    }
}
