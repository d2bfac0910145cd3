//! The `e2fsck` and `resize2fs` stand-ins (e2fsprogs 1.47.0): an ext4 filesystem is assumed
//! on every device; its size and check/resize counters live in `STATE/fs.json`.

use super::error::Result;
use super::opts::{self, OptError, spec};
use super::state::{FsRecord, Node};
use std::io::{self, Write};

const E2FSPROGS: &str = "1.47.0 (5-Feb-2023)";
const BLOCK: u64 = 4096;

/// Filesystem block count of a device of `len` bytes.
fn device_blocks(len: u64) -> u64 {
    len / BLOCK
}

/// Plausible usage figures for a fresh ext4 of `blocks` 4k blocks: (inodes, used blocks).
fn usage(blocks: u64) -> (u64, u64) {
    let inodes = (blocks / 4).max(16);
    let used = (u128::from(blocks) * 12955 / 262_144).max(1);
    (inodes, u64::try_from(used).unwrap_or(u64::MAX))
}

/// Records that a guest mounted the filesystem on `device` (a path as given): from now on
/// `resize2fs` wants `e2fsck -f` first. The caller holds the state lock.
pub(crate) fn mark_mounted(node: &Node, device: &str) -> Result<()> {
    let host = node.resolve(device);
    let Ok(meta) = std::fs::metadata(&host) else {
        return Ok(());
    };
    let key = node.device_key(device);
    let mut recs = node.load_fs()?;
    let rec = recs.entry(key).or_insert_with(|| FsRecord {
        blocks: device_blocks(meta.len()),
        ..FsRecord::default()
    });
    rec.needs_check = true;
    node.save_fs(&recs)
}

/// Sets the recorded filesystem size of `key` if none is recorded yet (`lvextend` grows the
/// device, not the filesystem). The caller holds the state lock.
pub(crate) fn remember_size(node: &Node, key: &str, len: u64) -> Result<()> {
    let mut recs = node.load_fs()?;
    if !recs.contains_key(key) {
        recs.insert(
            key.to_string(),
            FsRecord {
                blocks: device_blocks(len),
                ..FsRecord::default()
            },
        );
        node.save_fs(&recs)?;
    }
    Ok(())
}

/// Forgets the filesystem of a removed device. The caller holds the state lock.
pub(crate) fn forget(node: &Node, key: &str) -> Result<()> {
    let mut recs = node.load_fs()?;
    if recs.remove(key).is_some() {
        node.save_fs(&recs)?;
    }
    Ok(())
}

enum Open {
    Ok(u64),
    Failed(io::Error),
    Empty,
}

fn open_device(node: &Node, device: &str) -> Open {
    let host = node.resolve(device);
    match std::fs::metadata(&host) {
        Err(e) => Open::Failed(e),
        Ok(m) if m.is_dir() => Open::Failed(io::Error::from_raw_os_error(21)),
        Ok(m) if m.len() == 0 => Open::Empty,
        Ok(m) => Open::Ok(m.len()),
    }
}

fn e2fsck_usage(err: &mut dyn Write) {
    say!(
        err,
        "Usage: e2fsck [-panyrcdfktvDFV] [-b superblock] [-B blocksize]\n\t\t[-l|-L bad_blocks_file] [-C fd] [-j external_journal]\n\t\t[-E extended-options] [-z undo_file] device\n"
    );
    say!(
        err,
        "Emergency help:\n -p                   Automatic repair (no questions)\n -n                   Make no changes to the filesystem\n -y                   Assume \"yes\" to all questions\n -c                   Check for bad blocks and add them to the badblock list\n -f                   Force checking even if filesystem is marked clean"
    );
}

