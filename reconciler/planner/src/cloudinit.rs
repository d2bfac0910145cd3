//! The NoCloud seed of a VPS installed from a cloud image: `meta-data`, `user-data` and
//! `network-config` (version 2) as cloud-init reads them, built purely from the VPS's values.
//!
//! Every value is written as a double-quoted YAML scalar (JSON's string syntax, which YAML
//! reads the same way), so nothing a customer or a file wrote can change the document's shape.
//! See `docs/boot-media.md`, "Cloud images".

use std::fmt::Write as _;

use model::bootstraps::BootstrapEnv;

/// The seed's three files, by the names cloud-init looks for on the `cidata` volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seed {
    /// `meta-data`: the instance id and the host name.
    pub meta_data: String,
    /// `user-data`: a `#cloud-config` document (keys, password hash, first-boot script).
    pub user_data: String,
    /// `network-config`: version 2, the VPS's addresses, gateways and resolvers.
    pub network_config: String,
}

impl Seed {
    /// The files as (name, content), in a fixed order.
    pub fn files(&self) -> [(&'static str, &str); 3] {
        [
            ("meta-data", &self.meta_data),
            ("user-data", &self.user_data),
            ("network-config", &self.network_config),
        ]
    }
}

/// An appliance's first boot, for the seed: its script and the values it reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FirstBoot<'a> {
    /// The appliance's `firstboot` script.
    pub script: &'a str,
}

/// Where the first-boot script and its values go in the guest (as `lib/install_appliance`
/// puts them).
const FIRSTBOOT_PATH: &str = "/usr/local/lib/gitvps/firstboot";
const FIRSTBOOT_ENV: &str = "/usr/local/lib/gitvps/env";

/// The variables the first-boot script gets in `/usr/local/lib/gitvps/env` (no keys, no hash).
const FIRSTBOOT_VARS: &[&str] = &[
    "VPS_ID",
    "VPS_HOSTNAME",
    "VPS_IPV4",
    "VPS_GATEWAY4",
    "VPS_IPV6",
    "VPS_GATEWAY6",
    "VPS_DNS",
    "OS_ID",
    "OS_FAMILY",
    "OS_RELEASE",
    "APPLIANCE_ID",
];

/// The instance id of a VPS's install: it changes with each reinstall (`actions.reinstall`),
/// so cloud-init runs again on the fresh disk.
pub fn instance_id(env: &BootstrapEnv, reinstall: u64) -> String {
    format!("gitvps-{}-{reinstall}", env.vps)
}

/// A YAML double-quoted scalar holding exactly `s`.
fn q(s: &str) -> String {
    // serde_json escapes `"`, `\` and every control character; YAML reads the result alike.
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".to_owned())
}

