//! The monthly usage file `usage/<YYYY-MM>.toml`: each VPS's traffic in its current period and
//! the quota level the customer was last mailed about, as `gitvps monitor usage` commits it.
//!
//! The collector's database is the source of the totals; this file is what billing, the panel
//! and the traffic policy read without it. One file per calendar month of the writing day; an
//! entry holds the VPS's whole period, which may have started in the month before.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use chrono::{DateTime, Datelike, Months, NaiveDate, Utc};

use crate::diag::{Diagnostics, Origin, SourceFile};
use crate::ids::VpsId;
use crate::read::{FromValue, Obj, Reader};
use crate::settings::{TrafficLevel, TrafficReset};
use crate::values::Size;

/// One accounting period: `[start, end)`, in UTC days.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Period {
    /// The first day.
    pub start: NaiveDate,
    /// The first day of the next period.
    pub end: NaiveDate,
}

impl Period {
    /// Whether the instant `at` falls in the period.
    pub fn contains(&self, at: DateTime<Utc>) -> bool {
        let day = at.date_naive();
        self.start <= day && day < self.end
    }
}

/// The reset day of the month `first_of_month` starts, for a contract on day `day`: that day,
/// or the month's last day when it is shorter.
fn reset_in(first_of_month: NaiveDate, day: u32) -> Option<NaiveDate> {
    let next = first_of_month.checked_add_months(Months::new(1))?;
    let last = next.pred_opt()?.day();
    first_of_month.with_day(day.min(last))
}

/// The traffic period `today` falls in, for a VPS created on `created`: from the reset day
/// (the 1st, or the contract's day of the month, the month's last day in shorter months) to
/// the next one; `None` past the calendar's last representable date.
pub fn period(reset: TrafficReset, created: NaiveDate, today: NaiveDate) -> Option<Period> {
    let day = match reset {
        TrafficReset::First => 1,
        TrafficReset::Contract => created.day(),
    };
    let this_month = today.with_day(1)?;
    let this = reset_in(this_month, day)?;
    let (start, end) = if today >= this {
        let next = this_month.checked_add_months(Months::new(1))?;
        (this, reset_in(next, day)?)
    } else {
        let prev = this_month.checked_sub_months(Months::new(1))?;
        (reset_in(prev, day)?, this)
    };
    Some(Period { start, end })
}

/// The folder of the usage files.
pub const DIR: &str = "usage";

/// One VPS's traffic in one period.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Entry {
    /// The period's first day (UTC).
    pub start: NaiveDate,
    /// The next period's first day (UTC).
    pub end: NaiveDate,
    /// Bytes the VPS received in the period.
    pub rx: u64,
    /// Bytes the VPS sent in the period.
    pub tx: u64,
    /// The bytes that count against the quota (`[traffic] count`).
    pub counted: u64,
    /// The quota of the VPS's plan when written (0: unmetered).
    pub quota: Size,
    /// The highest level the customer was mailed about this period.
    pub mailed: TrafficLevel,
    /// When the totals were read from the collector.
    pub written: DateTime<Utc>,
}

/// A usage file: the entries by VPS.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct UsageFile {
    /// Each VPS's entry.
    pub vps: BTreeMap<VpsId, Entry>,
}

/// The repo-relative path of the usage file of the month holding `day`.
pub fn path(day: NaiveDate) -> String {
    format!("{DIR}/{}.toml", day.format("%Y-%m"))
}

const ENTRY_KEYS: &[&str] = &[
    "start", "end", "rx", "tx", "counted", "quota", "mailed", "written",
];

/// A date-time with an explicit offset (`2026-12-06T03:00:00Z`), as UTC.
struct Instant(DateTime<Utc>);

impl FromValue for Instant {
    fn from_value(v: &toml_edit::Value) -> Result<Self, String> {
        let toml_edit::Value::Datetime(dt) = v else {
            return Err("expected a date-time like 2026-12-06T03:00:00Z".into());
        };
        let dt = dt.value();
        if dt.offset.is_none() || dt.time.is_none() {
            return Err(format!(
                "{dt} has no time zone: write it like 2026-12-06T03:00:00Z"
            ));
        }
        DateTime::parse_from_rfc3339(&dt.to_string())
            .map(|d| Instant(d.with_timezone(&Utc)))
            .map_err(|e| format!("{dt}: {e}"))
    }
}

