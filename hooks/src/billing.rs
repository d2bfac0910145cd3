//! What a payment buys, what it must pay and how it is recorded: the Checkout Session metadata,
//! the invoice charged ([`Due`], over the head's [`Book`]) and the `billing/payments/` record.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use billing::Ledger;
use billing::invoice::{INVOICES_DIR, Invoice, Line, Totals, charge, invoice_path, period_line};
use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};
use model::policy::InvoiceNumber;
use model::values::{Country, Currency, Email, Language, Money, PasswordHash, parse_keyword};
use model::{
    ApplianceId, CustomerId, Inventory, OsId, Product, ProductId, ProductKind, Vps, VpsId,
};
use toml_edit::{DocumentMut, value};

use crate::tree::Tree;

/// Folder of the payment records.
pub const PAYMENTS_DIR: &str = "billing/payments";
/// Longest customer name or company accepted with an order.
pub const MAX_NAME: usize = 200;

pub use billing::renewed_expiry;

/// A Stripe object id (`evt_...`, `cs_...`, `pi_...`, `cus_...`): letters, digits and `_`,
/// at most 255 characters. Safe as a file name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct StripeId(String);

impl StripeId {
    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for StripeId {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let ok = !s.is_empty()
            && s.len() <= 255
            && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
            && s.bytes().next().is_some_and(|b| b.is_ascii_alphabetic());
        if ok {
            Ok(StripeId(s.to_owned()))
        } else {
            Err("not a Stripe id".to_owned())
        }
    }
}

impl fmt::Display for StripeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The path of the record of a payment event.
pub fn payment_path(event: &StripeId) -> String {
    format!("{PAYMENTS_DIR}/{event}.toml")
}

/// Who an order is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrderCustomer {
    /// A logged-in customer.
    Existing(CustomerId),
    /// Someone new: the customer file is written when the payment lands.
    New(NewCustomer),
}

/// A customer to create with an order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewCustomer {
    /// Full name.
    pub name: String,
    /// Company, if any.
    pub company: Option<String>,
    /// E-mail.
    pub email: Email,
    /// Language of site and mail.
    pub language: Language,
    /// argon2 hash of the password chosen with the order (never the password).
    pub password_hash: PasswordHash,
}

/// What a Checkout Session sells; it rides in the session's `metadata`, so the webhook needs
/// nothing but the event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Purchase {
    /// Another period for an existing VPS.
    Renew {
        /// The owner.
        customer: CustomerId,
        /// The VPS.
        vps: VpsId,
        /// The renewal product (or the plan itself).
        product: ProductId,
        /// The invoice this payment settles (`billing/invoices/<number>.toml`), if any.
        invoice: Option<InvoiceNumber>,
    },
    /// A new VPS.
    Order {
        /// Who for.
        customer: OrderCustomer,
        /// The plan.
        product: ProductId,
        /// Where (a location name or pool id, as placement takes it).
        location: String,
        /// The OS.
        os: OsId,
        /// An appliance, if any.
        appliance: Option<ApplianceId>,
    },
    /// Extra traffic for an existing VPS in its current traffic period.
    TrafficBlock {
        /// The owner.
        customer: CustomerId,
        /// The VPS.
        vps: VpsId,
        /// The traffic block product.
        product: ProductId,
        /// The first day of the traffic period it was bought for.
        period: NaiveDate,
    },
}

pub use model::text::{check_line, is_bidi_or_separator};

impl Purchase {
    /// The session metadata for this purchase.
    pub fn metadata(&self) -> BTreeMap<String, String> {
        let mut m = BTreeMap::new();
        let mut put = |k: &str, v: &str| {
            m.insert(k.to_owned(), v.to_owned());
        };
        match self {
            Purchase::Renew {
                customer,
                vps,
                product,
                invoice,
            } => {
                put("kind", "renew");
                put("customer", customer.as_str());
                put("vps", vps.as_str());
                put("product", product.as_str());
                if let Some(n) = invoice {
                    put("invoice", n.as_str());
                }
            }
            Purchase::TrafficBlock {
                customer,
                vps,
                product,
                period,
            } => {
                put("kind", "traffic_block");
                put("customer", customer.as_str());
                put("vps", vps.as_str());
                put("product", product.as_str());
                put("period", &period.to_string());
            }
            Purchase::Order {
                customer,
                product,
                location,
                os,
                appliance,
            } => {
                put("kind", "order");
                put("product", product.as_str());
                put("location", location);
                put("os", os.as_str());
                if let Some(a) = appliance {
                    put("appliance", a.as_str());
                }
                match customer {
                    OrderCustomer::Existing(c) => put("customer", c.as_str()),
                    OrderCustomer::New(n) => {
                        put("new_customer_name", &n.name);
                        if let Some(c) = &n.company {
                            put("new_customer_company", c);
                        }
                        put("new_customer_email", n.email.as_str());
                        put(
                            "new_customer_language",
                            model::values::Keyword::as_str(n.language),
                        );
                        put("new_customer_password_hash", n.password_hash.as_str());
                    }
                }
            }
        }
        m
    }

