//! Invoices: what one says (seller, buyer, lines, tax, totals), how its tax is computed, and
//! its file `billing/invoices/<number>.toml`, rendered byte-stably and parsed back with lines.
//!
//! An issued invoice is never edited. Whether it is paid is not in its file: a payment record
//! that names it says so (see [`crate::ledger`]).
//!
//! **Tax.** The buyer's `country` picks the rate in `billing.tax`; a country not listed pays
//! none. The tax is computed once, on the total of the lines, and rounded half-up (a half minor
//! unit goes up) to the currency's minor unit: cents for USD, whole yen for JPY. Exclusive
//! (`tax_inclusive = false`): tax = subtotal × rate / 100, total = subtotal + tax. Inclusive:
//! the lines are gross, total = their sum, tax = total × rate / (100 + rate), subtotal = total
//! − tax.

use std::fmt::Write;

use chrono::NaiveDate;
use model::policy::{InvoiceNumber, TaxRate};
use model::values::{Country, Currency, Email, Money};
use model::{Customer, CustomerId, Product, ProductId, Settings, Vps, VpsId};
use rust_decimal::{Decimal, RoundingStrategy};
use serde::Serialize;

use crate::read::{Src, Table, quote};

/// Folder of the invoice files.
pub const INVOICES_DIR: &str = "billing/invoices";

/// The path of an invoice's file.
pub fn invoice_path(n: &InvoiceNumber) -> String {
    format!("{INVOICES_DIR}/{n}.toml")
}

/// An issued invoice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Invoice {
    /// Its number (names its file).
    pub number: InvoiceNumber,
    /// The customer billed.
    pub customer: CustomerId,
    /// Day of issue.
    pub issued: NaiveDate,
    /// Day payment is due.
    pub due: NaiveDate,
    /// The seller, as it was on the day of issue.
    pub seller: SellerSnapshot,
    /// The buyer, as it was on the day of issue.
    pub buyer: BuyerSnapshot,
    /// Currency of every amount.
    pub currency: Currency,
    /// What is billed.
    pub lines: Vec<Line>,
    /// Total before tax.
    pub subtotal: Money,
    /// The tax, when the buyer's country has a rate.
    pub tax: Option<TaxLine>,
    /// Total to pay.
    pub total: Money,
    /// What the invoice is for.
    pub kind: InvoiceKind,
}

/// The seller on an invoice (`[seller]` of `gitvps.toml` on the day of issue).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SellerSnapshot {
    /// Legal name.
    pub name: String,
    /// Postal address lines.
    pub address: Vec<String>,
    /// Country.
    pub country: Option<Country>,
    /// Tax id.
    pub tax_id: Option<String>,
    /// Contact address.
    pub email: Option<Email>,
}

/// The buyer on an invoice (the customer file on the day of issue).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BuyerSnapshot {
    /// Full name.
    pub name: String,
    /// Company.
    pub company: Option<String>,
    /// Postal address lines.
    pub address: Vec<String>,
    /// Country.
    pub country: Option<Country>,
    /// Tax id.
    pub tax_id: Option<String>,
    /// E-mail.
    pub email: Option<Email>,
}

/// One line of an invoice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Line {
    /// What it is, in words.
    pub description: String,
    /// The product sold.
    pub product: ProductId,
    /// The VPS it is for, if any.
    pub vps: Option<VpsId>,
    /// The service period (first day, day it ends), if any.
    pub period: Option<(NaiveDate, NaiveDate)>,
    /// How many.
    pub quantity: u32,
    /// Price of one.
    pub unit: Money,
    /// `quantity × unit`.
    pub amount: Money,
}

/// The tax of an invoice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TaxLine {
    /// The buyer's country, whose rate applies.
    pub country: Country,
    /// The rate in percent.
    pub rate: TaxRate,
    /// The tax.
    pub amount: Money,
    /// Whether the prices included it.
    pub inclusive: bool,
}

