//! The demo's repos: the example fleet copied, node files pointed at the simulated nodes,
//! stand-in installs, and the operator's clone pushed and the apply clone synced.

use super::*;

/// Runs a git command in `dir`; its stderr in the error.
pub(super) fn git(dir: &Path, args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args([
            "-c",
            "user.name=gitvps demo",
            "-c",
            "user.email=demo@example.net",
        ])
        .args(args)
        .output()
        .context("cannot run git")?;
    ensure!(
        out.status.success(),
        "git {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

pub(super) fn copy_tree(from: &Path, to: &Path) -> anyhow::Result<()> {
    if from.is_file() {
        if let Some(parent) = to.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::copy(from, to).with_context(|| format!("cannot copy {}", from.display()))?;
        return Ok(());
    }
    std::fs::create_dir_all(to)?;
    for e in std::fs::read_dir(from).with_context(|| format!("cannot read {}", from.display()))? {
        let e = e?;
        let name = e.file_name();
        // A previous site build, if any, is not part of the fleet.
        if name == "public" {
            continue;
        }
        copy_tree(&e.path(), &to.join(name))?;
    }
    Ok(())
}

/// Replaces the OS install scripts by stand-ins that build a tiny root at once: the demo
/// must not run debootstrap (minutes, root, network). With `real`, installs on KVM nodes
/// (`VPS_HYPERVISOR=kvm`) still run the real scripts, kept beside the stand-ins as `*.real`.
pub(super) fn stand_in_installs(repo: &Path, real: bool) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let scripts = [
        (
            "install_os",
            "#!/bin/sh\n# gitvps demo stand-in: a tiny root instead of the real install.\nset -eu\nmkdir -p \"$TARGET/etc\" \"$TARGET/root/.ssh\"\necho 'gitvps demo OS (stand-in)' >\"$TARGET/etc/os-release\"\n",
        ),
        (
            "custom_os",
            "#!/bin/sh\nset -eu\nprintf '%s\\n' \"$VPS_HOSTNAME\" >\"$TARGET/etc/hostname\"\nprintf '%s\\n' \"${VPS_SSH_KEYS-}\" >\"$TARGET/root/.ssh/authorized_keys\"\n",
        ),
        (
            "setup_network",
            "#!/bin/sh\nset -eu\nprintf '%s\\n' \"${VPS_IPV4-}\" >\"$TARGET/etc/gitvps-addresses\"\n",
        ),
    ];
    let os = repo.join("bootstraps/os");
    for e in std::fs::read_dir(&os).with_context(|| format!("cannot read {}", os.display()))? {
        let d = e?.path();
        if !d.join("install_os").is_file() {
            continue;
        }
        for (name, text) in scripts {
            let p = d.join(name);
            let text = if real {
                std::fs::rename(&p, d.join(format!("{name}.real")))?;
                text.replacen(
                    "\n",
                    &format!(
                        "\n[ \"${{VPS_HYPERVISOR:-xen}}\" != kvm ] || exec sh \"$GITVPS_BOOTSTRAPS/os/$OS_ID/{name}.real\" \"$@\"\n"
                    ),
                    1,
                )
            } else {
                text.to_owned()
            };
            std::fs::write(&p, text)?;
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755))?;
        }
    }
    Ok(())
}

pub(super) fn toml_str(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// A node file pointed at a simulated node: address, port, user and host key replaced,
/// the node root added; everything else (storage, pools, capacity, comments) kept.
pub(super) fn point_node(
    text: &str,
    addr: SocketAddr,
    user: &str,
    host_key: &str,
    root: &Path,
) -> String {
    let root_line = format!(
        "root = {}                 # gitvps demo: a simulated dom0\n",
        toml_str(&root.display().to_string())
    );
    let mut out = String::new();
    let mut rooted = false;
    for line in text.lines() {
        // Top-level keys go before the first table (`[kvm]`).
        if !rooted && line.trim_start().starts_with('[') {
            out.push_str(&root_line);
            rooted = true;
        }
        let key = line.split('=').next().unwrap_or("").trim();
        let new = match key {
            "address" => format!("address = \"{}\"", addr.ip()),
            "port" => format!("port = {}", addr.port()),
            "user" => format!("user = {}", toml_str(user)),
            "host_key" => format!("host_key = \"{host_key}\""),
            "root" => continue,
            _ => line.to_owned(),
        };
        out.push_str(&new);
        out.push('\n');
    }
    if !rooted {
        out.push_str(&root_line);
    }
    out
}

pub(super) fn current_user() -> String {
    if let Some(u) = std::env::var("USER").ok().filter(|u| !u.is_empty()) {
        return u;
    }
    Command::new("id")
        .arg("-un")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| "gitvps".into())
}

/// Pushes the operator's new commits in their clone `work` to the bare repo (rebased on
/// clicks that came in meanwhile; uncommitted edits are left alone).
pub(super) fn push_operator_commits(work: &Path) -> anyhow::Result<()> {
    git(work, &["fetch", "-q", "origin", "main"])?;
    let head = git(work, &["rev-parse", "HEAD"])?;
    let remote = git(work, &["rev-parse", "FETCH_HEAD"])?;
    if head == remote {
        return Ok(());
    }
    let ahead = git(work, &["rev-list", "--count", "FETCH_HEAD..HEAD"])?;
    if ahead != "0" {
        git(
            work,
            &["pull", "-q", "--rebase", "--autostash", "origin", "main"],
        )?;
        git(work, &["push", "-q", "origin", "HEAD:main"])?;
    }
    Ok(())
}

/// Resets the apply clone to the bare repo's main; returns the new HEAD when it moved
/// past `seen`.
pub(super) fn sync(applied: &Path, seen: &str) -> anyhow::Result<Option<String>> {
    git(applied, &["fetch", "-q", "origin", "main"])?;
    git(applied, &["reset", "-q", "--hard", "FETCH_HEAD"])?;
    let head = git(applied, &["rev-parse", "HEAD"])?;
    Ok((head != seen).then_some(head))
}

/// The first 12 characters of a commit id.
pub(super) fn short(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}