    /// Reads a purchase back from session metadata, as strictly as from a customer: the
    /// values become file contents.
    pub fn from_metadata(m: &BTreeMap<String, String>) -> Result<Purchase, String> {
        let get = |k: &str| m.get(k).map(String::as_str);
        let req = |k: &str| get(k).ok_or_else(|| format!("metadata `{k}` is missing"));
        let id = |k: &str| -> Result<String, String> { req(k).map(str::to_owned) };
        match get("kind") {
            Some("renew") => Ok(Purchase::Renew {
                customer: id("customer")?.parse().map_err(|e| format!("{e}"))?,
                vps: id("vps")?.parse().map_err(|e| format!("{e}"))?,
                product: id("product")?.parse().map_err(|e| format!("{e}"))?,
                invoice: get("invoice").map(str::parse).transpose()?,
            }),
            Some("order") => {
                let customer = match get("customer") {
                    Some(c) => OrderCustomer::Existing(c.parse().map_err(|e| format!("{e}"))?),
                    None => OrderCustomer::New(NewCustomer {
                        name: check_line(req("new_customer_name")?, MAX_NAME)?,
                        company: get("new_customer_company")
                            .map(|c| check_line(c, MAX_NAME))
                            .transpose()?,
                        email: req("new_customer_email")?.parse()?,
                        language: parse_keyword(get("new_customer_language").unwrap_or("en"))?,
                        password_hash: req("new_customer_password_hash")?.parse()?,
                    }),
                };
                Ok(Purchase::Order {
                    customer,
                    product: id("product")?.parse().map_err(|e| format!("{e}"))?,
                    location: check_line(req("location")?, MAX_NAME)?,
                    os: id("os")?.parse().map_err(|e| format!("{e}"))?,
                    appliance: get("appliance")
                        .map(|a| a.parse().map_err(|e| format!("{e}")))
                        .transpose()?,
                })
            }
            Some("traffic_block") => Ok(Purchase::TrafficBlock {
                customer: id("customer")?.parse().map_err(|e| format!("{e}"))?,
                vps: id("vps")?.parse().map_err(|e| format!("{e}"))?,
                product: id("product")?.parse().map_err(|e| format!("{e}"))?,
                period: req("period")?
                    .parse()
                    .map_err(|_| "metadata `period` is not a date".to_owned())?,
            }),
            _ => Err("metadata `kind` is not `renew`, `order` or `traffic_block`".to_owned()),
        }
    }
}

/// The invoices of a head and which of them are paid: what a payment is checked against and
/// the numbers a new invoice follows.
#[derive(Debug, Clone, Default)]
pub struct Book {
    /// The invoices that parse, and the paid ones (billing's ledger over the payment records).
    ledger: Ledger,
    /// Every number in `billing/invoices/`, a file that does not parse included: a number is
    /// never given twice.
    numbers: Vec<InvoiceNumber>,
}

impl Book {
    /// Reads `billing/invoices/` and `billing/payments/` of the head. A file that does not
    /// parse is left out (`gitvps validate` reports it), but its number stays taken.
    pub fn read(tree: &dyn Tree) -> Book {
        let mut book = Book::default();
        let files = |dir: &str| {
            tree.entries(dir)
                .unwrap_or_default()
                .into_iter()
                .filter(|e| !e.is_dir)
                .filter_map(|e| e.name.strip_suffix(".toml").map(str::to_owned))
                .collect::<Vec<String>>()
        };
        for stem in files(INVOICES_DIR) {
            let Ok(n) = stem.parse::<InvoiceNumber>() else {
                continue;
            };
            let path = invoice_path(&n);
            if let Some(i) = tree
                .read(&path)
                .and_then(|text| billing::invoice::parse(&path, &text).ok())
            {
                book.ledger.invoices.insert(n.clone(), i);
            }
            book.numbers.push(n);
        }
        for stem in files(PAYMENTS_DIR) {
            let path = format!("{PAYMENTS_DIR}/{stem}.toml");
            if let Some(r) = tree
                .read(&path)
                .and_then(|text| billing::parse_payment(&path, &text).ok())
            {
                let _ = book.ledger.record_payment(&r);
            }
        }
        book
    }

