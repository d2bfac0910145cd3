//! The billing report over a range of months: invoiced and paid per month, outstanding invoices,
//! suspended VPSes and when they are terminated, totals per location and per product, and the
//! commission each reseller earned.

use std::collections::BTreeMap;
use std::fmt::{self, Write};
use std::ops::RangeInclusive;
use std::str::FromStr;

use chrono::{Datelike, Days, NaiveDate};
use model::policy::InvoiceNumber;
use model::values::{Currency, Money, State, Suspension};
use model::{CustomerId, Inventory, ProductId, VpsId};
use serde::Serialize;

use crate::invoice::Invoice;
use crate::ledger::Ledger;

/// A calendar month.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Month {
    /// The year.
    pub year: i32,
    /// 1 to 12.
    pub month: u32,
}

impl Month {
    /// The month of a day.
    pub fn of(d: NaiveDate) -> Month {
        Month {
            year: d.year(),
            month: d.month(),
        }
    }
}

impl fmt::Display for Month {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}", self.year, self.month)
    }
}

impl FromStr for Month {
    type Err = String;
    /// `2026-12`.
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("`{}` is not a month like 2026-12", s.escape_debug());
        let (y, m) = s.split_once('-').ok_or_else(bad)?;
        let ok = y.len() == 4 && m.len() == 2;
        let year: i32 = y.parse().map_err(|_| bad())?;
        let month: u32 = m.parse().map_err(|_| bad())?;
        if !ok || !(1..=12).contains(&month) {
            return Err(bad());
        }
        Ok(Month { year, month })
    }
}

impl Serialize for Month {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// One month of the report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MonthTotals {
    /// The month.
    pub month: Month,
    /// Invoices issued in it.
    pub invoices: usize,
    /// Their totals.
    pub invoiced: Money,
    /// Their tax.
    pub tax: Money,
    /// Invoices paid in it.
    pub payments: usize,
    /// Their totals.
    pub paid: Money,
}

/// Invoice line amounts by some key (location, product).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Totals {
    /// Line amounts of the invoices issued in the range.
    pub invoiced: Money,
    /// Line amounts of the invoices paid in the range.
    pub paid: Money,
    /// Line amounts of the invoices of the range still unpaid.
    pub outstanding: Money,
}

/// An unpaid invoice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Outstanding {
    /// Its number.
    pub number: InvoiceNumber,
    /// Who owes it.
    pub customer: CustomerId,
    /// The VPS, if any.
    pub vps: Option<VpsId>,
    /// When it was issued.
    pub issued: NaiveDate,
    /// When it was due.
    pub due: NaiveDate,
    /// How much.
    pub total: Money,
}

/// A suspended VPS.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SuspendedVps {
    /// The VPS.
    pub vps: VpsId,
    /// Its owner.
    pub customer: CustomerId,
    /// Its expiry.
    pub expires: NaiveDate,
    /// Who suspended it (`None`: an operator, unrecorded).
    pub suspension: Option<Suspension>,
    /// Since when, if recorded.
    pub suspended: Option<NaiveDate>,
    /// When billing terminates it (an operator's suspension with a future expiry: not before
    /// that expiry's grace and termination days).
    pub terminate_on: NaiveDate,
    /// Whether that day has come.
    pub due: bool,
}

/// A commission earned by a reseller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Commission {
    /// The reseller.
    pub reseller: CustomerId,
    /// The customer it brought.
    pub customer: CustomerId,
    /// The invoice paid.
    pub invoice: InvoiceNumber,
    /// The commission: each line's product `commission` × quantity.
    pub amount: Money,
}

/// The report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    /// First month.
    pub from: Month,
    /// Last month.
    pub to: Month,
    /// The day it was made (for what is overdue or due).
    pub today: NaiveDate,
    /// The catalog's currency: every sum is in it.
    pub currency: Currency,
    /// Each month of the range.
    pub months: Vec<MonthTotals>,
    /// Unpaid invoices issued up to the end of the range, oldest first.
    pub outstanding: Vec<Outstanding>,
    /// Suspended VPSes, soonest termination first.
    pub suspended: Vec<SuspendedVps>,
    /// Totals by the location of the VPS's node (`-` for lines without one).
    pub by_location: BTreeMap<String, Totals>,
    /// Totals by product.
    pub by_product: BTreeMap<ProductId, Totals>,
    /// Commissions of invoices paid in the range.
    pub commissions: Vec<Commission>,
    /// Their sum per reseller.
    pub commission_totals: BTreeMap<CustomerId, Money>,
    /// Invoices in another currency than the catalog's, left out of every sum.
    pub other_currency: Vec<InvoiceNumber>,
    /// Payments received in the range that were not applied (refused, or nothing to apply
    /// them to): each needs an operator (a refund, or a change by hand).
    pub unapplied: Vec<Unapplied>,
}

