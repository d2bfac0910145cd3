//! The bootstrap catalog (`bootstraps/README.md`): OSes and appliances read strictly from their
//! `meta.toml`, the checks of a VPS's `os` and `appliance`, and the inputs of their scripts.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;
use std::str::FromStr;

use ipnet::{Ipv4Net, Ipv6Net};
use toml_edit::{Document, TableLike};

use crate::diag::{Diagnostic, Diagnostics, SourceFile};
use crate::ids::{ApplianceId, IdError, OsId, VpsId};
use crate::inventory::{Inventory, Pool, Vps};
use crate::load::LoadError;
use crate::read::{Kw, Obj, Reader};
use crate::values::{Hostname, Hypervisor, SshPublicKey, VpsAddr, keyword, string_value};

/// The catalog folder, relative to the repository.
pub const DIR: &str = "bootstraps";
/// One folder per operating system.
pub const OS_DIR: &str = "bootstraps/os";
/// One folder per appliance.
pub const APPLIANCES_DIR: &str = "bootstraps/appliances";
/// The scripts every install ships (`lib/install` is the runner).
pub const LIB_DIR: &str = "bootstraps/lib";
/// The scripts an OS folder holds, in the order they run (except for `hvm-iso`).
pub const OS_SCRIPTS: [&str; 3] = ["install_os", "custom_os", "setup_network"];
/// The script an appliance folder holds.
pub const FIRSTBOOT: &str = "firstboot";
/// The IPv6 gateway of every VPS: the node's (or router's) link-local address on its segment.
pub const GATEWAY6: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1);

keyword!(
    /// The family of an OS: what appliances are matched against (`OS_FAMILY`).
    OsFamily, "supported OS family", {
        /// Debian.
        Debian = "debian",
        /// Ubuntu.
        Ubuntu = "ubuntu",
        /// Enterprise Linux: Rocky, Alma, RHEL.
        El = "el",
        /// Alpine Linux.
        Alpine = "alpine",
        /// The customer's own system, installed from an ISO.
        Hvm = "hvm",
    }
);
keyword!(
    /// How an OS's root is made (`method` in meta.toml).
    MethodKind, "bootstrap method", {
        /// `debootstrap` into the target.
        Debootstrap = "debootstrap",
        /// `dnf --installroot` into the target.
        Dnf = "dnf",
        /// A checksummed root tarball unpacked into the target.
        Image = "image",
        /// Nothing installed: the customer's ISO boots an HVM guest.
        HvmIso = "hvm-iso",
        /// A cloud image written to the disk, configured at first boot by cloud-init (NoCloud).
        CloudImage = "cloud-image",
    }
);
keyword!(
    /// How a cloud image boots (`cloud_image.boot`).
    CloudBoot, "cloud image boot", {
        /// Through the firmware, from the image's own boot loader (a partitioned image, as the
        /// distributions publish them).
        Firmware = "firmware",
        /// The image's own kernel loaded directly, as gitvps's installs are: an image that is
        /// one ext4 filesystem without a partition table (KVM takes `/vmlinuz` out of it).
        Kernel = "kernel",
    }
);
keyword!(
    /// A CPU architecture, in Debian's spelling (`OS_ARCH`).
    Arch, "supported architecture", {
        /// x86-64 (dnf: `x86_64`).
        Amd64 = "amd64",
        /// 64-bit ARM (dnf: `aarch64`).
        Arm64 = "arm64",
    }
);

/// A root tarball: where it is fetched from and its checksum.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Image {
    /// `https://`, `http://`, `file://` URL, absolute path, or a path under `GITVPS_MIRROR`.
    pub url: String,
    /// The sha256 of the file, 64 lowercase hex digits.
    pub sha256: String,
}

/// A cloud image (`[cloud_image]` of meta.toml): written to the disk, grown to the product's size
/// and configured at first boot by cloud-init from a NoCloud seed (`docs/boot-media.md`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CloudImage {
    /// Where nodes fetch it: http or https only.
    pub url: crate::media::MediaUrl,
    /// Its sha256, checked before it is written anywhere.
    pub sha256: crate::media::Sha256Hex,
    /// The most bytes a node fetches for it.
    pub size: crate::values::Size,
    /// The file's format, as `qemu-img` reads it (never guessed).
    #[serde(serialize_with = "ser_display")]
    pub format: crate::values::ImageFormat,
    /// How it boots.
    #[serde(serialize_with = "ser_display")]
    pub boot: CloudBoot,
}

fn ser_display<T: std::fmt::Display, S: serde::Serializer>(v: &T, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(v)
}

/// How an OS is installed, with what the method needs.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "method", rename_all = "kebab-case")]
pub enum Method {
    /// `debootstrap` of `release`.
    Debootstrap,
    /// `dnf --installroot` of `release`.
    Dnf,
    /// A root tarball.
    Image(Image),
    /// No install: the customer's ISO.
    HvmIso,
    /// A cloud image and a NoCloud seed.
    CloudImage(CloudImage),
}

impl Method {
    /// The keyword of the method.
    pub fn kind(&self) -> MethodKind {
        match self {
            Method::Debootstrap => MethodKind::Debootstrap,
            Method::Dnf => MethodKind::Dnf,
            Method::Image(_) => MethodKind::Image,
            Method::HvmIso => MethodKind::HvmIso,
            Method::CloudImage(_) => MethodKind::CloudImage,
        }
    }

