//! The daily decision of `gitvps billing run`: renewal invoices to issue, mails to queue, VPSes
//! to suspend, lift or terminate, as a pure function of the day, the inventory and the ledger.
//!
//! For each VPS that is not destroyed, with `E` its expiry and the `[billing]` policy:
//!
//! - **lift**: suspended by billing (`suspension = "billing"`) and `E > today`: paid since.
//!   An operator's suspension (no `suspension`, or `"admin"`) is never lifted here.
//! - **suspend**: active and `today ≥ E + grace_days`.
//! - **terminate**: suspended and `today ≥ max(E + grace_days, suspended) + terminate_days`
//!   (`suspended`: the day it was suspended, if recorded): never before
//!   `E + grace_days + terminate_days`, and never without `terminate_days` of suspension first
//!   when billing suspends late (a run that did not happen for a while). An operator's
//!   suspension with `E` in the future is thus never terminated.
//! - **invoice**: active or suspended by billing, from `E − max(reminder_days)`: one renewal
//!   invoice per expiry `E`, unless one was issued already (paid or not), for the period from
//!   `E` (from the day of issue for a lapsed VPS, as a payment then counts).
//! - **remind**: active, on each of `reminder_days` before `E` (while `today ≤ E`) and
//!   `overdue_reminder_days` after it. A missed day catches up with the most recent reminder of
//!   each series only: stale ones are never sent.
//!
//! Deciding again after applying a run ([`Run::apply`]) on the same day gives an empty run.

use std::collections::BTreeMap;
use std::fmt::Write;

use chrono::{Days, NaiveDate};
use model::policy::InvoiceNumber;
use model::values::{Email, Language, State, Suspension};
use model::{CustomerId, Inventory, Product, ProductId, ProductKind, Settings, Vps, VpsId};
use serde::Serialize;

use crate::invoice::{self, Draft, Invoice, InvoiceKind};
use crate::ledger::Ledger;
use crate::numbering::Numberer;

/// What one billing run decided.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Run {
    /// The day decided for.
    pub today: NaiveDate,
    /// New invoices, numbered, to write to `billing/invoices/<number>.toml`.
    pub invoices: Vec<Invoice>,
    /// State changes to write to VPS files.
    pub changes: Vec<Change>,
    /// Mails to queue (some with a reason they are skipped).
    pub mails: Vec<MailIntent>,
    /// What could not be decided (the rest of the run stands).
    pub problems: Vec<Problem>,
}

/// A change to a VPS file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Change {
    /// `state = "suspended"`, `suspension = "billing"`, `suspended = <on>`.
    Suspend {
        /// The VPS.
        vps: VpsId,
        /// Its expiry.
        expires: NaiveDate,
        /// The grace it had.
        grace_days: u32,
        /// The day of the suspension.
        on: NaiveDate,
    },
    /// `state = "active"`; `suspension` and `suspended` removed.
    Unsuspend {
        /// The VPS.
        vps: VpsId,
        /// Its expiry, now in the future.
        expires: NaiveDate,
    },
    /// `state = "destroyed"`, `destroyed = <on>`; `suspension` and `suspended` removed. The
    /// reconciler keeps the disk for `retention_days` more.
    Terminate {
        /// The VPS.
        vps: VpsId,
        /// Its expiry.
        expires: NaiveDate,
        /// Since when it was suspended, if recorded.
        suspended: Option<NaiveDate>,
        /// The day of the termination.
        on: NaiveDate,
    },
}

impl Change {
    /// The VPS changed.
    pub fn vps(&self) -> &VpsId {
        match self {
            Change::Suspend { vps, .. }
            | Change::Unsuspend { vps, .. }
            | Change::Terminate { vps, .. } => vps,
        }
    }

