//! Repo-wide settings (`gitvps.toml`) and the names of the secrets read from the environment.
//! Every setting has a default, so a repo without `gitvps.toml` works.

use std::collections::BTreeMap;

use crate::ids::OsId;
use crate::policy::{InvoiceRule, PaymentMethod, TaxRate};
use crate::values::{AbsPath, Country, Email, Host, Hostname, Rate, SshPublicKey, UnixUser};

/// The secrets gitvps reads, by environment variable name, with what each is.
/// They never come from a file in the repository.
pub const SECRET_ENV: &[(&str, &str)] = &[
    (
        "GITVPS_SSH_KEY",
        "path of the private key the reconciler logs in to nodes with",
    ),
    (
        "GITVPS_TOKEN_SECRET",
        "key that signs customer session tokens",
    ),
    (
        "GITVPS_REPO",
        "the inventory repo the hooks clone and push (URL or path)",
    ),
    ("STRIPE_SECRET_KEY", "Stripe API key (Checkout Sessions)"),
    (
        "STRIPE_WEBHOOK_SECRET",
        "webhook signing secret(s), comma-separated during rotation",
    ),
    (
        "GITVPS_SMTP_URL",
        "SMTP server for reminders, invoices and alerts",
    ),
    (
        "GITVPS_SMTP_CA",
        "optional: path of a PEM file with a root CA trusted for the SMTP server besides the built-in roots",
    ),
    (
        "GITVPS_TOTP_KEY",
        "key that seals customers' TOTP secrets (64 hex digits)",
    ),
    (
        "GITVPS_RESTIC_PASSWORD",
        "the restic backup repository's password (the default name; [backup] password_env may name another)",
    ),
];

/// Settings from `gitvps.toml`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Settings {
    /// The public site.
    pub site: SiteSettings,
    /// Outgoing mail.
    pub mail: MailSettings,
    /// Billing and suspension.
    pub billing: BillingSettings,
    /// Who sells: the seller on every invoice.
    pub seller: SellerSettings,
    /// The reconciler.
    pub reconciler: ReconcilerSettings,
    /// Defaults for new VPSes.
    pub vps: VpsDefaults,
    /// The customer hooks: client addresses, login back-off, quotas.
    pub hooks: HooksSettings,
    /// DNS: the zones built from the inventory and the servers they are published to.
    pub dns: DnsSettings,
    /// The usage collector (`gitvps monitor`).
    pub monitor: MonitorSettings,
    /// Monthly traffic accounting against each plan's `traffic`, and what happens past it.
    pub traffic: TrafficSettings,
    /// Backups: the restic repository and the variable holding its password.
    pub backup: crate::backup::BackupSettings,
    /// The operator's workflow: applying the plan that was reviewed.
    pub workflow: WorkflowSettings,
    /// Boot media: the ISO library and the size bound of every ISO a node fetches.
    pub boot: BootSettings,
}

crate::values::keyword!(
    /// What `gitvps apply --reviewed` does when the inventory or a node moved since the
    /// reviewed plan was made (`[workflow] if_moved`).
    IfMoved, "choice for if_moved", {
        /// Apply nothing, say what moved, exit 3.
        Refuse = "refuse",
        /// Plan again, print how the new plan differs from the reviewed one, and apply it.
        Replan = "replan",
    }
);

/// `[workflow]`: the operator's workflow (see `docs/workflow.md`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct WorkflowSettings {
    /// What `apply --reviewed` does when something moved; `refuse` by default.
    pub if_moved: IfMoved,
}

/// `[boot]` and `[[iso]]`: the operator's ISO library and the size bound (see
/// `docs/boot-media.md`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct BootSettings {
    /// `[boot] max_iso_size`: the most a node fetches for one ISO (8 GiB by default).
    pub max_iso_size: crate::values::Size,
    /// `[[iso]]`: the library, in file order.
    pub library: Vec<crate::media::IsoEntry>,
}

impl Default for BootSettings {
    fn default() -> Self {
        BootSettings {
            max_iso_size: crate::media::DEFAULT_MAX_ISO_SIZE,
            library: Vec::new(),
        }
    }
}