/// What an invoice is for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum InvoiceKind {
    /// Another period of a VPS.
    Renewal {
        /// The VPS.
        vps: VpsId,
        /// The expiry it renews: one renewal invoice per VPS and expiry.
        expires: NaiveDate,
        /// Its expiry once paid on the day of issue (a later payment of a lapsed VPS counts from
        /// the payment day).
        new_expiry: NaiveDate,
    },
    /// A new VPS.
    Order {
        /// The VPS the order created, once placed.
        vps: Option<VpsId>,
    },
    /// Extra traffic for a VPS (a `traffic_block` product), in one traffic period.
    TrafficBlock {
        /// The VPS.
        vps: VpsId,
        /// The first day of the traffic period the block counts in.
        period: NaiveDate,
    },
}

impl InvoiceKind {
    /// `renewal`, `order` or `traffic_block`, as the file's `kind.type` spells it.
    pub fn as_str(&self) -> &'static str {
        match self {
            InvoiceKind::Renewal { .. } => "renewal",
            InvoiceKind::Order { .. } => "order",
            InvoiceKind::TrafficBlock { .. } => "traffic_block",
        }
    }

    /// The VPS it names, if any (an order names it once placed).
    pub fn vps(&self) -> Option<&VpsId> {
        match self {
            InvoiceKind::Renewal { vps, .. } | InvoiceKind::TrafficBlock { vps, .. } => Some(vps),
            InvoiceKind::Order { vps } => vps.as_ref(),
        }
    }
}

impl Invoice {
    /// The VPS and the expiry this invoice renews, for a renewal.
    pub fn renews(&self) -> Option<(&VpsId, NaiveDate)> {
        match &self.kind {
            InvoiceKind::Renewal { vps, expires, .. } => Some((vps, *expires)),
            InvoiceKind::Order { .. } | InvoiceKind::TrafficBlock { .. } => None,
        }
    }

    /// The VPS the invoice is for: the renewed or ordered one, else the first line's.
    pub fn vps(&self) -> Option<&VpsId> {
        self.kind
            .vps()
            .or_else(|| self.lines.iter().find_map(|l| l.vps.as_ref()))
    }

    /// An amount with the currency's decimals (`"59.00"`, `"6490"` for yen).
    pub fn money(&self, m: Money) -> String {
        m.with_decimals(self.currency.minor_units())
    }
}

/// The seller of `settings`, for a new invoice.
pub fn seller(settings: &Settings) -> SellerSnapshot {
    let s = &settings.seller;
    SellerSnapshot {
        name: s.name.clone(),
        address: s.address.clone(),
        country: s.country.clone(),
        tax_id: s.tax_id.clone(),
        email: s.email.clone(),
    }
}

/// The buyer `c`, for a new invoice.
pub fn buyer(c: &Customer) -> BuyerSnapshot {
    BuyerSnapshot {
        name: c.name.clone(),
        company: c.company.clone(),
        address: c.address.clone(),
        country: c.country.clone(),
        tax_id: c.tax_id.clone(),
        email: c.email.clone(),
    }
}

/// Why an invoice cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvoiceError {
    /// An invoice needs a line.
    #[error("an invoice needs at least one line")]
    NoLines,
    /// An amount does not fit the currency (more decimals than its minor unit).
    #[error("{amount} has more decimals than {currency} amounts have")]
    Decimals {
        /// The amount.
        amount: Money,
        /// The currency.
        currency: Currency,
    },
}

/// The totals of an invoice: subtotal, tax and total.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Totals {
    /// Before tax.
    pub subtotal: Money,
    /// The tax, if a rate applies.
    pub tax: Option<TaxLine>,
    /// To pay.
    pub total: Money,
}

/// Rounds half-up (away from zero: amounts are never negative) to `decimals` places.
fn round(d: Decimal, decimals: u32) -> Decimal {
    d.round_dp_with_strategy(decimals.min(2), RoundingStrategy::MidpointAwayFromZero)
}

