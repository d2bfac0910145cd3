//! The pure core of gitvps monitoring: per-VPS counter samples and the deltas between them
//! (safe across reboots and re-created domains), the downsampling tiers, and traffic quotas.
//!
//! No I/O here: the collector (`gitvps monitor`) runs the node's collect script over SSH and
//! stores buckets; it asks this crate what the node printed ([`report`], [`sources`]), what the
//! numbers mean and what should happen.

pub mod checks;
pub mod counters;
pub mod graph;
pub mod metrics;
pub mod report;
pub mod sources;
pub mod tiers;
pub mod traffic;
pub mod usage;

pub use checks::{CheckState, Outcome, Status, Target};
pub use counters::{Counters, Delta, DeltaError, Field, Incarnation, Limits, Reset, Sample, delta};
pub use tiers::{Bucket, Gauge, Insert, Merge, NodeBucket, NodeReading, Series, Tier};
pub use traffic::{
    Decision, Enforcement, Level, Period, Step, TrafficError, counted, decide, level, period,
    period_total, period_total_hourly,
};
