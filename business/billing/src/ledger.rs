//! The ledger: what billing has done so far, built from texts the caller read from the repo:
//! the invoices issued, which of them are paid (payment records), and the mails already handled.
//!
//! An invoice is paid when a payment record (`billing/payments/<event>.toml`) names it with
//! `invoice = "INV-..."`. A renewal paid through the panel without naming one pays the renewal
//! invoice of that VPS for the expiry in the record's `expires_before`.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, NaiveDate, Utc};
use model::policy::{InvoiceNumber, InvoiceRule};
use model::values::Money;
use model::{CustomerId, Diagnostic, Diagnostics, VpsId};
use toml_edit::Value;

use crate::invoice::{self, Invoice};
use crate::numbering::{self, NumberingError};
use crate::read::{FromToml, Src, Table};

/// Folder of the payment records (written by the hooks).
pub const PAYMENTS_DIR: &str = "billing/payments";

/// What billing reads of a payment record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentRecord {
    /// The repo-relative path it was read from.
    pub file: String,
    /// The Stripe event (names the file).
    pub event: String,
    /// `renew` or `order`.
    pub kind: String,
    /// The customer, if known.
    pub customer: Option<CustomerId>,
    /// The VPS renewed or created.
    pub vps: Option<VpsId>,
    /// The invoice it pays, if it names one.
    pub invoice: Option<InvoiceNumber>,
    /// Amount paid.
    pub amount: Money,
    /// Its currency.
    pub currency: String,
    /// When it was paid.
    pub paid_at: DateTime<Utc>,
    /// Whether the hooks applied it (renewed or created a VPS).
    pub applied: bool,
    /// The VPS's expiry before a renewal.
    pub expires_before: Option<NaiveDate>,
    /// Whether the hooks refused it (amount, currency or date not what was due).
    pub refused: bool,
    /// Why it was not applied, as the hooks wrote it.
    pub note: Option<String>,
    /// Line and column of `invoice` (or of the file), for errors about it.
    at: (u32, u32),
}

impl PaymentRecord {
    fn diag(&self, field: &str, message: String) -> Diagnostic {
        Diagnostic {
            file: self.file.as_str().into(),
            line: self.at.0,
            col: self.at.1,
            field: field.to_owned(),
            message,
        }
    }
}

/// A date the hooks write as a string (`expires_before = "2011-06-09"`).
struct DateText(NaiveDate);

impl FromToml for DateText {
    fn from_toml(v: &Value) -> Result<Self, String> {
        match v.as_str() {
            Some(s) => s
                .parse()
                .map(DateText)
                .map_err(|_| format!("`{s}` is not a date like \"2026-12-05\"")),
            None => NaiveDate::from_toml(v).map(DateText),
        }
    }
}

/// Reads a payment record; fields billing does not use are left alone (the hooks own the
/// format).
pub fn parse_payment(path: &str, text: &str) -> Result<PaymentRecord, Diagnostics> {
    let mut src = Src::new(path, text);
    let doc = src.parse().map_err(|d| Diagnostics(vec![d]))?;
    let top = Table {
        t: doc.as_table(),
        prefix: String::new(),
        span: None,
    };
    let event = top.req::<String>(&mut src, "event");
    let kind = top.req::<String>(&mut src, "kind");
    let customer = top.opt(&mut src, "customer");
    let vps = top.opt(&mut src, "vps");
    let invoice = top.opt(&mut src, "invoice");
    let amount = top.req(&mut src, "amount");
    let currency = top.req::<String>(&mut src, "currency");
    let paid_at = top.req(&mut src, "paid_at");
    let applied = top.opt(&mut src, "applied").unwrap_or(false);
    let expires_before = top.opt::<DateText>(&mut src, "expires_before").map(|d| d.0);
    let refused = top.opt(&mut src, "refused").unwrap_or(false);
    let note = top.opt(&mut src, "note");
    let span = doc.get("invoice").and_then(toml_edit::Item::span);
    let at = src.diag(span, "", "");
    let rec = (|| {
        Some(PaymentRecord {
            file: path.to_owned(),
            event: event?,
            kind: kind?,
            customer,
            vps,
            invoice,
            amount: amount?,
            currency: currency?,
            paid_at: paid_at?,
            applied,
            expires_before,
            refused,
            note,
            at: (at.line, at.col),
        })
    })();
    match rec {
        Some(r) if src.diags.is_empty() => Ok(r),
        _ => Err(Diagnostics(src.diags).sorted()),
    }
}

