//! Boot media: the operator's ISO library (`[[iso]]` in `gitvps.toml`) and a VPS's `[boot]`
//! (a library ISO or the customer's own URL and sha256, and the boot order). See `docs/boot-media.md`.

use crate::ids::IsoId;
use crate::values::{Size, string_value};

string_value! {
    /// A sha256 digest: 64 lowercase hexadecimal digits (uppercase is accepted and lowered).
    #[derive(PartialOrd, Ord, Hash)]
    pub struct Sha256Hex(String);
    /// The 64 hex digits.
    pub fn as_str;
    fn parse(s) {
        if s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()) {
            Ok(s.to_ascii_lowercase())
        } else {
            Err(format!(
                "`{}` is not a sha256: write the 64 hex digits `sha256sum` prints",
                s.escape_debug()
            ))
        }
    }
}

/// The longest media URL accepted.
pub const MAX_URL_LEN: usize = 2048;

string_value! {
    /// An `http://` or `https://` URL with a host, at most [`MAX_URL_LEN`] bytes of printable
    /// ASCII without spaces, quotes or backslashes: the node hands it to `curl` or `wget` (always
    /// quoted), and no other scheme (`file://`, `ftp://`) is ever fetched.
    #[derive(PartialOrd, Ord, Hash)]
    pub struct MediaUrl(String);
    /// The URL.
    pub fn as_str;
    fn parse(s) {
        let rest = s
            .strip_prefix("https://")
            .or_else(|| s.strip_prefix("http://"))
            .ok_or_else(|| format!("`{}` is not an http(s) URL", s.escape_debug()))?;
        if s.len() > MAX_URL_LEN {
            return Err(format!("the URL is longer than {MAX_URL_LEN} bytes"));
        }
        if let Some(c) = s
            .chars()
            .find(|c| !c.is_ascii_graphic() || matches!(c, '"' | '\'' | '\\' | '`'))
        {
            return Err(format!(
                "`{}`: the URL may not hold `{}` (percent-encode it)",
                s.escape_debug(),
                c.escape_debug()
            ));
        }
        let host = rest.split(['/', '?', '#']).next().unwrap_or("");
        if host.is_empty() || host.contains('@') {
            return Err(format!(
                "`{}` has no host (or carries credentials, which do not belong in the repo)",
                s.escape_debug()
            ));
        }
        Ok(s.to_owned())
    }
}

/// The ISO size bound when `gitvps.toml` sets none (`[boot] max_iso_size`).
pub const DEFAULT_MAX_ISO_SIZE: Size = Size(8 << 30);

/// One ISO of the operator's library (`[[iso]]` in `gitvps.toml`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct IsoEntry {
    /// Its id, which a VPS's `[boot] iso` names.
    pub id: IsoId,
    /// What the panel shows.
    pub name: String,
    /// Where nodes fetch it.
    pub url: MediaUrl,
    /// Its sha256, checked before any VPS sees it.
    pub sha256: Sha256Hex,
    /// Its size: the fetch is refused past it.
    pub size: Size,
}

/// Which device boots first while an ISO is attached (`[boot] order`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BootOrder {
    /// The CD-ROM, then the disk (an installer).
    #[default]
    Cd,
    /// The disk, then the CD-ROM (the ISO only mounted, as a data CD).
    Disk,
}

crate::values::keyword!(
    /// `[boot] order`, as written.
    BootOrderKw, "boot order", {
        /// The CD-ROM first.
        Cd = "cd",
        /// The disk first.
        Disk = "disk",
    }
);

impl From<BootOrderKw> for BootOrder {
    fn from(k: BootOrderKw) -> Self {
        match k {
            BootOrderKw::Cd => BootOrder::Cd,
            BootOrderKw::Disk => BootOrder::Disk,
        }
    }
}

impl BootOrder {
    /// The spelling in files: `cd` or `disk`.
    pub fn as_str(self) -> &'static str {
        match self {
            BootOrder::Cd => "cd",
            BootOrder::Disk => "disk",
        }
    }
}

/// The ISO a VPS's `[boot]` names.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(untagged)]
pub enum IsoSource {
    /// An ISO of the library (`iso = "<id>"`).
    Library(IsoId),
    /// The customer's own (`iso_url` and `iso_sha256`).
    Url {
        /// Where it is fetched from.
        url: MediaUrl,
        /// Its sha256.
        sha256: Sha256Hex,
    },
}

/// A VPS's `[boot]`: the ISO attached as a read-only CD-ROM, and which device boots first.
/// Removing `[boot]` ejects it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Boot {
    /// The ISO.
    pub iso: IsoSource,
    /// The boot order.
    pub order: BootOrder,
}

