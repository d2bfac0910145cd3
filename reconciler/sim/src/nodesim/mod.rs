//! Stand-ins for the Xen `xl` and `xentop` and LVM/e2fsprogs command lines, for a "node in a folder" ROOT
//! where Xen cannot run: same output, messages and exit codes as the real tools, state in files.
//!
//! `install` writes `ROOT/usr/sbin/{xl,lvs,...}` wrappers that run the small
//! `gitvps-stand-in --root ROOT TOOL ARGS...` where it was built beside `gitvps`, else
//! `gitvps node-sim exec --root ROOT TOOL ARGS...` (see [`StandIn`]); both land in [`run_tool`]. The reference
//! for every message is `reference/xl-lvm-cli.md` (Xen 4.17, LVM 2.03.16, e2fsprogs 1.47.0).
//!
//! # State layout (under ROOT)
//!
//! - `dev/VG/` — a volume group is a folder (tests create it, or call [`create_vg`]);
//!   `dev/VG/LV` — a logical volume is a sparse regular file whose length is the LV size.
//! - `var/lib/gitvps-sim/.lock` — flock held while a tool reads or writes state.
//! - `var/lib/gitvps-sim/xl/domains/NAME.json` — one running (or preserved) guest: `name`,
//!   `domid`, `uuid`, `state` (the six `xl list` letters, `-b----` when running, `--p---`
//!   paused, `---s?-` shut down and preserved), `cpu_time`, `reboots`, `console_sessions`,
//!   `config_file`, `started_at`, and `config` (the parsed xl.cfg: type, vcpus, memory, sched
//!   weight/cap, kernel, cmdline, disks, nics, on_* actions). NAME is the domain name with bytes
//!   outside `[A-Za-z0-9._-]` written `%XX`. Deleting the file is "the domain died out of
//!   band"; editing `state` simulates a crash (`---sc-`) and so on, and a `d` in sixth place a
//!   domain Xen is still tearing down (listed as `(null)`, as real `xl` does: its name is already
//!   gone from xenstore). Domain-0 is not stored.
//! - `var/lib/gitvps-sim/xl/xl.json` — `next_domid` and Domain-0's scheduler weight/cap.
//! - `var/lib/gitvps-sim/lvm.json` — `{"vgs": {"VG": {"size_bytes": N}}}`; a VG folder with no
//!   entry counts as 1 TiB. `"snapshots": {"VG/LV": {"origin": "NAME", "cow_bytes": N}}`: the
//!   classic snapshots (`lvcreate -s`): the file `dev/VG/LV` holds the origin's content as it
//!   was when the snapshot was made, and the snapshot takes `cow_bytes` from the VG.
//! - `var/lib/gitvps-sim/fs.json` — per device node path (`/dev/vg0/xen02`): `blocks` (ext4
//!   size in 4k blocks), `needs_check` (a guest mounted it since the last `e2fsck -f`), `fsck`
//!   and `resize` counters.
//! - `var/lib/gitvps-sim/console/NAME.log` — what was typed into `xl console NAME`.
//!
//! Every state file is written to a temporary file and renamed into place.

macro_rules! say {
    ($w:expr, $($arg:tt)*) => {{
        let _ = writeln!($w, $($arg)*);
    }};
}

mod error;
mod fs;
mod install;
mod json;
mod lvm;
mod opts;
mod state;
mod users;
mod xentop;
mod xl;
mod xlcfg;

#[cfg(test)]
mod tests;

pub(crate) use error::OnFile;
pub use error::{FileError, FileOp, SimError};

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// The tools the stand-ins provide.
pub const TOOLS: &[&str] = &[
    "xl",
    "xentop",
    "lvs",
    "vgs",
    "lvcreate",
    "lvextend",
    "lvremove",
    "lvconvert",
    "e2fsck",
    "resize2fs",
    "useradd",
];

