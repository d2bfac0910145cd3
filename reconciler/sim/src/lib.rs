//! The gitvps simulation kit, for tests, the demo and the bench only: stand-ins for Xen's `xl`
//! and the LVM tools in a folder, an in-process SSH server in front of one, and a testbed fleet.
//!
//! Production crates never depend on it; the `gitvps` binary links it only with its `sim`
//! feature (`gitvps demo`, `gitvps bench`, `gitvps node-sim`).

pub mod nodeserver;
pub mod nodesim;
pub mod testbed;