    /// An issued invoice.
    pub fn get(&self, n: &InvoiceNumber) -> Option<&Invoice> {
        self.ledger.invoices.get(n)
    }

    /// The payment event that paid an invoice, if it is paid.
    pub fn paid_by(&self, n: &InvoiceNumber) -> Option<&str> {
        self.ledger.paid.get(n).map(|p| p.event.as_str())
    }

    /// The unpaid renewal invoice of `vps` for its expiry `expires`, if one was issued.
    pub fn open_renewal(&self, vps: &VpsId, expires: NaiveDate) -> Option<&Invoice> {
        self.ledger
            .renewal(vps, expires)
            .filter(|i| !self.ledger.is_paid(&i.number))
    }

    /// The next number under `rule` for an invoice issued on `date`: gapless after the
    /// numbers of this head.
    pub fn next_number(
        &self,
        rule: &model::policy::InvoiceRule,
        date: NaiveDate,
    ) -> Result<InvoiceNumber, billing::NumberingError> {
        billing::next_number(rule, &self.numbers, date)
    }
}

/// What a purchase costs: the lines and totals of the invoice it pays, tax included.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Due {
    /// The invoice's lines.
    pub lines: Vec<Line>,
    /// Subtotal, the tax of the buyer's country, total.
    pub totals: Totals,
    /// The currency.
    pub currency: Currency,
    /// The open invoice this is, if it is issued already; `None`: the invoice is issued when
    /// the payment lands.
    pub invoice: Option<InvoiceNumber>,
}

impl Due {
    /// What an issued invoice asks for.
    pub fn of_invoice(i: &Invoice) -> Due {
        Due {
            lines: i.lines.clone(),
            totals: Totals {
                subtotal: i.subtotal,
                tax: i.tax.clone(),
                total: i.total,
            },
            currency: i.currency.clone(),
            invoice: Some(i.number.clone()),
        }
    }

    /// What an invoice of `lines` to a buyer in `country` would ask for, in the catalog's
    /// currency: [`billing::invoice::charge`], the computation of [`billing::invoice::issue`].
    pub fn of_lines(inv: &Inventory, lines: Vec<Line>, country: Option<&Country>) -> Due {
        let totals = charge(&lines, country, &inv.settings, &inv.currency);
        Due {
            lines,
            totals,
            currency: inv.currency.clone(),
            invoice: None,
        }
    }

    /// The lines a Checkout Session shows, summing to the total: the invoice's lines, then the
    /// tax when it comes on top of them (included tax is part of the lines already).
    pub fn checkout_lines(&self) -> Vec<(String, Money)> {
        let mut out: Vec<(String, Money)> = self
            .lines
            .iter()
            .map(|l| (l.description.clone(), l.amount))
            .collect();
        if let Some(t) = self.totals.tax.as_ref().filter(|t| !t.inclusive) {
            out.push((format!("Tax ({} {} %)", t.country, t.rate), t.amount));
        }
        out
    }

    /// Whether `p` paid exactly this: `Err` says what differs.
    pub fn check(&self, p: &Payment) -> Result<(), String> {
        if p.currency == self.currency.as_str() && p.amount == self.totals.total {
            return Ok(());
        }
        let what = match &self.invoice {
            Some(n) => format!("invoice {n} asks for"),
            None => "is due".to_owned(),
        };
        let paid = if p.currency.is_empty() {
            "(no currency)"
        } else {
            &p.currency
        };
        let digits = self.currency.minor_units();
        Err(format!(
            "paid {} {paid} but {what} {} {}",
            p.amount,
            self.totals.total.with_decimals(digits),
            self.currency
        ))
    }
}

