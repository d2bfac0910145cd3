//! Value types of the billing policy in `gitvps.toml`: tax rates, the invoice numbering rule
//! and the invoice numbers it makes, and the payment methods offered at checkout.

use std::fmt;
use std::str::FromStr;

use rust_decimal::Decimal;

use crate::values::{keyword, string_value};

/// A tax rate in percent, from a decimal string (`"19"`, `"20.0"`, `"7.7"`): 0 to 100, at most
/// four decimals. Never a float.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TaxRate(Decimal);

impl TaxRate {
    /// The rate in percent (19 for 19 %).
    pub fn percent(self) -> Decimal {
        self.0
    }
}

impl FromStr for TaxRate {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let digits = |t: &str, max: usize| {
            (1..=max).contains(&t.len()) && t.bytes().all(|b| b.is_ascii_digit())
        };
        let ok = match s.split_once('.') {
            Some((i, d)) => digits(i, 3) && digits(d, 4),
            None => digits(s, 3),
        };
        let bad = || {
            format!(
                "`{}` is not a tax rate: write the percentage as a decimal string, like \"19\" or \"7.7\"",
                s.escape_debug()
            )
        };
        if !ok {
            return Err(bad());
        }
        let d = Decimal::from_str(s).map_err(|_| bad())?;
        if d > Decimal::ONE_HUNDRED {
            return Err(format!("`{s}` is above 100 percent"));
        }
        Ok(TaxRate(d.normalize()))
    }
}

impl fmt::Display for TaxRate {
    /// The percentage without trailing zeros: `19`, `7.7`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl serde::Serialize for TaxRate {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

string_value! {
    /// An invoice number (`INV-2026-000124`): 1 to 64 letters, digits, `-` and `_`, starting
    /// with a letter or digit. Safe as a file name (`billing/invoices/<number>.toml`).
    #[derive(PartialOrd, Ord, Hash)]
    pub struct InvoiceNumber(String);
    /// The number as text.
    pub fn as_str;
    fn parse(s) {
        let ok = (1..=64).contains(&s.len())
            && s.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
            && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if ok {
            Ok(s.to_owned())
        } else {
            Err(format!(
                "`{}` is not an invoice number: 1 to 64 letters, digits, '-' and '_'",
                s.escape_debug()
            ))
        }
    }
}

/// One piece of an [`InvoiceRule`].
#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    /// Text copied as is.
    Lit(String),
    /// `{year}`: the issue year, four digits.
    Year,
    /// `{seq}` or `{seq:0N}`: the sequence number, zero-padded to `width` digits.
    Seq { width: usize },
}

/// How invoices are numbered (`billing.invoice_number`): text with the placeholders `{year}`
/// (the issue year) and `{seq}` or `{seq:0N}` (the sequence, zero-padded to N digits).
///
/// With `{year}` the sequence restarts at 1 each year; without, it never restarts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvoiceRule {
    text: String,
    parts: Vec<Part>,
}

impl InvoiceRule {
    /// Whether the sequence restarts each year (the rule has `{year}`).
    pub fn per_year(&self) -> bool {
        self.parts.contains(&Part::Year)
    }

    /// The number of the `seq`-th invoice of `year`.
    pub fn format(&self, year: i32, seq: u64) -> String {
        let mut s = String::new();
        for p in &self.parts {
            match p {
                Part::Lit(t) => s.push_str(t),
                Part::Year => s.push_str(&format!("{year:04}")),
                Part::Seq { width } => s.push_str(&format!("{seq:0width$}")),
            }
        }
        s
    }

    /// The year (when the rule has `{year}`) and sequence number that `number` spells under
    /// this rule, or `None` when it does not follow the rule exactly (padding included).
    pub fn parse_number(&self, number: &str) -> Option<(Option<i32>, u64)> {
        let mut rest = number;
        let (mut year, mut seq) = (None, None);
        for p in &self.parts {
            match p {
                Part::Lit(t) => rest = rest.strip_prefix(t.as_str())?,
                Part::Year => {
                    let y = rest
                        .get(..4)
                        .filter(|y| y.bytes().all(|b| b.is_ascii_digit()))?;
                    year = Some(y.parse().ok()?);
                    rest = &rest[4..];
                }
                Part::Seq { .. } => {
                    let n = rest.bytes().take_while(u8::is_ascii_digit).count();
                    seq = Some(rest[..n].parse::<u64>().ok()?);
                    rest = &rest[n..];
                }
            }
        }
        let (year, seq) = (year, seq?);
        (rest.is_empty() && self.format(year.unwrap_or(0), seq) == number).then_some((year, seq))
    }
}