    /// Whether the method writes the disk (every method but `hvm-iso`).
    pub fn installs(&self) -> bool {
        !matches!(self, Method::HvmIso)
    }

    /// Whether the method runs the OS scripts of its folder (not `hvm-iso`, not `cloud-image`,
    /// which cloud-init configures inside the guest).
    pub fn runs_scripts(&self) -> bool {
        !matches!(self, Method::HvmIso | Method::CloudImage(_))
    }

    /// The cloud image, for `cloud-image`.
    pub fn cloud_image(&self) -> Option<&CloudImage> {
        match self {
            Method::CloudImage(c) => Some(c),
            _ => None,
        }
    }
}

/// One operating system (`bootstraps/os/<id>/meta.toml`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OsMeta {
    /// Its id: the folder name.
    pub id: OsId,
    /// Name shown to customers.
    pub name: String,
    /// Its family.
    pub family: OsFamily,
    /// How it is installed.
    pub method: Method,
    /// Suite or release (`bookworm`, `9`, `3.20`); absent only for `hvm-iso`.
    pub release: Option<String>,
    /// CPU architecture.
    pub arch: Arch,
    /// Offered for new VPSes.
    pub offered: bool,
    /// The folder, relative to the repository (`bootstraps/os/debian-12`).
    pub dir: String,
    /// Repo-relative paths of the folder's files, sorted: what an install ships.
    pub files: Vec<String>,
    /// Where it was defined.
    pub origin: crate::diag::Origin,
}

/// One appliance (`bootstraps/appliances/<id>/meta.toml`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplianceMeta {
    /// Its id: the folder name.
    pub id: ApplianceId,
    /// Name shown to customers.
    pub name: String,
    /// One line for the site.
    pub description: Option<String>,
    /// The OS families it runs on.
    pub families: Vec<OsFamily>,
    /// Offered for new VPSes.
    pub offered: bool,
    /// The folder, relative to the repository.
    pub dir: String,
    /// Repo-relative paths of the folder's files, sorted.
    pub files: Vec<String>,
    /// Where it was defined.
    pub origin: crate::diag::Origin,
}

/// The operating systems and appliances of a repository's `bootstraps/`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Catalog {
    /// Operating systems by id.
    pub os: BTreeMap<OsId, OsMeta>,
    /// Appliances by id.
    pub appliances: BTreeMap<ApplianceId, ApplianceMeta>,
    /// Repo-relative paths of `bootstraps/lib/`'s files, sorted: shipped with every install.
    pub lib: Vec<String>,
}

string_value! {
    /// A root password as `/etc/shadow` stores it: a crypt hash (`$6$salt$hash`, `$y$...`).
    ///
    /// Never a password: the text must have the shape of a hash, and is never shown in errors
    /// or in `Debug`.
    pub secret struct CryptHash(String);
    /// The hash, as written into `/etc/shadow`.
    pub fn as_str;
    fn parse(s) {
        let mut parts = s.split('$');
        let ok = s.len() <= 512
            && parts.next() == Some("")
            && parts.next().is_some_and(|id| {
                !id.is_empty()
                    && id
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
            })
            && s.matches('$').count() >= 3
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"./$=,".contains(&b))
            && !s.ends_with('$');
        if ok {
            Ok(s.to_owned())
        } else {
            // Never echo the value: it might be a password typed in by mistake.
            Err(
                "this is not a crypt hash ($6$salt$hash, $y$...); store a hash, never a password"
                    .to_owned(),
            )
        }
    }
}

/// Why the script inputs of a VPS cannot be computed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvError {
    /// The VPS's OS is not in the catalog.
    #[error("{vps}: unknown OS `{os}`")]
    UnknownOs {
        /// The VPS.
        vps: VpsId,
        /// Its OS.
        os: OsId,
    },
    /// The VPS's OS installs nothing (`hvm-iso`).
    #[error(
        "{vps}: OS `{os}` is installed by the customer from an ISO; there is nothing to bootstrap"
    )]
    NothingToInstall {
        /// The VPS.
        vps: VpsId,
        /// Its OS.
        os: OsId,
    },
    /// The VPS's appliance is not in the catalog, or not for its OS family.
    #[error("{vps}: appliance `{appliance}` is unknown or not for OS `{os}`")]
    BadAppliance {
        /// The VPS.
        vps: VpsId,
        /// Its appliance.
        appliance: ApplianceId,
        /// Its OS.
        os: OsId,
    },
    /// The VPS has no IPv4 address.
    #[error("{0}: no IPv4 address")]
    NoIpv4(VpsId),
    /// An address of the VPS lies in no pool.
    #[error("{vps}: {addr} lies in no pool of pools.toml")]
    NoPool {
        /// The VPS.
        vps: VpsId,
        /// The address.
        addr: VpsAddr,
    },
    /// The VPS's node or customer is missing from the inventory.
    #[error("{vps}: {what} `{id}` is not in the inventory")]
    Missing {
        /// The VPS.
        vps: VpsId,
        /// `node` or `customer`.
        what: &'static str,
        /// The missing id.
        id: String,
    },
}