/// `[monitor]`: the usage collector (`gitvps monitor`, see `docs/monitoring.md`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct MonitorSettings {
    /// Seconds between two collections (one SSH exec per node each time), 10 to 3600.
    pub interval_secs: u32,
    /// The collector's sample database (a sled folder), absolute or relative to the repo.
    pub database: String,
    /// Failed service checks in a row before a check counts as down and is alerted (1 to 60).
    pub check_failures: u32,
    /// Seconds a service check may take unless the check says otherwise (1 to 60).
    pub check_timeout_secs: u32,
    /// Where `gitvps monitor` serves `/metrics` over HTTP; no listener when unset.
    pub listen: Option<std::net::SocketAddr>,
}

impl Default for MonitorSettings {
    fn default() -> Self {
        MonitorSettings {
            interval_secs: 60,
            database: "/var/lib/gitvps/monitor".to_owned(),
            check_failures: 3,
            check_timeout_secs: 5,
            listen: None,
        }
    }
}

crate::values::keyword!(
    /// When a VPS's monthly traffic starts again from zero (`[traffic] reset`).
    TrafficReset, "traffic reset day", {
        /// On the 1st of every month (UTC).
        First = "first",
        /// On the day of the month the VPS was created (its contract day; the month's last
        /// day in a shorter month).
        Contract = "contract",
    }
);

crate::values::keyword!(
    /// Which direction of a VPS's network traffic counts against its quota (`[traffic] count`).
    TrafficCount, "traffic direction", {
        /// Received and sent, added.
        Both = "both",
        /// Sent by the VPS only.
        Out = "out",
        /// Received by the VPS only.
        In = "in",
    }
);

crate::values::keyword!(
    /// What happens when a VPS passes a traffic threshold; each comes with a mail to the
    /// customer. Ordered from mildest to harshest.
    TrafficAction, "traffic action", {
        /// A mail only.
        Mail = "mail",
        /// The VPS's network rate drops to `throttle_rate` until the period resets or the
        /// customer buys more traffic.
        Throttle = "throttle",
        /// The VPS is suspended until the period resets or the customer buys more traffic.
        Suspend = "suspend",
    }
);

crate::values::keyword!(
    /// How full a VPS's traffic quota is; ordered from emptiest to fullest.
    TrafficLevel, "traffic level", {
        /// Below the warning threshold (or unmetered).
        Under = "under",
        /// At or past `warn_percent`, below the quota.
        Warn = "warn",
        /// At or past the quota.
        Over = "over",
    }
);

/// `[traffic]`: monthly traffic per VPS against its plan's `traffic`, and the policy at the
/// warning threshold and at the quota (see `docs/monitoring.md`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TrafficSettings {
    /// When the monthly total starts again.
    pub reset: TrafficReset,
    /// Which direction counts.
    pub count: TrafficCount,
    /// The warning threshold, in percent of the quota (1 to 99).
    pub warn_percent: u32,
    /// What happens past `warn_percent`.
    pub at_warn: TrafficAction,
    /// What happens past the quota; never milder than `at_warn`.
    pub at_limit: TrafficAction,
    /// The network rate of a throttled VPS.
    pub throttle_rate: Rate,
}

impl Default for TrafficSettings {
    fn default() -> Self {
        TrafficSettings {
            reset: TrafficReset::First,
            count: TrafficCount::Both,
            warn_percent: 80,
            at_warn: TrafficAction::Mail,
            at_limit: TrafficAction::Throttle,
            throttle_rate: Rate::new_unchecked("1Mb/s"),
        }
    }
}

/// `[dns]`: the reverse zones of the pools and the forward zone of `[vps] domain`, built by
/// `gitvps dns build` and published by `gitvps dns apply` (see `docs/dns.md`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DnsSettings {
    /// The NS records of every zone; the first is the SOA's primary name server. Empty: DNS
    /// is not set up, and `gitvps dns` refuses to build.
    pub nameservers: Vec<Hostname>,
    /// The SOA's responsible mailbox; `None`: `[mail] from`.
    pub contact: Option<Email>,
    /// TTL of every record, in seconds.
    pub ttl: u32,
    /// The SOA minimum: how long resolvers cache a "no such name", in seconds.
    pub negative_ttl: u32,
    /// Whether a customer's PTR name must resolve to the address before the hooks accept it.
    pub forward_confirm: bool,
    /// Servers the zones are published to over SSH (`[[dns.server]]`).
    pub servers: Vec<DnsServer>,
}

