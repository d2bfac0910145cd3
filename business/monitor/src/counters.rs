//! Per-VPS counter samples (CPU time, network and disk I/O) and the delta between two of them,
//! which never goes negative or giant when a counter resets.
//!
//! # Resets
//!
//! The counters a node reports only grow while one domain runs, and start again from zero when
//! it reboots or is re-created (and a Xen vif's counters restart when the vif is re-plugged).
//! [`delta`] detects a reset two ways:
//!
//! - the domain's [`Incarnation`] changed (a new domain id, or a new start time): every field
//!   restarted, so [`Reset::Domain`];
//! - with the same incarnation, a field went down: that field restarted ([`Reset::Fields`]).
//!
//! After a reset a field's delta is its new value: what was counted since the reset. What
//! happened between the previous sample and the reset is lost (at most one interval's worth):
//! usage is undercounted, never overcounted. A 32-bit counter that wraps is a reset too, by the
//! same rule (the part before the wrap is lost).
//!
//! A delta larger than [`Limits`] allows over its interval (a foreign or garbled reading, a
//! domain whose counters did not start at zero) is not believed: that field's delta is zero and
//! [`Delta::implausible`] names it, so one bad reading never puts a petabyte on a bill.

use chrono::{DateTime, Utc};

/// One reading of a VPS's cumulative counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Counters {
    /// CPU time used by all its vCPUs, in milliseconds.
    pub cpu_ms: u64,
    /// Bytes received by the VPS.
    pub net_rx_bytes: u64,
    /// Bytes sent by the VPS.
    pub net_tx_bytes: u64,
    /// Packets received by the VPS.
    pub net_rx_packets: u64,
    /// Packets sent by the VPS.
    pub net_tx_packets: u64,
    /// Bytes read from its disks.
    pub disk_read_bytes: u64,
    /// Bytes written to its disks.
    pub disk_write_bytes: u64,
    /// Read operations on its disks.
    pub disk_read_ops: u64,
    /// Write operations on its disks.
    pub disk_write_ops: u64,
}

/// One field of [`Counters`], to name it in a reset or an implausible delta.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Field {
    /// [`Counters::cpu_ms`].
    CpuMs,
    /// [`Counters::net_rx_bytes`].
    NetRxBytes,
    /// [`Counters::net_tx_bytes`].
    NetTxBytes,
    /// [`Counters::net_rx_packets`].
    NetRxPackets,
    /// [`Counters::net_tx_packets`].
    NetTxPackets,
    /// [`Counters::disk_read_bytes`].
    DiskReadBytes,
    /// [`Counters::disk_write_bytes`].
    DiskWriteBytes,
    /// [`Counters::disk_read_ops`].
    DiskReadOps,
    /// [`Counters::disk_write_ops`].
    DiskWriteOps,
}

impl Field {
    /// Every field, in declaration order.
    pub const ALL: [Field; 9] = [
        Field::CpuMs,
        Field::NetRxBytes,
        Field::NetTxBytes,
        Field::NetRxPackets,
        Field::NetTxPackets,
        Field::DiskReadBytes,
        Field::DiskWriteBytes,
        Field::DiskReadOps,
        Field::DiskWriteOps,
    ];
}

impl Counters {
    /// The value of one field.
    pub fn get(&self, f: Field) -> u64 {
        match f {
            Field::CpuMs => self.cpu_ms,
            Field::NetRxBytes => self.net_rx_bytes,
            Field::NetTxBytes => self.net_tx_bytes,
            Field::NetRxPackets => self.net_rx_packets,
            Field::NetTxPackets => self.net_tx_packets,
            Field::DiskReadBytes => self.disk_read_bytes,
            Field::DiskWriteBytes => self.disk_write_bytes,
            Field::DiskReadOps => self.disk_read_ops,
            Field::DiskWriteOps => self.disk_write_ops,
        }
    }

    /// Mutable access to one field.
    pub fn get_mut(&mut self, f: Field) -> &mut u64 {
        match f {
            Field::CpuMs => &mut self.cpu_ms,
            Field::NetRxBytes => &mut self.net_rx_bytes,
            Field::NetTxBytes => &mut self.net_tx_bytes,
            Field::NetRxPackets => &mut self.net_rx_packets,
            Field::NetTxPackets => &mut self.net_tx_packets,
            Field::DiskReadBytes => &mut self.disk_read_bytes,
            Field::DiskWriteBytes => &mut self.disk_write_bytes,
            Field::DiskReadOps => &mut self.disk_read_ops,
            Field::DiskWriteOps => &mut self.disk_write_ops,
        }
    }

