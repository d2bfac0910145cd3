//! Invoices as documents a customer and an operator read and print: self-contained HTML (inline
//! CSS, nothing loaded, A4 and Letter alike) from minijinja templates in English and Chinese.
//!
//! The templates (`layout.html`, `invoice.css`, `invoice.<lang>.html`) are embedded; the
//! inventory repo's `templates/invoice/` overrides any of them file by file. `layout.html` is
//! the document, `invoice.<lang>.html` extends it and sets the words `t`. Every value is
//! HTML-escaped (auto-escape on `.html`), and a variable missing from [`View`] is an error,
//! never blank text. See `docs/billing.md`, "Invoices".

use std::collections::BTreeMap;

use chrono::NaiveDate;
use minijinja::{AutoEscape, Environment, UndefinedBehavior};
use model::values::{Keyword, Language, Money};
use serde::Serialize;

use crate::invoice::Invoice;
use crate::ledger::Paid;

/// The repo folder of template overrides.
pub const TEMPLATES_DIR: &str = "templates/invoice";

/// The embedded templates, by file name.
const FILES: [(&str, &str); 4] = [
    (
        "layout.html",
        include_str!("../templates/invoice/layout.html"),
    ),
    (
        "invoice.css",
        include_str!("../templates/invoice/invoice.css"),
    ),
    (
        "invoice.en.html",
        include_str!("../templates/invoice/invoice.en.html"),
    ),
    (
        "invoice.zh.html",
        include_str!("../templates/invoice/invoice.zh.html"),
    ),
];

/// Why an invoice could not be rendered, or an override not accepted.
#[derive(Debug, thiserror::Error)]
pub enum HtmlError {
    /// An override names no invoice template.
    #[error(
        "{TEMPLATES_DIR}/{name}: not an invoice template (names are layout.html, invoice.css, invoice.en.html, invoice.zh.html)"
    )]
    UnknownTemplate {
        /// The file name given.
        name: String,
    },
    /// A template does not parse, or failed while rendering (a missing variable among others).
    #[error("invoice template {template}: {source}")]
    Template {
        /// The template's file name.
        template: String,
        /// minijinja's error, with the line.
        #[source]
        source: minijinja::Error,
    },
}

/// The invoice templates: the embedded defaults with the repo's overrides laid over them.
#[derive(Debug, Clone)]
pub struct Templates {
    sources: BTreeMap<&'static str, String>,
}

impl Default for Templates {
    /// The embedded templates only.
    fn default() -> Self {
        Templates {
            sources: FILES.iter().map(|(n, s)| (*n, (*s).to_owned())).collect(),
        }
    }
}

impl Templates {
    /// Every template's file name, sorted: what `templates/invoice/` may contain.
    pub fn names() -> Vec<&'static str> {
        let mut names: Vec<&'static str> = FILES.iter().map(|(n, _)| *n).collect();
        names.sort_unstable();
        names
    }

    /// The embedded default of a template, by file name.
    pub fn default_source(name: &str) -> Option<&'static str> {
        FILES.iter().find(|(n, _)| *n == name).map(|(_, s)| *s)
    }

    /// The defaults with `overrides` (file name → source, as read from the repo's
    /// `templates/invoice/`) in their place. Fails on a name that is no template and on a
    /// template that does not parse, so a typo shows before any invoice is rendered.
    pub fn with_overrides(overrides: BTreeMap<String, String>) -> Result<Templates, HtmlError> {
        let mut t = Templates::default();
        for (name, source) in overrides {
            let Some(slot) = t.sources.get_mut(name.as_str()) else {
                return Err(HtmlError::UnknownTemplate { name });
            };
            *slot = source;
        }
        t.environment()?;
        Ok(t)
    }

    /// The source in use for a template (an override or the default).
    pub fn source(&self, name: &str) -> Option<&str> {
        self.sources.get(name).map(String::as_str)
    }

    fn environment(&self) -> Result<Environment<'_>, HtmlError> {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.set_auto_escape_callback(|name| {
            if name.ends_with(".html") {
                AutoEscape::Html
            } else {
                AutoEscape::None
            }
        });
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.set_keep_trailing_newline(true);
        for (name, source) in &self.sources {
            env.add_template(name, source)
                .map_err(|source| HtmlError::Template {
                    template: (*name).to_owned(),
                    source,
                })?;
        }
        Ok(env)
    }

    /// The invoice as a complete HTML document in `lang`; `paid` is its payment, if any.
    pub fn render(
        &self,
        inv: &Invoice,
        paid: Option<&Paid>,
        lang: Language,
    ) -> Result<String, HtmlError> {
        let name = format!("invoice.{}.html", lang.as_str());
        let env = self.environment()?;
        env.get_template(&name)
            .and_then(|t| t.render(View::of(inv, paid, lang)))
            .map_err(|source| HtmlError::Template {
                template: name,
                source,
            })
    }
}

