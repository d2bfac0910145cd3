//! The Xen driver: domains with `xl`, configs in `etc/xen/gitvps/<vps>.cfg`.
//! Disks, installs and consoles are shared with the other drivers (`driver/mod.rs`).

use crate::desired::node_path;
use crate::plan::{Op, Step};
use crate::quote;

/// The sh lines of a domain step (`None`: a step the drivers share).
pub(super) fn domain_lines(root: &str, step: &Step) -> Option<Vec<String>> {
    let name = quote(step.vps.as_str());
    let cfg = quote(&step.target.config);
    let exists = format!("xl list {name} >/dev/null 2>&1");
    Some(match &step.op {
        Op::WriteConfig { content, .. } => {
            let dir = node_path(root, "etc/xen/gitvps");
            vec![
                format!("mkdir -p {} || return 1", quote(&dir)),
                format!(
                    "printf '%s' {} >{cfg}.tmp && mv {cfg}.tmp {cfg} || return 1",
                    quote(content)
                ),
            ]
        }
        Op::Start => vec![format!(
            "if ! {exists}; then xl create -q {cfg} || return 1; fi"
        )],
        Op::Stop { timeout_secs, .. } => vec![format!(
            "if {exists}; then timeout {timeout_secs} xl shutdown -w {name} || {{ ! {exists} || xl destroy {name}; }} || return 1; fi"
        )],
        Op::Destroy { .. } => vec![format!(
            "if {exists}; then xl destroy {name} || return 1; fi"
        )],
        Op::Reboot { .. } => vec![format!("xl reboot {name} || return 1")],
        Op::RemoveConfig => vec![format!("rm -f {cfg} || return 1")],
        _ => return None,
    })
}