    /// Field-wise sum, saturating (sums of deltas: a bucket's total).
    pub fn saturating_add(&self, other: &Counters) -> Counters {
        let mut out = *self;
        for f in Field::ALL {
            *out.get_mut(f) = self.get(f).saturating_add(other.get(f));
        }
        out
    }

    /// Network bytes both ways.
    pub fn net_bytes(&self) -> u64 {
        self.net_rx_bytes.saturating_add(self.net_tx_bytes)
    }
}

/// Which running domain a sample was read from: when it changes, every counter restarted.
/// A field the source does not report is `None` and never signals a change by itself.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Incarnation {
    /// The hypervisor's domain id (Xen's domid, QEMU's pid): new on every (re)start.
    pub domain_id: Option<u64>,
    /// When the domain started, if the source says.
    pub started: Option<DateTime<Utc>>,
}

impl Incarnation {
    /// Whether `next` is another domain than `self`: a field both know differs.
    pub fn changed(&self, next: &Incarnation) -> bool {
        fn differs<T: PartialEq>(a: Option<T>, b: Option<T>) -> bool {
            matches!((a, b), (Some(a), Some(b)) if a != b)
        }
        // Start times compare to the second: sources derive them from boot time and ticks.
        differs(self.domain_id, next.domain_id)
            || differs(
                self.started.map(|t| t.timestamp()),
                next.started.map(|t| t.timestamp()),
            )
    }
}

/// One reading of a VPS: when, from which domain, and its counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    /// When it was read (the node's clock is not trusted: the collector's).
    pub at: DateTime<Utc>,
    /// The domain it was read from.
    pub incarnation: Incarnation,
    /// The cumulative counters.
    pub counters: Counters,
}

/// Whether counters restarted between two samples.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reset {
    /// No reset.
    None,
    /// Another domain (reboot, re-creation): every field restarted.
    Domain,
    /// Same domain, but these fields went down (a re-plugged vif, a wrapped 32-bit counter).
    Fields(Vec<Field>),
}

/// The largest believable rate of each counter, per second; a delta above `rate × seconds` is
/// dropped. The defaults are far above any one VPS (100 Gbit/s, 1024 CPUs) and only catch
/// garbage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Per second: CPU milliseconds, network and disk bytes, packets, disk operations.
    pub per_second: Counters,
}

impl Default for Limits {
    fn default() -> Self {
        let net = 12_500_000_000; // 100 Gbit/s
        let packets = 200_000_000;
        let disk = 100_000_000_000;
        let ops = 100_000_000;
        Limits {
            per_second: Counters {
                cpu_ms: 1024 * 1000,
                net_rx_bytes: net,
                net_tx_bytes: net,
                net_rx_packets: packets,
                net_tx_packets: packets,
                disk_read_bytes: disk,
                disk_write_bytes: disk,
                disk_read_ops: ops,
                disk_write_ops: ops,
            },
        }
    }
}

/// What happened between two samples.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delta {
    /// The earlier sample's time.
    pub from: DateTime<Utc>,
    /// The later sample's time.
    pub to: DateTime<Utc>,
    /// Usage in the interval (never negative, never above [`Limits`]).
    pub usage: Counters,
    /// Whether counters restarted in the interval.
    pub reset: Reset,
    /// Fields whose delta exceeded [`Limits`] and were set to zero.
    pub implausible: Vec<Field>,
}

/// Two samples that cannot be compared.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeltaError {
    /// The later sample is not later (a clock step back, samples out of order).
    #[error("sample at {next} does not follow the one at {prev}: samples must be in time order")]
    OutOfOrder {
        /// The earlier sample's time.
        prev: DateTime<Utc>,
        /// The later sample's time.
        next: DateTime<Utc>,
    },
}

/// The usage between `prev` and `next`, with resets handled as the module says.
pub fn delta(prev: &Sample, next: &Sample, limits: &Limits) -> Result<Delta, DeltaError> {
    if next.at <= prev.at {
        return Err(DeltaError::OutOfOrder {
            prev: prev.at,
            next: next.at,
        });
    }
    let millis = u64::try_from((next.at - prev.at).num_milliseconds()).unwrap_or(u64::MAX);
    let domain_reset = prev.incarnation.changed(&next.incarnation);
    let mut usage = Counters::default();
    let mut went_down = Vec::new();
    let mut implausible = Vec::new();
    for f in Field::ALL {
        let (a, b) = (prev.counters.get(f), next.counters.get(f));
        let d = if domain_reset {
            b
        } else if b < a {
            went_down.push(f);
            b
        } else {
            b - a
        };
        // The most `f` can grow in the interval, in u128 so no product overflows.
        let max = u128::from(limits.per_second.get(f)) * u128::from(millis) / 1000;
        if u128::from(d) > max {
            implausible.push(f);
        } else {
            *usage.get_mut(f) = d;
        }
    }
    let reset = if domain_reset {
        Reset::Domain
    } else if went_down.is_empty() {
        Reset::None
    } else {
        Reset::Fields(went_down)
    };
    Ok(Delta {
        from: prev.at,
        to: next.at,
        usage,
        reset,
        implausible,
    })
}

