//! `gitvps import --node N`: observe a node and write, as one commit, inventory files marked
//! `adopted` for the domains it runs that the inventory does not declare (or refuse, saying why).

use std::path::Path;

use anyhow::Context;
use clap::Args;
use jobs::git::Worktree;
use model::{CustomerId, NodeId};
use planner::import::{self, Outcome};

use super::Global;
use super::plan::{Select, runtime, setup};

/// The customer imported VPSes go to when `--customer` is not given.
pub const DEFAULT_CUSTOMER: &str = "imported";

/// The file `gitvps import` writes for [`DEFAULT_CUSTOMER`] when it does not exist.
const DEFAULT_CUSTOMER_FILE: &str = "# Written by gitvps import: the owner of imported VPSes until each is given to its customer\n\
# (set `customer` in its VPS file). No e-mail and no password: nobody logs in as it.\n\
name = \"Imported, not yet assigned\"\n";

/// Flags of `gitvps import`.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The node to observe.
    #[arg(long, value_name = "NODE")]
    pub node: NodeId,
    /// Who the imported VPSes go to [default: `imported`, a customer file written with them
    /// when the repository has none].
    #[arg(long, value_name = "CUSTOMER")]
    pub customer: Option<CustomerId>,
    /// The IPv4 address of guest NAME, for a guest whose addresses the node does not show (a
    /// Xen vif without `ip=`, a KVM guest on a tap); repeat it for more addresses. Checked
    /// against the pools like the others.
    #[arg(long = "ip", value_name = "NAME=ADDR", value_parser = parse_given)]
    pub ips: Vec<(String, std::net::Ipv4Addr)>,
    /// Show what would be imported (the files' text) and write nothing. Exit 2 when there is
    /// something to import, 0 when not.
    #[arg(long)]
    pub dry_run: bool,
}

fn parse_given(s: &str) -> Result<(String, std::net::Ipv4Addr), String> {
    let (name, addr) = s
        .split_once('=')
        .ok_or_else(|| format!("{s}: write it as NAME=ADDR (web1=192.0.2.40)"))?;
    let addr = addr
        .parse()
        .map_err(|_| format!("{s}: {addr} is not an IPv4 address"))?;
    Ok((name.to_owned(), addr))
}

/// Runs the command: exit 0 when imported (or nothing to import), 1 when refused or the node
/// cannot be observed (nothing written then), 2 for a dry run with something to import.
pub fn run(g: &Global, a: &ImportArgs) -> anyhow::Result<i32> {
    let select = Select {
        nodes: vec![a.node.clone()],
        locations: Vec::new(),
        parallelism: Some(1),
    };
    let s = match setup(g, &select, false)? {
        Ok(s) => s,
        Err(code) => return Ok(code),
    };
    let (customer, new_customer) = match &a.customer {
        Some(c) if s.inv.customers.contains_key(c) => (c.clone(), false),
        Some(c) => anyhow::bail!("--customer {c}: no such customer in inventory/customers/"),
        None => {
            let c: CustomerId = DEFAULT_CUSTOMER.parse()?;
            let missing = !s.inv.customers.contains_key(&c);
            (c, missing)
        }
    };
    let (Some(node), Some(spec)) = (s.inv.nodes.get(&a.node), s.desired.nodes.get(&a.node)) else {
        anyhow::bail!("--node {}: no such node in inventory/nodes/", a.node);
    };
    let out = runtime()?
        .block_on(executor::apply::import_report(node, spec, &s.access))
        .map_err(|e| {
            anyhow::anyhow!(
                "{}: cannot observe the node, nothing imported: {}",
                a.node,
                model::diag::error_chain(&e)
            )
        })?;
    let (report, found) = import::guests(a.node.as_str(), spec.hypervisor, &out)?;
    let state = planner::observe::parse(a.node.as_str(), report)?;
    let mut given: std::collections::BTreeMap<String, Vec<std::net::Ipv4Addr>> =
        std::collections::BTreeMap::new();
    for (name, addr) in &a.ips {
        anyhow::ensure!(
            found.iter().any(|f| &f.name == name),
            "--ip {name}={addr}: no guest named {name} runs on {}",
            a.node
        );
        given.entry(name.clone()).or_default().push(*addr);
    }
    let cx = import::Context {
        inv: &s.inv,
        node: spec,
        disks: &state.disks,
        customer: &customer,
        today: chrono::Utc::now().date_naive(),
        given: &given,
    };
    let mut adopt = Vec::new();
    let mut refused = Vec::new();
    let mut text = String::new();
    for f in &found {
        match import::adopt(f, &cx) {
            Outcome::Managed => text.push_str(&format!("  managed  {}\n", f.name)),
            Outcome::Adopt { id, text: file } => {
                text.push_str(&format!(
                    "  adopt    {id} → {}/{id}.toml\n",
                    model::load::paths::VPS
                ));
                adopt.push((id, file));
            }
            Outcome::Refused(why) => {
                text.push_str(&format!("  REFUSED  {why}\n"));
                refused.push(why);
            }
        }
    }
    if found.is_empty() {
        text.push_str("  (no guest domain runs on it)\n");
    }
    super::emit(&format!("{}: {} domain(s)\n{text}", a.node, found.len()))?;
    if !refused.is_empty() {
        super::note(&format!(
            "import refused for {} domain(s): nothing written",
            refused.len()
        ))?;
        return Ok(1);
    }
    if adopt.is_empty() {
        super::note("nothing to import: every domain is managed already")?;
        return Ok(0);
    }
    let mut files: Vec<(String, String)> = adopt
        .iter()
        .map(|(id, t)| (format!("{}/{id}.toml", model::load::paths::VPS), t.clone()))
        .collect();
    if new_customer {
        files.push((
            format!("{}/{customer}.toml", model::load::paths::CUSTOMERS),
            DEFAULT_CUSTOMER_FILE.to_owned(),
        ));
    }
    // The whole inventory with the files must validate before anything is written.
    if let Err(d) = validate_with(&g.repo, &files)? {
        super::validate::report(&d, false)?;
        super::note("the inventory with the imported VPSes does not validate: nothing written")?;
        return Ok(1);
    }
    if a.dry_run {
        for (rel, t) in &files {
            super::emit(&format!("\n--- {rel}\n{t}"))?;
        }
        return Ok(2);
    }
    let wt = Worktree::open(&g.repo)?;
    let paths: Vec<&str> = files.iter().map(|(p, _)| p.as_str()).collect();
    wt.ensure_clean(&paths)?;
    let mut written = Vec::new();
    if let Err(e) = write_all(&g.repo, &files, &mut written) {
        for p in &written {
            let _ = std::fs::remove_file(p);
        }
        return Err(e);
    }
    let ids: Vec<&str> = adopt.iter().map(|(id, _)| id.as_str()).collect();
    let message = format!(
        "gitvps import --node {}: adopt {} (customer {customer})\n\nObserved on the node and marked adopted = true: their domains keep running as they are.\n",
        a.node,
        ids.join(", ")
    );
    let commit = match wt.commit(&message, &paths) {
        Ok(c) => c,
        Err(e) => {
            for p in &written {
                let _ = std::fs::remove_file(p);
            }
            return Err(e.into());
        }
    };
    if let Some(c) = commit {
        super::note(&format!(
            "committed {}: {} VPS file(s); push it (or open a pull request) for the plan",
            c.get(..12).unwrap_or(&c),
            adopt.len()
        ))?;
    }
    Ok(0)
}

