//! The service checks of one collection: every VPS's `[monitor]` checks probed, their states
//! stepped and stored, and the alert or recovery mail each change owes sent at once.
//!
//! Mail goes straight to `GITVPS_SMTP_URL` (never through the repo's outbox: an alert is only
//! worth something now); one that cannot be sent stays owed and is tried at the next
//! collection. Its id (`alert.<vps>.<check>.<since>.<state>`) makes the Message-ID stable.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use chrono::{DateTime, Utc};
use executor::samples::Store;
use mail::{Draft, Outgoing, SendError, Transport};
use model::status::{CheckLive, CheckStatus};
use model::{Inventory, NodeId, VpsId};
use monitor::checks::{self, CheckState, Status, Target};

/// What one collection's checks did: the lines to print, and each VPS's check states as the
/// status branch publishes them.
pub(crate) struct Ran {
    /// The lines to print.
    pub(crate) lines: String,
    /// The states of each VPS's checks, in the order of its `[monitor] checks`.
    pub(crate) states: BTreeMap<VpsId, Vec<CheckStatus>>,
}

/// One collection's checks: probes the checks of the VPSes on `nodes`, stores the new states
/// and sends the mails owed, through `out` (else the transport of `GITVPS_SMTP_URL`).
pub(crate) async fn run(
    repo: &std::path::Path,
    inv: &Inventory,
    nodes: &[NodeId],
    store: &Store,
    now: DateTime<Utc>,
    out: Option<Outgoing>,
) -> anyhow::Result<Ran> {
    let settings = &inv.settings.monitor;
    let on: BTreeSet<&NodeId> = nodes.iter().collect();
    // Every check of the VPSes of these nodes, and whether its VPS runs.
    let mut all: Vec<(VpsId, Target, bool)> = Vec::new();
    for v in inv.vps.values().filter(|v| on.contains(&v.node)) {
        let active = checks::active(v);
        for t in checks::targets(v, settings) {
            all.push((v.id.clone(), t, active));
        }
    }
    let probed: Vec<Target> = all
        .iter()
        .filter(|(_, _, a)| *a)
        .map(|(_, t, _)| t.clone())
        .collect();
    let mut outcomes = executor::probe::probe_all(&probed).await.into_iter();

    let mut stored = store.check_states()?;
    let mut mailer = Mailer::new(repo, inv);
    mailer.out = out.map(Ok);
    let mut states: BTreeMap<VpsId, Vec<CheckStatus>> = BTreeMap::new();
    let mut lines = String::new();
    let (mut up, mut down, mut paused) = (0, 0, 0);
    let mut kept: BTreeMap<VpsId, BTreeSet<String>> = BTreeMap::new();
    for (vps, t, active) in &all {
        let key = t.key();
        let prev = stored
            .get_mut(vps)
            .and_then(|m| m.remove(&key))
            .unwrap_or_else(|| CheckState::new(t.label(), now));
        let outcome = if *active { outcomes.next() } else { None };
        let mut next = checks::step(prev, outcome.as_ref(), settings.check_failures, now);
        next.label = t.label();
        if let Some(state) = next.mail_due() {
            match mailer.send(vps, &key, &next, state, now) {
                Ok(to) => {
                    next.mailed = state;
                    let _ = writeln!(
                        lines,
                        "  mailed {to}: {vps} {} {}",
                        next.label,
                        state.as_str()
                    );
                }
                Err(why) => {
                    tracing::warn!(%vps, check = %next.label, "the {} mail is not sent: {why}; tried again next time", state.as_str());
                    let _ = writeln!(lines, "  MAIL NOT SENT: {vps} {}: {why}", next.label);
                }
            }
        }
        match (next.paused, next.status) {
            (true, _) => paused += 1,
            (false, Status::Up) => up += 1,
            (false, Status::Down) => {
                down += 1;
                let _ = writeln!(
                    lines,
                    "  DOWN {vps} {} since {}: {}",
                    next.label,
                    next.since.format("%Y-%m-%d %H:%M:%S UTC"),
                    next.detail
                );
            }
        }
        if !next.paused && next.status == Status::Up && next.failures > 0 {
            let _ = writeln!(
                lines,
                "  failing {vps} {} ({} of {}): {}",
                next.label, next.failures, settings.check_failures, next.detail
            );
        }
        states
            .entry(vps.clone())
            .or_default()
            .push(published(t, &next));
        store.put_check(vps, &key, &next)?;
        kept.entry(vps.clone()).or_default().insert(key);
    }
    // States of checks no longer listed (or of VPSes gone), on the nodes collected.
    for (vps, left) in stored {
        let ours = inv.vps.get(&vps).is_none_or(|v| on.contains(&v.node));
        if !ours {
            continue;
        }
        for key in left.keys() {
            store.remove_check(&vps, key)?;
        }
    }
    let mut head = String::new();
    if !all.is_empty() {
        let _ = writeln!(head, "checks: {up} up, {down} down, {paused} paused");
    }
    Ok(Ran {
        lines: head + &lines,
        states,
    })
}

