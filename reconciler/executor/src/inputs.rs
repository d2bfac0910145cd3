//! What the planner needs from the repo and this machine, read here and handed to it as data:
//! the domain templates, the bootstraps catalog with its files, the mirrors, the apt mirror.

use std::collections::BTreeMap;
use std::path::Path;

use planner::desired::{Bootstraps, Templates};

/// Reads `bootstraps/` of a repo; mirrors and proxy come from the environment
/// (`GITVPS_MIRROR`, `GITVPS_GUEST_MIRROR`, `GITVPS_SECURITY_MIRROR`, `GITVPS_PROXY`,
/// `GITVPS_KEYRING`), never from the repository.
pub fn bootstraps(repo: &Path) -> Result<Bootstraps, model::LoadError> {
    let catalog = model::bootstraps::Catalog::load(repo)?;
    let mut paths: Vec<String> = catalog.lib.clone();
    paths.extend(catalog.os.values().flat_map(|o| o.files.iter().cloned()));
    paths.extend(
        catalog
            .appliances
            .values()
            .flat_map(|a| a.files.iter().cloned()),
    );
    let mut files = BTreeMap::new();
    for p in paths {
        let text =
            std::fs::read_to_string(repo.join(&p)).map_err(|source| model::LoadError::Io {
                path: repo.join(&p),
                source,
            })?;
        files.insert(p, text);
    }
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let run = model::bootstraps::RunVars {
        mirror: env("GITVPS_MIRROR"),
        guest_mirror: env("GITVPS_GUEST_MIRROR"),
        security_mirror: env("GITVPS_SECURITY_MIRROR"),
        keyring: env("GITVPS_KEYRING"),
        proxy: env("GITVPS_PROXY"),
        ..Default::default()
    };
    Ok(Bootstraps {
        catalog,
        files,
        run,
    })
}

/// The Debian mirror this machine's apt uses (`URIs:` of `/etc/apt/sources.list.d/*.sources`,
/// else the `deb` lines of `/etc/apt/sources.list`), for installs on this machine (the demo,
/// the tests); never written into a repository.
pub fn apt_mirror() -> Option<String> {
    let mut uris = Vec::new();
    if let Ok(rd) = std::fs::read_dir("/etc/apt/sources.list.d") {
        let mut files: Vec<std::path::PathBuf> =
            rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
        files.sort();
        for f in files
            .iter()
            .filter(|f| f.extension().is_some_and(|x| x == "sources"))
        {
            let text = std::fs::read_to_string(f).unwrap_or_default();
            for l in text.lines() {
                if let Some(rest) = l.strip_prefix("URIs:") {
                    uris.extend(rest.split_whitespace().map(str::to_owned));
                }
            }
        }
    }
    let list = std::fs::read_to_string("/etc/apt/sources.list").unwrap_or_default();
    for l in list.lines() {
        let w: Vec<&str> = l.split_whitespace().collect();
        if w.first() == Some(&"deb")
            && let Some(u) = w.iter().skip(1).find(|x| !x.starts_with('['))
        {
            uris.push((*u).to_owned());
        }
    }
    uris.into_iter()
        .find(|u| u.starts_with("http") && !u.contains("security"))
}

/// The templates of a repo: its own `templates/xen.cfg.j2` and `templates/kvm.args.j2`, or
/// the defaults.
pub fn templates(repo: &Path) -> std::io::Result<Templates> {
    let Templates { xen, kvm } = Templates::default();
    let read = |name: &str, default: String| match std::fs::read_to_string(repo.join(name)) {
        Ok(t) => Ok(t),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(default),
        Err(e) => Err(e),
    };
    Ok(Templates {
        xen: read("templates/xen.cfg.j2", xen)?,
        kvm: read("templates/kvm.args.j2", kvm)?,
    })
}
