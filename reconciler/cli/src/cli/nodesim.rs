//! `gitvps node-sim`: turn a folder into a simulated dom0 (stand-in `xl` and LVM tools),
//! and the entry point those stand-ins' wrapper scripts call.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};

/// node-sim subcommands.
#[derive(Debug, Subcommand)]
pub enum NodeSimCommand {
    /// Install the stand-ins into ROOT/usr/sbin and create the state folders (idempotent). The
    /// wrappers run `gitvps-stand-in` beside this binary if it was built, else `gitvps node-sim
    /// exec`.
    Install(InstallArgs),
    /// Run one stand-in tool (what the wrapper scripts call where the small `gitvps-stand-in`
    /// was not built beside this binary).
    #[command(hide = true)]
    Exec(ExecArgs),
    /// Serve N nodes that answer every command with a fixed document and run nothing (for
    /// `gitvps bench scale`): prints "ADDRESS HOST_KEY" per node, serves until stdin closes.
    #[command(hide = true)]
    ServeCanned(ServeCannedArgs),
}

/// Flags of `gitvps node-sim serve-canned`.
#[derive(Debug, Args)]
pub struct ServeCannedArgs {
    /// Nodes to serve (each on its own port of 127.0.0.1).
    #[arg(long)]
    pub nodes: usize,
    /// The OpenSSH public key file of the one client accepted.
    #[arg(long, value_name = "FILE")]
    pub client_key: PathBuf,
    /// The file every command answers with.
    #[arg(long, value_name = "FILE")]
    pub answer: PathBuf,
}

/// Flags of `gitvps node-sim install`.
#[derive(Debug, Args)]
pub struct InstallArgs {
    /// The node root folder.
    #[arg(long, value_name = "DIR")]
    pub root: PathBuf,
    /// Create an LVM volume group, as NAME=SIZE (e.g. vg0=2TiB); repeatable.
    #[arg(long, value_name = "NAME=SIZE")]
    pub vg: Vec<String>,
}

/// Flags of `gitvps node-sim exec`.
#[derive(Debug, Args)]
pub struct ExecArgs {
    /// The node root folder.
    #[arg(long, value_name = "DIR")]
    pub root: PathBuf,
    /// The tool (`xl`, `lvs`, ...).
    pub tool: String,
    /// Its arguments.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub args: Vec<String>,
}

/// Runs a node-sim subcommand.
pub fn run(c: NodeSimCommand) -> anyhow::Result<i32> {
    match c {
        NodeSimCommand::Install(a) => {
            std::fs::create_dir_all(&a.root)
                .with_context(|| format!("cannot create {}", a.root.display()))?;
            let root = a.root.canonicalize()?;
            let exe = std::env::current_exe().context("cannot find the gitvps binary")?;
            let program = sim::nodesim::StandIn::beside(&exe);
            sim::nodesim::install(&root, &program)
                .with_context(|| format!("cannot install into {}", root.display()))?;
            for vg in &a.vg {
                let (name, size) = vg
                    .split_once('=')
                    .with_context(|| format!("--vg {vg}: write NAME=SIZE, like vg0=2TiB"))?;
                let size: model::values::Size = size
                    .replace("TiB", " TiB")
                    .replace("GiB", " GiB")
                    .parse()
                    .map_err(|e: String| anyhow::anyhow!("--vg {vg}: {e}"))?;
                name.parse::<model::values::VgName>()
                    .map_err(|e| anyhow::anyhow!("--vg {vg}: {e}"))?;
                sim::nodesim::create_vg(&root, name, size.bytes())?;
            }
            super::emit(&format!(
                "installed the stand-ins for {} into {} (running {})\n",
                sim::nodesim::TOOLS.join(", "),
                root.join("usr/sbin").display(),
                program.path().display()
            ))?;
            Ok(0)
        }
        NodeSimCommand::ServeCanned(a) => serve_canned(&a),
        NodeSimCommand::Exec(a) => {
            let mut out = std::io::stdout().lock();
            let mut err = std::io::stderr().lock();
            Ok(sim::nodesim::run_tool(
                &a.root, &a.tool, &a.args, &mut out, &mut err,
            ))
        }
    }
}

fn serve_canned(a: &ServeCannedArgs) -> anyhow::Result<i32> {
    use std::io::Write as _;
    let client = std::fs::read_to_string(&a.client_key)
        .with_context(|| format!("cannot read {}", a.client_key.display()))?;
    let client = russh::keys::PublicKey::from_openssh(client.trim())
        .map_err(|e| anyhow::anyhow!("{}: {e}", a.client_key.display()))?;
    let answer = std::sync::Arc::new(
        std::fs::read(&a.answer).with_context(|| format!("cannot read {}", a.answer.display()))?,
    );
    let rt = super::plan::runtime()?;
    rt.block_on(async {
        let mut servers = Vec::with_capacity(a.nodes);
        let mut out = String::new();
        for _ in 0..a.nodes {
            let s = sim::nodeserver::NodeServer::start_canned(
                "127.0.0.1:0".parse()?,
                client.clone(),
                answer.clone(),
            )
            .await?;
            out.push_str(&format!("{} {}\n", s.addr, s.host_key));
            servers.push(s);
        }
        let mut stdout = std::io::stdout().lock();
        stdout.write_all(out.as_bytes())?;
        stdout.flush()?;
        drop(stdout);
        // Serve until the bench closes our stdin.
        tokio::task::spawn_blocking(|| {
            let mut sink = Vec::new();
            std::io::Read::read_to_end(&mut std::io::stdin(), &mut sink)
        })
        .await??;
        for s in servers {
            s.stop();
        }
        anyhow::Ok(0)
    })
}
