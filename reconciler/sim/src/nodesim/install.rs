//! `gitvps node-sim install`: writes ROOT/usr/sbin/TOOL wrapper scripts that exec this binary's
//! stand-ins for ROOT, and creates the state folders.

use super::TOOLS;
use super::error::{FileOp, OnFile, Result};
use super::state::{Node, STATE_DIR, atomic_write_mode};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// A POSIX sh single-quoted word for arbitrary bytes (`'` becomes `'\''`).
pub(crate) fn sh_quote(s: &OsStr) -> Vec<u8> {
    let mut out = vec![b'\''];
    for &b in s.as_bytes() {
        if b == b'\'' {
            out.extend_from_slice(b"'\\''");
        } else {
            out.push(b);
        }
    }
    out.push(b'\'');
    out
}

/// The wrapper script for `tool`.
pub(crate) fn wrapper(exe: &Path, root: &Path, tool: &str) -> Vec<u8> {
    let mut s = b"#!/bin/sh\nexec ".to_vec();
    s.extend(sh_quote(exe.as_os_str()));
    s.extend_from_slice(b" node-sim exec --root ");
    s.extend(sh_quote(root.as_os_str()));
    s.push(b' ');
    s.extend_from_slice(tool.as_bytes());
    s.extend_from_slice(b" \"$@\"\n");
    s
}

/// See [`super::install`].
pub(crate) fn install(root: &Path, exe: &Path) -> Result<()> {
    let root_abs = std::path::absolute(root).on(FileOp::Resolve, root)?;
    let exe_abs = std::path::absolute(exe).on(FileOp::Resolve, exe)?;
    let sbin = root_abs.join("usr").join("sbin");
    let state = root_abs.join(STATE_DIR);
    let dev = root_abs.join("dev");
    for dir in [
        &sbin,
        &state.join("xl/domains"),
        &state.join("console"),
        &dev,
    ] {
        std::fs::create_dir_all(dir).on(FileOp::Create, dir)?;
    }
    for tool in TOOLS {
        let path = sbin.join(tool);
        let body = wrapper(&exe_abs, &root_abs, tool);
        if std::fs::read(&path).ok().as_deref() == Some(body.as_slice()) {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
                .on(FileOp::Chmod, &path)?;
            continue;
        }
        atomic_write_mode(&path, &body, Some(0o755)).on(FileOp::Write, &path)?;
    }
    // Touch the lock so the folder layout is complete from the start.
    drop(Node::new(&root_abs).lock()?);
    Ok(())
}