impl FromStr for InvoiceRule {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = |why: &str| {
            Err(format!(
                "`{}` is not an invoice numbering rule: {why}",
                s.escape_debug()
            ))
        };
        if s.is_empty() || s.len() > 40 {
            return bad("write 1 to 40 characters, like \"INV-{year}-{seq:06}\"");
        }
        let mut parts = Vec::new();
        let mut rest = s;
        while !rest.is_empty() {
            if let Some(after) = rest.strip_prefix('{') {
                let Some((name, tail)) = after.split_once('}') else {
                    return bad("a `{` is not closed");
                };
                parts.push(match name {
                    "year" => Part::Year,
                    "seq" => Part::Seq { width: 1 },
                    _ => match name.strip_prefix("seq:0").map(str::parse::<usize>) {
                        Some(Ok(width)) if (1..=12).contains(&width) => Part::Seq { width },
                        _ => {
                            return bad(&format!(
                                "unknown placeholder `{{{name}}}`: use {{year}}, {{seq}} or {{seq:0N}} (N from 1 to 12)"
                            ));
                        }
                    },
                });
                rest = tail;
            } else {
                let n = rest.find(['{', '}']).unwrap_or(rest.len());
                let (lit, tail) = rest.split_at(n);
                if lit.is_empty() {
                    return bad("a `}` without its `{`");
                }
                if !lit
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                {
                    return bad(
                        "outside placeholders only letters, digits, '-' and '_' are allowed (a number names a file)",
                    );
                }
                parts.push(Part::Lit(lit.to_owned()));
                rest = tail;
            }
        }
        let seqs = parts
            .iter()
            .filter(|p| matches!(p, Part::Seq { .. }))
            .count();
        let years = parts.iter().filter(|p| **p == Part::Year).count();
        if seqs != 1 {
            return bad("it needs exactly one {seq} (or {seq:0N})");
        }
        if years > 1 {
            return bad("{year} may appear once");
        }
        // The sequence has no fixed width: what follows it must not be a digit.
        let seq_at = parts.iter().position(|p| matches!(p, Part::Seq { .. }));
        if let Some(next) = seq_at.and_then(|i| parts.get(i + 1)) {
            let digit_next = match next {
                Part::Lit(t) => t.starts_with(|c: char| c.is_ascii_digit()),
                Part::Year | Part::Seq { .. } => true,
            };
            if digit_next {
                return bad("{seq} must be followed by a letter, '-', '_' or the end, not digits");
            }
        }
        if let Some(Part::Lit(t)) = parts.first()
            && t.starts_with(['-', '_'])
        {
            return bad("a number must start with a letter or digit");
        }
        Ok(InvoiceRule {
            text: s.to_owned(),
            parts,
        })
    }
}

impl Default for InvoiceRule {
    /// `INV-{year}-{seq:06}`.
    fn default() -> Self {
        InvoiceRule {
            text: "INV-{year}-{seq:06}".to_owned(),
            parts: vec![
                Part::Lit("INV-".to_owned()),
                Part::Year,
                Part::Lit("-".to_owned()),
                Part::Seq { width: 6 },
            ],
        }
    }
}