/// A payment received but not applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Unapplied {
    /// Its record, `billing/payments/<event>.toml`.
    pub file: String,
    /// The customer, if known.
    pub customer: Option<CustomerId>,
    /// How much.
    pub amount: Money,
    /// In what currency.
    pub currency: String,
    /// When.
    pub paid_at: chrono::DateTime<chrono::Utc>,
    /// Whether it was refused (it does not match what was due).
    pub refused: bool,
    /// Why, as the hooks wrote it.
    pub note: Option<String>,
}

/// The report of `months` (inclusive) as of `today`; policy days from `inv.settings`.
/// Payments count in the month of their UTC date.
pub fn report(
    inv: &Inventory,
    ledger: &Ledger,
    months: RangeInclusive<Month>,
    today: NaiveDate,
) -> Report {
    let (from, to) = (*months.start(), *months.end());
    let mut r = Report {
        from,
        to,
        today,
        currency: inv.currency.clone(),
        months: Vec::new(),
        outstanding: Vec::new(),
        suspended: suspended(inv, today),
        by_location: BTreeMap::new(),
        by_product: BTreeMap::new(),
        commissions: Vec::new(),
        commission_totals: BTreeMap::new(),
        other_currency: Vec::new(),
        unapplied: ledger
            .unapplied
            .iter()
            .filter(|p| {
                let m = Month::of(p.paid_at.date_naive());
                from <= m && m <= to
            })
            .map(|p| Unapplied {
                file: p.file.clone(),
                customer: p.customer.clone(),
                amount: p.amount,
                currency: p.currency.clone(),
                paid_at: p.paid_at,
                refused: p.refused,
                note: p.note.clone(),
            })
            .collect(),
    };
    let mut per_month: BTreeMap<Month, MonthTotals> = BTreeMap::new();
    let mut m = from;
    while m <= to {
        per_month.insert(
            m,
            MonthTotals {
                month: m,
                invoices: 0,
                invoiced: Money::ZERO,
                tax: Money::ZERO,
                payments: 0,
                paid: Money::ZERO,
            },
        );
        m = next(m);
    }
    for i in ledger.invoices.values() {
        if i.currency != inv.currency {
            r.other_currency.push(i.number.clone());
            continue;
        }
        let issued = Month::of(i.issued);
        let paid = ledger
            .paid
            .get(&i.number)
            .map(|p| Month::of(p.at.date_naive()));
        if let Some(t) = per_month.get_mut(&issued) {
            t.invoices += 1;
            t.invoiced = t.invoiced + i.total;
            t.tax = t.tax + i.tax.as_ref().map_or(Money::ZERO, |t| t.amount);
        }
        if let Some(t) = paid.and_then(|p| per_month.get_mut(&p)) {
            t.payments += 1;
            t.paid = t.paid + i.total;
        }
        let in_range = |m: Month| from <= m && m <= to;
        if issued <= to && paid.is_none() {
            r.outstanding.push(Outstanding {
                number: i.number.clone(),
                customer: i.customer.clone(),
                vps: vps_of(i).cloned(),
                issued: i.issued,
                due: i.due,
                total: i.total,
            });
        }
        add_lines(
            &mut r,
            inv,
            i,
            in_range(issued),
            paid.is_some_and(in_range),
            paid.is_none(),
        );
        if paid.is_some_and(in_range) {
            commission(&mut r, inv, i);
        }
    }
    r.months = per_month.into_values().collect();
    r.outstanding
        .sort_by(|a, b| (a.due, &a.number).cmp(&(b.due, &b.number)));
    r
}

fn next(m: Month) -> Month {
    if m.month >= 12 {
        Month {
            year: m.year + 1,
            month: 1,
        }
    } else {
        Month {
            year: m.year,
            month: m.month + 1,
        }
    }
}

fn vps_of(i: &Invoice) -> Option<&VpsId> {
    i.kind.vps()
}

fn add_lines(r: &mut Report, inv: &Inventory, i: &Invoice, issued: bool, paid: bool, unpaid: bool) {
    if !(issued || paid) {
        return;
    }
    for l in &i.lines {
        let location = l
            .vps
            .as_ref()
            .and_then(|v| inv.vps.get(v))
            .and_then(|v| inv.nodes.get(&v.node))
            .map_or_else(|| "-".to_owned(), |n| n.location.clone());
        for t in [
            r.by_location.entry(location).or_default(),
            r.by_product.entry(l.product.clone()).or_default(),
        ] {
            if issued {
                t.invoiced = t.invoiced + l.amount;
                if unpaid {
                    t.outstanding = t.outstanding + l.amount;
                }
            }
            if paid {
                t.paid = t.paid + l.amount;
            }
        }
    }
}

