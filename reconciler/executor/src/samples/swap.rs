//! The rename dance that swaps a compacted copy of the sample store in for the store, and the
//! recovery [`super::Store::open`] runs first, so that a crash at any point loses neither.
//!
//! Beside the store `DIR` a compaction writes `DIR.compacting` (the copy), then the marker file
//! `DIR.compacted` once the copy is whole and flushed, then renames `DIR` to `DIR.old` and the
//! copy to `DIR`, removes `DIR.old`, and last the marker. What recovery finds and does:
//!
//! | on disk | recovery |
//! |---|---|
//! | `DIR.compacting`, no marker | the copy was cut short: it is removed, `DIR` is untouched |
//! | marker, `DIR`, `DIR.compacting` | rolls forward from the first rename |
//! | marker, `DIR.old`, `DIR.compacting` | rolls forward from the second rename |
//! | marker, `DIR` (the copy), maybe `DIR.old` | `DIR.old` and the marker removed |
//! | marker, a copy without its magic key | the copy removed (and `DIR.old` renamed back) |
//!
//! The copy holds every entry of `DIR` (writes wait while it is taken), so either is the store:
//! rolling forward loses nothing and counts nothing twice.

use std::fs;
use std::path::{Path, PathBuf};

use super::StoreError;

/// A step of a compaction after which a test stops it, as a crash would.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(not(test), allow(dead_code))]
pub(super) enum Step {
    /// The copy is written and flushed, no marker yet.
    Copied,
    /// The marker is written.
    Marked,
    /// `DIR` is renamed to `DIR.old`.
    OldMoved,
    /// The copy is renamed to `DIR`.
    NewMoved,
    /// `DIR.old` is removed; the marker is still there.
    OldRemoved,
}

/// The store's folder and the names a compaction uses beside it.
#[derive(Debug, Clone)]
pub(super) struct Paths {
    /// The store.
    pub(super) dir: PathBuf,
    /// The copy being written.
    pub(super) copy: PathBuf,
    /// The marker: the copy is whole.
    pub(super) marker: PathBuf,
    /// The store being replaced.
    pub(super) old: PathBuf,
}

impl Paths {
    /// The names beside `dir`; `None` when it has no name of its own (`/`, `..`).
    pub(super) fn of(dir: &Path) -> Option<Paths> {
        let name = dir.file_name()?;
        let beside = |suffix: &str| {
            let mut n = name.to_os_string();
            n.push(suffix);
            dir.with_file_name(n)
        };
        Some(Paths {
            dir: dir.to_path_buf(),
            copy: beside(".compacting"),
            marker: beside(".compacted"),
            old: beside(".old"),
        })
    }

    fn fail(&self, what: String, source: std::io::Error) -> StoreError {
        StoreError::Compact {
            path: self.dir.clone(),
            what,
            source: Some(source),
        }
    }

    /// Makes the renames and removals in the store's parent folder durable.
    fn sync_parent(&self) -> Result<(), StoreError> {
        let parent = match self.dir.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        fs::File::open(parent)
            .and_then(|f| f.sync_all())
            .map_err(|e| self.fail(format!("syncing {}", parent.display()), e))
    }

    fn rename(&self, from: &Path, to: &Path) -> Result<(), StoreError> {
        fs::rename(from, to).map_err(|e| {
            self.fail(
                format!("renaming {} to {}", from.display(), to.display()),
                e,
            )
        })?;
        self.sync_parent()
    }

    fn remove_dir(&self, dir: &Path) -> Result<(), StoreError> {
        fs::remove_dir_all(dir).map_err(|e| self.fail(format!("removing {}", dir.display()), e))
    }

    /// Before a compaction: nothing of an earlier one is left (recovery at open tidied what
    /// it could, and a compaction tidies after itself).
    pub(super) fn ready(&self) -> Result<(), StoreError> {
        for p in [&self.copy, &self.marker, &self.old] {
            if fs::symlink_metadata(p).is_ok() {
                return Err(StoreError::Compact {
                    path: self.dir.clone(),
                    what: format!(
                        "{} is in the way (left by an earlier compaction, or not gitvps's): move it away",
                        p.display()
                    ),
                    source: None,
                });
            }
        }
        Ok(())
    }

    /// Writes the marker: the copy is whole and flushed, and recovery rolls forward from now.
    pub(super) fn mark(&self) -> Result<(), StoreError> {
        let text = format!(
            "gitvps monitor: {} is a whole copy of {}; gitvps swaps it in when it opens the store\n",
            self.copy.display(),
            self.dir.display()
        );
        let write = || -> std::io::Result<()> {
            let f = fs::File::create_new(&self.marker)?;
            std::io::Write::write_all(&mut &f, text.as_bytes())?;
            f.sync_all()
        };
        write().map_err(|e| self.fail(format!("writing {}", self.marker.display()), e))?;
        self.sync_parent()
    }