/// The payment that settled an invoice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paid {
    /// The payment event.
    pub event: String,
    /// When it was paid.
    pub at: DateTime<Utc>,
    /// How much.
    pub amount: Money,
}

/// What billing has done so far.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ledger {
    /// Every invoice issued, by number.
    pub invoices: BTreeMap<InvoiceNumber, Invoice>,
    /// The paid ones, with their payment.
    pub paid: BTreeMap<InvoiceNumber, Paid>,
    /// Ids of the mails already handled: queued, sent, or skipped (a skipped mail must be
    /// recorded too, or the next run lists it again).
    pub mails: BTreeSet<String>,
    /// Payments that were neither applied nor settle an invoice (refused, or not applicable):
    /// money received that an operator must refund or act on, earliest first.
    pub unapplied: Vec<PaymentRecord>,
}

impl Ledger {
    /// Builds the ledger from the texts of the invoice files and payment records, as
    /// `(repo-relative path, text)`, and the ids of the mails already handled. Every problem
    /// (a file that does not parse, a record naming an invoice never issued) is reported.
    pub fn load(
        invoices: impl IntoIterator<Item = (String, String)>,
        payments: impl IntoIterator<Item = (String, String)>,
        mails: impl IntoIterator<Item = String>,
    ) -> Result<Ledger, Diagnostics> {
        let mut ledger = Ledger {
            mails: mails.into_iter().collect(),
            ..Ledger::default()
        };
        let mut diags = Vec::new();
        for (path, text) in invoices {
            match invoice::parse(&path, &text) {
                Ok(inv) => {
                    ledger.invoices.insert(inv.number.clone(), inv);
                }
                Err(e) => diags.extend(e.0.0),
            }
        }
        let mut records = Vec::new();
        for (path, text) in payments {
            match parse_payment(&path, &text) {
                Ok(r) => records.push(r),
                Err(e) => diags.extend(e.0),
            }
        }
        // Earliest first: of two payments of one invoice, the first settles it.
        records.sort_by(|a, b| (a.paid_at, &a.event).cmp(&(b.paid_at, &b.event)));
        let index: BTreeMap<(VpsId, NaiveDate), InvoiceNumber> = ledger
            .invoices
            .values()
            .filter_map(|i| {
                i.renews()
                    .map(|(v, from)| ((v.clone(), from), i.number.clone()))
            })
            .collect();
        for r in &records {
            let found = ledger.settle(r, |vps, from| index.get(&(vps.clone(), from)).cloned());
            match found {
                Err(d) => diags.push(d),
                Ok(None) if !r.applied => ledger.unapplied.push(r.clone()),
                Ok(_) => {}
            }
        }
        if diags.is_empty() {
            Ok(ledger)
        } else {
            Err(Diagnostics(diags).sorted())
        }
    }

    /// Marks the invoice a payment settles as paid, and returns it: the invoice it names, or
    /// for a renewal that names none, the VPS's renewal invoice of the expiry in
    /// `expires_before`. `Ok(None)`: it settles no invoice (an order, an unapplied payment). An
    /// invoice already paid stays paid by its first payment.
    pub fn record_payment(
        &mut self,
        r: &PaymentRecord,
    ) -> Result<Option<InvoiceNumber>, Diagnostic> {
        let find = |vps: &VpsId, from| self.renewal(vps, from).map(|i| i.number.clone());
        let found = match (&r.vps, r.expires_before) {
            (Some(vps), Some(from)) => find(vps, from),
            _ => None,
        };
        self.settle(r, |_, _| found.clone())
    }