/// The totals of lines summing to `sum`, with `rate` (the buyer's country and its rate) if one
/// applies. See the module documentation for the rounding.
pub fn totals(
    sum: Money,
    rate: Option<(&Country, TaxRate)>,
    inclusive: bool,
    currency: &Currency,
) -> Totals {
    let Some((country, rate)) = rate else {
        return Totals {
            subtotal: sum,
            tax: None,
            total: sum,
        };
    };
    let r = rate.percent();
    let hundred = Decimal::ONE_HUNDRED;
    let tax = if inclusive {
        round(sum.amount() * r / (hundred + r), currency.minor_units())
    } else {
        round(sum.amount() * r / hundred, currency.minor_units())
    };
    // Rounded to at most two decimals and never negative: always an amount.
    let tax = Money::from_decimal(tax).unwrap_or(Money::ZERO);
    let (subtotal, total) = if inclusive {
        (sum.checked_sub(tax).unwrap_or(Money::ZERO), sum)
    } else {
        (sum, sum + tax)
    };
    Totals {
        subtotal,
        tax: Some(TaxLine {
            country: country.clone(),
            rate,
            amount: tax,
            inclusive,
        }),
        total,
    }
}

/// The totals of `lines` for a buyer in `country`: the tax of that country (`billing.tax`,
/// `billing.tax_inclusive`), exactly as [`issue`] computes them. What a payment is asked for
/// before its invoice is issued.
pub fn charge(
    lines: &[Line],
    country: Option<&Country>,
    settings: &Settings,
    currency: &Currency,
) -> Totals {
    let sum: Money = lines.iter().map(|l| l.amount).sum();
    let rate = country.and_then(|c| settings.billing.tax.get(c).map(|r| (c, *r)));
    totals(sum, rate, settings.billing.tax_inclusive, currency)
}

/// The line of `product` for `vps` over the period `from` to `to` (a renewal, or the first period
/// of an order), as both the billing run and the hooks write it.
pub fn period_line(product: &Product, vps: &Vps, from: NaiveDate, to: NaiveDate) -> Line {
    Line {
        description: format!(
            "{}: {} ({}), {from} to {to}",
            product.name, vps.id, vps.hostname
        ),
        product: product.id.clone(),
        vps: Some(vps.id.clone()),
        period: Some((from, to)),
        quantity: 1,
        unit: product.price,
        amount: product.price,
    }
}

/// What a new invoice holds before its totals are computed.
#[derive(Debug, Clone)]
pub struct Draft {
    /// Its number.
    pub number: InvoiceNumber,
    /// Day of issue.
    pub issued: NaiveDate,
    /// Day payment is due.
    pub due: NaiveDate,
    /// The lines.
    pub lines: Vec<Line>,
    /// What it is for.
    pub kind: InvoiceKind,
}

/// Issues `draft` to `customer`: snapshots of seller and buyer, the tax of the buyer's country
/// (`billing.tax`, `billing.tax_inclusive`) and the totals.
pub fn issue(
    draft: Draft,
    customer: &Customer,
    settings: &Settings,
    currency: &Currency,
) -> Result<Invoice, InvoiceError> {
    if draft.lines.is_empty() {
        return Err(InvoiceError::NoLines);
    }
    for l in &draft.lines {
        for amount in [l.unit, l.amount] {
            if amount.amount().normalize().scale() > currency.minor_units() {
                return Err(InvoiceError::Decimals {
                    amount,
                    currency: currency.clone(),
                });
            }
        }
    }
    let t = charge(&draft.lines, customer.country.as_ref(), settings, currency);
    Ok(Invoice {
        number: draft.number,
        customer: customer.id.clone(),
        issued: draft.issued,
        due: draft.due,
        seller: seller(settings),
        buyer: buyer(customer),
        currency: currency.clone(),
        lines: draft.lines,
        subtotal: t.subtotal,
        tax: t.tax,
        total: t.total,
        kind: draft.kind,
    })
}

