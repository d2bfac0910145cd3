//! The gitvps inventory: typed products, pools, nodes, customers and VPSes, loaded from a
//! git repository with file:line:column errors, validated, placed and edited. Pure: no network.
//!
//! See `docs/inventory.md` for every field of every file.

pub mod backup;
pub mod bootstraps;
pub mod diag;
pub mod edit;
pub mod ids;
pub mod inventory;
pub mod iso;
pub mod load;
pub mod media;
pub mod placement;
pub mod policy;
mod read;
pub mod settings;
pub mod snapshot;
pub mod status;
pub mod text;
pub mod tickets;
pub mod usage;
mod validate;
pub mod values;

pub use diag::{Diagnostic, Diagnostics, Origin};
pub use ids::*;
pub use inventory::*;
pub use load::LoadError;
pub use settings::Settings;
