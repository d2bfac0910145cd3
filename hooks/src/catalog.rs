//! The OS and appliance catalog a reinstall or an order may pick from: the offered entries of
//! the model's bootstraps catalog, or a small built-in list when the repo has no `bootstraps/`.

use std::collections::BTreeSet;
use std::sync::Arc;

use model::bootstraps::Catalog as Bootstraps;
use model::{ApplianceId, OsId};

/// Operating systems offered while the repo has no `bootstraps/` folder: the first OS folders
/// of the bootstraps work. Ids follow the id grammar (Ubuntu 24.04 is `ubuntu-2404`, Alpine
/// 3.20 `alpine-3-20`). Replaced by the bootstraps catalog as soon as it has an OS.
pub const BUILTIN_OS: &[&str] = &[
    "alpine-3-20",
    "debian-12",
    "debian-13",
    "rocky-9",
    "ubuntu-2404",
];

/// Appliances offered while the repo has no `bootstraps/` folder (the example fleet's VPN).
pub const BUILTIN_APPLIANCES: &[&str] = &["openvpn"];

/// Where the catalog came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Source {
    /// `bootstraps/*/*/meta.toml`, as `model::bootstraps::Catalog` reads them.
    Repo,
    /// The built-in list ([`BUILTIN_OS`], [`BUILTIN_APPLIANCES`]).
    Builtin,
}

/// What may be installed: the one place that decides what is offered.
#[derive(Debug, Clone)]
pub struct Catalog {
    /// The model's catalog of the head (empty without `bootstraps/`).
    bootstraps: Arc<Bootstraps>,
    /// Where the lists came from.
    pub source: Source,
}

/// Why an OS or appliance cannot be installed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CatalogError {
    /// Not a valid id, not in the catalog, withdrawn (`offered = false`), or an appliance
    /// for another OS family.
    #[error("`{value}` is not an {kind} of the catalog ({known})")]
    Unknown {
        /// `OS` or `appliance`.
        kind: &'static str,
        /// What was asked (escaped, cut to 40 characters).
        value: String,
        /// What there is.
        known: String,
    },
}

/// The catalog of a head, from the model's parse of its `bootstraps/` (loaded by the store
/// from the clone's work tree with `model::bootstraps::Catalog::load`, the parse `gitvps
/// validate` and the site use). Without any OS there, the built-in list.
pub fn catalog(bootstraps: Arc<Bootstraps>) -> Catalog {
    let source = if bootstraps.os.is_empty() {
        Source::Builtin
    } else {
        Source::Repo
    };
    Catalog { bootstraps, source }
}

impl Catalog {
    /// The OSes offered, in id order.
    pub fn offered_os(&self) -> BTreeSet<OsId> {
        match self.source {
            Source::Repo => self.bootstraps.offered_os().map(|o| o.id.clone()).collect(),
            Source::Builtin => BUILTIN_OS.iter().filter_map(|s| s.parse().ok()).collect(),
        }
    }

    /// The appliances offered with `os`, in id order.
    pub fn offered_appliances(&self, os: &OsId) -> BTreeSet<ApplianceId> {
        match self.source {
            Source::Repo => self
                .bootstraps
                .appliances_for(os)
                .map(|a| a.id.clone())
                .collect(),
            Source::Builtin => BUILTIN_APPLIANCES
                .iter()
                .filter_map(|s| s.parse().ok())
                .collect(),
        }
    }

    /// Whether `os` is a cloud image (`method = "cloud-image"`): KVM nodes only.
    pub fn is_cloud_image(&self, os: &OsId) -> bool {
        self.bootstraps
            .os
            .get(os)
            .is_some_and(|m| m.method.cloud_image().is_some())
    }

    /// The name of an OS, as mails show it (its id when the catalog has no name for it).
    pub fn os_name(&self, os: &OsId) -> String {
        self.bootstraps
            .os
            .get(os)
            .map_or_else(|| os.to_string(), |m| m.name.clone())
    }

    /// Parses and checks an OS asked for by a customer: offered now.
    pub fn os(&self, asked: &str) -> Result<OsId, CatalogError> {
        let offered = self.offered_os();
        asked
            .parse::<OsId>()
            .ok()
            .filter(|id| offered.contains(id))
            .ok_or_else(|| unknown("OS", asked, offered.iter().map(OsId::as_str)))
    }