/// An amount as the invoice file writes it: a string with the currency's decimals.
fn money(m: Money, c: &Currency) -> String {
    quote(&m.with_decimals(c.minor_units()))
}

fn lines_of(list: &[String]) -> String {
    let items: Vec<String> = list.iter().map(|l| quote(l)).collect();
    format!("[{}]", items.join(", "))
}

/// The text of the invoice's file. The same invoice always gives the same bytes.
pub fn render(inv: &Invoice) -> String {
    let c = &inv.currency;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "# Invoice {}, issued by gitvps billing. Never edit an issued invoice: a payment record\n# in billing/payments/ that names it makes it paid.",
        inv.number
    );
    let _ = writeln!(s, "number = {}", quote(inv.number.as_str()));
    let _ = writeln!(s, "customer = {}", quote(inv.customer.as_str()));
    let _ = writeln!(s, "issued = {}", inv.issued);
    let _ = writeln!(s, "due = {}", inv.due);
    let _ = writeln!(s, "currency = {}", quote(c.as_str()));
    let _ = writeln!(s, "subtotal = {}", money(inv.subtotal, c));
    let _ = writeln!(s, "total = {}", money(inv.total, c));
    s.push_str("\n[kind]\n");
    match &inv.kind {
        InvoiceKind::Renewal {
            vps,
            expires,
            new_expiry,
        } => {
            let _ = writeln!(s, "type = \"renewal\"\nvps = {}", quote(vps.as_str()));
            let _ = writeln!(s, "expires = {expires}\nnew_expiry = {new_expiry}");
        }
        InvoiceKind::Order { vps } => {
            s.push_str("type = \"order\"\n");
            if let Some(v) = vps {
                let _ = writeln!(s, "vps = {}", quote(v.as_str()));
            }
        }
        InvoiceKind::TrafficBlock { vps, period } => {
            let _ = writeln!(s, "type = \"traffic_block\"\nvps = {}", quote(vps.as_str()));
            let _ = writeln!(s, "period = {period}");
        }
    }
    let se = &inv.seller;
    let _ = writeln!(s, "\n[seller]\nname = {}", quote(&se.name));
    let _ = writeln!(s, "address = {}", lines_of(&se.address));
    opt_line(&mut s, "country", se.country.as_ref().map(Country::as_str));
    opt_line(&mut s, "tax_id", se.tax_id.as_deref());
    opt_line(&mut s, "email", se.email.as_ref().map(Email::as_str));
    let b = &inv.buyer;
    let _ = writeln!(s, "\n[buyer]\nname = {}", quote(&b.name));
    opt_line(&mut s, "company", b.company.as_deref());
    let _ = writeln!(s, "address = {}", lines_of(&b.address));
    opt_line(&mut s, "country", b.country.as_ref().map(Country::as_str));
    opt_line(&mut s, "tax_id", b.tax_id.as_deref());
    opt_line(&mut s, "email", b.email.as_ref().map(Email::as_str));
    if let Some(t) = &inv.tax {
        let _ = writeln!(s, "\n[tax]\ncountry = {}", quote(t.country.as_str()));
        let _ = writeln!(s, "rate = {}", quote(&t.rate.to_string()));
        let _ = writeln!(s, "amount = {}", money(t.amount, c));
        let _ = writeln!(s, "inclusive = {}", t.inclusive);
    }
    for l in &inv.lines {
        let _ = writeln!(s, "\n[[line]]\ndescription = {}", quote(&l.description));
        let _ = writeln!(s, "product = {}", quote(l.product.as_str()));
        opt_line(&mut s, "vps", l.vps.as_ref().map(VpsId::as_str));
        if let Some((from, to)) = l.period {
            let _ = writeln!(s, "from = {from}\nto = {to}");
        }
        let _ = writeln!(s, "quantity = {}", l.quantity);
        let _ = writeln!(s, "unit = {}", money(l.unit, c));
        let _ = writeln!(s, "amount = {}", money(l.amount, c));
    }
    s
}