impl Default for DnsSettings {
    fn default() -> Self {
        DnsSettings {
            nameservers: Vec::new(),
            contact: None,
            ttl: 3600,
            negative_ttl: 3600,
            forward_confirm: false,
            servers: Vec::new(),
        }
    }
}

crate::values::keyword!(
    /// The authoritative DNS server software on a `[[dns.server]]`: how a changed zone is
    /// reloaded and how the zone list it includes is written.
    DnsBackend, "DNS server backend", {
        /// Knot DNS: `knotc zone-reload ZONE`, `knotc reload` for a new zone list.
        Knot = "knot",
        /// BIND 9: `rndc reload ZONE`, `rndc reconfig` for a new zone list.
        Bind = "bind",
    }
);

/// One `[[dns.server]]`: an authoritative server reached over SSH like a node.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DnsServer {
    /// Where its sshd listens.
    pub address: Host,
    /// The sshd port.
    pub port: u16,
    /// The user gitvps logs in as.
    pub user: UnixUser,
    /// Run the commands through `sudo -n`.
    pub sudo: bool,
    /// The pinned SSH host key.
    pub host_key: SshPublicKey,
    /// The folder gitvps owns on the server: one `<zone>.zone` file per zone and the zone list
    /// `gitvps-zones.conf` the server's configuration includes.
    pub dir: AbsPath,
    /// The server software.
    pub backend: DnsBackend,
    /// Knot: the control socket (`knotc -s`); BIND: the rndc configuration (`rndc -c`).
    /// `None`: the tool's default.
    pub control: Option<AbsPath>,
}

impl DnsServer {
    /// `address:port`, how messages name the server.
    pub fn name(&self) -> String {
        match &self.address {
            Host::Ip(std::net::IpAddr::V6(ip)) => format!("[{ip}]:{}", self.port),
            a => format!("{a}:{}", self.port),
        }
    }
}

/// `[hooks]`: how the customer endpoints tell clients apart and how much each may do.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct HooksSettings {
    /// The header a trusted proxy puts the client address in (`X-Forwarded-For` behind API
    /// Gateway or CloudFront; its last entry is used). `None`: the socket's peer address.
    pub trusted_proxy_header: Option<String>,
    /// Failed logins per account or address before the back-off starts.
    pub login_free_failures: u32,
    /// Longest back-off after failed logins, in seconds (it doubles from 1 s up to this).
    pub login_max_backoff_secs: u32,
    /// Longest a login or order may wait for a password-hashing slot, in milliseconds; past
    /// that it is answered 429 with `Retry-After`.
    pub hash_queue_max_wait_ms: u32,
    /// Committed requests per customer and route per minute (a burst of this many, refilled
    /// evenly over the minute).
    pub per_minute: u32,
    /// Committed requests per customer and route per UTC day.
    pub per_day: u32,
    /// Tickets a customer may open per UTC day (replies count against `per_day`).
    pub tickets_per_day: u32,
    /// Minutes a password reset link stays valid.
    pub reset_valid_minutes: u32,
    /// Password reset mails one account may be sent per UTC day (at most one a minute);
    /// further requests are answered alike and send nothing.
    pub resets_per_day: u32,
}

impl Default for HooksSettings {
    fn default() -> Self {
        HooksSettings {
            trusted_proxy_header: None,
            login_free_failures: 3,
            login_max_backoff_secs: 900,
            hash_queue_max_wait_ms: 1000,
            per_minute: 6,
            per_day: 100,
            tickets_per_day: 10,
            reset_valid_minutes: 30,
            resets_per_day: 5,
        }
    }
}

/// `[site]`
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SiteSettings {
    /// Business name shown on the site and in mail.
    pub name: String,
    /// Public URL of the site (`https://...`).
    pub url: String,
}

/// `[mail]`
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct MailSettings {
    /// Sender address of reminders, invoices and alerts.
    pub from: Email,
    /// Sender display name.
    pub from_name: String,
    /// Where new support tickets are mailed; none: tickets are not mailed.
    pub support: Option<Email>,
}

