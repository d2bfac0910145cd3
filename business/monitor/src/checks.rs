//! Service checks as data: what to probe for a VPS (address, port, timeout) and the state
//! machine of each check (up, or down after N failures in a row; which mail a change owes).
//!
//! The collector probes ([`Target`]s in, [`Outcome`]s out) and stores each [`CheckState`];
//! here is only what the results mean. A check is paused, never probed nor mailed, while its
//! VPS is stopped or suspended.

use std::net::IpAddr;

use chrono::{DateTime, Utc};
use model::Vps;
use model::settings::MonitorSettings;
use model::values::{Check, Power, State};

/// One probe to run: a VPS's check resolved to an address, a port and a timeout.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Target {
    /// What is checked.
    pub service: Check,
    /// The address probed (one the VPS owns).
    pub addr: IpAddr,
    /// The TCP port; `None` for ping.
    pub port: Option<u16>,
    /// Seconds the probe may take.
    pub timeout_secs: u32,
}

impl Target {
    /// The check's key, unique within its VPS and safe in a mail id and a database key:
    /// `ssh-22-192-0-2-10`, `ping-2001-db8--1`.
    pub fn key(&self) -> String {
        let addr: String = self
            .addr
            .to_string()
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        match self.port {
            Some(p) => format!("{}-{p}-{addr}", self.service),
            None => format!("{}-{addr}", self.service),
        }
    }

    /// How people read the check: `ssh 192.0.2.10:22`, `ping 192.0.2.10`.
    pub fn label(&self) -> String {
        match (self.port, self.addr) {
            (Some(p), IpAddr::V6(a)) => format!("{} [{a}]:{p}", self.service),
            (Some(p), a) => format!("{} {a}:{p}", self.service),
            (None, a) => format!("{} {a}", self.service),
        }
    }
}

/// The checks of a VPS, resolved: each check's address (the VPS's first address when it
/// names none), port and timeout. A VPS without an address has none (the loader refuses
/// such checks anyway).
pub fn targets(v: &Vps, s: &MonitorSettings) -> Vec<Target> {
    let Some(first) = v.ips.first().map(model::values::VpsAddr::host) else {
        return Vec::new();
    };
    let mut out: Vec<Target> = v
        .monitor
        .checks
        .iter()
        .map(|c| Target {
            service: c.service,
            addr: c.address.unwrap_or(first),
            port: c.port.or(c.service.default_port()),
            timeout_secs: c.timeout_secs.unwrap_or(s.check_timeout_secs),
        })
        .collect();
    // The same check listed twice is probed (and mailed) once.
    let mut seen = std::collections::BTreeSet::new();
    out.retain(|t| seen.insert(t.key()));
    out
}

/// Whether a VPS's checks run now: not while it is stopped, suspended or destroyed.
pub fn active(v: &Vps) -> bool {
    v.state == State::Active && v.power == Power::Running
}

/// What one probe found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The service answered as it should (what it said, shortened).
    Up(String),
    /// It did not: refused, timed out, or answered wrongly (why).
    Down(String),
    /// The collector cannot probe this here (no `ping` program, say): not the VPS's fault,
    /// so the check's state stays as it was.
    Unavailable(String),
}

/// A check's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Passing (or not failed often enough yet to count as down).
    Up,
    /// Failed [`MonitorSettings::check_failures`] times in a row, or more.
    Down,
}

impl Status {
    /// `up` or `down`, as in the alert mail's `state`.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Up => "up",
            Status::Down => "down",
        }
    }
}

/// What is known of one check, kept between collections.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CheckState {
    /// The check as people read it (`ssh 192.0.2.10:22`).
    pub label: String,
    /// Up or down.
    pub status: Status,
    /// Since when it has that status (the first failure of the run that made it down).
    pub since: DateTime<Utc>,
    /// Failures in a row (0 after a pass).
    pub failures: u32,
    /// The first failure of the current run of failures, if any.
    pub failing_since: Option<DateTime<Utc>>,
    /// What the last probe found (an answer, or why it failed).
    pub detail: String,
    /// When it was last probed.
    pub checked: Option<DateTime<Utc>>,
    /// The status the last mail sent told: a mail is owed while it differs from `status`.
    pub mailed: Status,
    /// Not probed: the VPS is stopped or suspended.
    pub paused: bool,
}