    /// Makes the change in a VPS file opened for editing (keeping its comments). A date a
    /// TOML file cannot hold is an error, and the file is then left as it was.
    pub fn edit(&self, f: &mut model::edit::TomlFile) -> Result<(), model::edit::EditError> {
        match self {
            Change::Suspend { on, .. } => {
                f.set_date("suspended", *on)?;
                f.set_state(State::Suspended);
                f.set_suspension(Some(Suspension::Billing));
            }
            Change::Unsuspend { .. } => {
                f.set_state(State::Active);
                f.set_suspension(None);
                f.remove("suspended");
            }
            Change::Terminate { on, .. } => {
                f.set_date("destroyed", *on)?;
                f.set_state(State::Destroyed);
                f.set_suspension(None);
                f.remove("suspended");
            }
        }
        Ok(())
    }

    /// Makes the change in an inventory in memory.
    pub fn apply(&self, v: &mut Vps) {
        match self {
            Change::Suspend { on, .. } => {
                v.state = State::Suspended;
                v.suspension = Some(Suspension::Billing);
                v.suspended = Some(*on);
            }
            Change::Unsuspend { .. } => {
                v.state = State::Active;
                v.suspension = None;
                v.suspended = None;
            }
            Change::Terminate { on, .. } => {
                v.state = State::Destroyed;
                v.suspension = None;
                v.suspended = None;
                v.destroyed = Some(*on);
            }
        }
    }
}

/// What a mail is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MailKind {
    /// A VPS expires soon, or has expired (`overdue`).
    Reminder,
    /// A new invoice.
    Invoice,
    /// A VPS was suspended for non-payment.
    Suspended,
    /// A VPS was terminated.
    Terminated,
}

/// A mail to queue in the outbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MailIntent {
    /// Stable id: `reminder.<vps>.<expires>.<n>d`, `overdue.<vps>.<expires>.<n>d`,
    /// `invoice.<number>`, `suspended.<vps>.<expires>`, `terminated.<vps>`.
    pub id: String,
    /// What it is about.
    pub kind: MailKind,
    /// To whom.
    pub customer: CustomerId,
    /// The customer's address, if any.
    pub to: Option<Email>,
    /// The customer's language.
    pub language: Language,
    /// The VPS, if about one.
    pub vps: Option<VpsId>,
    /// The invoice, if about one (a reminder names the invoice of its period).
    pub invoice: Option<InvoiceNumber>,
    /// The VPS's expiry, if about a VPS.
    pub expires: Option<NaiveDate>,
    /// For a reminder: days before the expiry (or after it, when `overdue`).
    pub days: Option<u32>,
    /// For a reminder: the VPS has expired.
    pub overdue: bool,
    /// Why it is not sent (no e-mail address); the id is still recorded.
    pub skip: Option<String>,
}

/// Something the run could not decide.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// The VPS concerned, if any.
    pub vps: Option<VpsId>,
    /// What is wrong.
    pub message: String,
}

impl Run {
    /// Whether the run does nothing.
    pub fn is_empty(&self) -> bool {
        self.invoices.is_empty()
            && self.changes.is_empty()
            && self.mails.is_empty()
            && self.problems.is_empty()
    }

    /// Applies the run to an inventory and a ledger in memory: the changes to the VPSes, the
    /// invoices issued, every mail id handled (skipped ones too).
    pub fn apply(&self, inv: &mut Inventory, ledger: &mut Ledger) {
        for c in &self.changes {
            if let Some(v) = inv.vps.get_mut(c.vps()) {
                c.apply(v);
            }
        }
        for i in &self.invoices {
            ledger.invoices.insert(i.number.clone(), i.clone());
        }
        ledger.mails.extend(self.mails.iter().map(|m| m.id.clone()));
    }