/// A check's state as the panel shows it: no address of the mail, only what the probe saw.
fn published(t: &Target, s: &CheckState) -> CheckStatus {
    CheckStatus {
        name: s.label.clone(),
        kind: t.service.to_string(),
        state: match (s.paused, s.status) {
            (true, _) => CheckLive::Paused,
            (false, Status::Up) => CheckLive::Up,
            (false, Status::Down) => CheckLive::Down,
        },
        since: s.since,
        failures: s.failures,
        detail: s.detail.clone(),
        checked: s.checked,
    }
}

/// Sends the check mails of one collection, through one transport made on first use.
struct Mailer<'a> {
    repo: &'a std::path::Path,
    inv: &'a Inventory,
    out: Option<Result<Outgoing, SendError>>,
    templates: Option<mail::Templates>,
}

impl<'a> Mailer<'a> {
    fn new(repo: &'a std::path::Path, inv: &'a Inventory) -> Mailer<'a> {
        Mailer {
            repo,
            inv,
            out: None,
            templates: None,
        }
    }

    /// Builds and sends the alert (`Down`) or recovery (`Up`) mail of a check; returns the
    /// address it went to, or why not.
    fn send(
        &mut self,
        vps: &VpsId,
        key: &str,
        s: &CheckState,
        state: Status,
        now: DateTime<Utc>,
    ) -> Result<String, String> {
        let inv = self.inv;
        let v = inv.vps.get(vps).ok_or("not in the inventory")?;
        let c = inv
            .customers
            .get(&v.customer)
            .ok_or("its customer is not in the inventory")?;
        let to = v
            .monitor
            .alert_email
            .clone()
            .or_else(|| c.email.clone())
            .ok_or("no alert_email and no customer e-mail")?;
        if self.templates.is_none() {
            let t =
                jobs::billing::templates(self.repo).map_err(|e| model::diag::error_chain(&e))?;
            self.templates = Some(t);
        }
        let templates = self.templates.as_ref().ok_or("no templates")?;
        let mut context = mail::links::common(&inv.settings, &c.name);
        context["vps"] = vps.as_str().into();
        context["check"] = s.label.clone().into();
        context["state"] = state.as_str().into();
        context["since"] = s.since.format("%Y-%m-%d %H:%M UTC").to_string().into();
        context["detail"] = s.detail.clone().into();
        context["panel_url"] = mail::links::vps(&inv.settings, c.language, vps.as_str()).into();
        let id = format!(
            "alert.{vps}.{key}.{}.{}",
            s.since.timestamp(),
            state.as_str()
        );
        let draft = Draft {
            id: id.parse().map_err(|e| model::diag::error_chain(&e))?,
            kind: mail::Kind::Alert,
            lang: c.language,
            to: to.clone(),
            to_name: Some(c.name.clone()),
            reply_to: None,
            context,
            attachments: Vec::new(),
        };
        let m = &inv.settings.mail;
        let sender = mail::Sender::new(m.from.clone(), m.from_name.clone());
        let raw = mail::build(&draft, &sender, templates, now)
            .map_err(|e| model::diag::error_chain(&e))?;
        let out = self
            .out
            .get_or_insert_with(Outgoing::from_env)
            .as_ref()
            .map_err(|e| e.to_string())?;
        // lettre is blocking: off the runtime's worker while it talks to the server.
        tokio::task::block_in_place(|| out.send(&m.from, std::slice::from_ref(&to), &raw))
            .map_err(|e| model::diag::error_chain(&e))?;
        Ok(to.to_string())
    }
}