/// Run one stand-in tool as if invoked as `tool args...`; writes to out/err like the real tool;
/// returns the exit code. Standard input (for `xl console` and `lvremove`'s question) is this
/// process's stdin.
pub fn run_tool(
    root: &Path,
    tool: &str,
    args: &[String],
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> i32 {
    let stdin = std::io::stdin();
    let mut input = stdin.lock();
    run_tool_with_input(root, tool, args, &mut input, out, err)
}

/// [`run_tool`] with an explicit standard input (for an in-process SSH server or tests).
pub fn run_tool_with_input(
    root: &Path,
    tool: &str,
    args: &[String],
    input: &mut dyn Read,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> i32 {
    let node = state::Node::new(root);
    let result = match tool {
        "xl" => xl::run(&node, args, input, out, err),
        "lvs" => lvm::lvs(&node, args, out, err),
        "vgs" => lvm::vgs(&node, args, out, err),
        "xentop" => xentop::run(&node, args, out, err),
        "lvcreate" => lvm::lvcreate(&node, args, out, err),
        "lvextend" => lvm::lvextend(&node, args, out, err),
        "lvremove" => lvm::lvremove(&node, args, input, out, err),
        "lvconvert" => lvm::lvconvert(&node, args, out, err),
        "e2fsck" => fs::e2fsck(&node, args, out, err),
        "resize2fs" => fs::resize2fs(&node, args, out, err),
        "useradd" => users::useradd(&node, args, err),
        _ => {
            say!(err, "gitvps node-sim: unknown tool '{tool}'");
            return 127;
        }
    };
    let code = match result {
        Ok(code) => code,
        Err(e) => {
            let (prefix, code) = match tool {
                "xl" => ("xl: ", 1),
                "e2fsck" => ("e2fsck: ", 8),
                "resize2fs" => ("resize2fs: ", 1),
                _ => ("  ", 5),
            };
            say!(err, "{prefix}{}", model::diag::error_chain(&e));
            code
        }
    };
    let _ = out.flush();
    let _ = err.flush();
    code
}

/// The program the stand-ins' wrapper scripts run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StandIn {
    /// `PROGRAM --root ROOT TOOL ARGS...`: the stand-ins' own small program (`gitvps-stand-in`,
    /// `reconciler/cli/src/bin/stand_in.rs`), which starts as fast as a small tool does.
    Small(PathBuf),
    /// `PROGRAM node-sim exec --root ROOT TOOL ARGS...`: the whole `gitvps` command line, whose
    /// dynamic loader alone takes milliseconds a call.
    Gitvps(PathBuf),
}

impl StandIn {
    /// The small program beside the `gitvps` binary `exe` (its name with `-stand-in` after it:
    /// `gitvps-stand-in`), when it was built, else `exe node-sim exec`.
    pub fn beside(exe: &Path) -> StandIn {
        let small = exe.file_name().map(|name| {
            let mut name = name.to_os_string();
            name.push("-stand-in");
            exe.with_file_name(name)
        });
        match small {
            Some(small) if small.is_file() => StandIn::Small(small),
            _ => StandIn::Gitvps(exe.to_path_buf()),
        }
    }

    /// The program's path.
    pub fn path(&self) -> &Path {
        match self {
            StandIn::Small(p) | StandIn::Gitvps(p) => p,
        }
    }

    /// The same program at another path (a copy of it).
    pub fn at(&self, path: PathBuf) -> StandIn {
        match self {
            StandIn::Small(_) => StandIn::Small(path),
            StandIn::Gitvps(_) => StandIn::Gitvps(path),
        }
    }
}

/// Write the wrapper scripts into ROOT/usr/sbin (mode 0755) running `program`, and create the
/// state folders; idempotent. Both paths must be UTF-8.
pub fn install(root: &Path, program: &StandIn) -> Result<(), SimError> {
    install::install(root, program)
}

/// Create volume group `vg` (the folder ROOT/dev/VG) and record its size, from which free
/// space is computed in 4 MiB extents; calling it again updates the size.
pub fn create_vg(root: &Path, vg: &str, size_bytes: u64) -> Result<(), SimError> {
    lvm::create_vg(&state::Node::new(root), vg, size_bytes)
}
