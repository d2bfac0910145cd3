//! The plan of one VPS, by concern: its record, destruction and retention, bringing the domain
//! down, the disk, the OS and the actions that need the domain down, config and start, reboot.

use model::values::{Size, State};

use super::{Note, Op, Step, StepPaths, day_of, image_mismatch};
use crate::desired::{Desired, NodeSpec, VpsSpec};
use crate::observe::{Domain, NodeState, Record};

mod snapshots;

/// Plans one VPS, appending its steps in the order they must run.
pub(super) fn plan_vps(
    desired: &Desired,
    spec: &NodeSpec,
    v: &VpsSpec,
    obs: &NodeState,
    steps: &mut Vec<Step>,
    notes: &mut Vec<Note>,
) {
    let mismatch = image_mismatch(spec, v, obs);
    if v.state != State::Destroyed
        && let Some(n) = mismatch.clone()
    {
        notes.push(n);
        return;
    }
    let mut p = VpsPlan {
        desired,
        v,
        obs,
        name: v.id.as_str(),
        root: &spec.root,
        domain: obs.domains.get(v.id.as_str()),
        disk: obs.disks.get(v.id.as_str()).copied(),
        config: obs.configs.get(v.id.as_str()),
        steps,
        notes,
        record: Record::default(),
    };
    p.record = p.known_record();
    if v.state == State::Destroyed {
        p.destroyed(mismatch);
    } else {
        p.live();
    }
}

/// One VPS being planned: what was observed of it, and the steps and notes so far.
struct VpsPlan<'a> {
    desired: &'a Desired,
    v: &'a VpsSpec,
    obs: &'a NodeState,
    name: &'a str,
    /// The node root.
    root: &'a str,
    domain: Option<&'a Domain>,
    disk: Option<u64>,
    config: Option<&'a String>,
    steps: &'a mut Vec<Step>,
    notes: &'a mut Vec<Note>,
    /// The record as it will be after the steps so far.
    record: Record,
}

/// What is due for a VPS that is not destroyed, decided once from the desired and observed state.
struct Due {
    up: bool,
    grow: bool,
    config_changed: bool,
    has_fs: bool,
    fsck: bool,
    reinstall: bool,
    /// `[restore]` is due (the VPS is active): it replaces a reinstall or install.
    restore: bool,
    /// `[revert]` is due (the VPS is active and its disk exists).
    revert: bool,
    install: bool,
    reboot: bool,
}

