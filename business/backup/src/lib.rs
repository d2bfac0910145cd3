//! The pure core of gitvps backups: which VPSes are due for a backup at a given UTC time, and
//! which restic snapshots a retention policy keeps and which it forgets. See `docs/backup.md`.
//!
//! `gitvps backup run` (`executor::backup`) lists each VPS's snapshots, calls [`due`] to pick
//! the backups to take and [`retain`] to pick the snapshots to forget, then runs restic on the nodes.

pub mod retention;
pub mod schedule;

pub use retention::{Bucket, Decision, Kept, Snapshot, retain};
pub use schedule::{Due, due, is_due, last_slot};