/// `[billing]`: the business loop's policy (reminders, suspension, termination, invoices).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct BillingSettings {
    /// Days after expiry before a VPS is suspended.
    pub grace_days: u32,
    /// Days before expiry when reminders are sent (no duplicates).
    pub reminder_days: Vec<u32>,
    /// Days after expiry when an overdue reminder is sent (no duplicates, each below
    /// `grace_days`: a reminder after the suspension would come too late).
    pub overdue_reminder_days: Vec<u32>,
    /// Days a VPS stays suspended before it is terminated (`state = "destroyed"`; the
    /// reconciler's `retention_days` then applies to its disk).
    pub terminate_days: u32,
    /// How invoices are numbered.
    pub invoice_number: InvoiceRule,
    /// Stripe Checkout payment method types offered.
    pub payment_methods: Vec<PaymentMethod>,
    /// Tax rate by the buyer's country; a country not listed is charged no tax.
    pub tax: BTreeMap<Country, TaxRate>,
    /// Whether prices include the tax (`true`) or the tax comes on top (`false`).
    pub tax_inclusive: bool,
}

/// `[seller]`: the business as invoices name it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SellerSettings {
    /// Legal name.
    pub name: String,
    /// Postal address, one line each.
    pub address: Vec<String>,
    /// Country of establishment.
    pub country: Option<Country>,
    /// VAT or other tax id, if any.
    pub tax_id: Option<String>,
    /// Contact address printed on invoices.
    pub email: Option<Email>,
}

/// `[reconciler]`
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ReconcilerSettings {
    /// Days a destroyed VPS's disk is kept.
    pub retention_days: u32,
    /// Nodes applied at once.
    pub parallelism: u32,
    /// Branch that apply writes observed status to.
    pub status_branch: String,
    /// Seconds to wait for an SSH connection.
    pub connect_timeout_secs: u32,
    /// Seconds a node command may run.
    pub command_timeout_secs: u32,
    /// Seconds a graceful shutdown may take before the domain is destroyed.
    pub shutdown_timeout_secs: u32,
    /// Seconds a started KVM guest with an installed OS may take to reach its login prompt
    /// before its start step fails (0: not waited for).
    pub boot_timeout_secs: u32,
    /// VPSes of one node whose steps run side by side during an apply (1: one after another).
    pub vps_at_once: u32,
}

/// `[vps]`
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct VpsDefaults {
    /// OS of a new VPS when none is asked for.
    pub default_os: OsId,
    /// Domain for default host names (`<id>.<domain>`).
    pub domain: Option<Hostname>,
    /// Prefix of generated VPS ids (`xen` gives `xen01`, `xen02`, ...).
    pub id_prefix: String,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            site: SiteSettings {
                name: "gitvps".to_owned(),
                url: "http://127.0.0.1:8080".to_owned(),
            },
            mail: MailSettings {
                from: Email::new_unchecked("billing@example.net"),
                from_name: "gitvps".to_owned(),
                support: None,
            },
            billing: BillingSettings {
                grace_days: 7,
                reminder_days: vec![30, 7, 1],
                overdue_reminder_days: vec![1, 3],
                terminate_days: 14,
                invoice_number: InvoiceRule::default(),
                payment_methods: vec![PaymentMethod::Card],
                tax: BTreeMap::new(),
                tax_inclusive: false,
            },
            seller: SellerSettings {
                name: "gitvps".to_owned(),
                address: Vec::new(),
                country: None,
                tax_id: None,
                email: None,
            },
            reconciler: ReconcilerSettings {
                retention_days: 7,
                parallelism: 16,
                status_branch: "status".to_owned(),
                connect_timeout_secs: 10,
                command_timeout_secs: 900,
                shutdown_timeout_secs: 120,
                boot_timeout_secs: 300,
                vps_at_once: 4,
            },
            vps: VpsDefaults {
                default_os: OsId::new_unchecked("debian-12"),
                domain: None,
                id_prefix: "xen".to_owned(),
            },
            hooks: HooksSettings::default(),
            dns: DnsSettings::default(),
            monitor: MonitorSettings::default(),
            traffic: TrafficSettings::default(),
            workflow: WorkflowSettings {
                if_moved: IfMoved::Refuse,
            },
            backup: crate::backup::BackupSettings::default(),
            boot: BootSettings::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn defaults_are_valid() {
        let s = super::Settings::default();
        assert!(s.mail.from.as_str().parse::<crate::values::Email>().is_ok());
        assert!(
            s.vps
                .default_os
                .as_str()
                .parse::<crate::ids::OsId>()
                .is_ok()
        );
        assert_eq!(s.mail.from.as_str(), "billing@example.net");
        assert_eq!(s.vps.default_os.as_str(), "debian-12");
        assert_eq!(s.reconciler.status_branch, "status");
    }
}