/// The lines of an order of `plan`: its first period, then the setup fee if any. Without the
/// VPS (before it is placed) the lines name the plan only; the amounts are the same.
pub fn order_lines(plan: &Product, vps: Option<&Vps>) -> Vec<Line> {
    let mut lines = vec![match vps {
        Some(v) => period_line(plan, v, v.created, v.expires),
        None => Line {
            description: plan.name.clone(),
            product: plan.id.clone(),
            vps: None,
            period: None,
            quantity: 1,
            unit: plan.price,
            amount: plan.price,
        },
    }];
    if plan.setup_fee != Money::ZERO {
        lines.push(Line {
            description: format!("Setup fee: {}", plan.name),
            product: plan.id.clone(),
            vps: vps.map(|v| v.id.clone()),
            period: None,
            quantity: 1,
            unit: plan.setup_fee,
            amount: plan.setup_fee,
        });
    }
    lines
}

/// The plan `product` as an order may buy it: a public plan of the catalog; `Err` says why not.
pub fn orderable<'a>(inv: &'a Inventory, product: &ProductId) -> Result<&'a Product, String> {
    let p = inv
        .products
        .get(product)
        .ok_or_else(|| format!("product {product} is not in the catalog"))?;
    if !matches!(p.kind, ProductKind::Plan(_)) {
        return Err(format!(
            "product {product} is a renewal, not a plan to order"
        ));
    }
    if p.private {
        return Err(format!(
            "product {product} is private: it cannot be ordered"
        ));
    }
    Ok(p)
}

/// What renewing `vps` with `product`, paid on `paid`, costs on a head: the VPS's open renewal
/// invoice when it is for that product, or else the invoice a payment would issue (the period
/// from the later of the expiry and the payment day, the buyer's tax). `Err` names the open
/// invoice of another product, which must be paid first.
pub fn renewal_due(
    inv: &Inventory,
    book: &Book,
    vps: &Vps,
    product: &Product,
    paid: NaiveDate,
) -> Result<Due, OpenInvoice> {
    if let Some(open) = book.open_renewal(&vps.id, vps.expires) {
        let of_product = open.lines.iter().any(|l| l.product == product.id);
        return if of_product {
            Ok(Due::of_invoice(open))
        } else {
            Err(OpenInvoice {
                number: open.number.clone(),
                product: open.lines.first().map(|l| l.product.clone()),
            })
        };
    }
    Ok(new_renewal_due(inv, vps, product, paid))
}

/// The invoice a renewal of `vps` with `product`, paid on `paid`, issues when none is open: the
/// period from the later of the expiry and the payment day, the tax of the owner's country.
pub fn new_renewal_due(inv: &Inventory, vps: &Vps, product: &Product, paid: NaiveDate) -> Due {
    let from = vps.expires.max(paid);
    let to = renewed_expiry(vps.expires, paid, product.period_months);
    let country = inv
        .customers
        .get(&vps.customer)
        .and_then(|c| c.country.as_ref());
    Due::of_lines(inv, vec![period_line(product, vps, from, to)], country)
}

/// A traffic block as `vps` may buy it on `today`: the product, the traffic period it counts
/// in, and what it costs (one line for the period, the owner's tax). `Err` says why not: not
/// a public traffic block of the catalog, a VPS that is neither active nor suspended for its
/// traffic, or a plan without a traffic quota.
pub fn traffic_block_due<'a>(
    inv: &'a Inventory,
    vps: &Vps,
    product: &ProductId,
    today: NaiveDate,
) -> Result<(&'a Product, model::usage::Period, Due), String> {
    let p = inv
        .products
        .get(product)
        .filter(|p| p.traffic_block().is_some() && !p.private)
        .ok_or_else(|| format!("{product} is not a traffic block of the catalog"))?;
    let usable = vps.state == model::values::State::Active
        || (vps.state == model::values::State::Suspended
            && vps.suspension == Some(model::values::Suspension::Traffic));
    if !usable {
        return Err(format!("{} is not active", vps.id));
    }
    let metered = inv.resources_of(vps).is_some_and(|r| r.traffic.bytes() > 0);
    if !metered {
        return Err(format!("{}'s plan has no traffic quota", vps.id));
    }
    let period = model::usage::period(inv.settings.traffic.reset, vps.created, today)
        .ok_or_else(|| format!("no traffic period of {} on {today}", vps.id))?;
    let line = period_line(p, vps, period.start, period.end);
    let country = inv
        .customers
        .get(&vps.customer)
        .and_then(|c| c.country.as_ref());
    Ok((p, period, Due::of_lines(inv, vec![line], country)))
}

