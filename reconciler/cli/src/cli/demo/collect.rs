//! The demo's collector: `gitvps monitor`'s cycle against the simulated nodes every few
//! seconds, its check states and counters pushed on the status branch for the panel.

use super::*;

/// Seconds between two of the demo's collections.
pub(super) const COLLECT_EVERY: Duration = Duration::from_secs(3);

/// The status branch has two writers in the demo (apply, the collector): one at a time, so
/// neither loses the other's commit.
pub(super) static STATUS_LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Collects every [`COLLECT_EVERY`] until the task is aborted: samples into `store`, alert
/// mails into the Maildir `alerts`, check states and counters committed to the status branch
/// of `applied` and pushed to the bare repo. A failed cycle is logged and tried again.
pub(super) async fn collect_loop(
    applied: PathBuf,
    store: Arc<executor::samples::Store>,
    alerts: PathBuf,
    access: Access,
) {
    loop {
        if let Err(e) = collect_once(&applied, &store, &alerts, &access).await {
            tracing::warn!("the demo's collection failed: {e:#}");
        }
        tokio::time::sleep(COLLECT_EVERY).await;
    }
}

async fn collect_once(
    applied: &Path,
    store: &executor::samples::Store,
    alerts: &Path,
    access: &Access,
) -> anyhow::Result<()> {
    let l = load(applied)?;
    let c = super::super::monitor::Cycle {
        repo: applied,
        inv: &l.inv,
        desired: &l.desired,
        nodes: &l.nodes,
        access,
        limit: Duration::from_secs(5),
    };
    let out = mail::Outgoing::Maildir(mail::Maildir::new(alerts));
    let done = c.run(store, Some(out)).await?;
    let _one = STATUS_LOCK.lock().await;
    let line = c.publish(store, done.states, chrono::Utc::now())?;
    if !line.is_empty() {
        let branch = &l.inv.settings.reconciler.status_branch;
        super::repo::git(applied, &["push", "-q", "origin", branch])?;
    }
    Ok(())
}