/// The values a node gives the scripts, not from the inventory: paths, mirrors, cache.
///
/// Each is passed as its variable when set (`bootstraps/README.md`); the scripts check them again.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunVars {
    /// `GITVPS_BOOTSTRAPS`: where the shipped `bootstraps/` copy sits on the node.
    pub bootstraps: Option<String>,
    /// `TARGET`: the root folder to fill.
    pub target: Option<String>,
    /// `GITVPS_MIRROR`: the distribution's mirror for this OS.
    pub mirror: Option<String>,
    /// `GITVPS_GUEST_MIRROR`: the mirror written into the guest, when another.
    pub guest_mirror: Option<String>,
    /// `GITVPS_SECURITY_MIRROR`: Debian's security archive.
    pub security_mirror: Option<String>,
    /// `GITVPS_KEYRING`: the archive key on the node, when not the default.
    pub keyring: Option<String>,
    /// `GITVPS_PROXY`: HTTP proxy for the node's downloads.
    pub proxy: Option<String>,
    /// `GITVPS_CACHE`: the cache folder on the node.
    pub cache: Option<String>,
}

/// Everything the bootstrap scripts of one VPS are given, as computed from the inventory.
///
/// [`BootstrapEnv::vars`] turns it into the environment variables of `bootstraps/README.md`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootstrapEnv {
    /// `OS_ID`.
    pub os: OsId,
    /// `OS_FAMILY`.
    pub family: OsFamily,
    /// `OS_RELEASE`.
    pub release: Option<String>,
    /// `OS_ARCH`.
    pub arch: Arch,
    /// `OS_IMAGE_URL` and `OS_IMAGE_SHA256`, for an image.
    pub image: Option<Image>,
    /// `APPLIANCE_ID`.
    pub appliance: Option<ApplianceId>,
    /// `VPS_ID`.
    pub vps: VpsId,
    /// `VPS_HOSTNAME`.
    pub hostname: Hostname,
    /// `VPS_IPV4`: each address with its pool's prefix length.
    pub ipv4: Vec<Ipv4Net>,
    /// `VPS_GATEWAY4`: the gateway of the first address's pool.
    pub gateway4: Ipv4Addr,
    /// `VPS_IPV6`: the `::1` host address of each of the VPS's /64s.
    pub ipv6: Vec<Ipv6Net>,
    /// `VPS_GATEWAY6`: [`GATEWAY6`] when the VPS has IPv6.
    pub gateway6: Option<Ipv6Addr>,
    /// `VPS_DNS`: the resolvers of the VPS's pools, first address's pool first.
    pub dns: Vec<IpAddr>,
    /// `VPS_SSH_KEYS`: the customer's keys, for root.
    pub ssh_keys: Vec<SshPublicKey>,
    /// `VPS_ROOT_PASSWORD_HASH`: set by the caller when the customer offered one.
    pub root_password_hash: Option<CryptHash>,
    /// `VPS_HYPERVISOR`: the node's.
    pub hypervisor: Hypervisor,
    /// The node's values (paths, mirrors, cache), set by the caller.
    pub run: RunVars,
}