/// What the templates read: the invoice with its amounts formatted in the currency's decimals
/// (`"59.00"`, `"6490"` for JPY) and its dates as `YYYY-MM-DD`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct View {
    /// `en` or `zh`.
    pub lang: &'static str,
    /// The invoice number.
    pub number: String,
    /// The customer id.
    pub customer: String,
    /// Day of issue.
    pub issued: NaiveDate,
    /// Day payment is due.
    pub due: NaiveDate,
    /// ISO 4217 code.
    pub currency: String,
    /// `renewal` or `order`.
    pub kind: &'static str,
    /// The VPS it is for, if known.
    pub vps: Option<String>,
    /// The service period of its lines: the first day of the earliest, the end of the latest.
    pub period: Option<Period>,
    /// The seller.
    pub seller: Party,
    /// The buyer.
    pub buyer: Party,
    /// The lines.
    pub lines: Vec<LineView>,
    /// Before tax.
    pub subtotal: String,
    /// The tax per rate (none, or one: the buyer's country).
    pub taxes: Vec<TaxView>,
    /// To pay.
    pub total: String,
    /// Whether a payment settled it.
    pub paid: bool,
    /// The day (UTC) it was paid.
    pub paid_on: Option<NaiveDate>,
}

/// A service period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Period {
    /// First day.
    pub from: NaiveDate,
    /// The day it ends.
    pub to: NaiveDate,
}

/// Seller or buyer as the invoice snapshot has them (the seller has no company).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Party {
    /// Name.
    pub name: String,
    /// Company.
    pub company: Option<String>,
    /// Postal address lines.
    pub address: Vec<String>,
    /// ISO 3166-1 alpha-2 code.
    pub country: Option<String>,
    /// Tax id.
    pub tax_id: Option<String>,
    /// E-mail.
    pub email: Option<String>,
}

/// One line, formatted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LineView {
    /// What it is.
    pub description: String,
    /// The product id.
    pub product: String,
    /// The VPS, if any.
    pub vps: Option<String>,
    /// First day of its period, if any.
    pub from: Option<NaiveDate>,
    /// Last day of its period, if any.
    pub to: Option<NaiveDate>,
    /// How many.
    pub quantity: u32,
    /// Price of one.
    pub unit: String,
    /// Its amount.
    pub amount: String,
}

/// The tax of one rate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TaxView {
    /// The country whose rate applies.
    pub country: String,
    /// Percent, as written in `billing.tax` (`"19"`).
    pub rate: String,
    /// The tax.
    pub amount: String,
    /// Whether the prices include it.
    pub inclusive: bool,
}

