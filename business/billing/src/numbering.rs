//! Invoice numbering: the next number from the rule (`billing.invoice_number`) and the numbers
//! already issued, gapless and per year when the rule has `{year}`; and the check for gaps and
//! duplicates among issued numbers that `gitvps validate` shows.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{Datelike, NaiveDate};
use model::policy::{InvoiceNumber, InvoiceRule};

/// Why a number cannot be given, or what is wrong with the numbers issued.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NumberingError {
    /// Two issued numbers spell the same place in the sequence.
    #[error("invoice {number}: sequence number {seq}{} is already used by {first}", year_text(*year))]
    Duplicate {
        /// The later number.
        number: InvoiceNumber,
        /// The number issued first with that place.
        first: InvoiceNumber,
        /// Its year, for a yearly sequence.
        year: Option<i32>,
        /// The sequence number.
        seq: u64,
    },
    /// The sequence skips numbers.
    #[error("invoice {next}: sequence numbers {from} to {to}{} are missing before it (numbers are gapless)", year_text(*year))]
    Gap {
        /// The first number issued after the gap.
        next: InvoiceNumber,
        /// Its year, for a yearly sequence.
        year: Option<i32>,
        /// First missing sequence number.
        from: u64,
        /// Last missing sequence number.
        to: u64,
    },
    /// The rule gives a number that is already taken (by a file that does not follow it).
    #[error("the rule gives {0}, which is already issued")]
    Taken(String),
    /// The rule gives a text that is not an invoice number.
    #[error("the rule gives `{0}`, which is not an invoice number")]
    Invalid(String),
}

fn year_text(y: Option<i32>) -> String {
    y.map(|y| format!(" of {y}")).unwrap_or_default()
}

/// Gives numbers one after the other, starting after the ones already issued.
#[derive(Debug, Clone)]
pub struct Numberer {
    rule: InvoiceRule,
    /// The last sequence number per year (`None`: a rule without `{year}`).
    last: BTreeMap<Option<i32>, u64>,
    taken: BTreeSet<String>,
}

impl Numberer {
    /// A numberer for `rule`, after the numbers `issued` (those that do not follow the rule,
    /// like numbers of an earlier rule, only stay taken).
    pub fn new<'a>(
        rule: &InvoiceRule,
        issued: impl IntoIterator<Item = &'a InvoiceNumber>,
    ) -> Self {
        let mut last: BTreeMap<Option<i32>, u64> = BTreeMap::new();
        let mut taken = BTreeSet::new();
        for n in issued {
            taken.insert(n.as_str().to_owned());
            if let Some((year, seq)) = rule.parse_number(n.as_str()) {
                let e = last.entry(year).or_insert(0);
                *e = (*e).max(seq);
            }
        }
        Numberer {
            rule: rule.clone(),
            last,
            taken,
        }
    }

    /// The next number for an invoice issued on `date` (its year counts when the rule has
    /// `{year}`); it is taken from then on.
    pub fn next(&mut self, date: NaiveDate) -> Result<InvoiceNumber, NumberingError> {
        let year = self.rule.per_year().then(|| date.year());
        let seq = self.last.get(&year).copied().unwrap_or(0).saturating_add(1);
        let text = self.rule.format(year.unwrap_or(0), seq);
        if self.taken.contains(&text) {
            return Err(NumberingError::Taken(text));
        }
        let n = text
            .parse::<InvoiceNumber>()
            .map_err(|_| NumberingError::Invalid(text.clone()))?;
        self.last.insert(year, seq);
        self.taken.insert(text);
        Ok(n)
    }
}

/// The next number under `rule` after `issued`, for an invoice issued on `date`.
pub fn next_number<'a>(
    rule: &InvoiceRule,
    issued: impl IntoIterator<Item = &'a InvoiceNumber>,
    date: NaiveDate,
) -> Result<InvoiceNumber, NumberingError> {
    Numberer::new(rule, issued).next(date)
}

