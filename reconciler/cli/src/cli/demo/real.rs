//! `gitvps demo --real`: a KVM node on this machine and a VPS on it that really boots, with
//! the preflight that names what it needs.

use super::*;

/// The commands `--real` runs and the Debian package of each: the `real` set of `scripts/deps`,
/// which installs them (a unit test keeps the two lists equal).
const REAL_NEEDS: &[(&str, &str)] = &[
    ("qemu-system-x86_64", "qemu-system-x86"),
    ("qemu-img", "qemu-utils"),
    ("socat", "socat"),
    ("debootstrap", "debootstrap"),
    ("debugfs", "e2fsprogs"),
    ("mke2fs", "e2fsprogs"),
    ("ssh", "openssh-client"),
    ("ssh-keygen", "openssh-client"),
];

/// `gitvps demo --real`: one KVM node on this machine and a VPS on it that really boots.
pub(crate) struct Real {
    /// The mirror debootstrap installs from.
    pub(super) mirror: String,
    /// The bootstraps' root cache, kept between demos.
    pub(super) cache: PathBuf,
    /// The port on 127.0.0.1 forwarded to the guest's SSH.
    pub(super) ssh_port: u16,
    /// `forward_base` of the node (the port minus the last octet of the address).
    pub(super) forward_base: u16,
}

impl Real {
    /// Everything `--real` needs, checked before anything is started.
    pub(super) fn preflight() -> anyhow::Result<Real> {
        let uid = Command::new("id")
            .arg("-u")
            .output()
            .context("cannot run id")?;
        ensure!(
            String::from_utf8_lossy(&uid.stdout).trim() == "0",
            "--real installs an OS with debootstrap and runs QEMU: run the demo as root"
        );
        for &(tool, package) in REAL_NEEDS {
            let found = Command::new("sh")
                .args([
                    "-c",
                    "PATH=\"$PATH:/usr/sbin:/sbin\" command -v \"$1\"",
                    "sh",
                    tool,
                ])
                .output()
                .is_ok_and(|o| o.status.success());
            ensure!(
                found,
                "--real needs {tool} (Debian package {package}): run `scripts/deps install real` \
                 in the gitvps checkout, which installs it with the others --real needs and keeps \
                 QEMU's packages on one version, then run the demo again"
            );
        }
        let mirror = std::env::var("GITVPS_MIRROR")
            .ok()
            .filter(|m| !m.is_empty())
            .or_else(executor::inputs::apt_mirror)
            .context("--real needs a Debian mirror: set GITVPS_MIRROR to one")?;
        let cache = std::env::var_os("GITVPS_CACHE")
            .map(PathBuf::from)
            .or_else(|| {
                std::env::var_os("XDG_CACHE_HOME")
                    .map(PathBuf::from)
                    .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
                    .map(|c| c.join("gitvps/bootstraps"))
            })
            .unwrap_or_else(|| std::env::temp_dir().join("gitvps-bootstraps-cache"));
        let octet: u16 = REAL_IP
            .rsplit('.')
            .next()
            .and_then(|o| o.parse().ok())
            .context("bad REAL_IP")?;
        let probe = std::net::TcpListener::bind("127.0.0.1:0")?;
        let ssh_port = probe.local_addr()?.port();
        drop(probe);
        ensure!(
            ssh_port >= 1024 + octet,
            "no usable port for the real VPS's SSH"
        );
        Ok(Real {
            mirror,
            cache,
            ssh_port,
            forward_base: ssh_port - octet,
        })
    }

    /// Adds the KVM node, its pool, the VPS and the demo's VPS key to the fleet in `repo`.
    pub(super) fn add_to_fleet(&self, repo: &Path) -> anyhow::Result<()> {
        let key = generate_key()?;
        let key_path = repo
            .parent()
            .context("the demo repo has no parent folder")?
            .join("vps_key");
        write_key(&key, &key_path)?;
        let public = key.public_key().to_openssh()?;
        let public = public.split(' ').take(2).collect::<Vec<_>>().join(" ");
        let customer = repo.join(format!("inventory/customers/{DEMO_CUSTOMER}.toml"));
        let text = std::fs::read_to_string(&customer)?;
        ensure!(
            text.contains("ssh_keys = [\n"),
            "{} has no ssh_keys list to add the demo key to",
            customer.display()
        );
        std::fs::write(
            &customer,
            text.replacen(
                "ssh_keys = [\n",
                &format!("ssh_keys = [\n    \"{public} gitvps-demo\",\n"),
                1,
            ),
        )?;
        let mut pools = std::fs::read_to_string(repo.join("pools.toml"))?;
        pools.push_str(
            "\n# gitvps demo --real: the addresses of the real VPS (a documentation range).\n[[pool]]\nid = \"demo-kvm\"\nlocation = \"This machine (demo)\"\nnetwork = \"198.51.100.0/24\"\ngateway = \"198.51.100.1\"\ndns = [\"198.51.100.2\"]\nreserved = [\"198.51.100.2\"]\nrdns_zone = \"per-pool\"\n",
        );
        std::fs::write(repo.join("pools.toml"), pools)?;
        std::fs::write(
            repo.join(format!("inventory/nodes/{REAL_NODE}.toml")),
            format!(
                "# gitvps demo --real: a KVM node on this machine. QEMU runs without KVM (TCG) and\n# with user-mode networking: the guest has no network but its SSH, forwarded from\n# 127.0.0.1:{}.\naddress = \"127.0.0.1\"\nport = 22\nuser = \"root\"\nhost_key = \"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHh0WEiuJeApExG8OMyVSJj//DyqmDFFYkKtkZE6Et81\"\nlocation = \"This machine (demo)\"\ncountry = \"US\"\nhypervisor = \"kvm\"\nstorage = {{ backend = \"file\", dir = \"/var/lib/gitvps/disks\" }}\npools = [\"demo-kvm\"]\ncapacity = {{ ram = \"4 GiB\", disk = \"100 GiB\", vcpus = 2 }}\n\n[kvm]\naccel = \"tcg\"\nnetwork = \"user\"\nforward_base = {}\n",
                self.ssh_port, self.forward_base
            ),
        )?;
        std::fs::write(
            repo.join(format!("inventory/vps/{REAL_VPS}.toml")),
            format!(
                "# gitvps demo --real: a VPS that really boots (Debian 12 under QEMU).\ncustomer = \"{DEMO_CUSTOMER}\"\nproduct = \"test\"\nnode = \"{REAL_NODE}\"\nips = [\"{REAL_IP}\"]\nhostname = \"{REAL_VPS}.example.net\"\nos = \"debian-12\"\npower = \"running\"\nstate = \"active\"\ncreated = 2026-01-01\nexpires = 2099-01-01\n\n[actions]\nreboot = 0\nfsck = 0\nreinstall = 0\n"
            ),
        )?;
        Ok(())
    }