/// An open renewal invoice for another product than the one asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenInvoice {
    /// The invoice.
    pub number: InvoiceNumber,
    /// The product it bills.
    pub product: Option<ProductId>,
}

impl fmt::Display for OpenInvoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invoice {} is open for this VPS", self.number)?;
        if let Some(p) = &self.product {
            write!(f, " (product {p}): renew with {p}, which pays it")?;
        }
        Ok(())
    }
}

/// How far before its delivery an event's `created` may lie (Stripe retries for 3 days, and
/// an admin may resend an event of the last 30 days).
pub const MAX_EVENT_AGE_DAYS: i64 = 31;
/// How far after its delivery an event's `created` may lie (clock skew).
pub const MAX_EVENT_SKEW_SECS: i64 = 3600;

/// Whether an event's `created` is plausible for a delivery at `received`: `Err` says why not.
pub fn check_created(created: DateTime<Utc>, received: DateTime<Utc>) -> Result<(), String> {
    let earliest = received - chrono::Duration::days(MAX_EVENT_AGE_DAYS);
    let latest = received + chrono::Duration::seconds(MAX_EVENT_SKEW_SECS);
    if created < earliest || created > latest {
        return Err(format!(
            "the event's `created` ({}) is not within {MAX_EVENT_AGE_DAYS} days before its delivery",
            created.to_rfc3339_opts(SecondsFormat::Secs, true)
        ));
    }
    Ok(())
}

/// A payment Stripe reported as completed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payment {
    /// The event (names the record file: a second delivery finds it).
    pub event: StripeId,
    /// When the event was created: the payment date.
    pub paid_at: DateTime<Utc>,
    /// When the webhook received it (bounds how far `paid_at` may lie from now).
    pub received_at: DateTime<Utc>,
    /// The Checkout Session.
    pub session: StripeId,
    /// The PaymentIntent, if any.
    pub payment_intent: Option<StripeId>,
    /// Stripe's customer, if any.
    pub stripe_customer: Option<StripeId>,
    /// Amount paid.
    pub amount: Money,
    /// Its currency, upper case (`USD`).
    pub currency: String,
    /// What it bought.
    pub purchase: Purchase,
}

/// What became of a payment, as its record says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// A VPS was renewed.
    Renewed {
        /// The invoice paid.
        invoice: InvoiceNumber,
        /// The VPS.
        vps: VpsId,
        /// Its expiry before.
        before: NaiveDate,
        /// Its expiry now.
        after: NaiveDate,
        /// Whether a suspension was lifted.
        unsuspended: bool,
    },
    /// A traffic block was added to a VPS.
    TrafficBlock {
        /// The invoice issued and paid.
        invoice: InvoiceNumber,
        /// The VPS.
        vps: VpsId,
        /// The first day of the traffic period it counts in.
        period: NaiveDate,
    },
    /// A VPS (and maybe a customer) was created.
    Ordered {
        /// The invoice issued and paid.
        invoice: InvoiceNumber,
        /// The customer (new or existing).
        customer: CustomerId,
        /// The new VPS.
        vps: VpsId,
    },
    /// The money arrived but nothing could be done with it: an admin must act (refund, place
    /// by hand). The reason is kept in the record.
    NotApplied(String),
    /// The payment does not match what is due (amount, currency, a product that cannot be
    /// bought, an implausible date): nothing is changed, an admin must refund or act.
    Refused(String),
}

