//! `gitvps node add`: read a new node's host key once over SSH, show its fingerprint for the
//! operator to compare, and write `inventory/nodes/<name>.toml` with the key pinned; `gitvps
//! node prepare`: check (and with `--fix` make) a fresh Debian into a node of its kind.

use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand, ValueEnum};
use model::NodeId;

use super::Global;

/// `gitvps node ...`.
#[derive(Debug, Subcommand)]
pub enum NodeCommand {
    /// Read a node's host key, show its SHA256 fingerprint, and write its file with the key pinned.
    Add(AddArgs),
    /// Check a fresh Debian against what a node of its kind needs (packages, bridge, storage,
    /// the login user with its key and sudo rule); with --fix, make it so. Exit 0: ready (or
    /// fixed), 2: changes needed, 1: refused or something only the operator can do.
    Prepare(PrepareArgs),
}

/// Flags of `gitvps node prepare`.
#[derive(Debug, Args)]
pub struct PrepareArgs {
    /// The node (its file in inventory/nodes/ gives the address, pinned key, kind and user).
    #[arg(long, value_name = "NODE")]
    pub node: NodeId,
    /// Change what is missing (install packages, create the bridge, folder, user, key, rule).
    #[arg(long)]
    pub fix: bool,
    /// Log in as this user to prepare the node: root, or an admin allowed `sudo sh` without a
    /// password.
    #[arg(long, value_name = "USER", default_value = "root")]
    pub login: model::values::UnixUser,
    /// The public key the node file's user gets (default: the public half of GITVPS_SSH_KEY).
    #[arg(long, value_name = "FILE")]
    pub authorized_key: Option<std::path::PathBuf>,
}

/// The hypervisor of a new node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Kind {
    /// Xen (`xl`).
    Xen,
    /// KVM (QEMU).
    Kvm,
}

/// Flags of `gitvps node add`.
#[derive(Debug, Args)]
pub struct AddArgs {
    /// The node's id (its file name).
    pub name: NodeId,
    /// Where its sshd listens: `HOST`, `HOST:PORT` or `[IPv6]:PORT` (port 22 by default).
    #[arg(long, value_name = "HOST[:PORT]")]
    pub address: String,
    /// The user the reconciler logs in as.
    #[arg(long, value_name = "USER")]
    pub user: String,
    /// That user runs the node's tools through sudo (`sudo = true`; docs/operating.md).
    #[arg(long)]
    pub sudo: bool,
    /// The hypervisor.
    #[arg(long, value_enum)]
    pub kind: Kind,
    /// Its location, as customers see it (`Tampa, Florida (USA)`).
    #[arg(long, value_name = "TEXT")]
    pub location: String,
    /// ISO 3166-1 country code of the location.
    #[arg(long, value_name = "CC")]
    pub country: String,
    /// The IP pools its VPSes get addresses from (repeatable).
    #[arg(long = "pool", value_name = "POOL", required = true)]
    pub pools: Vec<String>,
    /// Where disks go: `lvm:VG` (a volume group) or `file:DIR` (an image folder).
    #[arg(long, value_name = "lvm:VG|file:DIR", default_value = "lvm:vg0")]
    pub storage: String,
    /// RAM it gives VPSes (`64 GiB`).
    #[arg(long, value_name = "SIZE")]
    pub ram: String,
    /// Disk it gives VPSes (`2 TiB`).
    #[arg(long, value_name = "SIZE")]
    pub disk: String,
    /// vCPUs it gives VPSes.
    #[arg(long, value_name = "N")]
    pub vcpus: u32,
    /// Refuse unless the node presents this key (`SHA256:...`, from `ssh-keygen -lf` on the node).
    #[arg(long, value_name = "SHA256:...")]
    pub expect_fingerprint: Option<String>,
}

/// Runs a `gitvps node` command.
pub fn run(g: &Global, c: NodeCommand) -> anyhow::Result<i32> {
    match c {
        NodeCommand::Add(a) => add(g, &a),
        NodeCommand::Prepare(a) => prepare(g, &a),
    }
}