/// `'...'` for a POSIX sh assignment.
fn sh(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The seed of a VPS: `env` from the catalog (`Catalog::env_for`, with the root password
/// hash set when there is one), the NIC's MAC address, the instance id, and the appliance's
/// first boot if any.
pub fn seed(env: &BootstrapEnv, mac: &str, instance: &str, first: Option<&FirstBoot<'_>>) -> Seed {
    Seed {
        meta_data: meta_data(env, instance),
        user_data: user_data(env, first),
        network_config: network_config(env, mac),
    }
}

fn meta_data(env: &BootstrapEnv, instance: &str) -> String {
    format!(
        "instance-id: {}\nlocal-hostname: {}\n",
        q(instance),
        q(env.hostname.as_str())
    )
}

fn user_data(env: &BootstrapEnv, first: Option<&FirstBoot<'_>>) -> String {
    let host = env.hostname.as_str();
    let short = host.split('.').next().unwrap_or(host);
    let mut s = String::from("#cloud-config\n");
    let _ = writeln!(
        s,
        "# Written by gitvps for VPS {}: root logs in with the customer's keys.",
        env.vps
    );
    let _ = writeln!(s, "hostname: {}", q(short));
    let _ = writeln!(s, "fqdn: {}", q(host));
    s.push_str("preserve_hostname: false\n");
    s.push_str("manage_etc_hosts: true\n");
    // No default user: the keys are root's, as on every gitvps VPS.
    s.push_str("users: []\n");
    s.push_str("disable_root: false\n");
    s.push_str("ssh_authorized_keys:\n");
    for k in &env.ssh_keys {
        let _ = writeln!(s, "  - {}", q(k.as_str()));
    }
    if let Some(h) = &env.root_password_hash {
        s.push_str("chpasswd:\n  expire: false\n  users:\n");
        let _ = writeln!(
            s,
            "    - name: \"root\"\n      password: {}\n      type: \"hash\"",
            q(h.as_str())
        );
    }
    if let Some(f) = first {
        let vars = env.vars();
        let values: String = FIRSTBOOT_VARS
            .iter()
            .map(|name| {
                let v = vars
                    .iter()
                    .find(|(k, _)| k == name)
                    .map_or("", |(_, v)| v.as_str());
                format!("{name}={}\n", sh(v))
            })
            .collect();
        s.push_str("write_files:\n");
        for (path, mode, content) in [
            (FIRSTBOOT_PATH, "0700", f.script),
            (FIRSTBOOT_ENV, "0600", values.as_str()),
        ] {
            let _ = writeln!(
                s,
                "  - path: {}\n    permissions: {}\n    owner: \"root:root\"\n    content: {}",
                q(path),
                q(mode),
                q(content)
            );
        }
        // runcmd runs once per instance, late in the first boot, with the network up.
        s.push_str("runcmd:\n");
        let _ = writeln!(
            s,
            "  - [\"sh\", \"-c\", {}]",
            q(&format!(
                "{FIRSTBOOT_PATH} && mkdir -p /var/lib/gitvps && touch /var/lib/gitvps/firstboot.done"
            ))
        );
    }
    s
}

fn network_config(env: &BootstrapEnv, mac: &str) -> String {
    let mut s = String::from("version: 2\nethernets:\n  gitvps0:\n    match:\n");
    let _ = writeln!(s, "      macaddress: {}", q(&mac.to_ascii_lowercase()));
    s.push_str("    addresses:\n");
    for a in &env.ipv4 {
        let _ = writeln!(s, "      - {}", q(&a.to_string()));
    }
    for a in &env.ipv6 {
        let _ = writeln!(s, "      - {}", q(&a.to_string()));
    }
    // IPv6's default route as `gateway6`: cloud-init 22.4 (Debian 12) renders a route `to:
    // "::/0"` for networkd as `::/64` (its prefix 0 is lost), while it renders `gateway6` as a
    // default route; netplan still accepts it.
    if let Some(g) = env.gateway6.filter(|_| !env.ipv6.is_empty()) {
        let _ = writeln!(s, "    gateway6: {}", q(&g.to_string()));
    }
    s.push_str("    routes:\n");
    let _ = writeln!(
        s,
        "      - to: \"0.0.0.0/0\"\n        via: {}",
        q(&env.gateway4.to_string())
    );
    if !env.dns.is_empty() {
        s.push_str("    nameservers:\n      addresses:\n");
        for d in &env.dns {
            let _ = writeln!(s, "        - {}", q(&d.to_string()));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use model::bootstraps::{Arch, OsFamily, RunVars};
    use yaml_rust2::{Yaml, YamlLoader};

    fn env() -> BootstrapEnv {
        BootstrapEnv {
            os: "debian-12-cloud".parse().unwrap(),
            family: OsFamily::Debian,
            release: Some("bookworm".into()),
            arch: Arch::Amd64,
            image: None,
            appliance: Some("probe".parse().unwrap()),
            vps: "xen11".parse().unwrap(),
            hostname: "xen11.example.net".parse().unwrap(),
            ipv4: vec!["192.0.2.11/24".parse().unwrap()],
            gateway4: "192.0.2.1".parse().unwrap(),
            ipv6: vec!["2001:db8:66:22::1/64".parse().unwrap()],
            gateway6: Some(model::bootstraps::GATEWAY6),
            dns: vec!["192.0.2.53".parse().unwrap()],
            ssh_keys: vec![
                "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl jane@laptop"
                    .parse()
                    .unwrap(),
            ],
            root_password_hash: Some("$6$saltsalt$3Yk0x8Kfq7dW1uJx0Hb5".parse().unwrap()),
            hypervisor: model::values::Hypervisor::Kvm,
            run: RunVars::default(),
        }
    }

    fn yaml(text: &str) -> Yaml {
        let mut docs = YamlLoader::load_from_str(text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(docs.len(), 1, "{text}");
        docs.remove(0)
    }

    #[test]
    fn the_seed_says_what_the_inventory_says_in_yaml() {
        let script = "#!/bin/sh\necho \"it's: {a: b}\" # not YAML\n";
        let s = seed(
            &env(),
            "52:54:00:AB:cd:ef",
            "gitvps-xen11-2",
            Some(&FirstBoot { script }),
        );
        let m = yaml(&s.meta_data);
        assert_eq!(m["instance-id"].as_str(), Some("gitvps-xen11-2"));
        assert_eq!(m["local-hostname"].as_str(), Some("xen11.example.net"));

        assert!(
            s.user_data.starts_with("#cloud-config\n"),
            "{}",
            s.user_data
        );
        let u = yaml(&s.user_data);
        assert_eq!(u["hostname"].as_str(), Some("xen11"));
        assert_eq!(u["fqdn"].as_str(), Some("xen11.example.net"));
        assert_eq!(u["disable_root"].as_bool(), Some(false));
        assert_eq!(u["users"].as_vec().map(Vec::len), Some(0));
        assert_eq!(
            u["ssh_authorized_keys"][0].as_str(),
            Some(
                "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl jane@laptop"
            )
        );
        let root = &u["chpasswd"]["users"][0];
        assert_eq!(root["name"].as_str(), Some("root"));
        assert_eq!(root["type"].as_str(), Some("hash"));
        assert_eq!(
            root["password"].as_str(),
            Some("$6$saltsalt$3Yk0x8Kfq7dW1uJx0Hb5")
        );
        let files = &u["write_files"];
        assert_eq!(files[0]["path"].as_str(), Some(FIRSTBOOT_PATH));
        assert_eq!(files[0]["content"].as_str(), Some(script), "verbatim");
        assert_eq!(files[0]["permissions"].as_str(), Some("0700"));
        let values = files[1]["content"].as_str().unwrap();
        assert!(values.contains("VPS_ID='xen11'\n"), "{values}");
        assert!(values.contains("VPS_IPV4='192.0.2.11/24'\n"), "{values}");
        assert!(values.contains("APPLIANCE_ID='probe'\n"), "{values}");
        assert!(
            !values.contains("ssh-ed25519") && !values.contains("$6$"),
            "{values}"
        );
        assert_eq!(u["runcmd"][0][0].as_str(), Some("sh"));

        let n = yaml(&s.network_config);
        assert_eq!(n["version"].as_i64(), Some(2));
        let nic = &n["ethernets"]["gitvps0"];
        assert_eq!(
            nic["match"]["macaddress"].as_str(),
            Some("52:54:00:ab:cd:ef")
        );
        let addrs: Vec<&str> = (nic["addresses"].as_vec().unwrap().iter())
            .filter_map(Yaml::as_str)
            .collect();
        assert_eq!(addrs, ["192.0.2.11/24", "2001:db8:66:22::1/64"]);
        assert_eq!(nic["routes"][0]["to"].as_str(), Some("0.0.0.0/0"));
        assert_eq!(nic["routes"][0]["via"].as_str(), Some("192.0.2.1"));
        assert_eq!(nic["gateway6"].as_str(), Some("fe80::1"));
        assert_eq!(
            nic["nameservers"]["addresses"][0].as_str(),
            Some("192.0.2.53")
        );
    }

    #[test]
    fn without_ipv6_hash_or_appliance_the_seed_says_nothing_of_them() {
        let mut e = env();
        e.ipv6.clear();
        e.root_password_hash = None;
        e.appliance = None;
        let s = seed(&e, "52:54:00:00:00:01", "i", None);
        let u = yaml(&s.user_data);
        assert!(u["chpasswd"].is_badvalue() && u["write_files"].is_badvalue());
        assert!(u["runcmd"].is_badvalue());
        let n = yaml(&s.network_config);
        assert!(n["ethernets"]["gitvps0"]["gateway6"].is_badvalue());
    }

    #[test]
    fn values_cannot_change_the_documents_shape() {
        // A key comment may hold what the grammar allows; a script anything at all.
        for nasty in [
            "a: b",
            "- x",
            "\"quoted\" \\ back",
            "line\nbreak: {x}",
            "#comment",
            "tab\there",
            "\u{1b}[31m",
            "日本",
        ] {
            let s = seed(
                &env(),
                "52:54:00:00:00:01",
                nasty,
                Some(&FirstBoot { script: nasty }),
            );
            assert_eq!(yaml(&s.meta_data)["instance-id"].as_str(), Some(nasty));
            let u = yaml(&s.user_data);
            assert_eq!(u["write_files"][0]["content"].as_str(), Some(nasty));
        }
    }
}
