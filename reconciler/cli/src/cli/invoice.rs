//! `gitvps invoice show|list`: the operator reads the issued invoices of `billing/invoices/`
//! with their paid status, as text, JSON or the HTML document the customer sees.

use std::path::Path;

use anyhow::Context;
use billing::InvoiceNumber;
use billing::html::View;
use clap::{Args, Subcommand};
use model::CustomerId;
use model::values::Language;

use super::Global;
use crate::table::Table;

/// `gitvps invoice ...`
#[derive(Debug, Subcommand)]
pub enum InvoiceCommand {
    /// Show one invoice: as text, as JSON (--json), or as the printable HTML document the
    /// customer sees in the panel (--html; templates/invoice/ overrides apply).
    Show(ShowArgs),
    /// List the invoices issued, oldest first, with their total and whether they are paid.
    List(ListArgs),
}

/// Flags of `gitvps invoice show`.
#[derive(Debug, Args)]
pub struct ShowArgs {
    /// The invoice number (INV-2026-000001).
    pub number: InvoiceNumber,
    /// Print the HTML document (self-contained; print it from a browser, A4 or Letter).
    #[arg(long, conflicts_with = "json")]
    pub html: bool,
    /// Print JSON: the invoice as its file has it, with `paid` and `paid_at`.
    #[arg(long)]
    pub json: bool,
    /// Language of the HTML document [default: the customer's].
    #[arg(long, value_name = "en|zh", value_parser = parse_lang)]
    pub lang: Option<Language>,
}

/// Flags of `gitvps invoice list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only this customer's invoices.
    #[arg(long, value_name = "ID")]
    pub customer: Option<CustomerId>,
    /// Only the invoices no payment settled yet.
    #[arg(long)]
    pub unpaid: bool,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

fn parse_lang(s: &str) -> Result<Language, String> {
    model::values::parse_keyword(s)
}

/// Runs `gitvps invoice ...`.
pub fn run(g: &Global, c: InvoiceCommand) -> anyhow::Result<i32> {
    let root = Path::new(&g.repo);
    let ledger = jobs::billing::read_ledger(root)?;
    match c {
        InvoiceCommand::List(a) => {
            let list = ledger.summaries(a.customer.as_ref(), a.unpaid);
            if a.json {
                super::print_json(&list)?;
                return Ok(0);
            }
            let mut t = Table::new(&[
                "NUMBER", "CUSTOMER", "VPS", "ISSUED", "DUE", ">TOTAL", "CURRENCY", "STATUS",
            ]);
            for s in &list {
                let status = match s.paid_at {
                    Some(at) => format!("paid {}", at.date_naive()),
                    None => "unpaid".to_owned(),
                };
                t.row(vec![
                    s.number.to_string(),
                    s.customer.to_string(),
                    s.vps.as_ref().map(ToString::to_string).unwrap_or_default(),
                    s.issued.to_string(),
                    s.due.to_string(),
                    s.total.clone(),
                    s.currency.clone(),
                    status,
                ]);
            }
            if t.is_empty() {
                super::note("no invoices")?;
            } else {
                super::emit(&t.render())?;
            }
            Ok(0)
        }
        InvoiceCommand::Show(a) => {
            let inv = ledger.invoices.get(&a.number).with_context(|| {
                format!(
                    "{}: no such invoice (no {})",
                    a.number,
                    billing::invoice_path(&a.number)
                )
            })?;
            let paid = ledger.paid.get(&a.number);
            if a.json {
                let mut v = serde_json::to_value(inv)?;
                v["paid"] = paid.is_some().into();
                v["paid_at"] = serde_json::to_value(paid.map(|p| p.at))?;
                super::print_json(&v)?;
                return Ok(0);
            }
            let lang = match a.lang {
                Some(l) => l,
                None => customer_language(root, &inv.customer),
            };
            if a.html {
                let templates = jobs::billing::invoice_templates(root)?;
                super::emit(&templates.render(inv, paid, lang)?)?;
            } else {
                super::emit(&text(&View::of(inv, paid, lang)))?;
            }
            Ok(0)
        }
    }
}

/// The customer's language from the inventory; English when it cannot be read.
fn customer_language(root: &Path, customer: &CustomerId) -> Language {
    match model::Inventory::load(root) {
        Ok(inv) => inv
            .customers
            .get(customer)
            .map_or(Language::En, |c| c.language),
        Err(e) => {
            tracing::warn!(error = %model::diag::error_chain(&e), "inventory: the document is in English");
            Language::En
        }
    }
}

/// The invoice as plain text for the terminal.
fn text(v: &View) -> String {
    let mut s = String::new();
    let status = match v.paid_on {
        Some(d) => format!("paid {d}"),
        None => "unpaid".to_owned(),
    };
    s.push_str(&format!("invoice {} ({}, {status})\n", v.number, v.kind));
    s.push_str(&format!("issued  {}  due {}\n", v.issued, v.due));
    if let Some(p) = &v.period {
        s.push_str(&format!("period  {} to {}\n", p.from, p.to));
    }
    for (label, p) in [("seller", &v.seller), ("buyer ", &v.buyer)] {
        let mut parts = vec![p.name.clone()];
        parts.extend(p.company.clone());
        parts.extend(p.address.iter().cloned());
        parts.extend(p.country.clone());
        parts.extend(p.tax_id.as_ref().map(|t| format!("tax id {t}")));
        parts.extend(p.email.clone());
        s.push_str(&format!("{label}  {}\n", parts.join(", ")));
    }
    s.push_str(&format!("customer {}\n\n", v.customer));
    let mut t = Table::new(&["DESCRIPTION", "VPS", "PERIOD", ">QTY", ">UNIT", ">AMOUNT"]);
    for l in &v.lines {
        let period = match (l.from, l.to) {
            (Some(a), Some(b)) => format!("{a} to {b}"),
            _ => String::new(),
        };
        t.row(vec![
            l.description.clone(),
            l.vps.clone().unwrap_or_default(),
            period,
            l.quantity.to_string(),
            l.unit.clone(),
            l.amount.clone(),
        ]);
    }
    s.push_str(&t.render());
    let mut totals = Table::new(&["", ">"]);
    totals.row(vec![
        "subtotal".into(),
        format!("{} {}", v.subtotal, v.currency),
    ]);
    for x in &v.taxes {
        let incl = if x.inclusive { ", included" } else { "" };
        totals.row(vec![
            format!("tax {} % ({}){incl}", x.rate, x.country),
            format!("{} {}", x.amount, v.currency),
        ]);
    }
    totals.row(vec!["total".into(), format!("{} {}", v.total, v.currency)]);
    // The header row of the totals is blank: leave it out.
    let rendered = totals.render();
    s.push('\n');
    s.push_str(rendered.split_once('\n').map_or("", |(_, rest)| rest));
    s
}