/// `e2fsck ARGS...`.
pub(crate) fn e2fsck(
    node: &Node,
    args: &[String],
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<i32> {
    let _lock = node.lock()?;
    e2fsck_locked(node, args, out, err)
}

/// `e2fsck` with the state lock already held.
pub(crate) fn e2fsck_locked(
    node: &Node,
    args: &[String],
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<i32> {
    let mut specs = vec![
        spec("p", Some('p'), None, false),
        spec("p", Some('a'), None, false),
        spec("n", Some('n'), None, false),
        spec("y", Some('y'), None, false),
        spec("f", Some('f'), None, false),
        spec("V", Some('V'), None, false),
    ];
    for c in ['r', 'c', 'd', 'k', 't', 'v', 'D', 'F', 's', 'S'] {
        specs.push(spec("ignored", Some(c), None, false));
    }
    for c in ['b', 'B', 'C', 'E', 'I', 'j', 'l', 'L', 'P', 'z'] {
        specs.push(spec("ignored-arg", Some(c), None, true));
    }
    let p = match opts::parse(args, &specs, false) {
        Ok(p) => p,
        Err(e) => {
            match e {
                OptError::UnknownShort(c) => say!(err, "e2fsck: invalid option -- '{c}'"),
                OptError::MissingShort(c) => {
                    say!(err, "e2fsck: option requires an argument -- '{c}'")
                }
                OptError::UnknownLong(l)
                | OptError::MissingLong(l)
                | OptError::UnexpectedArg(l) => say!(err, "e2fsck: invalid option -- '-{l}'"),
            }
            e2fsck_usage(err);
            return Ok(16);
        }
    };
    if p.has("V") {
        say!(err, "e2fsck {E2FSPROGS}");
        say!(err, "\tUsing EXT2FS Library version 1.47.0, 5-Feb-2023");
        return Ok(0);
    }
    let modes = usize::from(p.has("p")) + usize::from(p.has("n")) + usize::from(p.has("y"));
    if modes > 1 {
        say!(
            err,
            "e2fsck: Only one of the options -p/-a, -n or -y may be specified."
        );
        return Ok(8);
    }
    let [device] = p.args.as_slice() else {
        e2fsck_usage(err);
        return Ok(16);
    };
    let preen = p.has("p");
    let readonly = p.has("n");
    let force = p.has("f");
    if !preen {
        say!(err, "e2fsck {E2FSPROGS}");
    }
    let len = match open_device(node, device) {
        Open::Ok(len) => len,
        Open::Empty => {
            say!(
                err,
                "e2fsck: Attempt to read block from filesystem resulted in short read while trying to open {device}"
            );
            say!(out, "Could this be a zero-length partition?");
            return Ok(8);
        }
        Open::Failed(e) => {
            say!(
                err,
                "e2fsck: {} while trying to open {device}",
                opts::strerror(&e)
            );
            match e.kind() {
                io::ErrorKind::NotFound => say!(out, "Possibly non-existent device?"),
                io::ErrorKind::PermissionDenied => say!(
                    out,
                    "You must have {} access to the filesystem or be root",
                    if readonly { "r/o" } else { "r/w" }
                ),
                _ => {}
            }
            return Ok(8);
        }
    };
    let key = node.device_key(device);
    let in_use = super::xl::devices_in_use(node)?.contains(&key);
    if in_use {
        if readonly {
            say!(out, "Warning!  {device} is mounted.");
        } else {
            say!(out, "{device} is mounted.");
            say!(out, "e2fsck: Cannot continue, aborting.\n");
            return Ok(8);
        }
    }
    let mut recs = node.load_fs()?;
    let rec = recs.entry(key).or_insert_with(|| FsRecord {
        blocks: device_blocks(len),
        ..FsRecord::default()
    });
    let (inodes, used) = usage(rec.blocks);
    if force {
        if !preen {
            say!(out, "Pass 1: Checking inodes, blocks, and sizes");
            say!(out, "Pass 2: Checking directory structure");
            say!(out, "Pass 3: Checking directory connectivity");
            say!(out, "Pass 4: Checking reference counts");
            say!(out, "Pass 5: Checking group summary information");
        }
        say!(
            out,
            "{device}: 11/{inodes} files (0.0% non-contiguous), {used}/{} blocks",
            rec.blocks
        );
        if !readonly {
            rec.needs_check = false;
        }
    } else {
        say!(
            out,
            "{device}: clean, 11/{inodes} files, {used}/{} blocks",
            rec.blocks
        );
    }
    rec.fsck += 1;
    node.save_fs(&recs)?;
    Ok(0)
}

fn resize2fs_usage(err: &mut dyn Write) {
    say!(
        err,
        "Usage: resize2fs [-d debug_flags] [-f] [-F] [-M] [-P] [-p] device [-b|-s|new_size] [-S RAID-stride] [-z undo_file]\n"
    );
}

/// resize2fs's parse_num_blocks2: a block count, or a size with s/K/M/G/T.
fn parse_new_size(s: &str) -> Option<u64> {
    let end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(end);
    let n: u64 = num.parse().ok()?;
    let bytes = |mult: u64| n.checked_mul(mult).map(|b| b / BLOCK);
    match unit {
        "" => Some(n),
        "s" => bytes(512),
        "K" | "k" => bytes(1 << 10),
        "M" | "m" => bytes(1 << 20),
        "G" | "g" => bytes(1 << 30),
        "T" | "t" => bytes(1 << 40),
        _ => None,
    }
}

/// `resize2fs ARGS...`.
pub(crate) fn resize2fs(
    node: &Node,
    args: &[String],
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<i32> {
    let _lock = node.lock()?;
    resize2fs_locked(node, args, out, err)
}

/// `resize2fs` with the state lock already held.
pub(crate) fn resize2fs_locked(
    node: &Node,
    args: &[String],
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<i32> {
    let specs = [
        spec("f", Some('f'), None, false),
        spec("F", Some('F'), None, false),
        spec("M", Some('M'), None, false),
        spec("P", Some('P'), None, false),
        spec("p", Some('p'), None, false),
        spec("b", Some('b'), None, false),
        spec("s", Some('s'), None, false),
        spec("d", Some('d'), None, true),
        spec("S", Some('S'), None, true),
        spec("z", Some('z'), None, true),
    ];
    let p = match opts::parse(args, &specs, false) {
        Ok(p) => p,
        Err(e) => {
            match e {
                OptError::UnknownShort(c) => say!(err, "resize2fs: invalid option -- '{c}'"),
                OptError::MissingShort(c) => {
                    say!(err, "resize2fs: option requires an argument -- '{c}'")
                }
                OptError::UnknownLong(l)
                | OptError::MissingLong(l)
                | OptError::UnexpectedArg(l) => say!(err, "resize2fs: invalid option -- '-{l}'"),
            }
            resize2fs_usage(err);
            return Ok(1);
        }
    };
    let (device, size_arg) = match p.args.as_slice() {
        [d] => (d, None),
        [d, s] => (d, Some(s)),
        _ => {
            resize2fs_usage(err);
            return Ok(1);
        }
    };
    say!(err, "resize2fs {E2FSPROGS}");
    let len = match open_device(node, device) {
        Open::Ok(len) => len,
        Open::Empty => {
            say!(
                err,
                "resize2fs: Attempt to read block from filesystem resulted in short read while trying to open {device}"
            );
            say!(err, "Couldn't find valid filesystem superblock.");
            return Ok(1);
        }
        Open::Failed(e) => {
            say!(
                err,
                "resize2fs: {} while trying to open {device}",
                opts::strerror(&e)
            );
            say!(err, "Couldn't find valid filesystem superblock.");
            return Ok(1);
        }
    };
    let key = node.device_key(device);
    let mut recs = node.load_fs()?;
    let rec = recs.entry(key).or_insert_with(|| FsRecord {
        blocks: device_blocks(len),
        ..FsRecord::default()
    });
    let (_, used) = usage(rec.blocks);
    if p.has("P") {
        say!(
            out,
            "Estimated minimum size of the filesystem: {}",
            used + 4096
        );
        return Ok(0);
    }
    if !p.has("f") && rec.needs_check {
        say!(err, "Please run 'e2fsck -f {device}' first.\n");
        return Ok(1);
    }
    let dev_blocks = device_blocks(len);
    let new = if p.has("M") {
        used + 4096
    } else if let Some(s) = size_arg {
        match parse_new_size(s) {
            Some(n) => n,
            None => {
                say!(err, "resize2fs: Invalid new size: {s}\n");
                return Ok(1);
            }
        }
    } else {
        dev_blocks
    };
    if new > dev_blocks {
        say!(
            err,
            "The containing partition (or device) is only {dev_blocks} (4k) blocks.\nYou requested a new size of {new} blocks.\n"
        );
        return Ok(1);
    }
    if new == rec.blocks {
        say!(
            err,
            "The filesystem is already {new} (4k) blocks long.  Nothing to do!\n"
        );
        rec.resize += 1;
        node.save_fs(&recs)?;
        return Ok(0);
    }
    say!(
        out,
        "Resizing the filesystem on {device} to {new} (4k) blocks."
    );
    say!(
        out,
        "The filesystem on {device} is now {new} (4k) blocks long.\n"
    );
    rec.blocks = new;
    rec.resize += 1;
    node.save_fs(&recs)?;
    Ok(0)
}