/// Gaps and duplicates among the issued numbers that follow `rule`: each sequence (each year's,
/// with `{year}`) must run 1, 2, 3, … without a hole. Numbers of another rule are not checked.
pub fn check<'a>(
    rule: &InvoiceRule,
    issued: impl IntoIterator<Item = &'a InvoiceNumber>,
) -> Vec<NumberingError> {
    let mut seqs: BTreeMap<Option<i32>, BTreeMap<u64, Vec<&InvoiceNumber>>> = BTreeMap::new();
    for n in issued {
        if let Some((year, seq)) = rule.parse_number(n.as_str()) {
            seqs.entry(year)
                .or_default()
                .entry(seq)
                .or_default()
                .push(n);
        }
    }
    let mut out = Vec::new();
    for (year, by_seq) in seqs {
        let mut expected = 1u64;
        for (seq, mut numbers) in by_seq {
            numbers.sort();
            let Some((&first, later)) = numbers.split_first() else {
                continue;
            };
            if seq > expected {
                out.push(NumberingError::Gap {
                    next: first.clone(),
                    year,
                    from: expected,
                    to: seq - 1,
                });
            }
            for later in later {
                out.push(NumberingError::Duplicate {
                    number: (*later).clone(),
                    first: first.clone(),
                    year,
                    seq,
                });
            }
            expected = seq.saturating_add(1);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> InvoiceNumber {
        s.parse().unwrap()
    }

    fn d(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    #[test]
    fn numbers_follow_on_and_restart_each_year() {
        let rule = InvoiceRule::default();
        assert_eq!(
            next_number(&rule, &[], d("2026-12-05")),
            Ok(n("INV-2026-000001"))
        );
        let issued = [
            n("INV-2026-000001"),
            n("INV-2026-000002"),
            n("INV-2025-000009"),
        ];
        assert_eq!(
            next_number(&rule, &issued, d("2026-12-05")),
            Ok(n("INV-2026-000003"))
        );
        assert_eq!(
            next_number(&rule, &issued, d("2027-01-01")),
            Ok(n("INV-2027-000001"))
        );
        let mut numberer = Numberer::new(&rule, &issued);
        let run: Vec<_> = (0..3).map(|_| numberer.next(d("2026-12-31"))).collect();
        assert_eq!(
            run,
            [
                Ok(n("INV-2026-000003")),
                Ok(n("INV-2026-000004")),
                Ok(n("INV-2026-000005"))
            ]
        );
    }

    #[test]
    fn without_year_the_sequence_never_restarts() {
        let rule: InvoiceRule = "F{seq:04}".parse().unwrap();
        let issued = [n("F0001"), n("F0002"), n("INV-2025-000009")];
        assert_eq!(next_number(&rule, &issued, d("2030-01-01")), Ok(n("F0003")));
    }

    #[test]
    fn a_number_taken_by_another_rule_is_refused() {
        let rule: InvoiceRule = "INV{seq}".parse().unwrap();
        // "INV01" does not follow the rule (padding), so the sequence starts at 1; "INV1" is free.
        assert_eq!(
            next_number(&rule, &[n("INV01")], d("2026-01-01")),
            Ok(n("INV1"))
        );
    }

    #[test]
    fn gaps_and_duplicates_are_found() {
        let rule: InvoiceRule = "INV-{year}-{seq:03}".parse().unwrap();
        let issued = [
            n("INV-2026-001"),
            n("INV-2026-002"),
            n("INV-2026-005"),
            n("INV-2025-002"),
            n("OLD-7"),
        ];
        let errs: Vec<String> = check(&rule, &issued)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            errs,
            [
                "invoice INV-2025-002: sequence numbers 1 to 1 of 2025 are missing before it (numbers are gapless)",
                "invoice INV-2026-005: sequence numbers 3 to 4 of 2026 are missing before it (numbers are gapless)",
            ]
        );
        let clean = [n("INV-2026-001"), n("INV-2026-002")];
        assert!(check(&rule, &clean).is_empty());
        // A number follows the rule in one spelling only, so a duplicate is one number given
        // twice (two files claiming it).
        assert_eq!(
            check(&rule, &[n("INV-2026-001"), n("INV-2026-001")]),
            [NumberingError::Duplicate {
                number: n("INV-2026-001"),
                first: n("INV-2026-001"),
                year: Some(2026),
                seq: 1
            }]
        );
        let flat: InvoiceRule = "X{seq}".parse().unwrap();
        let e = check(&flat, &[n("X1"), n("X3")]);
        assert_eq!(
            e,
            [NumberingError::Gap {
                next: n("X3"),
                year: None,
                from: 2,
                to: 2
            }]
        );
    }
}
