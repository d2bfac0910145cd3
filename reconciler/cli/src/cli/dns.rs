//! `gitvps dns build --out DIR` and `gitvps dns apply [--dry-run]`: the zones of the inventory,
//! checked with named-checkzone, written to a folder or published to the `[[dns.server]]`s.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};

use super::Global;
use super::plan::runtime;
use executor::dns::{check, push, read_dir, read_server, write_dir};
use executor::ssh::{Credentials, Timeouts};

/// The subcommands of `gitvps dns`.
#[derive(Debug, Subcommand)]
pub enum DnsCommand {
    /// Write every zone (reverse zones of the pools, the forward zone of `[vps] domain`) into a
    /// folder, serials against the zones already there; checked with named-checkzone.
    Build(BuildArgs),
    /// Publish the zones that changed to the [[dns.server]]s of gitvps.toml over SSH and
    /// reload only those (exit 0: done or nothing to do, 2: --dry-run found changes, 1: error).
    Apply(ApplyArgs),
}

/// Flags of `gitvps dns build`.
#[derive(Debug, Args)]
pub struct BuildArgs {
    /// The folder of the zone files (`<zone>.zone`); zones no longer built are removed from it.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
}

/// Flags of `gitvps dns apply`.
#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// Show which zones would change on each server, and change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// Runs a `gitvps dns` subcommand.
pub fn run(g: &Global, c: DnsCommand) -> anyhow::Result<i32> {
    match c {
        DnsCommand::Build(a) => build(g, &a),
        DnsCommand::Apply(a) => apply(g, &a),
    }
}

fn today() -> chrono::NaiveDate {
    chrono::Utc::now().date_naive()
}

fn build(g: &Global, a: &BuildArgs) -> anyhow::Result<i32> {
    let inv = match super::load_or_report(&g.repo, false)? {
        Ok(inv) => inv,
        Err(code) => return Ok(code),
    };
    let previous = read_dir(&a.out)?;
    let built = dns::build(&inv, &previous, today())?;
    check(&built)?;
    write_dir(&a.out, &built)?;
    let mut out = String::new();
    for b in &built {
        let how = match previous.get(&b.name) {
            None => "new",
            Some(t) if *t == b.text => "unchanged",
            Some(_) => "changed",
        };
        let _ = writeln!(
            out,
            "{}: serial {}, {} record(s), {how}",
            b.name, b.serial, b.records
        );
    }
    for zone in previous.keys() {
        if !built.iter().any(|b| &b.name == zone) {
            let _ = writeln!(out, "{zone}: no longer built, removed");
        }
    }
    super::emit(&out)?;
    Ok(0)
}

fn apply(g: &Global, a: &ApplyArgs) -> anyhow::Result<i32> {
    let inv = match super::load_or_report(&g.repo, false)? {
        Ok(inv) => inv,
        Err(code) => return Ok(code),
    };
    let servers = &inv.settings.dns.servers;
    anyhow::ensure!(
        !servers.is_empty(),
        "gitvps.toml names no [[dns.server]]: nothing to publish to (see docs/dns.md)"
    );
    let rec = &inv.settings.reconciler;
    let timeouts = Timeouts {
        connect: std::time::Duration::from_secs(rec.connect_timeout_secs.into()),
        command: std::time::Duration::from_secs(rec.command_timeout_secs.into()),
    };
    let creds = Credentials::from_env()?;
    let rt = runtime()?;
    let mut remotes = Vec::with_capacity(servers.len());
    for s in servers {
        let remote = rt
            .block_on(read_server(s, &creds, timeouts))
            .with_context(|| format!("dns server {}: nothing was published", s.name()))?;
        remotes.push(remote);
    }
    let previous: BTreeMap<String, String> =
        dns::previous_zones(&remotes.iter().collect::<Vec<_>>());
    let built = dns::build(&inv, &previous, today())?;
    check(&built).context("nothing was published; the servers keep their zones")?;
    let plans: Vec<dns::ServerPlan> = servers
        .iter()
        .zip(&remotes)
        .map(|(s, r)| dns::plan_server(s, &built, r))
        .collect();
    let text: String = servers
        .iter()
        .zip(&plans)
        .map(|(s, p)| p.render(s))
        .collect();
    super::emit(&text)?;
    let changes = plans.iter().any(|p| !p.is_empty());
    if a.dry_run {
        return Ok(if changes { 2 } else { 0 });
    }
    let mut failed = 0;
    for (s, p) in servers.iter().zip(&plans) {
        match rt.block_on(push(s, p, &built, &creds, timeouts)) {
            Ok(0) => {}
            Ok(_) => super::note(&format!(
                "dns server {}: published; reloaded {}",
                s.name(),
                match p.reloaded() {
                    z if z.is_empty() => "the zone list".to_owned(),
                    z => z.join(" "),
                }
            ))?,
            Err(e) => {
                failed += 1;
                super::note(&format!("error: {}", model::diag::error_chain(&e)))?;
            }
        }
    }
    Ok(if failed > 0 { 1 } else { 0 })
}