    /// [`Ledger::record_payment`], with `renewal` finding the renewal invoice of a VPS for an
    /// expiry.
    fn settle(
        &mut self,
        r: &PaymentRecord,
        renewal: impl Fn(&VpsId, NaiveDate) -> Option<InvoiceNumber>,
    ) -> Result<Option<InvoiceNumber>, Diagnostic> {
        let number = match (&r.invoice, &r.vps, r.expires_before) {
            (Some(n), _, _) => {
                if !self.invoices.contains_key(n) {
                    return Err(r.diag(
                        "invoice",
                        format!("{n} is not an issued invoice (no billing/invoices/{n}.toml)"),
                    ));
                }
                n.clone()
            }
            (None, Some(vps), Some(from)) if r.kind == "renew" && r.applied => {
                match renewal(vps, from) {
                    Some(n) => n,
                    None => return Ok(None),
                }
            }
            _ => return Ok(None),
        };
        self.paid.entry(number.clone()).or_insert_with(|| Paid {
            event: r.event.clone(),
            at: r.paid_at,
            amount: r.amount,
        });
        Ok(Some(number))
    }

    /// Whether an invoice is paid.
    pub fn is_paid(&self, n: &InvoiceNumber) -> bool {
        self.paid.contains_key(n)
    }

    /// The renewal invoice of `vps` for its expiry `expires`, if one was issued.
    pub fn renewal(&self, vps: &VpsId, expires: NaiveDate) -> Option<&Invoice> {
        self.invoices
            .values()
            .find(|i| i.renews() == Some((vps, expires)))
    }

    /// Gaps and duplicates in the numbers issued under `rule` (for `gitvps validate`).
    pub fn check_numbers(&self, rule: &InvoiceRule) -> Vec<NumberingError> {
        numbering::check(rule, self.invoices.keys())
    }

    /// The invoices of `customer` (everyone's for `None`), the unpaid ones only with `unpaid`,
    /// oldest first: what the panel's list and `gitvps invoice list` show.
    pub fn summaries(&self, customer: Option<&CustomerId>, unpaid: bool) -> Vec<Summary> {
        let mut out: Vec<Summary> = self
            .invoices
            .values()
            .filter(|i| customer.is_none_or(|c| &i.customer == c))
            .map(|i| {
                let paid = self.paid.get(&i.number);
                Summary {
                    number: i.number.clone(),
                    customer: i.customer.clone(),
                    kind: i.kind.as_str(),
                    vps: i.vps().cloned(),
                    issued: i.issued,
                    due: i.due,
                    total: i.money(i.total),
                    currency: i.currency.to_string(),
                    paid: paid.is_some(),
                    paid_at: paid.map(|p| p.at),
                }
            })
            .filter(|s| !(unpaid && s.paid))
            .collect();
        out.sort_by(|a, b| (a.issued, &a.number).cmp(&(b.issued, &b.number)));
        out
    }
}

/// One invoice in a list.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Summary {
    /// Its number.
    pub number: InvoiceNumber,
    /// The customer billed.
    pub customer: CustomerId,
    /// `renewal` or `order`.
    pub kind: &'static str,
    /// The VPS it is for, if any.
    pub vps: Option<VpsId>,
    /// Day of issue.
    pub issued: NaiveDate,
    /// Day payment is due.
    pub due: NaiveDate,
    /// The total, with the currency's decimals.
    pub total: String,
    /// ISO 4217 code.
    pub currency: String,
    /// Whether a payment settled it.
    pub paid: bool,
    /// When, if paid.
    pub paid_at: Option<DateTime<Utc>>,
}
