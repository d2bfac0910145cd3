//! `gitvps monitor graph`: a usage graph as SVG from the sample database, for the operator: a
//! node's overall usage (`--node`), or any VPS's graph as its customer sees it (`--vps`).

use std::io::Write as _;
use std::path::PathBuf;

use anyhow::{Context, bail};
use chrono::Utc;
use clap::{ArgGroup, Args};
use executor::samples::Store;
use hooks::graphs::{GraphMetric, GraphQuery};
use model::values::Language;
use model::{NodeId, VpsId};
use monitor::graph::NodeMetric;

use super::Global;

/// Flags of `gitvps monitor graph`.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("of").required(true).args(["node", "vps"])))]
pub struct GraphArgs {
    /// A node's overall usage: metric cpu, memory, load or storage.
    #[arg(long, value_name = "NODE")]
    pub node: Option<NodeId>,
    /// A VPS's usage: metric cpu, network, disk, or compare (its place among its node's VPSes).
    #[arg(long, value_name = "VPS")]
    pub vps: Option<VpsId>,
    /// What to draw (cpu by default).
    #[arg(long, default_value = "cpu")]
    pub metric: String,
    /// day, week, month or year, ending now.
    #[arg(long, default_value = "day")]
    pub range: String,
    /// Points drawn (the range's default: 288, 336, 360, 365).
    #[arg(long)]
    pub points: Option<u32>,
    /// Labels in en or zh.
    #[arg(long, default_value = "en")]
    pub lang: String,
    /// The sample database (gitvps.toml's monitor.database by default).
    #[arg(long, value_name = "DIR")]
    pub db: Option<PathBuf>,
    /// Write the SVG here instead of standard output.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

/// Runs the command.
pub fn run(g: &Global, a: &GraphArgs) -> anyhow::Result<i32> {
    // The customer route's parser: the same words, the same errors.
    let query = format!("range={}&lang={}", a.range, a.lang);
    let q = GraphQuery::parse(Some(&query)).map_err(|m| anyhow::anyhow!("--{m}"))?;
    let lang = q.lang.unwrap_or(Language::En);
    let inv = match super::load_or_report(&g.repo, false)? {
        Ok(inv) => inv,
        Err(code) => return Ok(code),
    };
    let path = super::monitor::db_path_of(&g.repo, &inv, a.db.as_ref());
    if !path.exists() {
        bail!(
            "{}: no monitor database (gitvps monitor has not collected yet)",
            path.display()
        );
    }
    let store = Store::open(&path)?;
    let now = Utc::now();
    let svg = match (&a.node, &a.vps) {
        (Some(node), _) => {
            let Some(metric) = NodeMetric::parse(&a.metric) else {
                bail!(
                    "--metric of a node is cpu, memory, load or storage, not `{}`",
                    a.metric
                );
            };
            if !inv.nodes.contains_key(node) {
                bail!("no node `{node}` in the inventory");
            }
            crate::graphs::draw_node(&store, node, metric, q.range, a.points, lang, now)
        }
        (None, Some(vps)) => {
            let Some(metric) = GraphMetric::ALL
                .iter()
                .find(|(n, _)| *n == a.metric)
                .map(|(_, m)| *m)
            else {
                bail!(
                    "--metric of a VPS is cpu, network, disk or compare, not `{}`",
                    a.metric
                );
            };
            let Some(v) = inv.vps.get(vps) else {
                bail!("no VPS `{vps}` in the inventory");
            };
            let q = GraphQuery {
                metric,
                points: a.points,
                ..q
            };
            let mut req = hooks::graphs::request(&inv, &v.customer, vps, &q)
                .with_context(|| format!("{vps} is destroyed"))?;
            req.lang = lang;
            crate::graphs::draw_vps(&store, &req, now)
        }
        (None, None) => bail!("--node or --vps"),
    }
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    match &a.out {
        Some(p) => {
            std::fs::write(p, svg).with_context(|| format!("cannot write {}", p.display()))?
        }
        None => std::io::stdout().write_all(svg.as_bytes())?,
    }
    Ok(0)
}
