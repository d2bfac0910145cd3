//! `gitvps node-sim install`: writes ROOT/usr/sbin/TOOL wrapper scripts that exec the stand-ins'
//! program for ROOT, and creates the state folders.

use super::error::{FileOp, OnFile, Result, SimError};
use super::state::{Node, STATE_DIR, atomic_write_mode};
use super::{StandIn, TOOLS};
use std::path::Path;

/// A path as a shell word, or why it cannot be one.
fn quoted(path: &Path) -> Result<String> {
    path.to_str()
        .map(planner::quote)
        .ok_or_else(|| SimError::NotUtf8(path.to_path_buf()))
}

/// The wrapper script for `tool`, given the program (its path as a shell word) and ROOT as a
/// shell word.
fn wrapper(program: &StandIn, exe: &str, root: &str, tool: &str) -> String {
    let tool = planner::quote(tool);
    let sub = match program {
        StandIn::Small(_) => "",
        StandIn::Gitvps(_) => " node-sim exec",
    };
    format!("#!/bin/sh\nexec {exe}{sub} --root {root} {tool} \"$@\"\n")
}

/// See [`super::install`].
pub(crate) fn install(root: &Path, program: &StandIn) -> Result<()> {
    let exe = program.path();
    let root_abs = std::path::absolute(root).on(FileOp::Resolve, root)?;
    let exe_abs = std::path::absolute(exe).on(FileOp::Resolve, exe)?;
    let (exe_word, root_word) = (quoted(&exe_abs)?, quoted(&root_abs)?);
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
        let body = wrapper(program, &exe_word, &root_word, tool);
        if std::fs::read(&path).ok().as_deref() == Some(body.as_bytes()) {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
                .on(FileOp::Chmod, &path)?;
            continue;
        }
        atomic_write_mode(&path, body.as_bytes(), Some(0o755)).on(FileOp::Write, &path)?;
    }
    // Touch the lock so the folder layout is complete from the start.
    drop(Node::new(&root_abs).lock()?);
    Ok(())
}
