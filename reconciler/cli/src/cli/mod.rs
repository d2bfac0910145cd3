//! The `gitvps` command line: flags parsed by clap, one file per subcommand.
//! Commands return an exit code; `main` only maps errors to messages.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

pub mod announce;
pub mod apply;
pub mod backup;
#[cfg(feature = "sim")]
pub mod bench;
#[cfg(feature = "sim")]
pub mod bench_apply;
#[cfg(feature = "sim")]
pub mod bench_backup;
#[cfg(feature = "sim")]
pub mod bench_collect;
#[cfg(feature = "sim")]
pub mod bench_graph;
#[cfg(feature = "sim")]
pub mod bench_login;
#[cfg(feature = "sim")]
pub mod bench_monitor;
#[cfg(feature = "sim")]
pub mod bench_move;
#[cfg(feature = "sim")]
pub mod bench_scale;
pub mod billing;
pub mod checks;
pub mod ci;
#[cfg(feature = "sim")]
pub mod demo;
pub mod dns;
pub mod import;
pub mod inventory;
pub mod invoice;
pub mod monitor;
pub mod monitor_graph;
pub mod monitor_http;
pub mod node;
#[cfg(feature = "sim")]
pub mod nodesim;
pub mod plan;
pub mod serve;
pub mod site;
pub mod ticket;
pub mod validate;
pub mod vps;