impl fmt::Display for InvoiceRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl serde::Serialize for InvoiceRule {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

keyword!(
    /// A Stripe Checkout payment method type (`billing.payment_methods`).
    PaymentMethod, "Stripe payment method type", {
        /// Cards (and the wallets Stripe shows with them).
        Card = "card",
        /// Alipay.
        Alipay = "alipay",
        /// WeChat Pay.
        WechatPay = "wechat_pay",
        /// Link.
        Link = "link",
        /// SEPA Direct Debit.
        SepaDebit = "sepa_debit",
        /// iDEAL.
        Ideal = "ideal",
        /// Bancontact.
        Bancontact = "bancontact",
        /// EPS.
        Eps = "eps",
        /// Przelewy24.
        P24 = "p24",
        /// BLIK.
        Blik = "blik",
        /// Klarna.
        Klarna = "klarna",
        /// Afterpay / Clearpay.
        AfterpayClearpay = "afterpay_clearpay",
        /// Affirm.
        Affirm = "affirm",
        /// ACH Direct Debit.
        UsBankAccount = "us_bank_account",
        /// Bacs Direct Debit.
        BacsDebit = "bacs_debit",
        /// BECS Direct Debit.
        AuBecsDebit = "au_becs_debit",
        /// Pre-authorized debits (Canada).
        AcssDebit = "acss_debit",
        /// Boleto.
        Boleto = "boleto",
        /// OXXO.
        Oxxo = "oxxo",
        /// Konbini.
        Konbini = "konbini",
        /// PayNow.
        Paynow = "paynow",
        /// PromptPay.
        Promptpay = "promptpay",
        /// GrabPay.
        Grabpay = "grabpay",
        /// FPX.
        Fpx = "fpx",
        /// Cash App Pay.
        Cashapp = "cashapp",
        /// Revolut Pay.
        RevolutPay = "revolut_pay",
        /// MobilePay.
        Mobilepay = "mobilepay",
        /// TWINT.
        Twint = "twint",
        /// Multibanco.
        Multibanco = "multibanco",
        /// Pix.
        Pix = "pix",
        /// Swish.
        Swish = "swish",
        /// Amazon Pay.
        AmazonPay = "amazon_pay",
        /// PayPal.
        Paypal = "paypal",
        /// Bank transfers.
        CustomerBalance = "customer_balance",
    }
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tax_rates() {
        let r = |s: &str| s.parse::<TaxRate>().map(|r| r.to_string());
        assert_eq!(r("19"), Ok("19".to_owned()));
        assert_eq!(r("20.0"), Ok("20".to_owned()));
        assert_eq!(r("7.70"), Ok("7.7".to_owned()));
        assert_eq!(r("0"), Ok("0".to_owned()));
        for bad in [
            "", "-1", "19%", "1e2", "100.5", "101", "7.12345", ".5", "5.", " 5",
        ] {
            assert!(bad.parse::<TaxRate>().is_err(), "{bad}");
        }
    }

    #[test]
    fn rules_format_and_parse_numbers() {
        let rule: InvoiceRule = "INV-{year}-{seq:06}".parse().unwrap();
        assert_eq!(rule, InvoiceRule::default());
        assert!(rule.per_year());
        assert_eq!(rule.format(2026, 124), "INV-2026-000124");
        assert_eq!(
            rule.parse_number("INV-2026-000124"),
            Some((Some(2026), 124))
        );
        assert_eq!(rule.format(2026, 1_234_567), "INV-2026-1234567");
        assert_eq!(
            rule.parse_number("INV-2026-1234567"),
            Some((Some(2026), 1_234_567))
        );
        for other in [
            "INV-2026-124",
            "INV-2026-000124x",
            "XNV-2026-000124",
            "INV-26-000124",
        ] {
            assert_eq!(rule.parse_number(other), None, "{other}");
        }
        let flat: InvoiceRule = "F{seq}".parse().unwrap();
        assert!(!flat.per_year());
        assert_eq!(flat.format(2026, 7), "F7");
        assert_eq!(flat.parse_number("F7"), Some((None, 7)));
        assert_eq!(flat.parse_number("F07"), None);
        let tight: InvoiceRule = "{year}{seq:04}".parse().unwrap();
        assert_eq!(tight.parse_number("20260042"), Some((Some(2026), 42)));
    }

    #[test]
    fn bad_rules_are_refused() {
        for bad in [
            "",
            "INV",
            "INV-{year}",
            "INV-{seq}-{seq}",
            "{year}{year}-{seq}",
            "INV-{seq}{year}",
            "INV-{seq}2",
            "INV/{seq}",
            "INV {seq}",
            "INV-{seq:6}",
            "INV-{seq:013}",
            "INV-{month}-{seq}",
            "INV-{seq",
            "INV-}{seq}",
            "-{seq}",
            "INV-{year}-{seq:06}-and-a-very-long-suffix",
        ] {
            assert!(bad.parse::<InvoiceRule>().is_err(), "{bad}");
        }
    }

    #[test]
    fn invoice_numbers_are_file_names() {
        assert!("INV-2026-000124".parse::<InvoiceNumber>().is_ok());
        for bad in ["", "../x", "INV 1", "-INV", &"I".repeat(65)] {
            assert!(bad.parse::<InvoiceNumber>().is_err(), "{bad}");
        }
    }
}