    /// The run as a human reads it, like a plan: `+` an invoice, `~` a suspension or its lift,
    /// `-` a termination, `!` a mail, `?` a problem.
    pub fn render(&self) -> String {
        let mut s = String::new();
        if self.is_empty() {
            let _ = writeln!(s, "billing run {}: nothing to do", self.today);
            return s;
        }
        let _ = writeln!(
            s,
            "billing run {}: {} invoice(s), {} state change(s), {} mail(s)",
            self.today,
            self.invoices.len(),
            self.changes.len(),
            self.mails.len()
        );
        for i in &self.invoices {
            let vps = i.kind.vps().map(|v| format!(" {v}")).unwrap_or_default();
            let period = i
                .lines
                .iter()
                .find_map(|l| l.period)
                .map(|(a, b)| format!(" ({a} to {b})"))
                .unwrap_or_default();
            let _ = writeln!(
                s,
                "+ invoice {} {}{vps} {} {}{period}",
                i.number,
                i.customer,
                i.total.with_decimals(i.currency.minor_units()),
                i.currency
            );
        }
        for c in &self.changes {
            let _ = match c {
                Change::Suspend {
                    vps,
                    expires,
                    grace_days,
                    ..
                } => writeln!(
                    s,
                    "~ suspend {vps} (expired {expires}, grace {grace_days} days)"
                ),
                Change::Unsuspend { vps, expires } => {
                    writeln!(s, "~ unsuspend {vps} (paid until {expires})")
                }
                Change::Terminate {
                    vps,
                    expires,
                    suspended,
                    ..
                } => {
                    let since = suspended
                        .map(|d| format!(", suspended {d}"))
                        .unwrap_or_default();
                    writeln!(s, "- terminate {vps} (expired {expires}{since})")
                }
            };
        }
        for m in &self.mails {
            let _ = match (&m.skip, &m.to) {
                (Some(why), _) => writeln!(s, "! mail {} {} skipped: {why}", m.id, m.customer),
                (None, Some(to)) => writeln!(s, "! mail {} {} <{to}>", m.id, m.customer),
                (None, None) => writeln!(s, "! mail {} {}", m.id, m.customer),
            };
        }
        for p in &self.problems {
            let _ = match &p.vps {
                Some(v) => writeln!(s, "? {v}: {}", p.message),
                None => writeln!(s, "? {}", p.message),
            };
        }
        s
    }
}

/// The mail id of an invoice's mail: `invoice.<number>` in lower case, any character a mail id
/// cannot hold (`[a-z0-9.-]`) made a `-`.
pub fn invoice_mail_id(n: &InvoiceNumber) -> String {
    let number: String = n
        .as_str()
        .chars()
        .map(|c| match c.to_ascii_lowercase() {
            c @ ('a'..='z' | '0'..='9' | '.' | '-') => c,
            _ => '-',
        })
        .collect();
    format!("invoice.{number}")
}

/// The product a VPS on `plan` renews with: the plan's renewal product of the plan's own period
/// (the first by id), or else the plan itself.
pub fn renewal_product<'a>(inv: &'a Inventory, plan: &ProductId) -> Option<&'a Product> {
    let p = inv.products.get(plan)?;
    let plan = p.plan_id();
    let base = inv.products.get(plan)?;
    inv.products
        .values()
        .find(|r| {
            matches!(&r.kind, ProductKind::Renewal { renews } if renews == plan)
                && r.period_months == base.period_months
        })
        .or(Some(base))
}

fn add_days(d: NaiveDate, n: u32) -> NaiveDate {
    d.checked_add_days(Days::new(n.into()))
        .unwrap_or(NaiveDate::MAX)
}

fn sub_days(d: NaiveDate, n: u32) -> NaiveDate {
    d.checked_sub_days(Days::new(n.into()))
        .unwrap_or(NaiveDate::MIN)
}

/// Decides the billing run of `today`. See the module documentation for the rules.
pub fn decide(today: NaiveDate, inv: &Inventory, settings: &Settings, ledger: &Ledger) -> Run {
    let mut d = Decider {
        today,
        inv,
        settings,
        ledger,
        numberer: Numberer::new(&settings.billing.invoice_number, ledger.invoices.keys()),
        renewals: ledger
            .invoices
            .values()
            .filter_map(|i| {
                i.renews()
                    .map(|(v, from)| ((v.clone(), from), i.number.clone()))
            })
            .collect(),
        run: Run {
            today,
            invoices: Vec::new(),
            changes: Vec::new(),
            mails: Vec::new(),
            problems: Vec::new(),
        },
    };
    for v in inv.vps.values() {
        d.vps(v);
    }
    d.unsent_invoices();
    d.run
}

