//! The gitvps reconciler: observes dom0 nodes over SSH, plans the difference to the inventory
//! and applies it; also the command line (`gitvps`). See `ARCHITECTURE.md` for the data flow.

pub mod apply;
pub mod cli;
pub mod desired;
pub mod driver;
pub mod nodeserver;
pub mod nodesim;
pub mod observe;
pub mod plan;
pub mod site;
pub mod ssh;
pub mod status;
pub mod table;
pub mod testbed;
