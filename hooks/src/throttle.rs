//! Login and order throttling: back-off after failures and in-flight caps per account and per
//! client address, and the bounded queue in front of argon2 that answers "retry later" when full.
//!
//! The state is in memory, per process (on Lambda, per warm instance): it slows a guesser down
//! and keeps a flood from starving real logins; it is not an account lockout shared by every
//! instance. Clocks are arguments ([`Instant`]), so the rules are tested without waiting.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use model::settings::HooksSettings;

/// Most password checks one account or one address may have in flight at once.
pub const MAX_IN_FLIGHT_PER_KEY: usize = 2;
/// Most keys remembered; past it, idle keys are forgotten first.
pub const MAX_KEYS: usize = 100_000;
/// A key's failures are forgotten after this long without a new one.
pub const FORGET_AFTER: Duration = Duration::from_secs(3600);

/// Why a request must wait: answered 429 with `Retry-After`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Throttled {
    /// Too many failures lately: back off.
    #[error("too many failed attempts; retry in {0} s")]
    Backoff(u64),
    /// Too many attempts in flight for this account or address.
    #[error("too many attempts at once")]
    InFlight,
    /// The password-hashing queue is full (or the wait would pass the bound).
    #[error("the server is busy; retry in {0} s")]
    Busy(u64),
    /// The customer's rate for this route (`hooks.per_minute`) is used up.
    #[error("too many requests of this kind; retry in {0} s")]
    Rate(u64),
    /// The customer's daily cap for this route is reached (until midnight UTC).
    #[error("the daily limit of this kind of request is reached; retry in {0} s")]
    Daily(u64),
}

impl Throttled {
    /// Seconds the client should wait (`Retry-After`), at least 1.
    pub fn retry_after(self) -> u64 {
        match self {
            Throttled::Backoff(s)
            | Throttled::Busy(s)
            | Throttled::Rate(s)
            | Throttled::Daily(s) => s.max(1),
            Throttled::InFlight => 1,
        }
    }
}

/// The back-off rule: how long a key is blocked after `failures` failures.
pub fn backoff(failures: u32, free: u32, max: Duration) -> Duration {
    if failures < free.max(1) {
        return Duration::ZERO;
    }
    let doublings = (failures - free.max(1)).min(30);
    Duration::from_secs(1u64 << doublings).min(max)
}

#[derive(Debug, Default)]
struct KeyState {
    failures: u32,
    blocked_until: Option<Instant>,
    in_flight: usize,
    last: Option<Instant>,
}

/// Per-key failure counts and in-flight attempts.
#[derive(Debug, Clone, Default)]
pub struct Throttle {
    keys: Arc<Mutex<HashMap<String, KeyState>>>,
}

/// An attempt admitted by [`Throttle::admit`]; its keys' in-flight count drops when it does.
#[derive(Debug)]
pub struct Permit {
    throttle: Throttle,
    keys: Vec<String>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        if let Ok(mut m) = self.throttle.keys.lock() {
            for k in &self.keys {
                if let Some(s) = m.get_mut(k) {
                    s.in_flight = s.in_flight.saturating_sub(1);
                }
            }
        }
    }
}

impl Throttle {
    /// Admits an attempt for every key (account, address), or says how long to wait.
    pub fn admit(&self, keys: &[String], now: Instant) -> Result<Permit, Throttled> {
        let mut m = self.keys.lock().map_err(|_| Throttled::Busy(1))?;
        for k in keys {
            if let Some(s) = m.get(k) {
                if let Some(until) = s.blocked_until
                    && until > now
                {
                    let secs = (until - now).as_secs_f64().ceil() as u64;
                    return Err(Throttled::Backoff(secs));
                }
                if s.in_flight >= MAX_IN_FLIGHT_PER_KEY {
                    return Err(Throttled::InFlight);
                }
            }
        }
        if m.len() + keys.len() > MAX_KEYS {
            m.retain(|_, s| {
                s.in_flight > 0 || s.last.is_some_and(|l| now.duration_since(l) < FORGET_AFTER)
            });
            if m.len() + keys.len() > MAX_KEYS {
                return Err(Throttled::Busy(1));
            }
        }
        for k in keys {
            m.entry(k.clone()).or_default().in_flight += 1;
        }
        Ok(Permit {
            throttle: self.clone(),
            keys: keys.to_vec(),
        })
    }