fn opt_line(s: &mut String, key: &str, v: Option<&str>) {
    if let Some(v) = v {
        let _ = writeln!(s, "{key} = {}", quote(v));
    }
}

/// Why an invoice file could not be read: every problem, located.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ParseError(pub model::Diagnostics);

const TOP_KEYS: &[&str] = &[
    "number", "customer", "issued", "due", "currency", "subtotal", "total", "kind", "seller",
    "buyer", "tax", "line",
];
const LINE_KEYS: &[&str] = &[
    "description",
    "product",
    "vps",
    "from",
    "to",
    "quantity",
    "unit",
    "amount",
];

/// Reads an invoice from the text of its file at `path` (repo-relative, for the errors). The
/// number must match the file name, and the amounts must add up.
pub fn parse(path: &str, text: &str) -> Result<Invoice, ParseError> {
    let mut src = Src::new(path, text);
    let doc = src
        .parse()
        .map_err(|d| ParseError(model::Diagnostics(vec![d])))?;
    let top = Table {
        t: doc.as_table(),
        prefix: String::new(),
        span: None,
    };
    let number = top.req::<InvoiceNumber>(&mut src, "number");
    let customer = top.req(&mut src, "customer");
    let issued = top.req(&mut src, "issued");
    let due = top.req(&mut src, "due");
    let currency = top.req::<Currency>(&mut src, "currency");
    let subtotal = top.req(&mut src, "subtotal");
    let total = top.req(&mut src, "total");
    let kind = parse_kind(&top, &mut src);
    let seller = parse_seller(&top, &mut src);
    let buyer = parse_buyer(&top, &mut src);
    let tax = top.sub(&mut src, "tax").and_then(|t| {
        let tax = TaxLine {
            country: t.req(&mut src, "country")?,
            rate: t.req(&mut src, "rate")?,
            amount: t.req(&mut src, "amount")?,
            inclusive: t.req(&mut src, "inclusive")?,
        };
        t.finish(&mut src, &["country", "rate", "amount", "inclusive"]);
        Some(tax)
    });
    let line_tables = top.tables(&mut src, "line");
    if line_tables.is_empty() {
        src.error(None, "line", "an invoice needs at least one [[line]]");
    }
    let lines: Vec<Option<Line>> = line_tables
        .iter()
        .map(|t| parse_line(t, &mut src))
        .collect();
    top.finish(&mut src, TOP_KEYS);
    let stem = path
        .rsplit('/')
        .next()
        .and_then(|f| f.strip_suffix(".toml"));
    if let Some(n) = &number
        && stem.is_some_and(|s| s != n.as_str())
    {
        let span = doc.get("number").and_then(toml_edit::Item::span);
        src.error(span, "number", format!("{n} is not the file's name"));
    }
    let built = (|| {
        Some(Invoice {
            number: number?,
            customer: customer?,
            issued: issued?,
            due: due?,
            seller: seller?,
            buyer: buyer?,
            currency: currency?,
            lines: lines.into_iter().collect::<Option<Vec<Line>>>()?,
            subtotal: subtotal?,
            tax,
            total: total?,
            kind: kind?,
        })
    })();
    if let Some(inv) = &built {
        check_sums(inv, &doc, &mut src);
    }
    match built {
        Some(inv) if src.diags.is_empty() => Ok(inv),
        _ => Err(ParseError(model::Diagnostics(src.diags).sorted())),
    }
}

