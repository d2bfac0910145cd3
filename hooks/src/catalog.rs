//! The OS and appliance catalog a reinstall or an order may pick from: the folder names under
//! `bootstraps/os/` and `bootstraps/appliances/`, or a small built-in list until they exist.

use std::collections::BTreeSet;

use model::{ApplianceId, OsId};

use crate::tree::Tree;

/// Operating systems offered while the repo has no `bootstraps/` folder: the first OS folders
/// of the bootstraps work. Ids follow the id grammar (Ubuntu 24.04 is `ubuntu-2404`, Alpine
/// 3.20 `alpine-3-20`). Replaced by the folder list as soon as `bootstraps/` exists.
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
    /// The folders of `bootstraps/`.
    Repo,
    /// The built-in list ([`BUILTIN_OS`], [`BUILTIN_APPLIANCES`]).
    Builtin,
}

/// What may be installed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Catalog {
    /// Operating systems.
    pub os: BTreeSet<OsId>,
    /// Appliances.
    pub appliances: BTreeSet<ApplianceId>,
    /// Where the lists came from.
    pub source: Source,
}

/// Why an OS or appliance cannot be installed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CatalogError {
    /// Not a valid id, or not in the catalog.
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

/// The catalog of the repo as `tree` shows it. The one place that decides what is offered:
/// the bootstraps work replaces the built-in fallback here.
pub fn catalog(tree: &dyn Tree) -> Catalog {
    match tree.entries("bootstraps") {
        Some(_) => Catalog {
            os: folder_ids(tree, "bootstraps/os"),
            appliances: folder_ids(tree, "bootstraps/appliances"),
            source: Source::Repo,
        },
        None => Catalog {
            os: BUILTIN_OS.iter().filter_map(|s| s.parse().ok()).collect(),
            appliances: BUILTIN_APPLIANCES
                .iter()
                .filter_map(|s| s.parse().ok())
                .collect(),
            source: Source::Builtin,
        },
    }
}

fn folder_ids<T: std::str::FromStr + Ord>(tree: &dyn Tree, dir: &str) -> BTreeSet<T> {
    tree.entries(dir)
        .unwrap_or_default()
        .into_iter()
        .filter(|e| e.is_dir)
        .filter_map(|e| e.name.parse().ok())
        .collect()
}

impl Catalog {
    /// Parses and checks an OS asked for by a customer.
    pub fn os(&self, asked: &str) -> Result<OsId, CatalogError> {
        asked
            .parse::<OsId>()
            .ok()
            .filter(|id| self.os.contains(id))
            .ok_or_else(|| unknown("OS", asked, self.os.iter().map(OsId::as_str)))
    }

    /// Parses and checks an appliance asked for by a customer.
    pub fn appliance(&self, asked: &str) -> Result<ApplianceId, CatalogError> {
        asked
            .parse::<ApplianceId>()
            .ok()
            .filter(|id| self.appliances.contains(id))
            .ok_or_else(|| {
                unknown(
                    "appliance",
                    asked,
                    self.appliances.iter().map(ApplianceId::as_str),
                )
            })
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
    use crate::tree::MemTree;

    #[test]
    fn without_bootstraps_the_builtin_list_is_offered() {
        let c = catalog(&MemTree::new());
        assert_eq!(c.source, Source::Builtin);
        assert_eq!(c.os("debian-12").unwrap().as_str(), "debian-12");
        assert_eq!(c.os.len(), BUILTIN_OS.len(), "every built-in id parses");
        assert!(c.appliance("openvpn").is_ok());
        let e = c.os("windows-11").unwrap_err().to_string();
        assert!(e.contains("not an OS of the catalog"), "{e}");
        assert!(e.contains("debian-13"), "{e}");
    }

    #[test]
    fn with_bootstraps_only_its_folders_count() {
        let t = MemTree::new()
            .with("bootstraps/os/debian-13/install.sh", "")
            .with("bootstraps/os/Bad_Name/install.sh", "")
            .with("bootstraps/os/notes.txt", "")
            .with("bootstraps/README.md", "");
        let c = catalog(&t);
        assert_eq!(c.source, Source::Repo);
        assert!(c.os("debian-13").is_ok());
        assert!(c.os("debian-12").is_err(), "not a folder there");
        assert!(c.os("notes.txt").is_err());
        assert!(c.os("Bad_Name").is_err());
        assert!(c.appliance("openvpn").is_err(), "no appliances folder");
    }

    #[test]
    fn hostile_names_are_refused_and_not_echoed_raw() {
        let c = catalog(&MemTree::new());
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