    /// Records a failure on every key: past `free` failures, each blocks the key for a
    /// doubling time up to `max`.
    pub fn failed(&self, keys: &[String], free: u32, max: Duration, now: Instant) {
        let Ok(mut m) = self.keys.lock() else {
            return;
        };
        for k in keys {
            let s = m.entry(k.clone()).or_default();
            if s.last
                .is_some_and(|l| now.duration_since(l) >= FORGET_AFTER)
            {
                s.failures = 0;
            }
            s.failures = s.failures.saturating_add(1);
            s.last = Some(now);
            let wait = backoff(s.failures, free, max);
            s.blocked_until = (!wait.is_zero()).then(|| now + wait);
        }
    }

    /// Whether none of `keys` has a failure on record: such a login may use the reserved lane
    /// of the hash queue ([`HashGate::run`]).
    pub fn clean(&self, keys: &[String]) -> bool {
        self.keys.lock().is_ok_and(|m| {
            keys.iter()
                .all(|k| m.get(k).is_none_or(|s| s.failures == 0))
        })
    }

    /// Forgets the failures of `key` (an account that logged in; never an address, so a
    /// guesser cannot clear its address with an account of its own).
    pub fn succeeded(&self, key: &str) {
        if let Ok(mut m) = self.keys.lock()
            && let Some(s) = m.get_mut(key)
        {
            s.failures = 0;
            s.blocked_until = None;
        }
    }
}

/// A customer's allowance for one route: a bucket of `per_minute` requests refilled evenly
/// over the minute, and a count per UTC day.
#[derive(Debug)]
struct Allowance {
    tokens: f64,
    refilled: Instant,
    day: chrono::NaiveDate,
    today: u32,
}

/// Quotas on what becomes a commit, per customer and route (in memory, per process).
#[derive(Debug, Clone, Default)]
pub struct Quotas {
    m: Arc<Mutex<HashMap<(String, &'static str), Allowance>>>,
}

impl Quotas {
    /// Takes one request of `route` for `customer`, or says how long to wait.
    #[allow(clippy::too_many_arguments)]
    pub fn take(
        &self,
        customer: &str,
        route: &'static str,
        per_minute: u32,
        per_day: u32,
        now: Instant,
        utc: chrono::DateTime<chrono::Utc>,
    ) -> Result<(), Throttled> {
        let mut m = self.m.lock().map_err(|_| Throttled::Busy(1))?;
        if m.len() >= MAX_KEYS {
            m.retain(|_, a| now.duration_since(a.refilled) < Duration::from_secs(86_400));
            if m.len() >= MAX_KEYS {
                return Err(Throttled::Busy(1));
            }
        }
        let cap = f64::from(per_minute.max(1));
        let day = utc.date_naive();
        let a = m
            .entry((customer.to_owned(), route))
            .or_insert_with(|| Allowance {
                tokens: cap,
                refilled: now,
                day,
                today: 0,
            });
        if a.day != day {
            a.day = day;
            a.today = 0;
        }
        let rate = cap / 60.0;
        a.tokens = (a.tokens + now.duration_since(a.refilled).as_secs_f64() * rate).min(cap);
        a.refilled = now;
        if a.today >= per_day {
            let midnight = day
                .succ_opt()
                .and_then(|d| d.and_hms_opt(0, 0, 0))
                .map(|t| t.and_utc());
            let secs = midnight.map_or(86_400, |t| (t - utc).num_seconds().max(1));
            return Err(Throttled::Daily(u64::try_from(secs).unwrap_or(86_400)));
        }
        if a.tokens < 1.0 {
            let secs = ((1.0 - a.tokens) / rate).ceil();
            return Err(Throttled::Rate(secs as u64));
        }
        a.tokens -= 1.0;
        a.today += 1;
        Ok(())
    }
}

/// The throttle key of a client address: IPv6 by /64 (one customer's whole network).
pub fn addr_key(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => format!("addr:{v4}"),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => format!("addr:{v4}"),
            None => {
                let s = v6.segments();
                format!("addr:{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
    }
}

/// The client address from a trusted proxy's header value: its last entry (the one the proxy
/// itself appended; earlier ones are whatever the client sent).
pub fn addr_from_header(value: &str) -> Option<IpAddr> {
    let last = value.rsplit(',').next()?.trim();
    last.parse::<IpAddr>()
        .ok()
        .or_else(|| last.parse::<std::net::SocketAddr>().ok().map(|s| s.ip()))
}

/// The queue in front of argon2: [`HashGate::slots`] hashes at once, one of them reserved for
/// logins with a clean record (an existing account, no recent failure for it or its address),
/// so a flood of bad logins cannot starve them. A request waits for a slot at most `max_wait`
/// (answered [`Throttled::Busy`] past it, or at once when the expected wait, from the recent
/// hash times, would pass it).
#[derive(Debug)]
pub struct HashGate {
    sem: tokio::sync::Semaphore,
    reserved: tokio::sync::Semaphore,
    slots: usize,
    waiting: AtomicUsize,
    /// Recent time of one hash, microseconds (moving average).
    avg_us: AtomicU64,
}

impl HashGate {
    /// A gate with `slots` hashes at once (one of them reserved when `slots` > 1).
    pub fn new(slots: usize) -> HashGate {
        let slots = slots.max(1);
        let reserved = usize::from(slots > 1);
        HashGate {
            sem: tokio::sync::Semaphore::new(slots - reserved),
            reserved: tokio::sync::Semaphore::new(reserved),
            slots,
            waiting: AtomicUsize::new(0),
            avg_us: AtomicU64::new(100_000),
        }
    }

    /// How many hashes may run at once.
    pub fn slots(&self) -> usize {
        self.slots
    }

    /// The expected wait for a shared slot if one more request queued now.
    pub fn expected_wait(&self) -> Duration {
        let shared = self.slots - usize::from(self.slots > 1);
        let busy = shared - self.sem.available_permits().min(shared);
        let ahead = self.waiting.load(Ordering::Relaxed) + busy;
        if ahead < shared {
            return Duration::ZERO;
        }
        let rounds = (ahead + 1 - shared).div_ceil(shared) as u64;
        Duration::from_micros(self.avg_us.load(Ordering::Relaxed).saturating_mul(rounds))
    }

    /// Runs `f` (argon2) on the blocking pool once a slot is free, if that is within
    /// `max_wait`; a `clean` request may also take the reserved slot.
    pub async fn run<R: Send + 'static>(
        &self,
        max_wait: Duration,
        clean: bool,
        f: impl FnOnce() -> R + Send + 'static,
    ) -> Result<Option<R>, Throttled> {
        let busy = || Throttled::Busy(max_wait.as_secs().max(1));
        if !clean && self.expected_wait() > max_wait {
            return Err(busy());
        }
        let queued = Queued::new(&self.waiting);
        let acquired = tokio::time::timeout(max_wait, async {
            if clean {
                tokio::select! {
                    p = self.sem.acquire() => p,
                    p = self.reserved.acquire() => p,
                }
            } else {
                self.sem.acquire().await
            }
        })
        .await;
        drop(queued);
        let _slot = match acquired {
            Ok(Ok(slot)) => slot,
            Ok(Err(_)) => return Ok(None),
            Err(_) => return Err(busy()),
        };
        let started = Instant::now();
        let out = tokio::task::spawn_blocking(f).await.ok();
        let took = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        let old = self.avg_us.load(Ordering::Relaxed);
        self.avg_us
            .store(old - old / 4 + took / 4, Ordering::Relaxed);
        Ok(out)
    }
}

/// One request counted as waiting, until it stops waiting (even when its future is dropped).
struct Queued<'a>(&'a AtomicUsize);

