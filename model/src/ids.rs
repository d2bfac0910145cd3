//! Newtype identifiers that can only be built by parsing a strict grammar.
//! An id can therefore always be used as a file name, a Unix user name or a shell word.

use std::fmt;
use std::str::FromStr;

/// Why a string is not a valid id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{value}` is not a valid {kind} id: {reason}")]
pub struct IdError {
    /// The kind of id (`vps`, `node`, ...).
    pub kind: &'static str,
    /// The rejected text (control characters escaped).
    pub value: String,
    /// Which part of the grammar it breaks.
    pub reason: &'static str,
}

/// Longest id: fits a Unix user name (the console user is named after the VPS).
pub const MAX_ID_LEN: usize = 32;

/// Checks the id grammar shared by every kind: `[a-z][a-z0-9]*(-[a-z0-9]+)*`, at most 32 bytes.
pub(crate) fn check_id(kind: &'static str, s: &str) -> Result<(), IdError> {
    let err = |reason| IdError {
        kind,
        value: s.escape_debug().to_string(),
        reason,
    };
    if s.is_empty() {
        return Err(err("it is empty"));
    }
    if s.len() > MAX_ID_LEN {
        return Err(err("it is longer than 32 characters"));
    }
    if !s
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err(err("only lowercase letters, digits and '-' are allowed"));
    }
    if !s.as_bytes()[0].is_ascii_lowercase() {
        return Err(err("it must start with a lowercase letter"));
    }
    if s.ends_with('-') || s.contains("--") {
        return Err(err("'-' must stand between letters or digits"));
    }
    Ok(())
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $kind:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// For literals known to be valid (defaults, covered by tests).
            #[allow(dead_code)]
            pub(crate) fn new_unchecked(s: &str) -> Self {
                $name(s.to_owned())
            }

            /// The id as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, IdError> {
                check_id($kind, s)?;
                Ok($name(s.to_owned()))
            }
        }

        impl TryFrom<String> for $name {
            type Error = IdError;
            fn try_from(s: String) -> Result<Self, IdError> {
                check_id($kind, &s)?;
                Ok($name(s))
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl std::borrow::Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }
    };
}

id_type!(
    /// A VPS: also its Xen domain name, its console user and its file name.
    VpsId, "vps"
);
id_type!(
    /// A dom0 node (`inventory/nodes/<id>.toml`).
    NodeId, "node"
);
id_type!(
    /// A customer (`inventory/customers/<id>.toml`).
    CustomerId, "customer"
);
id_type!(
    /// A product of the catalog (`products.toml`).
    ProductId, "product"
);
id_type!(
    /// An IP pool (`pools.toml`).
    PoolId, "pool"
);
id_type!(
    /// An operating system of the bootstrap catalog (`bootstraps/os/<id>`).
    OsId, "os"
);
id_type!(
    /// An appliance: an OS plus a first-boot script (`bootstraps/appliances/<id>`).
    ApplianceId, "appliance"
);
id_type!(
    /// An ISO of the operator's library (`[[iso]]` in `gitvps.toml`).
    IsoId, "iso"
);
id_type!(
    /// A customer's snapshot of a VPS's disk (`[[snapshot]] name`): part of a logical volume's
    /// or a qcow2 snapshot's name on the node.
    SnapshotName, "snapshot"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_fleet_ids() {
        for s in ["xen02", "node0109", "c-0001", "advanced-3m", "tampa-1", "a"] {
            assert!(s.parse::<VpsId>().is_ok(), "{s}");
        }
    }

    #[test]
    fn rejects_what_is_not_a_shell_word() {
        for s in [
            "", "Xen02", "xen 02", "xen02;rm", "-x", "x-", "x--y", "1xen", "xen_02", "x\n", "xén",
            "../etc", "$(id)",
        ] {
            assert!(s.parse::<VpsId>().is_err(), "{s:?}");
        }
        assert!("a".repeat(33).parse::<NodeId>().is_err());
        assert!("a".repeat(32).parse::<NodeId>().is_ok());
    }

    #[test]
    fn error_names_kind_and_reason() {
        let e = "Xen02".parse::<VpsId>().unwrap_err();
        assert_eq!(
            e.to_string(),
            "`Xen02` is not a valid vps id: only lowercase letters, digits and '-' are allowed"
        );
    }
}