fn commission(r: &mut Report, inv: &Inventory, i: &Invoice) {
    let Some(reseller) = inv
        .customers
        .get(&i.customer)
        .and_then(|c| c.reseller.clone())
    else {
        return;
    };
    let amount: Money = i
        .lines
        .iter()
        .filter_map(|l| {
            inv.products
                .get(&l.product)
                .map(|p| p.commission.times(l.quantity))
        })
        .sum();
    if amount == Money::ZERO {
        return;
    }
    let total = r
        .commission_totals
        .entry(reseller.clone())
        .or_insert(Money::ZERO);
    *total = *total + amount;
    r.commissions.push(Commission {
        reseller,
        customer: i.customer.clone(),
        invoice: i.number.clone(),
        amount,
    });
}

fn suspended(inv: &Inventory, today: NaiveDate) -> Vec<SuspendedVps> {
    let b = &inv.settings.billing;
    let days = |d: NaiveDate, n: u32| {
        d.checked_add_days(Days::new(n.into()))
            .unwrap_or(NaiveDate::MAX)
    };
    let mut out: Vec<SuspendedVps> = inv
        .vps
        .values()
        .filter(|v| v.state == State::Suspended)
        .map(|v| {
            let suspend_on = days(v.expires, b.grace_days);
            let terminate_on = days(
                suspend_on.max(v.suspended.unwrap_or(suspend_on)),
                b.terminate_days,
            );
            SuspendedVps {
                vps: v.id.clone(),
                customer: v.customer.clone(),
                expires: v.expires,
                suspension: v.suspension,
                suspended: v.suspended,
                terminate_on,
                due: today >= terminate_on,
            }
        })
        .collect();
    out.sort_by(|a, b| (a.terminate_on, &a.vps).cmp(&(b.terminate_on, &b.vps)));
    out
}

impl Report {
    /// The report as text.
    pub fn render(&self) -> String {
        let c = &self.currency;
        let amt = |m: Money| m.with_decimals(c.minor_units());
        let mut s = String::new();
        let _ = writeln!(
            s,
            "billing report {} to {} ({c}), as of {}",
            self.from, self.to, self.today
        );
        let _ = writeln!(
            s,
            "\nmonth     invoices  invoiced       tax  payments      paid"
        );
        for m in &self.months {
            let _ = writeln!(
                s,
                "{}  {:>8}  {:>8}  {:>8}  {:>8}  {:>8}",
                m.month,
                m.invoices,
                amt(m.invoiced),
                amt(m.tax),
                m.payments,
                amt(m.paid)
            );
        }
        let _ = writeln!(s, "\noutstanding: {}", self.outstanding.len());
        for o in &self.outstanding {
            let vps = o.vps.as_ref().map(|v| format!(" {v}")).unwrap_or_default();
            let _ = writeln!(
                s,
                "  {} {}{vps} {} {c}, due {}",
                o.number,
                o.customer,
                amt(o.total),
                o.due
            );
        }
        let _ = writeln!(s, "\nsuspended: {}", self.suspended.len());
        for v in &self.suspended {
            let due = if v.due { " (due)" } else { "" };
            let _ = writeln!(
                s,
                "  {} {} expired {}, terminated on {}{due}",
                v.vps, v.customer, v.expires, v.terminate_on
            );
        }
        for (title, rows) in [
            (
                "by location",
                self.by_location
                    .iter()
                    .map(|(k, t)| (k.clone(), t))
                    .collect::<Vec<_>>(),
            ),
            (
                "by product",
                self.by_product
                    .iter()
                    .map(|(k, t)| (k.to_string(), t))
                    .collect(),
            ),
        ] {
            let _ = writeln!(s, "\n{title}: invoiced / paid / outstanding");
            for (k, t) in rows {
                let _ = writeln!(
                    s,
                    "  {k}: {} / {} / {}",
                    amt(t.invoiced),
                    amt(t.paid),
                    amt(t.outstanding)
                );
            }
        }
        let _ = writeln!(s, "\ncommissions:");
        for (reseller, total) in &self.commission_totals {
            let _ = writeln!(s, "  {reseller}: {} {c}", amt(*total));
        }
        if !self.other_currency.is_empty() {
            let list: Vec<&str> = self
                .other_currency
                .iter()
                .map(InvoiceNumber::as_str)
                .collect();
            let _ = writeln!(s, "\nleft out (another currency): {}", list.join(", "));
        }
        if !self.unapplied.is_empty() {
            let _ = writeln!(
                s,
                "\npayments not applied (refund or act by hand): {}",
                self.unapplied.len()
            );
            for p in &self.unapplied {
                let what = if p.refused { "refused" } else { "not applied" };
                let _ = writeln!(
                    s,
                    "  {} {} {} {what}: {}",
                    p.file,
                    p.amount,
                    p.currency,
                    p.note.as_deref().unwrap_or("-")
                );
            }
        }
        s
    }
}