impl BootstrapEnv {
    /// The environment variables, in a fixed order; unset optional ones are left out.
    pub fn vars(&self) -> Vec<(&'static str, String)> {
        let join = |v: Vec<String>, sep: &str| v.join(sep);
        let mut out: Vec<(&'static str, String)> = Vec::new();
        let opt = |out: &mut Vec<(&'static str, String)>, k: &'static str, v: Option<&String>| {
            if let Some(v) = v {
                out.push((k, v.clone()));
            }
        };
        opt(&mut out, "GITVPS_BOOTSTRAPS", self.run.bootstraps.as_ref());
        opt(&mut out, "TARGET", self.run.target.as_ref());
        out.push(("OS_ID", self.os.to_string()));
        out.push(("OS_FAMILY", self.family.to_string()));
        opt(&mut out, "OS_RELEASE", self.release.as_ref());
        out.push(("OS_ARCH", self.arch.to_string()));
        if let Some(img) = &self.image {
            out.push(("OS_IMAGE_URL", img.url.clone()));
            out.push(("OS_IMAGE_SHA256", img.sha256.clone()));
        }
        if let Some(a) = &self.appliance {
            out.push(("APPLIANCE_ID", a.to_string()));
        }
        out.push(("VPS_ID", self.vps.to_string()));
        out.push(("VPS_HOSTNAME", self.hostname.to_string()));
        out.push((
            "VPS_IPV4",
            join(self.ipv4.iter().map(ToString::to_string).collect(), " "),
        ));
        out.push(("VPS_GATEWAY4", self.gateway4.to_string()));
        if !self.ipv6.is_empty() {
            out.push((
                "VPS_IPV6",
                join(self.ipv6.iter().map(ToString::to_string).collect(), " "),
            ));
        }
        if let Some(g) = self.gateway6 {
            out.push(("VPS_GATEWAY6", g.to_string()));
        }
        if !self.dns.is_empty() {
            out.push((
                "VPS_DNS",
                join(self.dns.iter().map(ToString::to_string).collect(), " "),
            ));
        }
        out.push((
            "VPS_SSH_KEYS",
            join(
                self.ssh_keys
                    .iter()
                    .map(|k| k.as_str().to_owned())
                    .collect(),
                "\n",
            ),
        ));
        if let Some(h) = &self.root_password_hash {
            out.push(("VPS_ROOT_PASSWORD_HASH", h.as_str().to_owned()));
        }
        out.push(("VPS_HYPERVISOR", self.hypervisor.to_string()));
        for (k, v) in [
            ("GITVPS_MIRROR", &self.run.mirror),
            ("GITVPS_GUEST_MIRROR", &self.run.guest_mirror),
            ("GITVPS_SECURITY_MIRROR", &self.run.security_mirror),
            ("GITVPS_KEYRING", &self.run.keyring),
            ("GITVPS_PROXY", &self.run.proxy),
            ("GITVPS_CACHE", &self.run.cache),
        ] {
            opt(&mut out, k, v.as_ref());
        }
        out
    }

    /// The variables as `export NAME='value'` lines for a POSIX sh script, every value
    /// single-quoted.
    pub fn shell_exports(&self) -> String {
        self.vars()
            .into_iter()
            .map(|(k, v)| format!("export {k}='{}'\n", v.replace('\'', r"'\''")))
            .collect()
    }
}

impl Catalog {
    /// Reads `bootstraps/` of the repository at `repo`: every `os/*/meta.toml` and
    /// `appliances/*/meta.toml`, with every error at its file, line and column.
    ///
    /// A repository without `bootstraps/` has an empty catalog.
    pub fn load(repo: &Path) -> Result<Catalog, LoadError> {
        let mut diags = Vec::new();
        let mut cat = Catalog {
            lib: list_files(repo, LIB_DIR)?,
            ..Catalog::default()
        };
        for name in list_dirs(repo, OS_DIR)? {
            let dir = format!("{OS_DIR}/{name}");
            if let Some(meta) = load_entry(repo, &dir, &name, &mut diags, parse_os)? {
                cat.os.insert(meta.id.clone(), meta);
            }
        }
        for name in list_dirs(repo, APPLIANCES_DIR)? {
            let dir = format!("{APPLIANCES_DIR}/{name}");
            if let Some(meta) = load_entry(repo, &dir, &name, &mut diags, parse_appliance)? {
                cat.appliances.insert(meta.id.clone(), meta);
            }
        }
        if diags.is_empty() {
            Ok(cat)
        } else {
            Err(LoadError::Invalid(Diagnostics(diags).sorted()))
        }
    }

    /// The OSes offered for new VPSes, in id order: the site's and the hooks' list.
    pub fn offered_os(&self) -> impl Iterator<Item = &OsMeta> {
        self.os.values().filter(|o| o.offered)
    }

    /// The offered appliances that run on `os`, in id order.
    pub fn appliances_for<'a>(&'a self, os: &OsId) -> impl Iterator<Item = &'a ApplianceMeta> + 'a {
        let family = self.os.get(os).map(|o| o.family);
        self.appliances
            .values()
            .filter(move |a| a.offered && family.is_some_and(|f| a.families.contains(&f)))
    }

    /// Checks a VPS's `os` and `appliance` against the catalog: an unknown OS, an unknown
    /// appliance, an appliance for another OS family. Each diagnostic points at the field.
    ///
    /// A catalog without any OS (a repository without `bootstraps/`) checks nothing.
    pub fn check_vps(&self, vps: &Vps) -> Vec<Diagnostic> {
        let mut out = Vec::new();
        if self.os.is_empty() {
            return out;
        }
        let os = self.os.get(&vps.os);
        if os.is_none() {
            out.push(vps.origin.diag(
                "os",
                format!(
                    "unknown OS `{}`{}",
                    vps.os,
                    hint(vps.os.as_str(), self.os.keys().map(OsId::as_str), OS_DIR)
                ),
            ));
        }
        if let Some(a) = &vps.appliance {
            match self.appliances.get(a) {
                None => out.push(vps.origin.diag(
                    "appliance",
                    format!(
                        "unknown appliance `{a}`{}",
                        hint(
                            a.as_str(),
                            self.appliances.keys().map(ApplianceId::as_str),
                            APPLIANCES_DIR
                        )
                    ),
                )),
                Some(app) => {
                    if let Some(os) = os
                        && !app.families.contains(&os.family)
                    {
                        let families: Vec<String> =
                            app.families.iter().map(|f| format!("`{f}`")).collect();
                        out.push(vps.origin.diag(
                            "appliance",
                            format!(
                                "appliance `{a}` runs on the {} famil{} only, and OS `{}` is of the `{}` family",
                                families.join(", "),
                                if families.len() == 1 { "y" } else { "ies" },
                                os.id,
                                os.family
                            ),
                        ));
                    }
                }
            }
        }
        out
    }

    /// [`Catalog::check_vps`] for every VPS of the inventory, in VPS order, then the cloud
    /// images: each within `[boot] max_iso_size` (at the OS's `cloud_image.size`), and only on
    /// nodes that can install one (at the VPS's `os`).
    pub fn check(&self, inv: &Inventory) -> Vec<Diagnostic> {
        let mut out: Vec<Diagnostic> = inv.vps.values().flat_map(|v| self.check_vps(v)).collect();
        let max = inv.settings.boot.max_iso_size;
        for os in self.os.values() {
            if let Some(c) = os.method.cloud_image()
                && c.size > max
            {
                out.push(os.origin.diag(
                    "cloud_image.size",
                    format!(
                        "{} is larger than [boot] max_iso_size ({max}) of gitvps.toml, the most a node fetches",
                        c.size
                    ),
                ));
            }
        }
        for v in inv.vps.values() {
            let Some(os) = self
                .os
                .get(&v.os)
                .filter(|o| o.method.cloud_image().is_some())
            else {
                continue;
            };
            if let Some(why) = inv.nodes.get(&v.node).and_then(cloud_unsupported) {
                out.push(
                    v.origin
                        .diag("os", format!("OS `{}` is a cloud image, and {why}", os.id)),
                );
            }
        }
        out
    }

    /// The script inputs of a VPS, from the inventory (`bootstraps/README.md`, "Variables").
    ///
    /// The node's values (`run`) and a root password hash are left for the caller to set.
    pub fn env_for(&self, inv: &Inventory, vps: &Vps) -> Result<BootstrapEnv, EnvError> {
        let os = self.os.get(&vps.os).ok_or_else(|| EnvError::UnknownOs {
            vps: vps.id.clone(),
            os: vps.os.clone(),
        })?;
        if !os.method.installs() {
            return Err(EnvError::NothingToInstall {
                vps: vps.id.clone(),
                os: vps.os.clone(),
            });
        }
        if let Some(a) = &vps.appliance
            && !self
                .appliances
                .get(a)
                .is_some_and(|app| app.families.contains(&os.family))
        {
            return Err(EnvError::BadAppliance {
                vps: vps.id.clone(),
                appliance: a.clone(),
                os: os.id.clone(),
            });
        }
        let node = inv.nodes.get(&vps.node).ok_or_else(|| EnvError::Missing {
            vps: vps.id.clone(),
            what: "node",
            id: vps.node.to_string(),
        })?;
        let customer = inv
            .customers
            .get(&vps.customer)
            .ok_or_else(|| EnvError::Missing {
                vps: vps.id.clone(),
                what: "customer",
                id: vps.customer.to_string(),
            })?;
        let (pools, ipv4, ipv6) = addresses(inv, vps)?;
        let first = ipv4
            .first()
            .and_then(|a| pools.iter().find(|p| p.network.contains(&a.addr())))
            .ok_or_else(|| EnvError::NoIpv4(vps.id.clone()))?;
        let dns = dns_of(first, &pools);
        Ok(BootstrapEnv {
            os: os.id.clone(),
            family: os.family,
            release: os.release.clone(),
            arch: os.arch,
            image: match &os.method {
                Method::Image(i) => Some(i.clone()),
                _ => None,
            },
            appliance: vps.appliance.clone(),
            vps: vps.id.clone(),
            hostname: vps.hostname.clone(),
            gateway4: first.gateway,
            gateway6: (!ipv6.is_empty()).then_some(GATEWAY6),
            ipv4,
            ipv6,
            dns,
            ssh_keys: customer.ssh_keys.clone(),
            root_password_hash: None,
            hypervisor: node.hypervisor,
            run: RunVars::default(),
        })
    }

    /// Repo-relative paths of the files an install of `os` (with `appliance`) ships to the
    /// node, in this layout under `GITVPS_BOOTSTRAPS`: `lib/`, the OS folder, the appliance's.
    pub fn files_for(&self, os: &OsId, appliance: Option<&ApplianceId>) -> Vec<String> {
        let mut out = self.lib.clone();
        if let Some(o) = self.os.get(os) {
            out.extend(o.files.iter().cloned());
        }
        if let Some(a) = appliance.and_then(|a| self.appliances.get(a)) {
            out.extend(a.files.iter().cloned());
        }
        out
    }
}

/// Why `node` cannot install a cloud image (`method = "cloud-image"`), or `None` when it can:
/// only KVM nodes do (the image is written with `qemu-img`, the seed attached as QEMU's
/// `vvfat` drive); `gitvps validate` refuses a VPS with such an OS on any other node.
pub fn cloud_unsupported(node: &crate::inventory::Node) -> Option<String> {
    (node.hypervisor != Hypervisor::Kvm).then(|| {
        format!(
            "node {} cannot install it: cloud images are installed on KVM nodes only (this node runs {})",
            node.id, node.hypervisor
        )
    })
}

/// The pools of a VPS, its IPv4 and its IPv6 addresses.
type Addresses<'a> = (Vec<&'a Pool>, Vec<Ipv4Net>, Vec<Ipv6Net>);