/// Reads a usage file from its text; `path` is repo-relative, for the errors.
pub fn parse(path: &str, text: &str) -> Result<UsageFile, Diagnostics> {
    let src = SourceFile::new(path, text.to_owned());
    let mut r = Reader::new(&src);
    let doc = crate::load::parse_doc(&src).map_err(|d| Diagnostics(vec![d]))?;
    let mut out = UsageFile::default();
    let top = Obj::new(doc.as_table(), "", None, &["vps"]);
    let mut o = Origin::synthetic(path);
    if let Some(vps) = top.sub(&mut r, &mut o, "vps", &[]) {
        for (key, item) in vps.table().iter() {
            let field = format!("vps.{key}");
            let span = item.span();
            let Ok(id) = key.parse::<VpsId>() else {
                r.error(span, &field, format!("{key} is not a VPS id"));
                continue;
            };
            let Some(t) = item.as_table_like() else {
                r.error(span, &field, "expected a table");
                continue;
            };
            let e = Obj::new(t, format!("{field}."), span, ENTRY_KEYS);
            // Every field read (each error recorded), then put together.
            let start = e.req(&mut r, &mut o, "start");
            let end = e.req(&mut r, &mut o, "end");
            let rx = e.req(&mut r, &mut o, "rx");
            let tx = e.req(&mut r, &mut o, "tx");
            let counted = e.req(&mut r, &mut o, "counted");
            let quota = e.req(&mut r, &mut o, "quota");
            let mailed = e.req_kw(&mut r, &mut o, "mailed");
            let written = e.req::<Instant>(&mut r, &mut o, "written");
            let entry = (|| {
                Some(Entry {
                    start: start?,
                    end: end?,
                    rx: rx?,
                    tx: tx?,
                    counted: counted?,
                    quota: quota?,
                    mailed: mailed?,
                    written: written?.0,
                })
            })();
            e.finish(&mut r);
            if let Some(entry) = entry {
                if entry.end <= entry.start {
                    e.error(&mut r, "end", "the period ends before it starts");
                }
                out.vps.insert(id, entry);
            }
        }
    }
    top.finish(&mut r);
    if r.diags.is_empty() {
        Ok(out)
    } else {
        Err(Diagnostics(r.diags).sorted())
    }
}

/// The text of a usage file; [`parse`] reads it back.
pub fn render(f: &UsageFile) -> String {
    let mut s = String::from(
        "# Traffic per VPS in its current period, written once a day by `gitvps monitor usage`\n\
         # from the collector's samples (bytes; `counted` per [traffic] count). Do not edit:\n\
         # the next run writes it again.\n",
    );
    for (id, e) in &f.vps {
        let _ = write!(
            s,
            "\n[vps.{id}]\nstart = {}\nend = {}\nrx = {}\ntx = {}\ncounted = {}\nquota = \"{}\"\nmailed = \"{}\"\nwritten = {}\n",
            e.start,
            e.end,
            e.rx,
            e.tx,
            e.counted,
            e.quota,
            e.mailed,
            e.written.format("%Y-%m-%dT%H:%M:%SZ"),
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn entry() -> Entry {
        Entry {
            start: NaiveDate::from_ymd_opt(2026, 11, 17).unwrap(),
            end: NaiveDate::from_ymd_opt(2026, 12, 17).unwrap(),
            rx: 123_456_789,
            tx: 42,
            counted: 123_456_831,
            quota: "1 TiB".parse().unwrap(),
            mailed: TrafficLevel::Warn,
            written: Utc.with_ymd_and_hms(2026, 12, 6, 3, 0, 0).unwrap(),
        }
    }

    #[test]
    fn a_rendered_file_reads_back() {
        let mut f = UsageFile::default();
        f.vps.insert("vps-1001".parse().unwrap(), entry());
        f.vps.insert("vps-1002".parse().unwrap(), {
            let mut e = entry();
            e.mailed = TrafficLevel::Under;
            e
        });
        let text = render(&f);
        assert_eq!(parse("usage/2026-12.toml", &text).unwrap(), f, "{text}");
        assert_eq!(
            parse("usage/2026-12.toml", &render(&UsageFile::default())).unwrap(),
            UsageFile::default()
        );
        assert_eq!(
            path(NaiveDate::from_ymd_opt(2026, 1, 31).unwrap()),
            "usage/2026-01.toml"
        );
    }

    #[test]
    fn errors_name_the_file_line_and_field() {
        let mut f = UsageFile::default();
        f.vps.insert("vps-1001".parse().unwrap(), entry());
        let text = render(&f)
            .replace("rx = 123456789", "rx = -1")
            .replace("mailed = \"warn\"", "mailed = \"loud\"");
        let e = parse("usage/2026-12.toml", &text).unwrap_err().to_string();
        assert!(
            e.contains("usage/2026-12.toml:8:") && e.contains("vps.vps-1001.rx"),
            "{e}"
        );
        assert!(e.contains("vps.vps-1001.mailed"), "{e}");

        let text = render(&f).replace(
            "written = 2026-12-06T03:00:00Z",
            "written = 2026-12-06T03:00:00",
        );
        let e = parse("usage/2026-12.toml", &text).unwrap_err().to_string();
        assert!(
            e.contains("vps.vps-1001.written") && e.contains("time zone"),
            "{e}"
        );

        let e = parse("usage/2026-12.toml", "[vps.\"NO PE\"]\nx = 1\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("usage/2026-12.toml:1:") && e.contains("not a VPS id"),
            "{e}"
        );
        let e = parse("usage/2026-12.toml", "[vps.vps-1]\nstart = 2026-12-01\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("missing required field"), "{e}");
        let e = parse("usage/2026-12.toml", "vps = [")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("usage/2026-12.toml:1:"), "{e}");
    }
}