#[cfg(test)]
mod tests {
    use chrono::{Duration, TimeZone};
    use proptest::prelude::*;

    use super::*;

    fn t(secs: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_780_000_000 + secs, 0)
            .single()
            .unwrap_or_default()
    }

    fn sample(secs: i64, domid: u64, net: u64) -> Sample {
        Sample {
            at: t(secs),
            incarnation: Incarnation {
                domain_id: Some(domid),
                started: None,
            },
            counters: Counters {
                cpu_ms: net / 10,
                net_rx_bytes: net,
                net_tx_bytes: net * 2,
                ..Counters::default()
            },
        }
    }

    #[test]
    fn growing_counters_give_the_difference() {
        let d = delta(
            &sample(0, 7, 1000),
            &sample(60, 7, 5000),
            &Limits::default(),
        );
        let Ok(d) = d else { panic!("{d:?}") };
        assert_eq!(d.usage.net_rx_bytes, 4000);
        assert_eq!(d.usage.net_tx_bytes, 8000);
        assert_eq!(d.usage.cpu_ms, 400);
        assert_eq!(d.reset, Reset::None);
        assert!(d.implausible.is_empty());
    }

    #[test]
    fn a_new_domain_id_counts_from_zero() {
        // Rebooted: the new domain has counted 300 bytes, more than nothing but less than before.
        let d = delta(&sample(0, 7, 1000), &sample(60, 8, 300), &Limits::default());
        let Ok(d) = d else { panic!("{d:?}") };
        assert_eq!(d.reset, Reset::Domain);
        assert_eq!(d.usage.net_rx_bytes, 300);
        // Even when the new domain's counter is already above the old one.
        let d = delta(
            &sample(0, 7, 1000),
            &sample(60, 8, 5000),
            &Limits::default(),
        );
        let Ok(d) = d else { panic!("{d:?}") };
        assert_eq!(d.usage.net_rx_bytes, 5000);
    }

    #[test]
    fn a_new_start_time_is_a_reset_too() {
        let mut a = sample(0, 7, 1000);
        let mut b = sample(60, 7, 5000);
        a.incarnation = Incarnation {
            domain_id: None,
            started: Some(t(-100)),
        };
        b.incarnation = Incarnation {
            domain_id: None,
            started: Some(t(30)),
        };
        let Ok(d) = delta(&a, &b, &Limits::default()) else {
            panic!()
        };
        assert_eq!(d.reset, Reset::Domain);
        assert_eq!(d.usage.net_rx_bytes, 5000);
        // An unknown id on one side is not a change.
        b.incarnation.started = None;
        let Ok(d) = delta(&a, &b, &Limits::default()) else {
            panic!()
        };
        assert_eq!(d.reset, Reset::None);
    }

    #[test]
    fn a_field_going_down_restarts_only_that_field() {
        let a = sample(0, 7, 1000);
        let mut b = sample(60, 7, 2000);
        b.counters.net_tx_bytes = 50; // the vif was re-plugged
        let Ok(d) = delta(&a, &b, &Limits::default()) else {
            panic!()
        };
        assert_eq!(d.reset, Reset::Fields(vec![Field::NetTxBytes]));
        assert_eq!(d.usage.net_tx_bytes, 50);
        assert_eq!(d.usage.net_rx_bytes, 1000);
    }

    #[test]
    fn a_giant_delta_is_dropped_and_named() {
        let a = sample(0, 7, 0);
        let mut b = sample(1, 7, 0);
        b.counters.net_rx_bytes = u64::MAX;
        b.counters.disk_write_ops = 10;
        let Ok(d) = delta(&a, &b, &Limits::default()) else {
            panic!()
        };
        assert_eq!(d.implausible, vec![Field::NetRxBytes]);
        assert_eq!(d.usage.net_rx_bytes, 0);
        assert_eq!(d.usage.disk_write_ops, 10);
    }

    #[test]
    fn samples_out_of_order_are_refused() {
        let a = sample(60, 7, 0);
        for b in [sample(60, 7, 10), sample(0, 7, 10)] {
            let e = delta(&a, &b, &Limits::default());
            assert!(matches!(e, Err(DeltaError::OutOfOrder { .. })), "{e:?}");
        }
    }

    /// One step of a simulated domain: some traffic, maybe a reboot part-way through.
    #[derive(Debug, Clone)]
    struct Step {
        secs: i64,
        before_reset: u64,
        reset: bool,
        after: u64,
        by_field: bool,
    }

    fn steps() -> impl Strategy<Value = Vec<Step>> {
        let step = (
            1i64..600,
            0u64..1 << 30,
            prop::bool::weighted(0.2),
            0u64..1 << 30,
            any::<bool>(),
        )
            .prop_map(|(secs, before_reset, reset, after, by_field)| Step {
                secs,
                before_reset,
                reset,
                after,
                by_field,
            });
        prop::collection::vec(step, 1..60)
    }

    proptest! {
        /// Over any run of samples with reboots (by a new domain id, or by the counters going
        /// down), the deltas add up to exactly the traffic that was not lost to a reset: never
        /// more than really happened, never negative, never above the limits.
        #[test]
        fn deltas_add_up_across_resets(start in 0u64..1 << 40, steps in steps()) {
            let limits = Limits::default();
            let mut domid = 1;
            let mut prev = Sample {
                at: t(0),
                incarnation: Incarnation { domain_id: Some(domid), started: None },
                counters: Counters { net_rx_bytes: start, ..Counters::default() },
            };
            let (mut counted, mut happened, mut lost) = (0u64, 0u64, 0u64);
            for s in &steps {
                let mut counter = prev.counters.net_rx_bytes;
                happened += s.before_reset + s.after;
                if s.reset {
                    lost += s.before_reset;
                    counter = s.after;
                    if !s.by_field {
                        domid += 1;
                    } else if counter >= prev.counters.net_rx_bytes {
                        // Indistinguishable from growth by the counter alone: a reboot that
                        // keeps the domain id must be seen going down. Skip the reset.
                        lost -= s.before_reset;
                        counter = prev.counters.net_rx_bytes + s.before_reset + s.after;
                    }
                } else {
                    counter += s.before_reset + s.after;
                }
                let next = Sample {
                    at: prev.at + Duration::seconds(s.secs),
                    incarnation: Incarnation { domain_id: Some(domid), started: None },
                    counters: Counters { net_rx_bytes: counter, ..Counters::default() },
                };
                let d = delta(&prev, &next, &limits);
                prop_assert!(d.is_ok());
                let Ok(d) = d else { break };
                prop_assert!(d.implausible.is_empty());
                prop_assert!(
                    u128::from(d.usage.net_rx_bytes)
                        <= u128::from(limits.per_second.net_rx_bytes) * u128::try_from(s.secs).unwrap_or(0)
                );
                counted += d.usage.net_rx_bytes;
                prev = next;
            }
            prop_assert_eq!(counted, happened - lost);
            prop_assert!(counted <= happened);
        }

        /// Whatever two readings are, the delta is bounded by the limits and by the later reading.
        #[test]
        fn any_two_readings_give_a_bounded_delta(
            a in any::<[u64; 9]>(), b in any::<[u64; 9]>(), secs in 1i64..100_000,
            same in any::<bool>(),
        ) {
            let limits = Limits::default();
            let mk = |v: [u64; 9]| {
                let mut c = Counters::default();
                for (f, x) in Field::ALL.into_iter().zip(v) { *c.get_mut(f) = x; }
                c
            };
            let prev = Sample { at: t(0), incarnation: Incarnation { domain_id: Some(1), started: None }, counters: mk(a) };
            let next = Sample {
                at: t(secs),
                incarnation: Incarnation { domain_id: Some(if same { 1 } else { 2 }), started: None },
                counters: mk(b),
            };
            let d = delta(&prev, &next, &limits);
            prop_assert!(d.is_ok());
            let Ok(d) = d else { return Ok(()) };
            for f in Field::ALL {
                let u = d.usage.get(f);
                prop_assert!(u <= next.counters.get(f));
                prop_assert!(u128::from(u) <= u128::from(limits.per_second.get(f)) * u128::try_from(secs).unwrap_or(0));
                prop_assert!(u == 0 || !d.implausible.contains(&f));
            }
        }
    }
}