    /// Takes the marker back: the store stays `DIR`, and recovery will not roll the copy over
    /// it (a swap that failed before its first rename, while `DIR` is written to again).
    pub(super) fn unmark(&self) -> Result<(), StoreError> {
        fs::remove_file(&self.marker)
            .map_err(|e| self.fail(format!("removing {}", self.marker.display()), e))?;
        self.sync_parent()
    }

    /// Removes a copy a compaction could not finish (no marker written), if it is one.
    pub(super) fn drop_copy(&self) -> Result<(), StoreError> {
        if !self.copy.exists() {
            return Ok(());
        }
        sled_files(&self.copy).map_err(|what| StoreError::Foreign {
            path: self.copy.clone(),
            what,
        })?;
        self.remove_dir(&self.copy)?;
        self.sync_parent()
    }

    /// An error in place of `step` when `fail` names it: the failure a test injects.
    fn inject(&self, fail: Option<Step>, step: Step) -> Result<(), StoreError> {
        if fail == Some(step) {
            return Err(self.fail(
                format!("{step:?} (a failure a test injected)"),
                std::io::Error::other("injected"),
            ));
        }
        Ok(())
    }

    /// The swap from the marker on: renames, removes `DIR.old`, then the marker. Each step is
    /// chosen by what is on disk, so it finishes a swap a crash cut anywhere. Stops after
    /// `stop`, or fails in place of `fail` (tests).
    pub(super) fn finish(&self, stop: Option<Step>, fail: Option<Step>) -> Result<(), StoreError> {
        if self.copy.exists() {
            if self.dir.exists() {
                if self.old.exists() {
                    return Err(StoreError::Compact {
                        path: self.dir.clone(),
                        what: format!(
                            "{}, {} and {} all exist, which a compaction never leaves; all left as they are: keep the store you trust, move the others and {} away",
                            self.dir.display(),
                            self.copy.display(),
                            self.old.display(),
                            self.marker.display()
                        ),
                        source: None,
                    });
                }
                self.inject(fail, Step::OldMoved)?;
                self.rename(&self.dir, &self.old)?;
                if stop == Some(Step::OldMoved) {
                    return Ok(());
                }
            }
            self.inject(fail, Step::NewMoved)?;
            self.rename(&self.copy, &self.dir)?;
            if stop == Some(Step::NewMoved) {
                return Ok(());
            }
        } else if !self.dir.exists() && self.old.exists() {
            // Not a state a compaction leaves: the old store goes back rather than nowhere.
            self.rename(&self.old, &self.dir)?;
        }
        if self.old.exists() {
            self.inject(fail, Step::OldRemoved)?;
            self.remove_dir(&self.old)?;
            self.sync_parent()?;
        }
        if stop == Some(Step::OldRemoved) {
            return Ok(());
        }
        fs::remove_file(&self.marker)
            .map_err(|e| self.fail(format!("removing {}", self.marker.display()), e))?;
        self.sync_parent()
    }
}

/// Whether `dir` holds only what sled writes (`conf`, `db`, `blobs`, `snap.*`): a copy a
/// crash cut short, which recovery may remove.
fn sled_files(dir: &Path) -> Result<(), String> {
    if !dir.is_dir() {
        return Err("not a folder".into());
    }
    let rd = fs::read_dir(dir).map_err(|e| format!("cannot list it: {e}"))?;
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !(name == "conf" || name == "db" || name == "blobs" || name.starts_with("snap.")) {
            return Err(format!(
                "not the copy of an unfinished compaction: it holds {name}"
            ));
        }
    }
    Ok(())
}

/// What [`super::Store::open`] runs first: finishes a swap a crash interrupted after the
/// marker, or removes a copy cut short before it.
/// `whole` tells whether a copy holds its magic key (was written to its end); one that does
/// not, under a marker (a disk that lost the copy's last writes), is never swapped in: the
/// store stays, or comes back from `DIR.old`.
pub(super) fn recover(dir: &Path, whole: impl Fn(&Path) -> bool) -> Result<(), StoreError> {
    let Some(p) = Paths::of(dir) else {
        return Ok(());
    };
    if p.marker.exists() {
        if p.copy.exists() && !whole(&p.copy) {
            tracing::error!(db = %dir.display(), copy = %p.copy.display(), "monitor database: a compaction's copy is not whole; the store is kept and the copy removed");
            if !p.dir.exists() && p.old.exists() {
                p.rename(&p.old, &p.dir)?;
            }
            p.drop_copy()?;
        } else {
            tracing::warn!(db = %dir.display(), "monitor database: finishing a compaction a stop interrupted");
            return p.finish(None, None);
        }
    }
    if p.copy.exists() {
        p.drop_copy()?;
        tracing::warn!(db = %dir.display(), "monitor database: removed the copy of a compaction a stop cut short");
    }
    if p.marker.exists() {
        fs::remove_file(&p.marker)
            .map_err(|e| p.fail(format!("removing {}", p.marker.display()), e))?;
        p.sync_parent()?;
    }
    if p.old.exists() {
        tracing::warn!(db = %dir.display(), old = %p.old.display(), "monitor database: a folder named like a replaced store is left alone; compactions wait until it is moved away");
    }
    Ok(())
}