fn parse_kind(top: &Table<'_>, src: &mut Src<'_>) -> Option<InvoiceKind> {
    let Some(k) = top.sub(src, "kind") else {
        src.error(None, "kind", "missing required table [kind]");
        return None;
    };
    let ty = k.req::<String>(src, "type");
    match ty.as_deref() {
        Some("renewal") => {
            let vps = k.req(src, "vps");
            let expires = k.req(src, "expires");
            let new_expiry = k.req(src, "new_expiry");
            k.finish(src, &["type", "vps", "expires", "new_expiry"]);
            Some(InvoiceKind::Renewal {
                vps: vps?,
                expires: expires?,
                new_expiry: new_expiry?,
            })
        }
        Some("order") => {
            let vps = k.opt(src, "vps");
            k.finish(src, &["type", "vps"]);
            Some(InvoiceKind::Order { vps })
        }
        Some("traffic_block") => {
            let vps = k.req(src, "vps");
            let period = k.req(src, "period");
            k.finish(src, &["type", "vps", "period"]);
            Some(InvoiceKind::TrafficBlock {
                vps: vps?,
                period: period?,
            })
        }
        Some(other) => {
            let span = k.t.get("type").and_then(toml_edit::Item::span);
            src.error(
                span,
                "kind.type",
                format!(
                    "`{}` is not an invoice kind: use \"renewal\", \"order\", \"traffic_block\"",
                    other.escape_debug()
                ),
            );
            None
        }
        None => None,
    }
}

fn parse_seller(top: &Table<'_>, src: &mut Src<'_>) -> Option<SellerSnapshot> {
    let Some(t) = top.sub(src, "seller") else {
        src.error(None, "seller", "missing required table [seller]");
        return None;
    };
    let name = t.req(src, "name");
    let address = t.list(src, "address");
    let country = t.opt(src, "country");
    let tax_id = t.opt(src, "tax_id");
    let email = t.opt(src, "email");
    t.finish(src, &["name", "address", "country", "tax_id", "email"]);
    Some(SellerSnapshot {
        name: name?,
        address,
        country,
        tax_id,
        email,
    })
}

fn parse_buyer(top: &Table<'_>, src: &mut Src<'_>) -> Option<BuyerSnapshot> {
    let Some(t) = top.sub(src, "buyer") else {
        src.error(None, "buyer", "missing required table [buyer]");
        return None;
    };
    let name = t.req(src, "name");
    let company = t.opt(src, "company");
    let address = t.list(src, "address");
    let country = t.opt(src, "country");
    let tax_id = t.opt(src, "tax_id");
    let email = t.opt(src, "email");
    t.finish(
        src,
        &["name", "company", "address", "country", "tax_id", "email"],
    );
    Some(BuyerSnapshot {
        name: name?,
        company,
        address,
        country,
        tax_id,
        email,
    })
}

fn parse_line(t: &Table<'_>, src: &mut Src<'_>) -> Option<Line> {
    let description = t.req(src, "description");
    let product = t.req(src, "product");
    let vps = t.opt(src, "vps");
    let from: Option<NaiveDate> = t.opt(src, "from");
    let to: Option<NaiveDate> = t.opt(src, "to");
    let quantity = t.req(src, "quantity");
    let unit = t.req(src, "unit");
    let amount = t.req(src, "amount");
    t.finish(src, LINE_KEYS);
    let period = match (from, to) {
        (Some(f), Some(e)) if f <= e => Some((f, e)),
        (Some(_), Some(_)) => {
            src.error(
                t.span.clone(),
                &format!("{}to", t.prefix),
                "the period ends before it starts",
            );
            None
        }
        (None, None) => None,
        _ => {
            src.error(
                t.span.clone(),
                &format!("{}from", t.prefix),
                "a period needs both `from` and `to`",
            );
            None
        }
    };
    Some(Line {
        description: description?,
        product: product?,
        vps,
        period,
        quantity: quantity?,
        unit: unit?,
        amount: amount?,
    })
}

