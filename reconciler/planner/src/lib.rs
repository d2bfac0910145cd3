//! The gitvps planning core: desired state from the inventory, the observed state of a node
//! and its parse, the planner, plan rendering, and the node scripts it builds but never sends.
//!
//! Nothing here does I/O: no network, no SSH, no git, no files, no environment. What it needs
//! from files (templates, the bootstraps catalog, the apt mirror) its caller reads and passes in
//! as data; the execution shell (`gitvps-executor`) sends what it builds. See `ARCHITECTURE.md`.

pub mod backup;
pub mod cloudinit;
pub mod comment;
pub mod desired;
pub mod drift;
pub mod driver;
pub mod import;
pub mod moves;
pub mod observe;
pub mod plan;
pub mod prepare;
pub mod protocol;
pub mod quote;
pub mod reviewed;
pub mod snapshot;

pub use quote::quote;