/// The text of `billing/payments/<event>.toml`.
pub fn render_record(p: &Payment, applied: &Applied) -> String {
    let mut d = DocumentMut::new();
    d["event"] = value(p.event.as_str());
    let (kind, customer, product) = match &p.purchase {
        Purchase::Renew {
            customer, product, ..
        } => ("renew", Some(customer.as_str().to_owned()), product),
        Purchase::TrafficBlock {
            customer, product, ..
        } => ("traffic_block", Some(customer.as_str().to_owned()), product),
        Purchase::Order {
            customer, product, ..
        } => (
            "order",
            match customer {
                OrderCustomer::Existing(c) => Some(c.as_str().to_owned()),
                OrderCustomer::New(_) => None,
            },
            product,
        ),
    };
    d["kind"] = value(kind);
    let customer = match applied {
        Applied::Ordered { customer, .. } => Some(customer.as_str().to_owned()),
        _ => customer,
    };
    if let Some(c) = customer {
        d["customer"] = value(c);
    }
    match (&p.purchase, applied) {
        (_, Applied::Ordered { vps, .. })
        | (Purchase::Renew { vps, .. } | Purchase::TrafficBlock { vps, .. }, _) => {
            d["vps"] = value(vps.as_str());
        }
        _ => {}
    }
    d["product"] = value(product.as_str());
    // Only a payment that pays an invoice names it: billing's ledger reads `invoice` as paid.
    if let Applied::Renewed { invoice, .. }
    | Applied::Ordered { invoice, .. }
    | Applied::TrafficBlock { invoice, .. } = applied
    {
        d["invoice"] = value(invoice.as_str());
    }
    // With the currency's decimals (`"177"` yen, `"177.31"` dollars) when it is one we know.
    let amount = match p.currency.parse::<Currency>() {
        Ok(c) => p.amount.with_decimals(c.minor_units()),
        Err(_) => p.amount.to_string(),
    };
    d["amount"] = value(amount);
    d["currency"] = value(p.currency.as_str());
    d["paid_at"] = value(p.paid_at.to_rfc3339_opts(SecondsFormat::Secs, true));
    d["checkout_session"] = value(p.session.as_str());
    if let Some(pi) = &p.payment_intent {
        d["payment_intent"] = value(pi.as_str());
    }
    if let Some(c) = &p.stripe_customer {
        d["stripe_customer"] = value(c.as_str());
    }
    match applied {
        Applied::Renewed {
            before,
            after,
            unsuspended,
            ..
        } => {
            d["applied"] = value(true);
            d["expires_before"] = value(before.to_string());
            d["expires_after"] = value(after.to_string());
            if *unsuspended {
                d["unsuspended"] = value(true);
            }
        }
        Applied::Ordered { .. } => {
            d["applied"] = value(true);
        }
        Applied::TrafficBlock { period, .. } => {
            d["applied"] = value(true);
            d["traffic_period"] = value(period.to_string());
        }
        Applied::NotApplied(why) => {
            d["applied"] = value(false);
            d["note"] = value(why.as_str());
        }
        Applied::Refused(why) => {
            d["applied"] = value(false);
            d["refused"] = value(true);
            d["note"] = value(why.as_str());
        }
    }
    format!(
        "# Stripe payment {}, recorded by gitvps-hooks. Do not edit: its presence makes a\n# second delivery of the event a no-op.\n{d}",
        p.event
    )
}