/// The addresses of a VPS as its scripts take them (IPv4 with its pool's prefix, IPv6 as the
/// `::1` of its /64), and the pools they come from, each once, in the order first named.
fn addresses<'a>(inv: &'a Inventory, vps: &Vps) -> Result<Addresses<'a>, EnvError> {
    let no_pool = |addr: VpsAddr| EnvError::NoPool {
        vps: vps.id.clone(),
        addr,
    };
    let mut pools: Vec<&Pool> = Vec::new();
    let mut ipv4 = Vec::new();
    let mut ipv6 = Vec::new();
    for addr in &vps.ips {
        let pool = match addr {
            VpsAddr::V4(ip) => inv.pools.values().find(|p| p.network.contains(ip)),
            VpsAddr::V6(net) => inv
                .pools
                .values()
                .find(|p| p.ipv6.is_some_and(|n| n.contains(net))),
        }
        .ok_or_else(|| no_pool(*addr))?;
        match addr {
            VpsAddr::V4(ip) => {
                let net =
                    Ipv4Net::new(*ip, pool.network.prefix_len()).map_err(|_| no_pool(*addr))?;
                ipv4.push(net);
            }
            VpsAddr::V6(net) => {
                let host = Ipv6Addr::from(u128::from(net.network()) | 1);
                ipv6.push(Ipv6Net::new(host, 64).map_err(|_| no_pool(*addr))?);
            }
        }
        if !pools.iter().any(|p| p.id == pool.id) {
            pools.push(pool);
        }
    }
    Ok((pools, ipv4, ipv6))
}