/// Loads the inventory of `repo` with `files` added, in a shadow tree (symbolic links to the
/// repository's files and the new files beside them): the repository is not touched.
fn validate_with(
    repo: &Path,
    files: &[(String, String)],
) -> anyhow::Result<Result<(), model::Diagnostics>> {
    let shadow = tempfile::tempdir().context("cannot create a temporary folder")?;
    let repo = std::path::absolute(repo)?;
    // Top-level entries and inventory/'s folders are linked whole, but the folders the new
    // files go in: their files are linked one by one.
    let new_dirs: Vec<&Path> = files
        .iter()
        .filter_map(|(rel, _)| Path::new(rel).parent())
        .collect();
    link_tree(&repo, shadow.path(), Path::new(""), &new_dirs)?;
    for (rel, text) in files {
        super::create_file(&shadow.path().join(rel), text)?;
    }
    match model::Inventory::load(shadow.path()) {
        Ok(_) => Ok(Ok(())),
        Err(model::LoadError::Invalid(d)) => Ok(Err(d)),
        Err(e) => Err(e.into()),
    }
}

/// Links `from/rel`'s entries into `to/rel`: a folder that is (or holds) one of `open` is made
/// and linked into entry by entry, anything else is one symbolic link.
fn link_tree(from: &Path, to: &Path, rel: &Path, open: &[&Path]) -> anyhow::Result<()> {
    let dir = from.join(rel);
    std::fs::create_dir_all(to.join(rel))
        .with_context(|| format!("cannot create {}", to.join(rel).display()))?;
    for entry in
        std::fs::read_dir(&dir).with_context(|| format!("cannot read {}", dir.display()))?
    {
        let entry = entry.with_context(|| format!("cannot read {}", dir.display()))?;
        let name = entry.file_name();
        if name == ".git" {
            continue;
        }
        let sub = rel.join(&name);
        if open.iter().any(|o| o.starts_with(&sub)) && entry.path().is_dir() {
            link_tree(from, to, &sub, open)?;
        } else {
            std::os::unix::fs::symlink(entry.path(), to.join(&sub))
                .with_context(|| format!("cannot link {}", to.join(&sub).display()))?;
        }
    }
    Ok(())
}

/// Creates each new file (never over an existing one), recording what it wrote.
fn write_all(
    repo: &std::path::Path,
    files: &[(String, String)],
    written: &mut Vec<std::path::PathBuf>,
) -> anyhow::Result<()> {
    for (rel, text) in files {
        let path = repo.join(rel);
        super::create_file(&path, text)?;
        written.push(path);
    }
    Ok(())
}