impl CheckState {
    /// A check never probed: taken as up, nothing owed.
    pub fn new(label: String, now: DateTime<Utc>) -> CheckState {
        CheckState {
            label,
            status: Status::Up,
            since: now,
            failures: 0,
            failing_since: None,
            detail: String::new(),
            checked: None,
            mailed: Status::Up,
            paused: false,
        }
    }

    /// The mail this state owes: an alert (`Down`) or a recovery (`Up`) when the status
    /// differs from the one last mailed, and never while paused.
    pub fn mail_due(&self) -> Option<Status> {
        (!self.paused && self.status != self.mailed).then_some(self.status)
    }
}

/// The longest detail kept from a probe: a banner is a line, not a page.
const DETAIL_MAX: usize = 200;

/// A probe's text made safe to store, mail and show: printable characters only, one line,
/// at most `DETAIL_MAX` characters.
pub fn clean_detail(s: &str) -> String {
    let one: String = s
        .trim()
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .filter(|c| !matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'))
        .collect();
    match one.char_indices().nth(DETAIL_MAX) {
        Some((i, _)) => format!("{}…", &one[..i]),
        None => one,
    }
}

/// The next state of a check after one collection. `outcome` is `None` when the check was
/// not probed because its VPS is stopped or suspended (paused: failures forgotten, nothing
/// mailed). A check is down after `threshold` failures in a row, `since` its first failure;
/// one pass makes it up again.
pub fn step(
    prev: CheckState,
    outcome: Option<&Outcome>,
    threshold: u32,
    now: DateTime<Utc>,
) -> CheckState {
    let mut s = prev;
    let Some(outcome) = outcome else {
        s.paused = true;
        s.failures = 0;
        s.failing_since = None;
        return s;
    };
    s.paused = false;
    match outcome {
        Outcome::Unavailable(why) => {
            s.detail = clean_detail(why);
        }
        Outcome::Up(what) => {
            s.failures = 0;
            s.failing_since = None;
            s.detail = clean_detail(what);
            s.checked = Some(now);
            if s.status == Status::Down {
                s.status = Status::Up;
                s.since = now;
            }
        }
        Outcome::Down(why) => {
            s.failures = s.failures.saturating_add(1);
            let first = *s.failing_since.get_or_insert(now);
            s.detail = clean_detail(why);
            s.checked = Some(now);
            if s.status == Status::Up && s.failures >= threshold.max(1) {
                s.status = Status::Down;
                s.since = first;
            }
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t(min: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 6, 10, min, 0)
            .single()
            .unwrap_or_default()
    }

    fn down() -> Outcome {
        Outcome::Down("connection refused".into())
    }

    fn up() -> Outcome {
        Outcome::Up("SSH-2.0-OpenSSH_9.2".into())
    }

    #[test]
    fn down_only_after_n_failures_in_a_row_and_up_after_one_pass() {
        let mut s = CheckState::new("ssh 192.0.2.10:22".into(), t(0));
        s = step(s, Some(&down()), 3, t(1));
        s = step(s, Some(&down()), 3, t(2));
        assert_eq!((s.status, s.failures, s.mail_due()), (Status::Up, 2, None));
        // A pass in between starts the count again: flapping is ridden out.
        s = step(s, Some(&up()), 3, t(3));
        s = step(s, Some(&down()), 3, t(4));
        s = step(s, Some(&down()), 3, t(5));
        assert_eq!(s.mail_due(), None);
        s = step(s, Some(&down()), 3, t(6));
        assert_eq!(s.status, Status::Down);
        assert_eq!(s.since, t(4), "down since the first failure of the run");
        assert_eq!(s.mail_due(), Some(Status::Down));
        s.mailed = Status::Down;
        s = step(s, Some(&down()), 3, t(7));
        assert_eq!(
            (s.failures, s.mail_due()),
            (4, None),
            "one alert per change"
        );
        s = step(s, Some(&up()), 3, t(8));
        assert_eq!((s.status, s.since), (Status::Up, t(8)));
        assert_eq!(s.mail_due(), Some(Status::Up), "the recovery mail");
        s.mailed = Status::Up;
        assert_eq!(s.mail_due(), None);
    }

    #[test]
    fn a_mail_not_sent_stays_owed_and_a_change_undone_owes_none() {
        let mut s = CheckState::new("smtp 192.0.2.10:25".into(), t(0));
        s = step(s, Some(&down()), 1, t(1));
        assert_eq!(s.mail_due(), Some(Status::Down));
        // The mail server was away: still owed next time.
        s = step(s, Some(&down()), 1, t(2));
        assert_eq!(s.mail_due(), Some(Status::Down));
        // Back up before any alert went out: nothing to tell.
        s = step(s, Some(&up()), 1, t(3));
        assert_eq!(s.mail_due(), None);
    }

    #[test]
    fn a_stopped_or_suspended_vps_is_paused_and_mailed_nothing() {
        let mut s = CheckState::new("http 192.0.2.10:80".into(), t(0));
        s = step(s, Some(&down()), 2, t(1));
        s = step(s, Some(&down()), 2, t(2));
        assert_eq!(s.mail_due(), Some(Status::Down));
        s = step(s, None, 2, t(3));
        assert!(s.paused);
        assert_eq!(s.mail_due(), None, "no mail while the VPS is stopped");
        assert_eq!(s.failures, 0);
        // Started again and passing: its down state was never mailed, so nothing is owed.
        s = step(s, Some(&up()), 2, t(4));
        assert_eq!((s.status, s.mail_due()), (Status::Up, None));

        // An alert that went out before the stop gets its recovery once back.
        let mut s = CheckState::new("http 192.0.2.10:80".into(), t(0));
        s = step(s, Some(&down()), 1, t(1));
        s.mailed = Status::Down;
        s = step(s, None, 1, t(2));
        s = step(s, None, 1, t(3));
        assert_eq!(s.mail_due(), None);
        s = step(s, Some(&up()), 1, t(4));
        assert_eq!(s.mail_due(), Some(Status::Up));
    }

    #[test]
    fn an_unavailable_probe_changes_nothing_but_the_detail() {
        let s0 = CheckState::new("ping 192.0.2.10".into(), t(0));
        let s = step(
            s0.clone(),
            Some(&Outcome::Unavailable("no ping".into())),
            1,
            t(1),
        );
        assert_eq!((s.status, s.failures, s.checked), (Status::Up, 0, None));
        assert_eq!(s.detail, "no ping");
    }

    #[test]
    fn details_are_one_short_printable_line() {
        assert_eq!(
            clean_detail(" 220 hi\r\nthere\u{1b}[31m "),
            "220 hi  there [31m"
        );
        assert_eq!(clean_detail("a\u{202e}b"), "ab");
        let long = clean_detail(&"x".repeat(500));
        assert_eq!(long.chars().count(), DETAIL_MAX + 1);
    }

    #[test]
    fn targets_take_the_first_address_the_service_port_and_the_default_timeout() {
        use model::inventory::ServiceCheck;
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let inv = model::Inventory::load(&root).unwrap_or_else(|e| panic!("{e}"));
        let mut v = inv
            .vps
            .values()
            .next()
            .cloned()
            .unwrap_or_else(|| panic!("a VPS"));
        let first = v.ips[0].host();
        v.monitor.checks = vec![
            ServiceCheck::plain(Check::Ping),
            ServiceCheck::plain(Check::Ssh),
            ServiceCheck::plain(Check::Ssh),
            ServiceCheck {
                service: Check::Http,
                address: Some(first),
                port: Some(8080),
                timeout_secs: Some(9),
            },
        ];
        let s = MonitorSettings::default();
        let got = targets(&v, &s);
        assert_eq!(got.len(), 3, "the duplicate ssh check is one: {got:?}");
        assert_eq!(got[0].port, None);
        assert_eq!(
            (got[1].addr, got[1].port, got[1].timeout_secs),
            (first, Some(22), 5)
        );
        assert_eq!((got[2].port, got[2].timeout_secs), (Some(8080), 9));
        assert!(got[2].key().parse::<String>().is_ok());
        for t in &got {
            assert!(
                t.key()
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'),
                "{}",
                t.key()
            );
        }
        let v6 = Target {
            service: Check::Smtp,
            addr: "2001:db8::25".parse().unwrap_or(first),
            port: Some(25),
            timeout_secs: 5,
        };
        assert_eq!(v6.key(), "smtp-25-2001-db8--25");
        assert_eq!(v6.label(), "smtp [2001:db8::25]:25");
    }
}