    /// The KVM node's root: the real tools, but a stand-in `useradd` (the console account is
    /// made under the node root, not on this machine), and the bootstraps' cache.
    pub(super) fn prepare_root(&self, root: &Path, exe: &Path) -> anyhow::Result<()> {
        use std::os::unix::fs::PermissionsExt;
        let sbin = root.join("usr/sbin");
        std::fs::create_dir_all(&sbin)?;
        let useradd = sbin.join("useradd");
        std::fs::write(
            &useradd,
            format!(
                "#!/bin/sh\nexec '{}' node-sim exec --root '{}' useradd \"$@\"\n",
                exe.display(),
                root.display()
            ),
        )?;
        std::fs::set_permissions(&useradd, std::fs::Permissions::from_mode(0o755))?;
        std::fs::create_dir_all(&self.cache)
            .with_context(|| format!("cannot create the cache {}", self.cache.display()))?;
        std::fs::create_dir_all(root.join("var/cache"))?;
        std::os::unix::fs::symlink(&self.cache, root.join("var/cache/gitvps"))?;
        Ok(())
    }

    /// Says how to log in; with `check`, logs in once and checks the host name.
    pub(super) fn show(&self, dir: &Path, check: bool) -> anyhow::Result<()> {
        let key = dir.join("vps_key");
        let console = dir
            .join("nodes")
            .join(REAL_NODE)
            .join(format!("var/log/gitvps/console/{REAL_VPS}.log"));
        say(&format!(
            "   Real VPS {REAL_VPS} is up (Debian 12 under QEMU, mirror {}). Log in:\n     ssh -i {} -p {} -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null root@127.0.0.1\n   Its serial console: {}",
            self.mirror,
            key.display(),
            self.ssh_port,
            console.display()
        ))?;
        if !check {
            return Ok(());
        }
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let out = sim::openssh_client(&key, self.ssh_port)
                .args(["root@127.0.0.1", "hostname"])
                .stdin(std::process::Stdio::null())
                .output()
                .context("cannot run ssh")?;
            let name = String::from_utf8_lossy(&out.stdout).trim().to_owned();
            if out.status.success() {
                ensure!(
                    name.starts_with(REAL_VPS),
                    "the real VPS says its host name is `{name}`"
                );
                say(&format!(
                    "   logged in to {REAL_VPS} over SSH: hostname {name}"
                ))?;
                return Ok(());
            }
            ensure!(
                Instant::now() < deadline,
                "cannot log in to the real VPS: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
            std::thread::sleep(Duration::from_secs(2));
        }
    }
}

/// Stops every QEMU of the KVM node at `root` (the demo leaves nothing running).
pub(super) fn stop_guests(root: &Path) {
    let Ok(dirs) = std::fs::read_dir(root.join("var/lib/gitvps/kvm")) else {
        return;
    };
    for d in dirs.filter_map(Result::ok) {
        let pid = std::fs::read_to_string(d.path().join("qemu.pid")).unwrap_or_default();
        let pid = pid.trim();
        if !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()) {
            let _ = Command::new("kill").arg(pid).status();
        }
    }
}

#[cfg(test)]
mod tests {
    /// `--real`'s preflight names exactly the packages `scripts/deps install real` installs.
    #[test]
    pub(super) fn real_needs_match_scripts_deps() {
        let script = include_str!("../../../../../scripts/deps");
        let block = script
            .split("real_needs=(")
            .nth(1)
            .and_then(|b| b.split(')').next())
            .expect("scripts/deps has a real_needs list");
        let from_script: Vec<(String, String)> = block
            .lines()
            .filter_map(|l| {
                let l = l.trim().trim_matches('"');
                let (tool, pkg) = l.split_once(' ')?;
                Some((tool.to_owned(), pkg.to_owned()))
            })
            .collect();
        let ours: Vec<(String, String)> = super::REAL_NEEDS
            .iter()
            .map(|&(t, p)| (t.to_owned(), p.to_owned()))
            .collect();
        assert_eq!(ours, from_script);
    }
}