struct Decider<'a> {
    today: NaiveDate,
    inv: &'a Inventory,
    settings: &'a Settings,
    ledger: &'a Ledger,
    numberer: Numberer,
    /// Renewal invoices, issued before or in this run, by VPS and first day of the period.
    renewals: BTreeMap<(VpsId, NaiveDate), InvoiceNumber>,
    run: Run,
}

impl Decider<'_> {
    fn vps(&mut self, v: &Vps) {
        let b = &self.settings.billing;
        let (today, e) = (self.today, v.expires);
        let mut state = v.state;
        let mut by = v.suspension;
        let mut since = v.suspended;
        if state == State::Destroyed {
            return;
        }
        // A VPS the traffic policy suspended is, to billing, an active one: it is invoiced
        // and reminded, and non-payment suspends it for billing (which the policy leaves
        // alone); the traffic suspension never starts a termination clock.
        if state == State::Suspended && by == Some(Suspension::Traffic) {
            (state, by, since) = (State::Active, None, None);
        }
        if state == State::Suspended && by == Some(Suspension::Billing) && e > today {
            self.run.changes.push(Change::Unsuspend {
                vps: v.id.clone(),
                expires: e,
            });
            (state, by, since) = (State::Active, None, None);
        }
        let suspend_on = add_days(e, b.grace_days);
        if state == State::Active && today >= suspend_on {
            self.run.changes.push(Change::Suspend {
                vps: v.id.clone(),
                expires: e,
                grace_days: b.grace_days,
                on: today,
            });
            (state, by, since) = (State::Suspended, Some(Suspension::Billing), Some(today));
            self.mail(
                v,
                MailKind::Suspended,
                format!("suspended.{}.{e}", v.id),
                None,
            );
        }
        if state == State::Suspended {
            let terminate_on = add_days(
                suspend_on.max(since.unwrap_or(suspend_on)),
                b.terminate_days,
            );
            if today >= terminate_on {
                self.run.changes.push(Change::Terminate {
                    vps: v.id.clone(),
                    expires: e,
                    suspended: since,
                    on: today,
                });
                self.mail(
                    v,
                    MailKind::Terminated,
                    format!("terminated.{}", v.id),
                    None,
                );
                return;
            }
        }
        let billed = state == State::Active || by == Some(Suspension::Billing);
        let opens = sub_days(e, b.reminder_days.iter().copied().max().unwrap_or(0));
        if billed && today >= opens && !self.renewals.contains_key(&(v.id.clone(), e)) {
            self.invoice(v);
        }
        if state == State::Active {
            self.reminder(v);
        }
    }

    /// The most recent reminder due for the VPS's expiry, before or after it, unless handled.
    fn reminder(&mut self, v: &Vps) {
        let b = &self.settings.billing;
        let (today, e) = (self.today, v.expires);
        let due = if today <= e {
            b.reminder_days
                .iter()
                .copied()
                .filter(|&n| sub_days(e, n) <= today)
                .min()
                .map(|n| (n, false))
        } else {
            b.overdue_reminder_days
                .iter()
                .copied()
                .filter(|&n| add_days(e, n) <= today)
                .max()
                .map(|n| (n, true))
        };
        let Some((days, overdue)) = due else {
            return;
        };
        let series = if overdue { "overdue" } else { "reminder" };
        let id = format!("{series}.{}.{e}.{days}d", v.id);
        let invoice = self.renewals.get(&(v.id.clone(), e)).cloned();
        if let Some(m) = self.mail(v, MailKind::Reminder, id, invoice) {
            m.days = Some(days);
            m.overdue = overdue;
        }
    }

    /// Issues the renewal invoice of the period from the VPS's expiry.
    fn invoice(&mut self, v: &Vps) {
        let problem = |message: String| Problem {
            vps: Some(v.id.clone()),
            message,
        };
        let Some(customer) = self.inv.customers.get(&v.customer) else {
            let p = problem(format!(
                "customer `{}` is not in the inventory: no invoice",
                v.customer
            ));
            self.run.problems.push(p);
            return;
        };
        let Some(product) = renewal_product(self.inv, &v.product) else {
            let p = problem(format!(
                "product `{}` is not in the catalog: no invoice",
                v.product
            ));
            self.run.problems.push(p);
            return;
        };
        let number = match self.numberer.next(self.today) {
            Ok(n) => n,
            Err(e) => {
                self.run.problems.push(problem(format!("no invoice: {e}")));
                return;
            }
        };
        // A lapsed VPS renews from the day it is paid: the invoice shows the period bought if
        // it is paid on the day of issue.
        let from = v.expires.max(self.today);
        let to = model::add_months(from, product.period_months);
        let draft = Draft {
            number,
            issued: self.today,
            due: from.max(self.today),
            lines: vec![invoice::period_line(product, v, from, to)],
            kind: InvoiceKind::Renewal {
                vps: v.id.clone(),
                expires: v.expires,
                new_expiry: to,
            },
        };
        match invoice::issue(draft, customer, self.settings, &self.inv.currency) {
            Ok(i) => {
                self.renewals
                    .insert((v.id.clone(), v.expires), i.number.clone());
                let id = invoice_mail_id(&i.number);
                self.mail(v, MailKind::Invoice, id, Some(i.number.clone()));
                self.run.invoices.push(i);
            }
            Err(e) => self.run.problems.push(problem(format!("no invoice: {e}"))),
        }
    }

    /// Issued invoices whose mail was never handled (a run that crashed after its commit):
    /// mailed now, unless their VPS is gone.
    fn unsent_invoices(&mut self) {
        for i in self.ledger.invoices.values() {
            let id = invoice_mail_id(&i.number);
            if self.ledger.mails.contains(&id) {
                continue;
            }
            let vps = i.kind.vps();
            let v = vps.and_then(|v| self.inv.vps.get(v));
            if v.is_some_and(|v| v.state == State::Destroyed) {
                continue;
            }
            let c = self.inv.customers.get(&i.customer);
            self.run.mails.push(MailIntent {
                id,
                kind: MailKind::Invoice,
                customer: i.customer.clone(),
                to: c.and_then(|c| c.email.clone()),
                language: c.map_or(Language::En, |c| c.language),
                vps: vps.cloned(),
                invoice: Some(i.number.clone()),
                expires: v.map(|v| v.expires),
                days: None,
                overdue: false,
                skip: skip_reason(c.and_then(|c| c.email.as_ref()), &i.customer, c.is_some()),
            });
        }
    }

    /// Queues a mail about `v` to its customer unless its id was handled before.
    fn mail(
        &mut self,
        v: &Vps,
        kind: MailKind,
        id: String,
        invoice: Option<InvoiceNumber>,
    ) -> Option<&mut MailIntent> {
        if self.ledger.mails.contains(&id) {
            return None;
        }
        let c = self.inv.customers.get(&v.customer);
        let email = c.and_then(|c| c.email.as_ref());
        self.run.mails.push(MailIntent {
            id,
            kind,
            customer: v.customer.clone(),
            to: email.cloned(),
            language: c.map_or(Language::En, |c| c.language),
            vps: Some(v.id.clone()),
            invoice,
            expires: Some(v.expires),
            days: None,
            overdue: false,
            skip: skip_reason(email, &v.customer, c.is_some()),
        });
        self.run.mails.last_mut()
    }
}

fn skip_reason(email: Option<&Email>, customer: &CustomerId, known: bool) -> Option<String> {
    match (email, known) {
        (Some(_), _) => None,
        (None, true) => Some(format!("customer {customer} has no e-mail address")),
        (None, false) => Some(format!("customer {customer} is not in the inventory")),
    }
}