impl VpsPlan<'_> {
    fn push(&mut self, op: Op, record: Option<Record>) {
        self.steps.push(Step {
            vps: self.v.id.clone(),
            op,
            record,
            target: StepPaths {
                disk: self.v.disk_path.clone(),
                config: self.v.config_path.clone(),
            },
        });
    }

    /// Pushes a step that records the current record.
    fn push_recorded(&mut self, op: Op) {
        let record = self.record.clone();
        self.push(op, Some(record));
    }

    /// The counters as recorded now, from the node; the desired counters as a record.
    fn counters(&self, installed: bool) -> Record {
        Record {
            reboot: self.v.actions.reboot,
            fsck: self.v.actions.fsck,
            reinstall: self.v.actions.reinstall,
            restore: self.v.restore.as_ref().map_or(0, |r| r.generation),
            revert: self.v.snapshots.revert.as_ref().map_or(0, |r| r.1),
            installed,
            destroyed_at: None,
        }
    }

    /// The node's record of the VPS. A disk gitvps has no record of (state folder lost, VPS
    /// adopted from elsewhere) is taken as it is: the counters are recorded, no action runs,
    /// nothing is erased.
    fn known_record(&mut self) -> Record {
        match self.obs.records.get(self.name) {
            Some(r) => r.clone(),
            // Adopted: its disk was installed before gitvps; nothing to record on the node.
            None if self.disk.is_some() && self.v.adopted => self.counters(true),
            None if self.disk.is_some() && self.v.state != State::Destroyed => {
                let adopted = self.counters(true);
                self.push(
                    Op::Record {
                        note: "the existing disk (no record of it: counters taken as done)".into(),
                    },
                    Some(adopted.clone()),
                );
                adopted
            }
            None => Record::default(),
        }
    }

    /// `state = "destroyed"`: the domain and config go; the disk after the retention.
    fn destroyed(&mut self, mismatch: Option<Note>) {
        if self.domain.is_some() {
            self.push(
                Op::Destroy {
                    reason: "state = \"destroyed\"".into(),
                },
                None,
            );
        }
        if self.config.is_some() {
            self.push(Op::RemoveConfig, None);
        }
        self.drop_rescue();
        if self.disk.is_none() {
            return;
        }
        if let Some(n) = mismatch {
            self.notes.push(n);
            return;
        }
        let from_file = self
            .v
            .destroyed
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .map(|t| t.and_utc().timestamp());
        let now = self.obs.now;
        let since = match from_file.or(self.record.destroyed_at) {
            Some(t) => t,
            None => {
                self.record.destroyed_at = Some(now);
                self.push_recorded(Op::Record {
                    note: "the destruction time".into(),
                });
                now
            }
        };
        let days = self.desired.retention_days;
        let until = since + i64::from(days) * 86_400;
        if now >= until {
            self.push(
                Op::RemoveDisk {
                    reason: format!("destroyed, retention of {days} days passed"),
                },
                None,
            );
        } else {
            let note = format!(
                "{}: disk kept until {} (retention {days} days)",
                self.name,
                day_of(until)
            );
            self.notes.push(note);
        }
    }

    /// What is due, with the notes that explain what is not done.
    fn due(&mut self) -> Due {
        let v = self.v;
        let creating = self.disk.is_none();
        if creating {
            // A new disk: the counters so far concern a disk that no longer exists; a restore
            // asked for is what the new disk starts from.
            self.record = self.counters(false);
            self.record.restore = 0;
        }
        if let Some(d) = self.disk
            && d > v.disk_bytes
        {
            self.notes.push(format!(
                "{}: its disk is {} but product `{}` gives {}: shrinking is refused, the disk is left as it is",
                self.name,
                Size(d),
                v.product,
                Size(v.disk_bytes)
            ));
        }
        let reinstall_due = v.actions.reinstall > self.record.reinstall;
        let reinstall = reinstall_due && v.state == State::Active;
        if reinstall_due && !reinstall {
            self.notes.push(format!(
                "{}: the reinstall waits until the VPS is active again",
                self.name
            ));
        }
        let restore_due = v
            .restore
            .as_ref()
            .is_some_and(|r| r.generation > self.record.restore);
        let restore = restore_due && v.state == State::Active;
        if restore_due && !restore {
            self.notes.push(format!(
                "{}: the restore waits until the VPS is active again",
                self.name
            ));
        }
        let reinstall = reinstall && !restore;
        let revert = self.revert_due(creating);
        Due {
            up: self.domain.is_some_and(Domain::is_up),
            grow: self.disk.is_some_and(|d| d < v.disk_bytes),
            // An adopted domain that runs keeps the config it was started with.
            config_changed: self.config.is_none_or(|h| *h != v.config_sha256)
                && !(v.adopted && self.config.is_none() && self.domain.is_some_and(Domain::is_up)),
            // A fresh or never-installed disk has no filesystem to check.
            // A partitioned cloud image is not one ext4 filesystem: no e2fsck or resize2fs on
            // it (cloud-init grows its partition and filesystem at each boot).
            has_fs: self.record.installed
                && !creating
                && v.install.as_ref().is_none_or(|i| i.whole_disk_fs()),
            fsck: v.actions.fsck > self.record.fsck,
            reinstall,
            restore,
            revert,
            // A disk gitvps created blank gets its OS (a new disk, or one made before its OS
            // was known).
            install: v.install.is_some()
                && !reinstall
                && !restore
                && (creating || !self.record.installed),
            reboot: v.actions.reboot > self.record.reboot,
        }
    }

    /// A VPS that is not destroyed: every concern in the order its steps must run.
    fn live(&mut self) {
        let due = self.due();
        self.check_backup(&due);
        self.fetch_iso(&due);
        self.build_rescue();
        self.snapshots_first();
        let running = self.bring_down(&due);
        let creating = self.disk.is_none();
        self.disk_steps(&due);
        self.revert(&due);
        self.os_and_fsck(&due);
        if creating {
            self.take_snapshots();
        }
        self.drop_rescue();
        let started = self.config_and_start(&due, running);
        self.restore_filter(running);
        self.reboot(&due, started);
    }

    /// Step 0: a config that attaches an ISO fetches it first (the node skips the download
    /// when its cache holds it), so that a bad ISO stops the VPS's steps before any other.
    fn fetch_iso(&mut self, due: &Due) {
        if due.config_changed
            && let Some(iso) = &self.v.iso
        {
            self.push(
                Op::FetchIso {
                    iso: Box::new(iso.clone()),
                },
                None,
            );
        }
    }

    /// The rescue images of this VPS on the node, by name (`<vps>.<hash>`).
    fn rescue_images(&self) -> Vec<&str> {
        let prefix = format!("{}.", self.name);
        (self.obs.rescue.iter())
            .map(String::as_str)
            .filter(|n| n.strip_prefix(&prefix).is_some_and(|h| !h.contains('.')))
            .collect()
    }

    /// Step 0: the rescue system's image is built before anything is stopped (a failed build
    /// leaves the VPS running its own system); `rescue = true` on a VPS that is not active
    /// waits, saying so.
    fn build_rescue(&mut self) {
        if self.v.rescue_waits {
            self.notes.push(format!(
                "{}: rescue = true waits until the VPS is active again (a suspended VPS does not run)",
                self.name
            ));
        }
        if let Some(r) = &self.v.rescue
            && !self.obs.rescue.contains(&r.name)
        {
            self.push(
                Op::BuildRescue {
                    rescue: Box::new(r.clone()),
                },
                None,
            );
        }
    }

    /// Step 4a: rescue images the config no longer boots go, once the guest is down (or, when
    /// it keeps running, it runs its config, which names another image).
    fn drop_rescue(&mut self) {
        let keep = self.v.rescue.as_ref().map(|r| r.name.as_str());
        let images: Vec<String> = (self.rescue_images().into_iter())
            .filter(|n| Some(*n) != keep)
            .map(|n| crate::desired::rescue_image(self.root, n))
            .collect();
        if !images.is_empty() {
            self.push(Op::DropRescue { images }, None);
        }
    }

    /// Step 0: a restore first checks its backup in the repository, before anything is stopped:
    /// a backup that is not the VPS's (or does not fit) leaves it running untouched.
    fn check_backup(&mut self, due: &Due) {
        if due.restore
            && let Some(r) = &self.v.restore
        {
            self.push(
                Op::CheckBackup {
                    restore: Box::new(r.clone()),
                    max_bytes: self.v.disk_bytes,
                },
                None,
            );
        }
    }

    /// Why a running domain must stop first: it must not run, or for work on its disk or config.
    fn stop_reason(&self, due: &Due) -> Option<String> {
        let v = self.v;
        let reason = if !v.run {
            if v.state == State::Suspended {
                "suspended"
            } else {
                "power = \"stopped\""
            }
        } else if due.grow {
            "to grow its disk"
        } else if due.restore {
            "to restore a backup"
        } else if due.revert {
            "to revert to a snapshot"
        } else if due.reinstall {
            "to reinstall"
        } else if due.install {
            "to install its OS"
        } else if due.fsck && due.has_fs {
            "to check its filesystem"
        } else if self.config.is_none() && !v.adopted {
            "its config is missing"
        } else if due.config_changed && v.rescue.is_some() {
            "to boot the rescue system"
        } else if due.config_changed && !self.rescue_images().is_empty() {
            "to leave the rescue system"
        } else if due.config_changed {
            "its config changed"
        } else if !(v.adopted && self.config.is_none())
            && self
                .domain
                .and_then(|d| d.running_config.as_ref())
                .is_some_and(|h| *h != v.config_sha256)
        {
            // KVM keeps the arguments QEMU was started with: it must run its config.
            "it runs other arguments than its config"
        } else {
            return None;
        };
        Some(reason.to_owned())
    }

    /// Step 1: brings the domain down when it must not run, or for work on its disk or config;
    /// returns whether it still runs.
    fn bring_down(&mut self, due: &Due) -> bool {
        if let Some(dom) = self.domain
            && !due.up
        {
            self.push(
                Op::Destroy {
                    reason: format!("the domain is {}", dom.state_words()),
                },
                None,
            );
            return false;
        }
        if !due.up {
            return false;
        }
        match self.stop_reason(due) {
            Some(reason) => {
                let timeout_secs = self.desired.shutdown_timeout_secs;
                self.push(
                    Op::Stop {
                        reason,
                        timeout_secs,
                    },
                    None,
                );
                false
            }
            None => true,
        }
    }

    /// Step 2: the disk, created or grown.
    fn disk_steps(&mut self, due: &Due) {
        let bytes = self.v.disk_bytes;
        match self.disk {
            None => self.push_recorded(Op::CreateDisk { bytes }),
            Some(from) if due.grow => self.push(
                Op::GrowDisk {
                    from,
                    to: bytes,
                    resize_fs: due.has_fs,
                },
                None,
            ),
            Some(_) => {}
        }
    }

    /// Step 3: the OS, and the check of its filesystem, which need the domain down.
    fn os_and_fsck(&mut self, due: &Due) {
        let v = self.v;
        // A disk that gets a fresh OS in this plan needs no check: the OS step records the
        // fsck itself, so that a run killed after it cannot check the new disk again.
        let fresh_os = due.reinstall || due.install || due.restore;
        if due.fsck && fresh_os {
            self.record.fsck = v.actions.fsck;
            self.notes.push(format!(
                "{}: fsck {} is not needed: the disk gets a fresh OS in this plan",
                self.name, v.actions.fsck
            ));
        }
        if due.restore
            && let Some(r) = &v.restore
        {
            if v.actions.reinstall > self.record.reinstall {
                self.record.reinstall = v.actions.reinstall;
                self.notes.push(format!(
                    "{}: reinstall {} is not done: the restore replaces the disk",
                    self.name, v.actions.reinstall
                ));
            }
            self.record.restore = r.generation;
            self.record.installed = true;
            self.push_recorded(Op::Restore {
                restore: Box::new(r.clone()),
                max_bytes: v.disk_bytes,
            });
        } else if due.reinstall {
            self.record.reinstall = v.actions.reinstall;
            match &v.install {
                Some(spec) => {
                    self.record.installed = true;
                    self.push_recorded(Op::Reinstall {
                        generation: v.actions.reinstall,
                        spec: Box::new(spec.clone()),
                    });
                }
                None => self.push_recorded(Op::Record {
                    note: "reinstall (its OS installs nothing: not in bootstraps/, or hvm-iso)"
                        .into(),
                }),
            }
        } else if due.install
            && let Some(spec) = &v.install
        {
            self.record.installed = true;
            self.push_recorded(Op::Install {
                spec: Box::new(spec.clone()),
            });
        }
        if due.fsck && !fresh_os {
            self.record.fsck = v.actions.fsck;
            let op = if due.has_fs {
                Op::Fsck {
                    generation: v.actions.fsck,
                }
            } else {
                Op::Record {
                    note: if self.record.installed {
                        "fsck (a partitioned cloud image: its own system checks it)".into()
                    } else {
                        "fsck (no filesystem to check yet)".into()
                    },
                }
            };
            self.push_recorded(op);
        }
    }

    /// Step 4: the config, then the start; returns whether the domain is started by this plan.
    fn config_and_start(&mut self, due: &Due, running: bool) -> bool {
        if due.config_changed {
            self.push(
                Op::WriteConfig {
                    content: self.v.config.clone(),
                    sha256: self.v.config_sha256.clone(),
                    replaces: self.config.is_some(),
                },
                None,
            );
        }
        let started = self.v.run && !running;
        if started {
            self.push(Op::Start, None);
        }
        started
    }

    /// Step 5: a running bridged guest whose filter is gone (its node's ruleset was flushed): a
    /// start loads it, a guest that keeps running gets it back.
    fn restore_filter(&mut self, running: bool) {
        if running
            && let (Some(tap), Some(filters)) = (&self.v.tap, &self.obs.filters)
            && !filters.contains(tap)
        {
            self.push(Op::RestoreFilter, None);
        }
    }

    /// Step 6, reboot: only a domain that was running before and still runs; otherwise recorded.
    fn reboot(&mut self, due: &Due, started: bool) {
        if !due.reboot {
            return;
        }
        let generation = self.v.actions.reboot;
        self.record.reboot = generation;
        if started {
            // The fresh start is the reboot: its step records it, so that a run killed
            // between the two can never reboot the VPS a second time.
            let record = self.record.clone();
            if let Some(start) =
                (self.steps.iter_mut().rev()).find(|s| s.vps == self.v.id && s.op == Op::Start)
            {
                start.record = Some(record);
                self.notes.push(format!(
                    "{}: reboot {generation} is done by the fresh start",
                    self.name
                ));
                return;
            }
        }
        let op = if self.v.run && !started {
            Op::Reboot { generation }
        } else {
            Op::Record {
                note: "reboot (the domain is not running)".into(),
            }
        };
        self.push_recorded(op);
    }
}