/// `HOST`, `HOST:PORT` or `[V6]:PORT` as host and port.
pub fn host_port(s: &str) -> Option<(String, u16)> {
    if let Some(rest) = s.strip_prefix('[') {
        let (host, port) = rest.split_once(']')?;
        let port = match port.strip_prefix(':') {
            Some(p) => p.parse().ok()?,
            None if port.is_empty() => 22,
            None => return None,
        };
        return Some((host.to_owned(), port));
    }
    match s.split_once(':') {
        Some((host, port)) if !port.contains(':') => Some((host.to_owned(), port.parse().ok()?)),
        // A bare IPv6 address.
        Some(_) => Some((s.to_owned(), 22)),
        None => Some((s.to_owned(), 22)),
    }
    .filter(|(h, p)| !h.is_empty() && *p > 0)
}

/// A TOML basic string (JSON's escapes are a subset of TOML's).
fn toml_str(s: &str) -> String {
    serde_json::Value::String(s.to_owned()).to_string()
}

/// The node file.
pub fn node_file(a: &AddArgs, host: &str, port: u16, key: &executor::ssh::HostKey) -> String {
    let storage = match a.storage.split_once(':') {
        Some(("file", dir)) => format!("{{ backend = \"file\", dir = {} }}", toml_str(dir)),
        Some((_, vg)) => format!("{{ backend = \"lvm\", vg = {} }}", toml_str(vg)),
        None => format!("{{ backend = \"lvm\", vg = {} }}", toml_str(&a.storage)),
    };
    let pools: Vec<String> = a.pools.iter().map(|p| toml_str(p)).collect();
    let mut out = format!(
        "# Added by gitvps node add; the host key was read once over SSH and its fingerprint\n# ({}) shown to the operator to compare.\naddress = {}\nport = {port}\nuser = {}\n",
        key.fingerprint,
        toml_str(host),
        toml_str(&a.user)
    );
    if a.sudo {
        out.push_str("sudo = true\n");
    }
    out.push_str(&format!(
        "host_key = {}\nlocation = {}\ncountry = {}\nhypervisor = \"{}\"\nstorage = {storage}\npools = [{}]\ncapacity = {{ ram = {}, disk = {}, vcpus = {} }}\n",
        toml_str(&key.openssh),
        toml_str(&a.location),
        toml_str(&a.country),
        match a.kind {
            Kind::Xen => "xen",
            Kind::Kvm => "kvm",
        },
        pools.join(", "),
        toml_str(&a.ram),
        toml_str(&a.disk),
        a.vcpus
    ));
    out
}

fn add(g: &Global, a: &AddArgs) -> anyhow::Result<i32> {
    let storage_ok =
        matches!(a.storage.split_once(':'), Some(("lvm" | "file", rest)) if !rest.is_empty());
    anyhow::ensure!(
        storage_ok,
        "--storage {:?}: give lvm:VG or file:DIR",
        a.storage
    );
    let Some((host, port)) = host_port(&a.address) else {
        anyhow::bail!(
            "--address {:?}: give HOST, HOST:PORT or [IPv6]:PORT",
            a.address
        );
    };
    let path = g.repo.join(format!("inventory/nodes/{}.toml", a.name));
    anyhow::ensure!(
        !path.exists(),
        "{} exists already: node add writes new nodes only (edit the file to change a node)",
        path.display()
    );
    let key = super::plan::runtime()?
        .block_on(executor::ssh::fetch_host_key(
            a.name.as_str(),
            &host,
            port,
            Duration::from_secs(15),
        ))
        .with_context(|| format!("cannot read the host key of {host}:{port}"))?;
    super::emit(&format!(
        "{host}:{port} presents {} {}\nCompare it with `ssh-keygen -lf /etc/ssh/ssh_host_*_key.pub` run on the node itself.\n",
        key.openssh.split(' ').next().unwrap_or_default(),
        key.fingerprint,
    ))?;
    if let Some(want) = &a.expect_fingerprint
        && want.trim() != key.fingerprint
    {
        super::note(&format!(
            "error: the node presents {}, not the expected {want}: nothing written",
            key.fingerprint
        ))?;
        return Ok(1);
    }
    std::fs::create_dir_all(g.repo.join("inventory/nodes"))
        .context("cannot create inventory/nodes")?;
    std::fs::write(&path, node_file(a, &host, port, &key))
        .with_context(|| format!("cannot write {}", path.display()))?;
    // The whole inventory must still load: a bad pool or size is reported and the file removed.
    if let Err(e) = model::Inventory::load(&g.repo) {
        let _ = std::fs::remove_file(&path);
        match e {
            model::LoadError::Invalid(d) => {
                super::validate::report(&d, false)?;
                super::note(&format!("{} not written", path.display()))?;
                return Ok(1);
            }
            e => return Err(e.into()),
        }
    }
    super::emit(&format!(
        "Wrote {} with the key pinned. Commit it in a pull request: its plan shows the node.\n",
        path.display()
    ))?;
    Ok(0)
}