/// Why `node` cannot boot a VPS from an ISO, or `None` when it can: `gitvps validate` refuses a
/// `[boot]` there and the panel does not offer one.
pub fn iso_unsupported(node: &crate::inventory::Node) -> Option<String> {
    if !node.hvm {
        return Some(format!(
            "node {} cannot boot an ISO: its hypervisor runs no HVM guests (hvm = false)",
            node.id
        ));
    }
    // On Xen an ISO boots in an HVM domain: a node whose `virt_caps` lack `hvm` cannot.
    let xen = node
        .xen
        .as_ref()
        .filter(|_| node.hypervisor == crate::values::Hypervisor::Xen)?;
    (!xen.runs(crate::values::GuestType::Hvm)).then(|| {
        format!(
            "node {} cannot boot an ISO: its Xen runs no HVM guests (virt_caps has no `hvm`)",
            node.id
        )
    })
}

/// Why `node` cannot boot a VPS into the rescue system, or `None` when it can: `gitvps
/// validate` refuses `rescue = true` there and the hooks answer 409 `rescue_unsupported`. KVM
/// boots the rescue system's kernel directly; Xen boots it as a PVH (or PV) domain through
/// grub-xen, so a Xen node whose `virt_caps` have neither cannot.
pub fn rescue_unsupported(node: &crate::inventory::Node) -> Option<String> {
    rescue_guest_type(node).is_none().then(|| {
        format!(
            "node {} cannot boot a rescue system: its Xen runs no PVH or PV guests (virt_caps)",
            node.id
        )
    })
}

/// The Xen guest type a rescue system runs as on `node`: PVH where it runs, else PV; `None` on
/// a Xen node that runs neither. On KVM (no Xen guest types) `Some(Pvh)`, which is not used.
pub fn rescue_guest_type(node: &crate::inventory::Node) -> Option<crate::values::GuestType> {
    use crate::values::GuestType;
    let Some(xen) = node
        .xen
        .as_ref()
        .filter(|_| node.hypervisor == crate::values::Hypervisor::Xen)
    else {
        return Some(GuestType::Pvh);
    };
    [GuestType::Pvh, GuestType::Pv]
        .into_iter()
        .find(|t| xen.runs(*t))
}

/// An ISO resolved for a VPS: where to fetch it, what it must hash to and how big it may be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedIso {
    /// Where it is fetched from.
    pub url: MediaUrl,
    /// Its sha256 (also its file name in the node's cache).
    pub sha256: Sha256Hex,
    /// The most bytes a node fetches.
    pub max_bytes: u64,
}

/// The ISO of a `[boot]` from the library and the size bound; `None` for a library id that is
/// not in the library (validation reports it).
pub fn resolve(boot: &Boot, library: &[IsoEntry], max: Size) -> Option<ResolvedIso> {
    match &boot.iso {
        IsoSource::Library(id) => library.iter().find(|e| &e.id == id).map(|e| ResolvedIso {
            url: e.url.clone(),
            sha256: e.sha256.clone(),
            max_bytes: e.size.bytes().min(max.bytes()),
        }),
        IsoSource::Url { url, sha256 } => Some(ResolvedIso {
            url: url.clone(),
            sha256: sha256.clone(),
            max_bytes: max.bytes(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_http_with_a_host_and_nothing_a_shell_reads() {
        for ok in [
            "https://example.net/debian-12.iso",
            "http://127.0.0.1:8080/a.iso?x=1&y=2",
        ] {
            assert!(ok.parse::<MediaUrl>().is_ok(), "{ok}");
        }
        for bad in [
            "file:///etc/shadow",
            "ftp://example.net/a.iso",
            "https://",
            "https://user:pw@example.net/a.iso",
            "https://example.net/a b.iso",
            "https://example.net/a'$(reboot)'.iso",
            "https://example.net/a\n.iso",
        ] {
            assert!(bad.parse::<MediaUrl>().is_err(), "{bad}");
        }
        assert!(
            format!("https://e.net/{}", "a".repeat(MAX_URL_LEN))
                .parse::<MediaUrl>()
                .is_err()
        );
    }

    #[test]
    fn sha256_is_64_hex_digits_lowered() {
        let up = "A".repeat(64);
        assert_eq!(up.parse::<Sha256Hex>().unwrap().as_str(), "a".repeat(64));
        assert!("abc".parse::<Sha256Hex>().is_err());
        assert!("g".repeat(64).parse::<Sha256Hex>().is_err());
    }
}