/// The DNS servers of the first address's pool, then of the other pools, each once.
fn dns_of(first: &Pool, pools: &[&Pool]) -> Vec<IpAddr> {
    let mut dns: Vec<IpAddr> = Vec::new();
    for d in std::iter::once(first)
        .chain(pools.iter().copied())
        .flat_map(|p| p.dns.iter())
    {
        if !dns.contains(d) {
            dns.push(*d);
        }
    }
    dns
}

/// ", did you mean `x`?" or the list of what exists.
fn hint<'a>(s: &str, known: impl Iterator<Item = &'a str>, dir: &str) -> String {
    let known: Vec<&str> = known.collect();
    if let Some(k) = crate::read::suggest(s, &known) {
        format!(", did you mean `{k}`?")
    } else if known.is_empty() {
        format!(" ({dir}/ has none)")
    } else {
        format!(" ({dir}/ has: {})", known.join(", "))
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> LoadError + '_ {
    move |source| LoadError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Names of the sub-folders of a repo folder, sorted; none when it is absent.
fn list_dirs(repo: &Path, rel: &str) -> Result<Vec<String>, LoadError> {
    let dir = repo.join(rel);
    let rd = match std::fs::read_dir(&dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err(&dir)(e)),
    };
    let mut out = Vec::new();
    for entry in rd {
        let entry = entry.map_err(io_err(&dir))?;
        let is_dir = std::fs::metadata(entry.path())
            .map_err(io_err(&entry.path()))?
            .is_dir();
        if is_dir {
            out.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    out.sort();
    Ok(out)
}

/// Repo-relative paths of the regular files directly in a repo folder, sorted.
fn list_files(repo: &Path, rel: &str) -> Result<Vec<String>, LoadError> {
    let dir = repo.join(rel);
    let rd = match std::fs::read_dir(&dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err(&dir)(e)),
    };
    let mut out = Vec::new();
    for entry in rd {
        let entry = entry.map_err(io_err(&dir))?;
        let meta = std::fs::metadata(entry.path()).map_err(io_err(&entry.path()))?;
        if meta.is_file() {
            out.push(format!("{rel}/{}", entry.file_name().to_string_lossy()));
        }
    }
    out.sort();
    Ok(out)
}

#[cfg(unix)]
fn executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(not(unix))]
fn executable(path: &Path) -> bool {
    path.is_file()
}

/// A diagnostic about a whole file (line 0).
fn file_diag(file: &str, message: impl Into<String>) -> Diagnostic {
    Diagnostic {
        file: file.into(),
        line: 0,
        col: 0,
        field: String::new(),
        message: message.into(),
    }
}

/// What a meta.toml parser needs besides the TOML: the id and the folder.
struct Entry<Id> {
    id: Id,
    dir: String,
    files: Vec<String>,
    /// The repository, to check the scripts.
    repo: std::path::PathBuf,
}

impl<Id> Entry<Id> {
    /// Reports a script that is missing or not executable.
    fn require_script(&self, name: &str, diags: &mut Vec<Diagnostic>) {
        let rel = format!("{}/{name}", self.dir);
        let path = self.repo.join(&rel);
        if !path.is_file() {
            diags.push(file_diag(
                &rel,
                "missing: see bootstraps/README.md for the scripts each folder holds",
            ));
        } else if !executable(&path) {
            diags.push(file_diag(&rel, "not executable: chmod +x it"));
        }
    }
}

type MetaParser<Id, T> =
    fn(&mut Reader<'_>, &Entry<Id>, &dyn TableLike, &mut Vec<Diagnostic>) -> Option<T>;

/// Reads one folder's meta.toml; `None` when it has errors (all recorded).
fn load_entry<Id, T>(
    repo: &Path,
    dir: &str,
    name: &str,
    diags: &mut Vec<Diagnostic>,
    parse: MetaParser<Id, T>,
) -> Result<Option<T>, LoadError>
where
    Id: FromStr<Err = IdError>,
{
    let rel = format!("{dir}/meta.toml");
    let path = repo.join(&rel);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            diags.push(file_diag(
                &rel,
                "missing: every folder of the catalog has a meta.toml (see bootstraps/README.md)",
            ));
            return Ok(None);
        }
        Err(e) => return Err(io_err(&path)(e)),
    };
    let src = match String::from_utf8(bytes) {
        Ok(text) => SourceFile::new(rel.as_str(), text),
        Err(_) => {
            diags.push(file_diag(&rel, "the file is not valid UTF-8"));
            return Ok(None);
        }
    };
    let id = match name.parse::<Id>() {
        Ok(id) => id,
        Err(e) => {
            diags.push(file_diag(&rel, format!("folder name: {e}")));
            return Ok(None);
        }
    };
    let doc = match Document::parse(src.text.as_str()) {
        Ok(d) => d,
        Err(e) => {
            diags.push(src.toml_error(&e));
            return Ok(None);
        }
    };
    let entry = Entry {
        id,
        dir: dir.to_owned(),
        files: list_files(repo, dir)?,
        repo: repo.to_path_buf(),
    };
    let mut r = Reader::new(&src);
    let mut extra = Vec::new();
    let out = parse(&mut r, &entry, doc.as_table(), &mut extra);
    let failed = !r.diags.is_empty() || !extra.is_empty();
    diags.extend(r.diags);
    diags.extend(extra);
    Ok(if failed { None } else { out })
}

