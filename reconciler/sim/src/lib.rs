//! The gitvps simulation kit, for tests, the demo and the bench only: stand-ins for Xen's `xl`
//! and the LVM tools in a folder, an in-process SSH server in front of one, and a testbed fleet.
//!
//! Production crates never depend on it; the `gitvps` binary links it only with its `sim`
//! feature (`gitvps demo`, `gitvps bench`, `gitvps node-sim`).

pub mod nodeserver;
pub mod nodesim;
pub mod testbed;

use std::path::Path;
use std::process::Command;

/// An OpenSSH client with no config, no host key checks and only `key`, to `-p port`, for a
/// guest or a simulated node on this machine; the caller adds its own options, then the
/// destination and the command.
pub fn openssh_client(key: &Path, port: u16) -> Command {
    let mut c = Command::new("ssh");
    c.args([
        "-F",
        "/dev/null",
        "-o",
        "BatchMode=yes",
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
        "UserKnownHostsFile=/dev/null",
        "-o",
        "LogLevel=ERROR",
        "-o",
        "ConnectTimeout=10",
        "-i",
    ])
    .arg(key)
    .arg("-p")
    .arg(port.to_string());
    c
}