    /// Parses and checks an appliance asked for with `os`: offered now, for its family.
    pub fn appliance(&self, os: &OsId, asked: &str) -> Result<ApplianceId, CatalogError> {
        let offered = self.offered_appliances(os);
        asked
            .parse::<ApplianceId>()
            .ok()
            .filter(|id| offered.contains(id))
            .ok_or_else(|| unknown("appliance", asked, offered.iter().map(ApplianceId::as_str)))
    }
}

fn unknown<'a>(
    kind: &'static str,
    asked: &str,
    known: impl Iterator<Item = &'a str>,
) -> CatalogError {
    let known: Vec<&str> = known.collect();
    CatalogError::Unknown {
        kind,
        value: asked
            .chars()
            .take(40)
            .collect::<String>()
            .escape_debug()
            .to_string(),
        known: if known.is_empty() {
            "none".to_owned()
        } else {
            known.join(", ")
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn builtin() -> Catalog {
        catalog(Arc::new(Bootstraps::default()))
    }

    /// The project's own `bootstraps/`, copied so one entry can be withdrawn.
    fn project_with(tweak: impl FnOnce(&Path)) -> Catalog {
        let top = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let tmp = tempfile::tempdir().unwrap();
        fn copy(from: &Path, to: &Path) {
            std::fs::create_dir_all(to).unwrap();
            for e in std::fs::read_dir(from).unwrap() {
                let e = e.unwrap();
                let (src, dst) = (e.path(), to.join(e.file_name()));
                if e.file_type().unwrap().is_dir() {
                    copy(&src, &dst);
                } else {
                    std::fs::copy(&src, &dst).unwrap();
                }
            }
        }
        copy(&top.join("bootstraps"), &tmp.path().join("bootstraps"));
        tweak(tmp.path());
        catalog(Arc::new(Bootstraps::load(tmp.path()).unwrap()))
    }

    #[test]
    fn without_bootstraps_the_builtin_list_is_offered() {
        let c = builtin();
        assert_eq!(c.source, Source::Builtin);
        assert_eq!(c.os("debian-12").unwrap().as_str(), "debian-12");
        assert_eq!(
            c.offered_os().len(),
            BUILTIN_OS.len(),
            "every built-in id parses"
        );
        let deb = c.os("debian-12").unwrap();
        assert!(c.appliance(&deb, "openvpn").is_ok());
        let e = c.os("windows-11").unwrap_err().to_string();
        assert!(e.contains("not an OS of the catalog"), "{e}");
        assert!(e.contains("debian-13"), "{e}");
    }

    #[test]
    fn a_withdrawn_os_or_appliance_is_not_offered() {
        let c = project_with(|_| {});
        assert_eq!(c.source, Source::Repo);
        let deb = c.os("debian-12").unwrap();
        assert!(c.appliance(&deb, "openvpn").is_ok());
        let c = project_with(|root| {
            let meta = root.join("bootstraps/os/debian-12/meta.toml");
            let text = std::fs::read_to_string(&meta).unwrap();
            std::fs::write(&meta, format!("{text}offered = false\n")).unwrap();
            let meta = root.join("bootstraps/appliances/openvpn/meta.toml");
            let text = std::fs::read_to_string(&meta).unwrap();
            std::fs::write(&meta, format!("{text}offered = false\n")).unwrap();
        });
        let e = c.os("debian-12").unwrap_err().to_string();
        assert!(e.contains("not an OS of the catalog"), "{e}");
        let deb13 = c.os("debian-13").unwrap();
        assert!(c.appliance(&deb13, "openvpn").is_err(), "withdrawn");
    }

    #[test]
    fn hostile_names_are_refused_and_not_echoed_raw() {
        let c = builtin();
        for bad in [
            "../../etc",
            "debian-12; rm -rf /",
            "",
            "DEBIAN-12",
            "debian-12\n",
        ] {
            assert!(c.os(bad).is_err(), "{bad:?}");
        }
        let e = c.os("a\nb").unwrap_err().to_string();
        assert!(!e.contains('\n'));
    }
}