const OS_KEYS: &[&str] = &[
    "name",
    "family",
    "method",
    "release",
    "arch",
    "offered",
    "image",
    "cloud_image",
];

/// The keys of `[cloud_image]`.
const CLOUD_KEYS: &[&str] = &["url", "sha256", "size", "format", "boot"];

/// `[cloud_image]` of an OS's meta.toml: required with `method = "cloud-image"`, refused
/// otherwise; the URL http(s) only, the sha256 and size required.
fn parse_cloud_image(
    r: &mut Reader<'_>,
    o: &mut crate::diag::Origin,
    m: &Obj<'_>,
    kind: Option<MethodKind>,
) -> Option<CloudImage> {
    let Some(c) = m.sub(r, o, "cloud_image", CLOUD_KEYS) else {
        if kind == Some(MethodKind::CloudImage) && !m.has("cloud_image") {
            r.error(
                None,
                "cloud_image",
                "missing required field: method = \"cloud-image\" needs [cloud_image] with url, sha256 and size",
            );
        }
        return None;
    };
    let url = c.req::<crate::media::MediaUrl>(r, o, "url");
    let sha256 = c.req::<crate::media::Sha256Hex>(r, o, "sha256");
    let size = c.req::<crate::values::Size>(r, o, "size");
    if let Some(s) = size
        && s.bytes() == 0
    {
        c.error(r, "size", "must be more than 0");
    }
    let format = c
        .kw::<crate::values::ImageFormat>(r, o, "format")
        .unwrap_or(crate::values::ImageFormat::Qcow2);
    let boot = c
        .kw::<CloudBoot>(r, o, "boot")
        .unwrap_or(CloudBoot::Firmware);
    c.finish(r);
    if kind.is_some_and(|k| k != MethodKind::CloudImage) {
        r.error(
            m.span_of("cloud_image"),
            "cloud_image",
            "only an OS with method = \"cloud-image\" has a [cloud_image] table",
        );
    }
    Some(CloudImage {
        url: url?,
        sha256: sha256?,
        size: size?,
        format,
        boot,
    })
}

fn check_release(s: &str) -> Result<(), String> {
    let ok = !s.is_empty()
        && s.len() <= 32
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
        && s.as_bytes()[0].is_ascii_alphanumeric();
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{}` is not a release: letters, digits, '.' and '-', at most 32 (like \"bookworm\" or \"9\")",
            s.escape_debug()
        ))
    }
}

fn check_url(s: &str) -> Result<(), String> {
    let ok = !s.is_empty()
        && s.len() <= 2048
        && !s.split('/').any(|seg| seg == "..")
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._~:/?=&%+@,-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{}` is not a URL or path the scripts accept: letters, digits and ._~:/?=&%+@,- only, no `..`",
            s.escape_debug()
        ))
    }
}

fn check_sha256(s: &str) -> Result<(), String> {
    if s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        Ok(())
    } else {
        Err(format!(
            "`{}` is not a sha256: write its 64 lowercase hex digits",
            s.escape_debug()
        ))
    }
}

