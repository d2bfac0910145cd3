//! The gitvps execution shell: SSH to nodes with pinned host keys, apply of the planner's steps
//! (nodes in parallel, one locked exec per node), the status branch, the repo inputs, and the
//! usage collector's SSH side (`collect`) and sample store (`samples`).
//!
//! Everything that decides lives in `gitvps-planner`; this crate only carries plans out and
//! reads what the planner needs from the repo and the environment. See `ARCHITECTURE.md`.

pub mod apply;
pub mod backup;
pub mod collect;
pub mod dns;
pub mod inputs;
pub mod moves;
pub mod pool;
pub mod prepare;
pub mod probe;
pub mod samples;
pub mod ssh;
pub mod status;
pub mod usage;