/// Line amounts, subtotal, tax and total must agree, or the file was edited by hand.
fn check_sums(inv: &Invoice, doc: &toml_edit::Document<&str>, src: &mut Src<'_>) {
    let span = |key: &str| doc.get(key).and_then(toml_edit::Item::span);
    for (i, l) in inv.lines.iter().enumerate() {
        if l.unit.times(l.quantity) != l.amount {
            let span = doc
                .get("line")
                .and_then(toml_edit::Item::as_array_of_tables)
                .and_then(|a| a.get(i))
                .and_then(|t| t.get("amount"))
                .and_then(toml_edit::Item::span);
            src.error(
                span,
                &format!("line[{i}].amount"),
                format!(
                    "{} is not quantity × unit ({})",
                    l.amount,
                    l.unit.times(l.quantity)
                ),
            );
        }
    }
    let sum: Money = inv.lines.iter().map(|l| l.amount).sum();
    let want = match &inv.tax {
        Some(t) if t.inclusive => (sum.checked_sub(t.amount), Some(sum)),
        Some(t) => (Some(sum), Some(sum + t.amount)),
        None => (Some(sum), Some(sum)),
    };
    if want.0 != Some(inv.subtotal) {
        src.error(
            span("subtotal"),
            "subtotal",
            "does not match the lines and the tax",
        );
    }
    if want.1 != Some(inv.total) {
        src.error(
            span("total"),
            "total",
            "does not match the lines and the tax",
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(s: &str) -> Money {
        s.parse().unwrap()
    }

    fn cur(s: &str) -> Currency {
        s.parse().unwrap()
    }

    #[test]
    fn exclusive_tax_rounds_half_up_on_the_total() {
        let de: Country = "DE".parse().unwrap();
        let t = totals(
            m("59.00"),
            Some((&de, "19".parse().unwrap())),
            false,
            &cur("USD"),
        );
        assert_eq!(t.subtotal, m("59.00"));
        assert_eq!(t.tax.as_ref().map(|t| t.amount), Some(m("11.21")));
        assert_eq!(t.total, m("70.21"));
        // 0.50 × 1 % = 0.005: half a cent goes up.
        let t = totals(
            m("0.50"),
            Some((&de, "1".parse().unwrap())),
            false,
            &cur("EUR"),
        );
        assert_eq!(t.tax.map(|t| t.amount), Some(m("0.01")));
        // Whole yen: 999 × 10 % = 99.9 → 100; 5 × 10 % = 0.5 → 1.
        let jp: Country = "JP".parse().unwrap();
        let t = totals(
            m("999"),
            Some((&jp, "10".parse().unwrap())),
            false,
            &cur("JPY"),
        );
        assert_eq!(
            (t.tax.map(|t| t.amount), t.total),
            (Some(m("100")), m("1099"))
        );
        let t = totals(
            m("5"),
            Some((&jp, "10".parse().unwrap())),
            false,
            &cur("JPY"),
        );
        assert_eq!(t.total, m("6"));
    }

    #[test]
    fn inclusive_tax_is_taken_out_of_the_total() {
        let de: Country = "DE".parse().unwrap();
        let t = totals(
            m("59.00"),
            Some((&de, "19".parse().unwrap())),
            true,
            &cur("EUR"),
        );
        // 59 × 19 / 119 = 9.4201…
        assert_eq!(t.tax.as_ref().map(|t| t.amount), Some(m("9.42")));
        assert_eq!((t.subtotal, t.total), (m("49.58"), m("59.00")));
        let none = totals(m("59.00"), None, true, &cur("EUR"));
        assert_eq!(
            (none.subtotal, none.tax, none.total),
            (m("59.00"), None, m("59.00"))
        );
        let zero = totals(
            m("59.00"),
            Some((&de, "0".parse().unwrap())),
            false,
            &cur("EUR"),
        );
        assert_eq!(
            (zero.tax.map(|t| t.amount), zero.total),
            (Some(Money::ZERO), m("59.00"))
        );
    }
}