fn parse_os(
    r: &mut Reader<'_>,
    e: &Entry<OsId>,
    t: &dyn TableLike,
    extra: &mut Vec<Diagnostic>,
) -> Option<OsMeta> {
    let m = Obj::new(t, "", None, OS_KEYS);
    let mut o = r.origin(None);
    let name = m.req::<String>(r, &mut o, "name");
    let family = m.req_kw::<OsFamily>(r, &mut o, "family");
    let kind = m.req_kw::<MethodKind>(r, &mut o, "method");
    let release = m.opt::<String>(r, &mut o, "release");
    if let Some(rel) = &release
        && let Err(msg) = check_release(rel)
    {
        r.error(m.span_of("release"), "release", msg);
    }
    if release.is_none() && !m.has("release") && kind.is_some_and(|k| k != MethodKind::HvmIso) {
        r.error(None, "release", "missing required field");
    }
    let arch = m.kw::<Arch>(r, &mut o, "arch").unwrap_or(Arch::Amd64);
    let offered = m.opt::<bool>(r, &mut o, "offered").unwrap_or(true);
    let image = match m.sub(r, &mut o, "image", &["url", "sha256"]) {
        Some(img) => {
            let url = img.req::<String>(r, &mut o, "url");
            if let Some(u) = &url
                && let Err(msg) = check_url(u)
            {
                r.error(img.span_of("url"), "image.url", msg);
            }
            let sha256 = img.req::<String>(r, &mut o, "sha256");
            if let Some(s) = &sha256
                && let Err(msg) = check_sha256(s)
            {
                r.error(img.span_of("sha256"), "image.sha256", msg);
            }
            img.finish(r);
            if kind.is_some_and(|k| k != MethodKind::Image) {
                r.error(
                    m.span_of("image"),
                    "image",
                    "only an OS with method = \"image\" has an [image] table",
                );
            }
            url.zip(sha256).map(|(url, sha256)| Image { url, sha256 })
        }
        None => {
            if kind == Some(MethodKind::Image) && !m.has("image") {
                r.error(
                    None,
                    "image",
                    "missing required field: method = \"image\" needs [image] with url and sha256",
                );
            }
            None
        }
    };
    let cloud = parse_cloud_image(r, &mut o, &m, kind);
    m.finish(r);
    let method = match kind? {
        MethodKind::Debootstrap => Method::Debootstrap,
        MethodKind::Dnf => Method::Dnf,
        MethodKind::Image => Method::Image(image?),
        MethodKind::HvmIso => Method::HvmIso,
        MethodKind::CloudImage => Method::CloudImage(cloud?),
    };
    if method.runs_scripts() {
        for s in OS_SCRIPTS {
            e.require_script(s, extra);
        }
    }
    Some(OsMeta {
        id: e.id.clone(),
        name: name?,
        family: family?,
        method,
        release,
        arch,
        offered,
        dir: e.dir.clone(),
        files: e.files.clone(),
        origin: o,
    })
}

const APPLIANCE_KEYS: &[&str] = &["name", "description", "families", "offered"];

fn parse_appliance(
    r: &mut Reader<'_>,
    e: &Entry<ApplianceId>,
    t: &dyn TableLike,
    extra: &mut Vec<Diagnostic>,
) -> Option<ApplianceMeta> {
    let m = Obj::new(t, "", None, APPLIANCE_KEYS);
    let mut o = r.origin(None);
    let name = m.req::<String>(r, &mut o, "name");
    let description = m.opt::<String>(r, &mut o, "description");
    let errors = r.error_count();
    let families: Vec<OsFamily> = m
        .list::<Kw<OsFamily>>(r, &mut o, "families")
        .into_iter()
        .map(|k| k.0)
        .collect();
    if !m.has("families") {
        r.error(None, "families", "missing required field");
    } else if families.is_empty() && r.error_count() == errors {
        r.error(
            m.span_of("families"),
            "families",
            "an appliance runs on one OS family at least",
        );
    }
    if families.contains(&OsFamily::Hvm) {
        r.error(
            m.span_of("families"),
            "families",
            "`hvm` systems are installed by the customer: no appliance can be put on them",
        );
    }
    let offered = m.opt::<bool>(r, &mut o, "offered").unwrap_or(true);
    m.finish(r);
    e.require_script(FIRSTBOOT, extra);
    Some(ApplianceMeta {
        id: e.id.clone(),
        name: name?,
        description,
        families,
        offered,
        dir: e.dir.clone(),
        files: e.files.clone(),
        origin: o,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crypt_hashes() {
        for ok in [
            "$6$saltsalt$3Yk0x8Kfq7dW1uJx0Hb5Vv2f3Ck4C8P0bEo7o1dQfCz4k5dS3wJ0",
            "$y$j9T$F5Jx5fExrKuPp53xLKQ..1$X3DX6M94c7o.9agCG9G317fhZg9SqC.5i5rd.RhAtQ7",
            "$6$rounds=5000$salt$hash",
        ] {
            assert!(ok.parse::<CryptHash>().is_ok(), "{ok}");
        }
        for bad in [
            "hunter2",
            "$6$",
            "$6$salt$",
            "$6$salt:x$hash",
            "$6$salt$hash with space",
            "$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$aGFzaA+/",
        ] {
            let e = bad.parse::<CryptHash>().unwrap_err();
            assert!(e.starts_with("this is not a crypt hash"), "{e}");
            assert!(!e.contains("hunter2") && !e.contains("space"), "{e}");
        }
        assert_eq!(
            format!("{:?}", "$6$a$b".parse::<CryptHash>().unwrap()),
            "CryptHash(..)"
        );
    }

    #[test]
    fn releases_urls_and_checksums() {
        assert!(check_release("bookworm").is_ok());
        assert!(check_release("9").is_ok());
        assert!(check_release("3.20").is_ok());
        assert!(check_release("-x").is_err());
        assert!(check_release("a b").is_err());
        assert!(check_url("v3.20/releases/x86_64/a.tar.gz").is_ok());
        assert!(check_url("file:///srv/a.tar.gz").is_ok());
        assert!(check_url("../etc/shadow").is_err());
        assert!(check_url("http://x/$(id)").is_err());
        assert!(check_sha256(&"a".repeat(64)).is_ok());
        assert!(check_sha256(&"A".repeat(64)).is_err());
        assert!(check_sha256("abc").is_err());
    }
}