impl<'a> Queued<'a> {
    fn new(n: &'a AtomicUsize) -> Queued<'a> {
        n.fetch_add(1, Ordering::Relaxed);
        Queued(n)
    }
}

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The limits of [`Throttle`] from the settings.
pub fn login_limits(s: &HooksSettings) -> (u32, Duration) {
    (
        s.login_free_failures,
        Duration::from_secs(u64::from(s.login_max_backoff_secs)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backoff_doubles_after_the_free_failures_up_to_the_cap() {
        let max = Duration::from_secs(900);
        assert_eq!(backoff(2, 3, max), Duration::ZERO);
        assert_eq!(backoff(3, 3, max), Duration::from_secs(1));
        assert_eq!(backoff(4, 3, max), Duration::from_secs(2));
        assert_eq!(backoff(8, 3, max), Duration::from_secs(32));
        assert_eq!(backoff(40, 3, max), max);
        assert_eq!(backoff(u32::MAX, 3, max), max);
    }

    #[test]
    fn wrong_passwords_block_the_account_and_the_address_and_a_login_frees_the_account() {
        let t = Throttle::default();
        let keys = vec!["acct:c-0001".to_owned(), "addr:192.0.2.1".to_owned()];
        let t0 = Instant::now();
        let max = Duration::from_secs(900);
        for i in 0..3 {
            drop(t.admit(&keys, t0).unwrap());
            t.failed(&keys, 3, max, t0 + Duration::from_millis(i));
        }
        let t2 = t0 + Duration::from_millis(2);
        assert_eq!(t.admit(&keys, t2).unwrap_err(), Throttled::Backoff(1));
        // Another address, same account: blocked too; the same address, another account too.
        let other_addr = vec!["acct:c-0001".to_owned(), "addr:192.0.2.9".to_owned()];
        assert!(t.admit(&other_addr, t2).is_err());
        let other_acct = vec!["acct:c-0002".to_owned(), "addr:192.0.2.1".to_owned()];
        assert!(t.admit(&other_acct, t2).is_err());
        // After the wait, one more failure doubles it.
        let later = t0 + Duration::from_secs(3);
        drop(t.admit(&keys, later).unwrap());
        t.failed(&keys, 3, max, later);
        assert_eq!(t.admit(&keys, later).unwrap_err(), Throttled::Backoff(2));
        // The account's owner logs in (after the wait): its key is cleared, not the address.
        t.succeeded("acct:c-0001");
        assert!(t.admit(&other_addr, later).is_ok());
        assert!(t.admit(&other_acct, later).is_err());
    }

    #[test]
    fn at_most_two_attempts_per_key_are_in_flight() {
        let t = Throttle::default();
        let k = vec!["addr:192.0.2.1".to_owned()];
        let now = Instant::now();
        let a = t.admit(&k, now).unwrap();
        let _b = t.admit(&k, now).unwrap();
        assert_eq!(t.admit(&k, now).unwrap_err(), Throttled::InFlight);
        drop(a);
        assert!(t.admit(&k, now).is_ok());
    }

    #[test]
    fn client_addresses_come_from_the_last_entry_of_the_trusted_header() {
        assert_eq!(
            addr_from_header("10.0.0.1, 203.0.113.7"),
            Some("203.0.113.7".parse().unwrap())
        );
        assert_eq!(
            addr_from_header("forged, 198.51.100.2:4711").map(|a| a.to_string()),
            Some("198.51.100.2".into())
        );
        assert_eq!(addr_from_header("not an address"), None);
        assert_eq!(
            addr_key("2001:db8:1:2:3:4:5:6".parse().unwrap()),
            "addr:2001:db8:1:2::/64"
        );
        assert_eq!(
            addr_key("::ffff:192.0.2.1".parse().unwrap()),
            "addr:192.0.2.1"
        );
    }

    #[tokio::test]
    async fn a_full_hash_queue_answers_busy_instead_of_waiting_past_the_bound() {
        // Two slots: one shared, one reserved for clean logins.
        let gate = Arc::new(HashGate::new(2));
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let g = gate.clone();
        let held = tokio::spawn(async move {
            g.run(Duration::from_secs(5), false, move || rx.recv().is_ok())
                .await
        });
        while gate.sem.available_permits() > 0 {
            tokio::task::yield_now().await;
        }
        let r = gate.run(Duration::from_millis(50), false, || true).await;
        assert_eq!(r.unwrap_err(), Throttled::Busy(1));
        // A clean login still gets the reserved slot.
        let r = gate.run(Duration::from_millis(50), true, || 5).await;
        assert_eq!(r, Ok(Some(5)));
        tx.send(()).unwrap();
        assert_eq!(held.await.unwrap(), Ok(Some(true)));
        let r = gate.run(Duration::from_millis(50), false, || 7).await;
        assert_eq!(r, Ok(Some(7)));
    }

    #[test]
    fn a_customer_gets_its_rate_per_route_then_its_daily_cap() {
        let q = Quotas::default();
        let t0 = Instant::now();
        let utc: chrono::DateTime<chrono::Utc> = "2026-05-01T23:59:00Z".parse().unwrap();
        for _ in 0..6 {
            q.take("c-0001", "reboot", 6, 8, t0, utc).unwrap();
        }
        assert_eq!(
            q.take("c-0001", "reboot", 6, 8, t0, utc),
            Err(Throttled::Rate(10))
        );
        // Other routes and customers have their own.
        q.take("c-0001", "ticket", 6, 8, t0, utc).unwrap();
        q.take("c-0002", "reboot", 6, 8, t0, utc).unwrap();
        // Ten seconds refill one.
        let t1 = t0 + Duration::from_secs(10);
        q.take("c-0001", "reboot", 6, 8, t1, utc).unwrap();
        let t2 = t0 + Duration::from_secs(60);
        q.take("c-0001", "reboot", 6, 8, t2, utc).unwrap();
        // The daily cap (8) holds until midnight UTC, a minute away.
        assert_eq!(
            q.take("c-0001", "reboot", 6, 8, t2, utc),
            Err(Throttled::Daily(60))
        );
        let tomorrow: chrono::DateTime<chrono::Utc> = "2026-05-02T00:00:01Z".parse().unwrap();
        q.take("c-0001", "reboot", 6, 8, t2, tomorrow).unwrap();
    }
}