/// Run a VPS hosting business from a git repository.
#[derive(Debug, Parser)]
#[command(
    name = "gitvps",
    bin_name = "gitvps",
    version,
    propagate_version = true
)]
pub struct Cli {
    /// Flags every command takes.
    #[command(flatten)]
    pub global: Global,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Flags every command takes.
#[derive(Debug, Args)]
pub struct Global {
    /// The inventory repository (a folder with products.toml, pools.toml and inventory/).
    #[arg(long, global = true, default_value = ".", value_name = "DIR")]
    pub repo: PathBuf,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check the inventory and the billing records; print every problem as file:line:col.
    Validate(validate::ValidateArgs),
    /// Show nodes, pools, products and expiring VPSes as tables.
    Inventory(inventory::InventoryArgs),
    /// Observe every node over SSH and show what apply would change (exit 0: none, 2: changes).
    Plan(plan::PlanArgs),
    /// Make the nodes match the inventory (or carry out a saved plan).
    Apply(apply::ApplyArgs),
    /// Adopt the domains a node runs undeclared: their VPS files, marked adopted, in one commit.
    Import(import::ImportArgs),
    /// Serve the customer hooks (and a built site) on 127.0.0.1; --repo must be a bare repo.
    Serve(serve::ServeArgs),
    /// The business cycle: `gitvps billing run` (daily) and `gitvps billing report`.
    #[command(subcommand)]
    Billing(billing::BillingCommand),
    /// Outgoing mail: `gitvps mail send` sends what waits in mail/outbox.
    #[command(subcommand)]
    Mail(billing::MailCommand),
    /// Issued invoices: `gitvps invoice list` and `gitvps invoice show NUMBER [--html]`.
    #[command(subcommand)]
    Invoice(invoice::InvoiceCommand),
    /// Mail every customer with a live VPS on a node, in a location, of a plan, or all of them.
    Announce(announce::AnnounceArgs),
    /// Answer (`ticket reply`) or close (`ticket close`) a customer's support ticket.
    #[command(subcommand)]
    Ticket(ticket::TicketCommand),
    /// Manage VPSes in the inventory.
    #[command(subcommand)]
    Vps(vps::VpsCommand),
    /// The static customer site: `gitvps site build [--out DIR]`.
    #[command(subcommand)]
    Site(site::SiteCommand),
    /// DNS zones from the inventory: `gitvps dns build --out DIR`, `gitvps dns apply`.
    #[command(subcommand)]
    Dns(dns::DnsCommand),
    /// Backups with restic on the nodes: `gitvps backup run` (daily), `gitvps backup list`.
    #[command(subcommand)]
    Backup(backup::BackupCommand),
    /// Nodes: `gitvps node add NAME --address HOST[:PORT] ...` reads the host key once, shows its
    /// fingerprint and writes the node file with the key pinned.
    #[command(subcommand)]
    Node(node::NodeCommand),
    /// CI helpers: `gitvps ci comment --github|--gitlab --file FILE` posts or updates the plan
    /// comment on the pull or merge request.
    #[command(subcommand)]
    Ci(ci::CiCommand),
    /// Collect each node's usage counters into the sample database (every interval, or once).
    Monitor(monitor::MonitorArgs),
    /// Simulated dom0 nodes: stand-in xl and LVM tools in a folder.
    #[cfg(feature = "sim")]
    #[command(subcommand, name = "node-sim")]
    NodeSim(nodesim::NodeSimCommand),
    /// Measure gitvps on generated fleets.
    #[cfg(feature = "sim")]
    #[command(subcommand)]
    Bench(bench::BenchCommand),
    /// The example fleet on simulated dom0s on this machine, applied and served (or --check).
    #[cfg(feature = "sim")]
    Demo(demo::DemoArgs),
}

/// Runs a parsed command line and returns the process exit code.
pub fn run(cli: Cli) -> anyhow::Result<i32> {
    match cli.command {
        Command::Validate(a) => validate::run(&cli.global, &a),
        Command::Inventory(a) => inventory::run(&cli.global, &a),
        Command::Vps(c) => vps::run(&cli.global, c),
        Command::Billing(c) => billing::run(&cli.global, c),
        Command::Mail(c) => billing::mail(&cli.global, c),
        Command::Invoice(c) => invoice::run(&cli.global, c),
        Command::Announce(a) => announce::run(&cli.global, &a),
        Command::Ticket(c) => ticket::run(&cli.global, c),
        Command::Plan(a) => plan::run(&cli.global, &a),
        Command::Apply(a) => apply::run(&cli.global, &a),
        Command::Import(a) => import::run(&cli.global, &a),
        Command::Serve(a) => serve::run(&cli.global, &a),
        Command::Site(c) => site::run(&cli.global, c),
        Command::Dns(c) => dns::run(&cli.global, c),
        Command::Backup(c) => backup::run(&cli.global, c),
        Command::Ci(c) => ci::run(&cli.global, c),
        Command::Node(c) => node::run(&cli.global, c),
        Command::Monitor(a) => monitor::run(&cli.global, &a),
        #[cfg(feature = "sim")]
        Command::Bench(c) => bench::run(c),
        #[cfg(feature = "sim")]
        Command::NodeSim(c) => nodesim::run(c),
        #[cfg(feature = "sim")]
        Command::Demo(a) => demo::run(&cli.global, &a),
    }
}

/// Writes text to stdout. A closed pipe (`gitvps ... | head`) is not an error.
pub(crate) fn emit(text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}

/// Writes a line to stderr: what a command did besides its output (which stays parseable on
/// stdout). A closed pipe is not an error.
pub(crate) fn note(text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut err = std::io::stderr().lock();
    match writeln!(err, "{text}") {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}

/// Creates the new file `path` (and its folders) with `text`, synced; never over an existing
/// file, and a file that could not be written whole is removed again.
pub(crate) fn create_file(path: &std::path::Path, text: &str) -> anyhow::Result<()> {
    use anyhow::Context;
    use std::io::Write;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    if let Err(e) = f.write_all(text.as_bytes()).and_then(|()| f.sync_all()) {
        let _ = std::fs::remove_file(path);
        return Err(e).with_context(|| format!("cannot write {}", path.display()));
    }
    Ok(())
}

/// Prints JSON to stdout, pretty, with a final newline.
pub(crate) fn print_json(v: &impl serde::Serialize) -> anyhow::Result<()> {
    emit(&format!("{}\n", serde_json::to_string_pretty(v)?))
}

/// A job's result, with an inventory that does not load printed as `load_or_report` does it
/// (the job loads the inventory itself, once): `Err(1)` then.
pub(crate) fn job_or_report<T>(
    r: Result<T, jobs::JobError>,
    json: bool,
) -> anyhow::Result<Result<T, i32>> {
    match r {
        Ok(t) => Ok(Ok(t)),
        Err(jobs::JobError::Inventory(model::LoadError::Invalid(d)) | jobs::JobError::Usage(d)) => {
            validate::report(&d, json)?;
            Ok(Err(1))
        }
        Err(e) => Err(e.into()),
    }
}

/// Loads the inventory; on rule errors prints them (text or JSON) and returns the exit code.
pub(crate) fn load_or_report(
    repo: &std::path::Path,
    json: bool,
) -> anyhow::Result<Result<model::Inventory, i32>> {
    match model::Inventory::load(repo) {
        Ok(inv) => Ok(Ok(inv)),
        Err(model::LoadError::Invalid(d)) => {
            validate::report(&d, json)?;
            Ok(Err(1))
        }
        Err(e) => Err(e.into()),
    }
}