/// Whether a record names the Checkout Session `session` (a session paid twice through two
/// events is applied once).
pub fn record_names_session(text: &str, session: &StripeId) -> bool {
    text.parse::<DocumentMut>()
        .is_ok_and(|d| d.get("checkout_session").and_then(|v| v.as_str()) == Some(session.as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    #[test]
    fn renewal_counts_from_the_later_date() {
        // Paid before expiry: the period adds to the expiry.
        assert_eq!(
            renewed_expiry(d("2026-06-09"), d("2026-05-01"), 3),
            d("2026-09-09")
        );
        // Paid after a lapse: the period counts from the payment.
        assert_eq!(
            renewed_expiry(d("2011-06-09"), d("2026-05-01"), 1),
            d("2026-06-01")
        );
        // Month ends clamp.
        assert_eq!(
            renewed_expiry(d("2026-01-31"), d("2026-01-01"), 1),
            d("2026-02-28")
        );
        assert_eq!(
            renewed_expiry(d("2028-01-31"), d("2028-01-01"), 1),
            d("2028-02-29")
        );
        // Same day.
        assert_eq!(
            renewed_expiry(d("2026-05-01"), d("2026-05-01"), 12),
            d("2027-05-01")
        );
    }

    #[test]
    fn stripe_ids_are_path_safe() {
        assert!("evt_1Nabc".parse::<StripeId>().is_ok());
        for bad in [
            "",
            "../evt",
            "evt-1",
            "evt 1",
            "_evt",
            "evt_1/..",
            &"e".repeat(256),
        ] {
            assert!(bad.parse::<StripeId>().is_err(), "{bad}");
        }
    }

    fn order_new() -> Purchase {
        Purchase::Order {
            customer: OrderCustomer::New(NewCustomer {
                name: "Ann O'Neil".into(),
                company: None,
                email: "ann@example.org".parse().unwrap(),
                language: Language::En,
                password_hash: "$argon2id$v=19$m=65536,t=3,p=4$gRqnVZzlQ1xo1IOoqZd94w$xdFOC/CniMwlmXcM6NLTf2c/vJDVL0IU/EZ/fePt0M0".parse().unwrap(),
            }),
            product: "advanced".parse().unwrap(),
            location: "Tampa, Florida (USA)".into(),
            os: "debian-13".parse().unwrap(),
            appliance: Some("openvpn".parse().unwrap()),
        }
    }

    #[test]
    fn metadata_round_trips() {
        let renew = Purchase::Renew {
            customer: "c-0001".parse().unwrap(),
            vps: "xen02".parse().unwrap(),
            product: "advanced-3m".parse().unwrap(),
            invoice: Some("INV-2026-000124".parse().unwrap()),
        };
        let block = Purchase::TrafficBlock {
            customer: "c-0001".parse().unwrap(),
            vps: "xen02".parse().unwrap(),
            product: "traffic-100g".parse().unwrap(),
            period: d("2026-12-01"),
        };
        for p in [renew, order_new(), block] {
            let m = p.metadata();
            assert!(m.len() <= 50 && m.iter().all(|(k, v)| k.len() <= 40 && v.len() <= 500));
            assert_eq!(Purchase::from_metadata(&m).unwrap(), p);
        }
    }

    #[test]
    fn hostile_metadata_is_refused() {
        let renew = Purchase::Renew {
            customer: "c-0001".parse().unwrap(),
            vps: "xen02".parse().unwrap(),
            product: "advanced".parse().unwrap(),
            invoice: None,
        };
        let mut m = renew.metadata();
        m.insert("invoice".into(), "../INV-1".into());
        assert!(Purchase::from_metadata(&m).is_err());
        let mut m = order_new().metadata();
        m.insert("os".into(), "../../x".into());
        assert!(Purchase::from_metadata(&m).is_err());
        let mut m = order_new().metadata();
        m.insert("new_customer_name".into(), "a\nb = 1".into());
        assert!(Purchase::from_metadata(&m).is_err());
        let mut m = order_new().metadata();
        m.insert("new_customer_password_hash".into(), "hunter2".into());
        assert!(Purchase::from_metadata(&m).is_err());
        let mut m = BTreeMap::new();
        m.insert("kind".into(), "refund".into());
        assert!(Purchase::from_metadata(&m).is_err());
        assert!(Purchase::from_metadata(&BTreeMap::new()).is_err());
    }

    #[test]
    fn records_hold_the_stripe_ids_and_are_found_by_session() {
        let p = Payment {
            event: "evt_1".parse().unwrap(),
            paid_at: "2026-05-01T12:00:00Z".parse().unwrap(),
            received_at: "2026-05-01T12:00:00Z".parse().unwrap(),
            session: "cs_test_1".parse().unwrap(),
            payment_intent: Some("pi_1".parse().unwrap()),
            stripe_customer: None,
            amount: "149.00".parse().unwrap(),
            currency: "USD".into(),
            purchase: Purchase::Renew {
                customer: "c-0001".parse().unwrap(),
                vps: "xen02".parse().unwrap(),
                product: "advanced-3m".parse().unwrap(),
                invoice: Some("INV-2026-000124".parse().unwrap()),
            },
        };
        let text = render_record(
            &p,
            &Applied::Renewed {
                invoice: "INV-2026-000124".parse().unwrap(),
                vps: "xen02".parse().unwrap(),
                before: d("2011-06-09"),
                after: d("2026-08-01"),
                unsuspended: true,
            },
        );
        for want in [
            "event = \"evt_1\"",
            "kind = \"renew\"",
            "customer = \"c-0001\"",
            "vps = \"xen02\"",
            "invoice = \"INV-2026-000124\"",
            "amount = \"149.00\"",
            "checkout_session = \"cs_test_1\"",
            "payment_intent = \"pi_1\"",
            "expires_after = \"2026-08-01\"",
            "unsuspended = true",
        ] {
            assert!(text.contains(want), "{want} in\n{text}");
        }
        assert!(record_names_session(&text, &"cs_test_1".parse().unwrap()));
        assert!(!record_names_session(&text, &"cs_test_2".parse().unwrap()));
        assert_eq!(payment_path(&p.event), "billing/payments/evt_1.toml");
    }
}
