//! SOA serials that only grow: a zone keeps its serial while its content stays the same, and
//! a changed zone gets `max(previous + 1, YYYYMMDD00)`, computed against the previous zone text.

use chrono::{Datelike, NaiveDate};

/// The serial of a zone text gitvps wrote: the sixth field of its `@ IN SOA` line.
pub fn serial_of(text: &str) -> Option<u32> {
    soa_fields(text).and_then(|f| f.get(5)?.parse().ok())
}

fn soa_fields(text: &str) -> Option<Vec<&str>> {
    text.lines()
        .map(|l| l.split('\t').collect::<Vec<_>>())
        .find(|f| f.len() >= 6 && f[0] == "@" && f[2] == "SOA")
}

/// `text` with its SOA serial replaced by 0: what [`crate::zone::render`] gives with serial 0.
fn without_serial(text: &str) -> String {
    text.lines()
        .map(|l| {
            let mut f: Vec<&str> = l.split('\t').collect();
            if f.len() >= 6 && f[0] == "@" && f[2] == "SOA" {
                f[5] = "0";
            }
            f.join("\t") + "\n"
        })
        .collect()
}

/// `YYYYMMDD00` of a day.
fn dated(today: NaiveDate) -> u32 {
    let v = i64::from(today.year()) * 1_000_000
        + i64::from(today.month()) * 10_000
        + i64::from(today.day()) * 100;
    u32::try_from(v.max(0)).unwrap_or(u32::MAX)
}

/// The serial of a zone whose text with serial 0 is `unserialed`, given the text last built
/// or published (`previous`, if any):
///
/// - the previous serial when only the serial could differ (nothing to publish);
/// - `max(previous + 1, YYYYMMDD00 of today)` when the content changed;
/// - `YYYYMMDD00` of today for a new zone, or a previous text without a readable serial.
///
/// So serials grow with every change, read like dates, and allow 100 changes a day before they
/// run ahead of the calendar (and still grow).
pub fn next_serial(previous: Option<&str>, unserialed: &str, today: NaiveDate) -> u32 {
    let date = dated(today);
    match previous.and_then(|p| Some((p, serial_of(p)?))) {
        Some((p, s)) if without_serial(p) == unserialed => s,
        Some((_, s)) => s.saturating_add(1).max(date),
        None => date,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap_or_default()
    }

    fn zone(serial: u32, ptr: &str) -> String {
        format!(
            "; x\n$ORIGIN z.\n@\tIN\tSOA\tns1.example.net.\th.example.net.\t{serial}\t1\t2\t3\t4\n@\tIN\tNS\tns1.example.net.\n10\tIN\tPTR\t{ptr}.\n"
        )
    }

    #[test]
    fn reads_the_serial_of_its_own_text() {
        assert_eq!(serial_of(&zone(2026010203, "a")), Some(2026010203));
        assert_eq!(serial_of("@ IN SOA a. b. 1 2 3 4 5\n"), None);
        assert_eq!(serial_of(""), None);
    }

    #[test]
    fn an_unchanged_zone_keeps_its_serial_whatever_the_day() {
        let prev = zone(2025123107, "a");
        assert_eq!(
            next_serial(Some(&prev), &zone(0, "a"), day(2026, 3, 1)),
            2025123107
        );
    }

    #[test]
    fn a_changed_zone_gets_a_larger_serial() {
        let prev = zone(2026030104, "a");
        // The same day: one more.
        assert_eq!(
            next_serial(Some(&prev), &zone(0, "b"), day(2026, 3, 1)),
            2026030105
        );
        // A later day: that day's first.
        assert_eq!(
            next_serial(Some(&prev), &zone(0, "b"), day(2026, 3, 2)),
            2026030200
        );
        // A clock behind the previous serial (or 100 changes in a day): still one more.
        assert_eq!(
            next_serial(Some(&prev), &zone(0, "b"), day(2020, 1, 1)),
            2026030105
        );
        let full = zone(2026030199, "a");
        assert_eq!(
            next_serial(Some(&full), &zone(0, "b"), day(2026, 3, 1)),
            2026030200
        );
    }

    #[test]
    fn a_new_or_foreign_zone_starts_at_the_day() {
        assert_eq!(
            next_serial(None, &zone(0, "a"), day(2026, 3, 1)),
            2026030100
        );
        assert_eq!(
            next_serial(Some("garbage"), &zone(0, "a"), day(2026, 3, 1)),
            2026030100
        );
    }
}