fn prepare(g: &Global, a: &PrepareArgs) -> anyhow::Result<i32> {
    let inv = match super::load_or_report(&g.repo, false)? {
        Ok(inv) => inv,
        Err(code) => return Ok(code),
    };
    let Some(node) = inv.nodes.get(&a.node) else {
        anyhow::bail!("--node {}: no such node in inventory/nodes/", a.node);
    };
    let creds = executor::ssh::Credentials::from_env()?;
    let key: model::values::SshPublicKey = match &a.authorized_key {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read --authorized-key {}", path.display()))?;
            text.trim().parse().map_err(|e| {
                anyhow::anyhow!("--authorized-key {}: line 1: {e}", path.display())
            })?
        }
        None => creds
            .public_key()
            .context(
                "the reconciler logs in through the agent: name its public key with --authorized-key FILE",
            )?
            .parse()
            .map_err(|e| anyhow::anyhow!("GITVPS_SSH_KEY: its public key: {e}"))?,
    };
    let target = match planner::prepare::Target::of(node, &key) {
        Ok(t) => t,
        Err(e) => {
            super::note(&format!("error: {e}; nothing changed"))?;
            return Ok(1);
        }
    };
    let mut ssh = executor::apply::target_of(node);
    ssh.user = a.login.to_string();
    let rec = &inv.settings.reconciler;
    let timeouts = executor::ssh::Timeouts {
        connect: Duration::from_secs(rec.connect_timeout_secs.into()),
        // apt-get can take a while on a fresh node.
        command: Duration::from_secs(u64::from(rec.command_timeout_secs).max(1800)),
    };
    let run = super::plan::runtime()?.block_on(executor::prepare::prepare(
        &ssh, &creds, timeouts, &target, a.fix,
    ));
    let outcome = match run {
        Ok(o) => o,
        Err(e) => {
            super::note(&format!("error: {e}"))?;
            return Ok(1);
        }
    };
    let d = &outcome.decision;
    let how = match outcome.access {
        planner::prepare::Access::Root => "",
        planner::prepare::Access::Sudo => " through sudo",
    };
    let fixable = d
        .checks
        .iter()
        .filter(|c| matches!(c.state, planner::prepare::State::Fix(_)))
        .count();
    let mut text = format!(
        "{} ({}:{}) as {}{how}:\n{}",
        node.id,
        ssh.host,
        ssh.port,
        a.login,
        d.render(outcome.fixed)
    );
    let code = if d.manual() {
        text.push_str("\nSome checks need you (manual above): the node is not ready.\n");
        1
    } else if d.all_ok() {
        text.push_str(if a.fix {
            "\nNothing to change: the node is ready.\n"
        } else {
            "\nAll ok: the node is ready.\n"
        });
        0
    } else if outcome.fixed {
        text.push_str(&format!(
            "\nPrepared: {fixable} check(s) changed ({} change(s) reported by the node), checked again: the node is ready.\n",
            outcome.changed
        ));
        0
    } else {
        text.push_str(&format!("\n{fixable} to change: run again with --fix.\n"));
        2
    };
    super::emit(&text)?;
    Ok(code)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn addresses_with_and_without_a_port() {
        let hp = host_port;
        assert_eq!(hp("192.0.2.5"), Some(("192.0.2.5".into(), 22)));
        assert_eq!(hp("node.example:2222"), Some(("node.example".into(), 2222)));
        assert_eq!(hp("[2001:db8::5]:2222"), Some(("2001:db8::5".into(), 2222)));
        assert_eq!(hp("[2001:db8::5]"), Some(("2001:db8::5".into(), 22)));
        assert_eq!(hp("2001:db8::5"), Some(("2001:db8::5".into(), 22)));
        assert_eq!(hp("host:x"), None);
        assert_eq!(hp("host:0"), None);
        assert_eq!(hp(":22"), None);
    }
}