impl View {
    /// The view of `inv` in `lang`, paid by `paid`.
    pub fn of(inv: &Invoice, paid: Option<&Paid>, lang: Language) -> View {
        let m = |x: Money| inv.money(x);
        let from = inv.lines.iter().filter_map(|l| l.period.map(|p| p.0)).min();
        let to = inv.lines.iter().filter_map(|l| l.period.map(|p| p.1)).max();
        let period = from.zip(to).map(|(from, to)| Period { from, to });
        let vps = inv.vps().map(ToString::to_string);
        let s = &inv.seller;
        let b = &inv.buyer;
        View {
            lang: lang.as_str(),
            number: inv.number.to_string(),
            customer: inv.customer.to_string(),
            issued: inv.issued,
            due: inv.due,
            currency: inv.currency.to_string(),
            kind: inv.kind.as_str(),
            vps,
            period,
            seller: Party {
                name: s.name.clone(),
                company: None,
                address: s.address.clone(),
                country: s.country.as_ref().map(ToString::to_string),
                tax_id: s.tax_id.clone(),
                email: s.email.as_ref().map(ToString::to_string),
            },
            buyer: Party {
                name: b.name.clone(),
                company: b.company.clone(),
                address: b.address.clone(),
                country: b.country.as_ref().map(ToString::to_string),
                tax_id: b.tax_id.clone(),
                email: b.email.as_ref().map(ToString::to_string),
            },
            lines: inv
                .lines
                .iter()
                .map(|l| LineView {
                    description: l.description.clone(),
                    product: l.product.to_string(),
                    vps: l.vps.as_ref().map(ToString::to_string),
                    from: l.period.map(|p| p.0),
                    to: l.period.map(|p| p.1),
                    quantity: l.quantity,
                    unit: m(l.unit),
                    amount: m(l.amount),
                })
                .collect(),
            subtotal: m(inv.subtotal),
            taxes: inv
                .tax
                .iter()
                .map(|t| TaxView {
                    country: t.country.to_string(),
                    rate: t.rate.to_string(),
                    amount: m(t.amount),
                    inclusive: t.inclusive,
                })
                .collect(),
            total: m(inv.total),
            paid: paid.is_some(),
            paid_on: paid.map(|p| p.at.date_naive()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::invoice::{BuyerSnapshot, InvoiceKind, Line, SellerSnapshot, TaxLine};
    use chrono::{TimeZone, Utc};

    fn d(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    fn invoice(currency: &str, unit: &str, tax: Option<(&str, &str, &str)>) -> Invoice {
        let unit: Money = unit.parse().unwrap();
        let tax = tax.map(|(c, r, a)| TaxLine {
            country: c.parse().unwrap(),
            rate: r.parse().unwrap(),
            amount: a.parse().unwrap(),
            inclusive: false,
        });
        let total = unit + tax.as_ref().map_or(Money::ZERO, |t| t.amount);
        Invoice {
            number: "INV-2026-000002".parse().unwrap(),
            customer: "c-0001".parse().unwrap(),
            issued: d("2026-12-05"),
            due: d("2026-12-12"),
            seller: SellerSnapshot {
                name: "GPLHost LLC".into(),
                address: vec!["1 Example Plaza".into(), "Tampa, FL 33602".into()],
                country: Some("US".parse().unwrap()),
                tax_id: Some("US-123".into()),
                email: Some("billing@example.net".parse().unwrap()),
            },
            buyer: BuyerSnapshot {
                name: "Jane Doe".into(),
                company: Some("Doe Consulting".into()),
                address: vec!["Hauptstrasse 1".into(), "10115 Berlin".into()],
                country: Some("DE".parse().unwrap()),
                tax_id: Some("DE999999999".into()),
                email: Some("jane@example.net".parse().unwrap()),
            },
            currency: currency.parse().unwrap(),
            lines: vec![Line {
                description: "Advanced VPS, 1 month".into(),
                product: "advanced".parse().unwrap(),
                vps: Some("xen02".parse().unwrap()),
                period: Some((d("2026-12-05"), d("2027-01-05"))),
                quantity: 1,
                unit,
                amount: unit,
            }],
            subtotal: unit,
            tax,
            total,
            kind: InvoiceKind::Renewal {
                vps: "xen02".parse().unwrap(),
                expires: d("2026-12-05"),
                new_expiry: d("2027-01-05"),
            },
        }
    }

    fn paid() -> Paid {
        Paid {
            event: "evt_1".into(),
            at: Utc.with_ymd_and_hms(2026, 12, 6, 23, 30, 0).unwrap(),
            amount: "70.21".parse().unwrap(),
        }
    }

    #[test]
    fn an_english_invoice_shows_seller_buyer_dates_lines_tax_and_totals() {
        let inv = invoice("USD", "59.00", Some(("DE", "19", "11.21")));
        let html = Templates::default()
            .render(&inv, None, Language::En)
            .unwrap();
        assert!(html.starts_with("<!DOCTYPE html>"), "{html}");
        assert!(html.contains("<html lang=\"en\">"));
        for want in [
            "GPLHost LLC",
            "Tampa, FL 33602",
            "US-123",
            "Jane Doe",
            "Doe Consulting",
            "10115 Berlin",
            "DE999999999",
            "INV-2026-000002",
            "2026-12-05",
            "2026-12-12",
            "2027-01-05",
            "Advanced VPS, 1 month",
            "59.00 USD",
            "Tax 19&nbsp;% (DE)",
            "11.21 USD",
            "70.21 USD",
            "Unpaid",
            "Please pay this invoice by 2026-12-12",
        ] {
            assert!(html.contains(want), "lacks {want}:\n{html}");
        }
        assert!(!html.contains(">Paid<"), "not paid");
        // Self-contained: nothing loaded from anywhere, no script.
        for bad in ["<script", "<link", "src=", "url(", "@import", "http"] {
            assert!(!html.contains(bad), "{bad} in:\n{html}");
        }
        // Printable on A4 and Letter: page margins, no fixed page size.
        assert!(html.contains("@page { margin:"), "{html}");
        assert!(!html.contains("size: A4") && !html.contains("size: letter"));
    }

    #[test]
    fn a_paid_invoice_says_so_with_the_utc_day() {
        let inv = invoice("USD", "59.00", None);
        let html = Templates::default()
            .render(&inv, Some(&paid()), Language::En)
            .unwrap();
        assert!(html.contains("Paid on 2026-12-06"), "{html}");
        assert!(html.contains("this invoice is paid"), "{html}");
        assert!(html.contains("No tax is charged"), "{html}");
        assert!(!html.contains("Unpaid"), "{html}");
    }

    #[test]
    fn yen_amounts_have_no_decimals() {
        let inv = invoice("JPY", "6490", Some(("DE", "10", "649")));
        let html = Templates::default()
            .render(&inv, None, Language::En)
            .unwrap();
        assert!(html.contains("6490 JPY"), "{html}");
        assert!(html.contains("649 JPY"), "{html}");
        assert!(html.contains("7139 JPY"), "{html}");
        assert!(!html.contains("6490.00"), "{html}");
        assert!(!html.contains("7139.0"), "{html}");
    }

    #[test]
    fn a_chinese_invoice_is_in_chinese() {
        let inv = invoice("CNY", "399.00", None);
        let html = Templates::default()
            .render(&inv, Some(&paid()), Language::Zh)
            .unwrap();
        assert!(html.contains("<html lang=\"zh-Hans\">"), "{html}");
        for want in [
            "发票",
            "开票日期",
            "付款截止日期",
            "已付款",
            "合计",
            "399.00 CNY",
        ] {
            assert!(html.contains(want), "lacks {want}:\n{html}");
        }
        assert!(!html.contains("Invoice number"), "{html}");
    }

    #[test]
    fn customer_text_is_escaped_and_inert() {
        let mut inv = invoice("USD", "59.00", None);
        inv.buyer.name = "Jane <script>alert(1)</script>".into();
        inv.buyer.company = Some("\"><img src=x onerror=alert(2)>".into());
        inv.buyer.address = vec!["R&D </style><style>*{display:none}".into()];
        inv.lines[0].description = "<b>bold</b>".into();
        for lang in [Language::En, Language::Zh] {
            let html = Templates::default().render(&inv, None, lang).unwrap();
            assert!(!html.contains("<script>"), "{html}");
            assert!(!html.contains("<img"), "{html}");
            assert!(!html.contains("<b>bold"), "{html}");
            assert_eq!(html.matches("</style>").count(), 1, "{html}");
            assert!(html.contains("Jane &lt;script&gt;alert(1)&lt;"), "{html}");
            assert!(html.contains("&quot;&gt;&lt;img"), "{html}");
            assert!(html.contains("R&amp;D &lt;"), "{html}");
        }
    }

    #[test]
    fn overrides_replace_defaults_and_bad_ones_are_refused() {
        let mut o = BTreeMap::new();
        o.insert(
            "invoice.en.html".to_owned(),
            "{{ number }} for {{ buyer.name }}: {{ total }} {{ currency }}".to_owned(),
        );
        let t = Templates::with_overrides(o).unwrap();
        let inv = invoice("USD", "59.00", None);
        assert_eq!(
            t.render(&inv, None, Language::En).unwrap(),
            "INV-2026-000002 for Jane Doe: 59.00 USD"
        );
        assert_eq!(
            t.source("invoice.zh.html"),
            Templates::default_source("invoice.zh.html")
        );

        let mut typo = BTreeMap::new();
        typo.insert("invoice.fr.html".to_owned(), "x".to_owned());
        let err = Templates::with_overrides(typo).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("templates/invoice/invoice.fr.html: not an invoice template"),
            "{err}"
        );

        let mut broken = BTreeMap::new();
        broken.insert("layout.html".to_owned(), "{% if %}".to_owned());
        let err = Templates::with_overrides(broken).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("invoice template layout.html: "),
            "{err}"
        );

        // A variable the view does not have is an error, not blank text.
        let mut unknown = BTreeMap::new();
        unknown.insert("invoice.en.html".to_owned(), "{{ nope }}".to_owned());
        let t = Templates::with_overrides(unknown).unwrap();
        let err = t.render(&inv, None, Language::En).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("invoice template invoice.en.html"),
            "{err}"
        );
        assert_eq!(Templates::names().len(), 4);
    }
}
