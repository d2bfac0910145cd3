//! The pure core: who may do what ([`own_vps`]) and which files an accepted request changes
//! ([`decide`]). No I/O: the store runs these on each fresh head, validates, commits.

use chrono::{DateTime, NaiveDate, Utc};
use model::edit::{ActionKind, EditError, TomlFile, new_vps_file};
use model::load::paths;
use model::values::{Keyword, Language, Power, SshPublicKey, State};
use model::{CustomerId, Inventory, Vps, VpsId};
use toml_edit::{DocumentMut, value};

use billing::invoice::{Invoice, InvoiceKind, invoice_path};
use model::policy::InvoiceNumber;

use crate::billing::{
    Applied, Book, Due, OrderCustomer, PAYMENTS_DIR, Payment, Purchase, StripeId, check_created,
    new_renewal_due, order_lines, orderable, payment_path, record_names_session, render_record,
    renewal_due, renewed_expiry,
};
use crate::catalog::{Catalog, CatalogError};
use crate::paymail::{
    BlockReceipt, OrderFacts, Receipt, Recipient, payment_mails, traffic_block_mail,
};
use crate::tickets::{self, TICKETS_DIR, TicketId};
use crate::tree::Tree;

/// Most SSH keys a customer may set.
pub const MAX_SSH_KEYS: usize = 32;

/// A request that, once accepted, changes the repo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Start or stop.
    Power {
        /// Who asks.
        customer: CustomerId,
        /// Which VPS.
        vps: VpsId,
        /// Wanted state.
        power: Power,
    },
    /// Reboot or fsck: bump the counter.
    Action {
        /// Who asks.
        customer: CustomerId,
        /// Which VPS.
        vps: VpsId,
        /// Which action (`Reboot` or `Fsck`; a reinstall is [`Change::Reinstall`]).
        kind: ActionKind,
    },
    /// Reinstall with an OS (and appliance) of the catalog.
    Reinstall {
        /// Who asks.
        customer: CustomerId,
        /// Which VPS.
        vps: VpsId,
        /// The OS, as asked (checked against the catalog of the head).
        os: String,
        /// The appliance, as asked.
        appliance: Option<String>,
    },
    /// Write a backup onto a VPS's disk, erasing it: a backup of this VPS, or of `from`,
    /// another VPS of the same customer (restore into a new VPS).
    Restore {
        /// Who asks.
        customer: CustomerId,
        /// The VPS whose disk is written.
        vps: VpsId,
        /// The backup taken of it, as asked: restic's id or its short id.
        snapshot: String,
        /// The VPS the backup was taken of, when not `vps`.
        from: Option<VpsId>,
        /// The backups published for the source VPS on the status branch when the request came
        /// in (the hooks never reach the repository itself): the snapshot must be one of them.
        published: Vec<model::status::BackupEntry>,
    },
    /// Attach an ISO as the VPS's CD-ROM (boot from it, or only mount it), or with `boot: None`
    /// eject it: the VPS boots from its disk again.
    Boot {
        /// Who asks.
        customer: CustomerId,
        /// Which VPS.
        vps: VpsId,
        /// The ISO and the boot order, already parsed; `None` ejects.
        boot: Option<model::media::Boot>,
    },
    /// Boot a VPS into the node's rescue system (its disk attached, not mounted), or with
    /// `on: false` leave it: the VPS boots its own system again.
    Rescue {
        /// Who asks.
        customer: CustomerId,
        /// Which VPS.
        vps: VpsId,
        /// Enter (`true`) or leave (`false`).
        on: bool,
    },
    /// A snapshot of a VPS's disk: taken, reverted to (the disk's later changes are lost) or
    /// deleted, at the next apply.
    Snapshot {
        /// Who asks.
        customer: CustomerId,
        /// The VPS.
        vps: VpsId,
        /// What to do.
        op: SnapshotOp,
        /// The snapshot's name, as asked.
        name: String,
        /// When (a snapshot taken records it).
        at: DateTime<Utc>,
    },
    /// Replace the customer's console keys (asked through one of its VPSes).
    SshKeys {
        /// Who asks.
        customer: CustomerId,
        /// Through which VPS.
        vps: VpsId,
        /// The keys, already parsed.
        keys: Vec<SshPublicKey>,
    },
    /// Set or reset the reverse DNS name of one of a VPS's addresses (`[ptr]`).
    Ptr {
        /// Who asks.
        customer: CustomerId,
        /// Which VPS.
        vps: VpsId,
        /// The address: one of its IPv4 addresses or inside one of its /64s.
        address: std::net::IpAddr,
        /// The name; `None`: the VPS's host name again.
        name: Option<model::values::Hostname>,
    },
    /// Open a support ticket.
    OpenTicket {
        /// Who asks.
        customer: CustomerId,
        /// About which VPS, if any.
        vps: Option<VpsId>,
        /// Checked subject.
        subject: String,
        /// Checked message.
        message: String,
        /// When.
        at: DateTime<Utc>,
    },
    /// Add to a ticket's thread.
    ReplyTicket {
        /// Who asks.
        customer: CustomerId,
        /// Which ticket.
        ticket: TicketId,
        /// Checked message.
        message: String,
        /// When.
        at: DateTime<Utc>,
    },
    /// Log out everywhere: every token issued before `at` stops working.
    LogoutAll {
        /// Who asks.
        customer: CustomerId,
        /// Unix time of the request (the new `not_before`).
        at: i64,
    },
    /// Turn two-factor login on.
    EnableTwoFactor {
        /// Who asks.
        customer: CustomerId,
        /// The file to write (sealed secret, hashed recovery codes).
        file: crate::twofactor::TwoFactor,
    },
    /// Turn two-factor login off.
    DisableTwoFactor {
        /// Who asks.
        customer: CustomerId,
    },
    /// A recovery code used at login: its hash is removed, so it works once.
    UseRecoveryCode {
        /// Whose.
        customer: CustomerId,
        /// The code's hash.
        hash: String,
    },
    /// Make an API key (its entry, hashed).
    CreateApiKey {
        /// Who asks.
        customer: CustomerId,
        /// The entry.
        key: crate::apikeys::ApiKey,
    },
    /// Revoke an API key.
    DeleteApiKey {
        /// Who asks.
        customer: CustomerId,
        /// The key's id.
        id: String,
    },
    /// A payment Stripe reported.
    Payment(Box<Payment>),
    /// A new password: the logged-in customer's own change, or a reset by mail.
    SetPassword {
        /// Whose.
        customer: CustomerId,
        /// The new argon2 hash.
        hash: model::values::PasswordHash,
        /// For a reset: the hash of the mailed token, checked against the customer's reset
        /// record, which the change removes (the link works once); `None` for a change.
        reset: Option<String>,
        /// When (a reset's expiry is checked against it).
        at: DateTime<Utc>,
    },
    /// A password reset asked for: the record only (the token's hash and expiry). The mail
    /// with the link is sent once the record has landed, never committed.
    RequestReset {
        /// Whose.
        customer: CustomerId,
        /// [`crate::reset::Token::hash`] of the token to mail.
        hash: String,
        /// When.
        at: DateTime<Utc>,
    },
}

impl Change {
    /// The customer who asked (`None` for a payment).
    pub fn customer(&self) -> Option<&CustomerId> {
        match self {
            Change::Power { customer, .. }
            | Change::Action { customer, .. }
            | Change::Reinstall { customer, .. }
            | Change::Restore { customer, .. }
            | Change::Snapshot { customer, .. }
            | Change::Boot { customer, .. }
            | Change::Rescue { customer, .. }
            | Change::SshKeys { customer, .. }
            | Change::Ptr { customer, .. }
            | Change::OpenTicket { customer, .. }
            | Change::ReplyTicket { customer, .. }
            | Change::LogoutAll { customer, .. }
            | Change::EnableTwoFactor { customer, .. }
            | Change::DisableTwoFactor { customer }
            | Change::UseRecoveryCode { customer, .. }
            | Change::CreateApiKey { customer, .. }
            | Change::DeleteApiKey { customer, .. }
            | Change::SetPassword { customer, .. }
            | Change::RequestReset { customer, .. } => Some(customer),
            Change::Payment(_) => None,
        }
    }

    /// Who asked, for logs.
    pub fn who(&self) -> String {
        match self {
            Change::Power { customer, .. }
            | Change::Action { customer, .. }
            | Change::Reinstall { customer, .. }
            | Change::Restore { customer, .. }
            | Change::Snapshot { customer, .. }
            | Change::Boot { customer, .. }
            | Change::Rescue { customer, .. }
            | Change::SshKeys { customer, .. }
            | Change::Ptr { customer, .. }
            | Change::OpenTicket { customer, .. }
            | Change::ReplyTicket { customer, .. }
            | Change::LogoutAll { customer, .. }
            | Change::EnableTwoFactor { customer, .. }
            | Change::DisableTwoFactor { customer }
            | Change::UseRecoveryCode { customer, .. }
            | Change::CreateApiKey { customer, .. }
            | Change::DeleteApiKey { customer, .. }
            | Change::SetPassword { customer, .. }
            | Change::RequestReset { customer, .. } => customer.to_string(),
            Change::Payment(p) => format!("stripe {}", p.event),
        }
    }
}

/// What a snapshot request does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SnapshotOp {
    /// Take a new snapshot (up to the VPS's limit).
    Take,
    /// Bring the disk back to it.
    Revert,
    /// Delete it.
    Delete,
}

/// What an accepted change did, as the API answers it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "done", rename_all = "snake_case")]
pub enum Decision {
    /// Power set.
    Power {
        /// The VPS.
        vps: VpsId,
        /// The desired power now.
        power: Power,
    },
    /// A counter bumped.
    Action {
        /// The VPS.
        vps: VpsId,
        /// `reboot`, `fsck`, `reinstall` or `restore`.
        action: &'static str,
        /// The new generation: the reconciler performs it once.
        generation: u64,
    },
    /// An ISO attached or ejected (the next apply restarts the guest with it).
    Boot {
        /// The VPS.
        vps: VpsId,
        /// The library ISO's id or the customer's URL; `None`: ejected, the disk boots.
        iso: Option<String>,
        /// `cd` or `disk` while an ISO is attached.
        #[serde(skip_serializing_if = "Option::is_none")]
        order: Option<&'static str>,
    },
    /// Rescue mode entered or left (the next apply restarts the guest).
    Rescue {
        /// The VPS.
        vps: VpsId,
        /// Whether the VPS is to run the rescue system now.
        rescue: bool,
    },
    /// A snapshot declared or removed (taken or deleted at the next apply).
    Snapshot {
        /// The VPS.
        vps: VpsId,
        /// The snapshot.
        name: String,
        /// Whether it is declared now.
        declared: bool,
    },
    /// SSH keys replaced.
    SshKeys {
        /// The customer.
        customer: CustomerId,
        /// How many keys it has now.
        keys: usize,
    },
    /// A reverse DNS name set (published by the next `gitvps dns apply`).
    Ptr {
        /// The VPS.
        vps: VpsId,
        /// The address.
        address: std::net::IpAddr,
        /// The name it has now.
        name: model::values::Hostname,
        /// Whether it is the customer's choice (`false`: the host name).
        custom: bool,
    },
    /// A ticket opened or answered.
    Ticket {
        /// The ticket.
        ticket: TicketId,
    },
    /// Two-factor login turned on or off, or a recovery code used.
    TwoFactor {
        /// The customer.
        customer: CustomerId,
        /// Whether it is on now.
        enabled: bool,
    },
    /// An API key made or revoked.
    ApiKey {
        /// The key's id.
        id: String,
        /// Whether it exists now.
        active: bool,
    },
    /// Every session of the customer revoked.
    LoggedOut {
        /// The customer.
        customer: CustomerId,
    },
    /// The password changed (every session issued before is refused).
    Password {
        /// The customer.
        customer: CustomerId,
    },
    /// A reset record committed (its link is mailed once it has landed).
    ResetMailed {
        /// The customer.
        customer: CustomerId,
    },
    /// A payment recorded.
    Payment {
        /// The event.
        event: StripeId,
        /// `renewed`, `ordered`, `not_applied`, `refused` or `duplicate`.
        result: &'static str,
        /// The VPS renewed or created.
        #[serde(skip_serializing_if = "Option::is_none")]
        vps: Option<VpsId>,
        /// The invoice paid (issued with the payment when none was open).
        #[serde(skip_serializing_if = "Option::is_none")]
        invoice: Option<InvoiceNumber>,
    },
}

/// Files to write (`None` removes), the commit message and the answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edit {
    /// Repo-relative paths and their new text.
    pub writes: Vec<(String, Option<String>)>,
    /// The commit message.
    pub message: String,
    /// The answer.
    pub decision: Decision,
    /// What to commit instead when this edit would make the inventory invalid (payments: the
    /// record alone, so no payment is lost).
    pub fallback: Option<Box<Edit>>,
}

impl Edit {
    fn noop(decision: Decision) -> Edit {
        Edit {
            writes: Vec::new(),
            message: String::new(),
            decision,
            fallback: None,
        }
    }
}

/// Why a change is refused. The API maps each to its status code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// Not there, or not the asker's: the same answer, so ids do not leak.
    #[error("not found")]
    NotFound,
    /// A suspended VPS can only be renewed.
    #[error("VPS {0} is suspended: renew it to lift the suspension")]
    Suspended(VpsId),
    /// Not in the catalog.
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    /// Too many SSH keys.
    #[error("at most {MAX_SSH_KEYS} SSH keys")]
    TooManyKeys,
    /// Two-factor login is already on (turn it off first), or a recovery code was used already.
    #[error("two-factor login is already on")]
    TwoFactorEnabled,
    /// The customer holds [`crate::apikeys::MAX_KEYS`] keys already.
    #[error("at most {} API keys: revoke one first", crate::apikeys::MAX_KEYS)]
    TooManyApiKeys,
    /// A reply would make the ticket's file longer than [`tickets::MAX_THREAD`].
    #[error("this ticket's thread is full; open a new ticket")]
    TicketTooLong,
    /// The result would not pass validation (the diagnostics are logged, not answered).
    #[error("the change would make the inventory invalid")]
    Invalid,
    /// A file in the repo cannot be edited (an admin broke it).
    #[error("a file cannot be edited: {0}")]
    Broken(String),
    /// The session was revoked (password changed or customer removed) on the head the commit
    /// would be made on.
    #[error("the session is no longer valid; log in again")]
    Unauthorized,
    /// A restore asked while `gitvps.toml` names no backup repository.
    #[error("backups are not configured for this site")]
    BackupsNotConfigured,
    /// A restore names a backup that is not in the source VPS's published list.
    #[error("{0}")]
    UnknownBackup(String),
    /// An ISO asked for a VPS whose node cannot boot one (why, naming the node).
    #[error("{0}")]
    NoIsoBoot(String),
    /// Rescue mode asked for a VPS whose node has no rescue system (why, naming the node).
    #[error("{0}")]
    NoRescue(String),
    /// A reinstall with a cloud image on a node that cannot install one (why, naming the node).
    #[error("{0}")]
    NoCloudImage(String),
    /// An ISO id the operator's library does not have.
    #[error("{0}")]
    UnknownIso(String),
    /// A snapshot request that cannot be done: its `code` (`snapshot_limit`,
    /// `unknown_snapshot`, `snapshot_exists`, `snapshots_unavailable`, `bad_snapshot_name`) and why.
    #[error("{message}")]
    Snapshot {
        /// The API's error code.
        code: &'static str,
        /// Why, in words.
        message: String,
    },
    /// A reset link that is not the latest one mailed, was used already, or has expired.
    #[error("this reset link is invalid, used or expired: ask for a new one")]
    ResetInvalid,
}

/// Why an order cannot be placed now, as checked before the customer pays.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlaceRefusal {
    /// No node serves the location.
    #[error("{0}")]
    UnknownLocation(String),
    /// The location has no room for the product now.
    #[error("no room for this product in {0} right now")]
    NoCapacity(String),
    /// Placement fails for another reason.
    #[error("{0}")]
    BadOrder(String),
}

impl From<EditError> for Refusal {
    fn from(e: EditError) -> Self {
        Refusal::Broken(e.to_string())
    }
}

/// Suffix of the commit messages of customer requests.
const VIA: &str = "(site)";

/// The path of a VPS file.
pub fn vps_path(id: &VpsId) -> String {
    format!("{}/{id}.toml", paths::VPS)
}

/// The path of a customer file.
pub fn customer_path(id: &CustomerId) -> String {
    format!("{}/{id}.toml", paths::CUSTOMERS)
}

/// The authorization rule: a customer reaches only its own VPSes; a destroyed one is gone; a
/// suspended one can only be renewed (`renewing`) or written about (tickets).
pub fn own_vps<'a>(
    inv: &'a Inventory,
    customer: &CustomerId,
    vps: &VpsId,
    renewing: bool,
) -> Result<&'a Vps, Refusal> {
    let v = inv
        .vps
        .get(vps)
        .filter(|v| &v.customer == customer && v.state != State::Destroyed)
        .ok_or(Refusal::NotFound)?;
    if v.state == State::Suspended && !renewing {
        return Err(Refusal::Suspended(v.id.clone()));
    }
    Ok(v)
}

fn open(tree: &dyn Tree, path: &str) -> Result<TomlFile, Refusal> {
    let text = tree
        .read(path)
        .ok_or_else(|| Refusal::Broken(format!("{path} is missing")))?;
    Ok(TomlFile::parse(path, &text)?)
}

/// Decides what an accepted `change` writes on the head `inv`/`tree`. Pure: the store runs it
/// again on a new head after a lost push race.
pub fn decide(
    change: &Change,
    inv: &Inventory,
    cat: &Catalog,
    tree: &dyn Tree,
) -> Result<Edit, Refusal> {
    match change {
        Change::Power {
            customer,
            vps,
            power,
        } => decide_power(inv, tree, customer, vps, *power),
        Change::Action {
            customer,
            vps,
            kind,
        } => decide_action(inv, tree, customer, vps, *kind),
        Change::Reinstall {
            customer,
            vps,
            os,
            appliance,
        } => decide_reinstall(inv, cat, tree, customer, vps, os, appliance.as_deref()),
        Change::Restore {
            customer,
            vps,
            snapshot,
            from,
            published,
        } => decide_restore(inv, tree, customer, vps, snapshot, from.as_ref(), published),
        Change::Boot {
            customer,
            vps,
            boot,
        } => decide_boot(inv, tree, customer, vps, boot.as_ref()),
        Change::Rescue { customer, vps, on } => decide_rescue(inv, tree, customer, vps, *on),
        Change::Snapshot {
            customer,
            vps,
            op,
            name,
            at,
        } => decide_snapshot(inv, tree, customer, vps, *op, name, *at),
        Change::SshKeys {
            customer,
            vps,
            keys,
        } => decide_ssh_keys(inv, tree, customer, vps, keys),
        Change::Ptr {
            customer,
            vps,
            address,
            name,
        } => decide_ptr(inv, tree, customer, vps, *address, name.as_ref()),
        Change::OpenTicket {
            customer,
            vps,
            subject,
            message,
            at,
        } => {
            if let Some(v) = vps {
                own_vps(inv, customer, v, true)?;
            }
            let c = inv.customers.get(customer).ok_or(Refusal::NotFound)?;
            let names = tree.entries(TICKETS_DIR).unwrap_or_default();
            let id = tickets::next_ticket_id(names.iter().map(|e| e.name.as_str()));
            let text = tickets::render_new(customer, subject, vps.as_ref(), message, *at);
            let mut writes = vec![(id.path(), Some(text))];
            writes.extend(ticket_mail(
                inv,
                tree,
                c,
                &id,
                subject,
                message,
                vps.as_ref(),
                *at,
            )?);
            Ok(Edit {
                writes,
                message: format!("{customer}: open ticket {id} {VIA}"),
                decision: Decision::Ticket { ticket: id },
                fallback: None,
            })
        }
        Change::ReplyTicket {
            customer,
            ticket,
            message,
            at,
        } => decide_reply(tree, customer, ticket, message, *at),
        Change::LogoutAll { customer, at } => {
            if !inv.customers.contains_key(customer) {
                return Err(Refusal::NotFound);
            }
            let path = crate::auth::session_path(customer);
            let mut d = DocumentMut::new();
            d["not_before"] = value(*at);
            Ok(Edit {
                writes: vec![(
                    path,
                    Some(format!(
                        "# Written by \"log out everywhere\": tokens issued before are refused.\n{d}"
                    )),
                )],
                message: format!("{customer}: log out everywhere {VIA}"),
                decision: Decision::LoggedOut {
                    customer: customer.clone(),
                },
                fallback: None,
            })
        }
        Change::EnableTwoFactor { .. }
        | Change::DisableTwoFactor { .. }
        | Change::UseRecoveryCode { .. } => decide_twofactor(change, inv, tree),
        Change::CreateApiKey { customer, key } => {
            decide_apikeys(inv, tree, customer, Some(key), &key.id)
        }
        Change::DeleteApiKey { customer, id } => decide_apikeys(inv, tree, customer, None, id),
        Change::Payment(p) => decide_payment(p, inv, cat, tree),
        Change::SetPassword {
            customer,
            hash,
            reset,
            at,
        } => decide_password(inv, tree, customer, hash, reset.as_deref(), *at),
        Change::RequestReset { customer, hash, at } => {
            decide_reset_request(inv, customer, hash, *at)
        }
    }
}

/// A new password hash in the customer's file; a reset must match the customer's record
/// (which goes), a change by the customer removes a pending record too.
fn decide_password(
    inv: &Inventory,
    tree: &dyn Tree,
    customer: &CustomerId,
    hash: &model::values::PasswordHash,
    reset: Option<&str>,
    at: DateTime<Utc>,
) -> Result<Edit, Refusal> {
    use crate::reset::{Record, reset_path};
    if !inv.customers.contains_key(customer) {
        return Err(match reset {
            Some(_) => Refusal::ResetInvalid,
            None => Refusal::NotFound,
        });
    }
    let record_path = reset_path(customer);
    let record = tree.read(&record_path);
    if let Some(token_hash) = reset {
        let opens = record
            .as_deref()
            .and_then(Record::parse)
            .is_some_and(|r| r.opens(token_hash, at.timestamp()));
        if !opens {
            return Err(Refusal::ResetInvalid);
        }
    }
    let path = customer_path(customer);
    let mut f = open(tree, &path)?;
    f.set_string("password_hash", hash.as_str());
    let mut writes = vec![(path, Some(f.render()))];
    if record.is_some() {
        writes.push((record_path, None));
    }
    let what = match reset {
        Some(_) => "reset the password by mail",
        None => "change the password",
    };
    Ok(Edit {
        writes,
        message: format!("{customer}: {what} {VIA}"),
        decision: Decision::Password {
            customer: customer.clone(),
        },
        fallback: None,
    })
}

/// The reset record (the token's hash, valid `hooks.reset_valid_minutes`), alone in its
/// commit: the link is mailed after, never written. A customer without an e-mail cannot be
/// mailed: not found.
fn decide_reset_request(
    inv: &Inventory,
    customer: &CustomerId,
    hash: &str,
    at: DateTime<Utc>,
) -> Result<Edit, Refusal> {
    use crate::reset::{Record, reset_path};
    let c = inv.customers.get(customer).ok_or(Refusal::NotFound)?;
    c.email.as_ref().ok_or(Refusal::NotFound)?;
    let minutes = inv.settings.hooks.reset_valid_minutes;
    let record = Record {
        hash: hash.to_owned(),
        created: at.timestamp(),
        expires: at.timestamp() + i64::from(minutes) * 60,
    };
    Ok(Edit {
        writes: vec![(reset_path(customer), Some(record.render(customer)))],
        message: format!("{customer}: ask for a password reset by mail {VIA}"),
        decision: Decision::ResetMailed {
            customer: customer.clone(),
        },
        fallback: None,
    })
}

/// The mail telling `[mail] support` of a new ticket (reply-to the customer), when set.
#[allow(clippy::too_many_arguments)]
fn ticket_mail(
    inv: &Inventory,
    tree: &dyn Tree,
    customer: &model::Customer,
    ticket: &TicketId,
    subject: &str,
    message: &str,
    vps: Option<&VpsId>,
    at: DateTime<Utc>,
) -> Result<Option<(String, Option<String>)>, Refusal> {
    let Some(support) = inv.settings.mail.support.clone() else {
        return Ok(None);
    };
    // Support reads English; the customer's own words are quoted as written.
    let lang = Language::En;
    let mut context = mail::links::common(&inv.settings, &customer.name);
    context["ticket"] = ticket.to_string().into();
    context["customer"] = customer.id.as_str().into();
    context["email"] = customer.email.as_ref().map_or("", |e| e.as_str()).into();
    context["subject"] = subject.into();
    context["message"] = message.into();
    context["vps"] = vps.map_or(String::new(), ToString::to_string).into();
    context["ticket_url"] = mail::links::ticket(&inv.settings, lang, &ticket.to_string()).into();
    let id = format!("ticket-opened.{ticket}")
        .parse()
        .map_err(|e: mail::InvalidMailId| Refusal::Broken(e.to_string()))?;
    let draft = mail::Draft {
        id,
        kind: mail::Kind::TicketOpened,
        lang,
        to: support,
        to_name: None,
        reply_to: customer.email.clone(),
        context,
        attachments: Vec::new(),
    };
    crate::mails::queue(inv, tree, &draft, at)
        .map(Some)
        .map_err(|e| Refusal::Broken(e.to_string()))
}

fn decide_twofactor(change: &Change, inv: &Inventory, tree: &dyn Tree) -> Result<Edit, Refusal> {
    use crate::twofactor::{TwoFactor, twofactor_path};
    let customer = change.customer().ok_or(Refusal::NotFound)?;
    if !inv.customers.contains_key(customer) {
        return Err(Refusal::NotFound);
    }
    let path = twofactor_path(customer);
    let current = tree.read(&path).and_then(|t| TwoFactor::parse(&t));
    let (text, enabled, what) = match change {
        Change::EnableTwoFactor { file, .. } => {
            if current.is_some() {
                return Err(Refusal::TwoFactorEnabled);
            }
            (
                Some(file.render(customer)),
                true,
                "turn on two-factor login",
            )
        }
        Change::DisableTwoFactor { .. } => {
            if current.is_none() {
                return Ok(Edit::noop(Decision::TwoFactor {
                    customer: customer.clone(),
                    enabled: false,
                }));
            }
            (None, false, "turn off two-factor login")
        }
        Change::UseRecoveryCode { hash, .. } => {
            let mut tf = current.ok_or(Refusal::Unauthorized)?;
            let before = tf.recovery.len();
            tf.recovery.retain(|r| r != hash);
            if tf.recovery.len() == before {
                // Used a moment ago by another login: once only.
                return Err(Refusal::Unauthorized);
            }
            (Some(tf.render(customer)), true, "use a recovery code")
        }
        _ => return Err(Refusal::NotFound),
    };
    Ok(Edit {
        writes: vec![(path, text)],
        message: format!("{customer}: {what} {VIA}"),
        decision: Decision::TwoFactor {
            customer: customer.clone(),
            enabled,
        },
        fallback: None,
    })
}

fn decide_apikeys(
    inv: &Inventory,
    tree: &dyn Tree,
    customer: &CustomerId,
    add: Option<&crate::apikeys::ApiKey>,
    id: &str,
) -> Result<Edit, Refusal> {
    use crate::apikeys::{MAX_KEYS, apikeys_path, parse_file, render_file};
    if !inv.customers.contains_key(customer) {
        return Err(Refusal::NotFound);
    }
    let path = apikeys_path(customer);
    let mut keys = tree.read(&path).map(|t| parse_file(&t)).unwrap_or_default();
    let what = match add {
        Some(k) => {
            if keys.len() >= MAX_KEYS {
                return Err(Refusal::TooManyApiKeys);
            }
            keys.push(k.clone());
            format!("make API key {id}")
        }
        None => {
            let before = keys.len();
            keys.retain(|k| k.id != id);
            if keys.len() == before {
                return Err(Refusal::NotFound);
            }
            format!("revoke API key {id}")
        }
    };
    let text = (!keys.is_empty()).then(|| render_file(customer, &keys));
    Ok(Edit {
        writes: vec![(path, text)],
        message: format!("{customer}: {what} {VIA}"),
        decision: Decision::ApiKey {
            id: id.to_owned(),
            active: add.is_some(),
        },
        fallback: None,
    })
}

fn decide_power(
    inv: &Inventory,
    tree: &dyn Tree,
    customer: &CustomerId,
    vps: &VpsId,
    power: Power,
) -> Result<Edit, Refusal> {
    let v = own_vps(inv, customer, vps, false)?;
    let decision = Decision::Power {
        vps: vps.clone(),
        power,
    };
    if v.power == power {
        return Ok(Edit::noop(decision));
    }
    let path = vps_path(vps);
    let mut f = open(tree, &path)?;
    f.set_power(power);
    let verb = match power {
        Power::Running => "start",
        Power::Stopped => "stop",
    };
    Ok(Edit {
        writes: vec![(path, Some(f.render()))],
        message: format!("{customer}: {verb} {vps} {VIA}"),
        decision,
        fallback: None,
    })
}

fn decide_action(
    inv: &Inventory,
    tree: &dyn Tree,
    customer: &CustomerId,
    vps: &VpsId,
    kind: ActionKind,
) -> Result<Edit, Refusal> {
    own_vps(inv, customer, vps, false)?;
    let path = vps_path(vps);
    let mut f = open(tree, &path)?;
    let generation = f.bump_action(kind)?;
    Ok(Edit {
        writes: vec![(path, Some(f.render()))],
        message: format!("{customer}: {} {vps} {VIA}", kind.key()),
        decision: Decision::Action {
            vps: vps.clone(),
            action: kind.key(),
            generation,
        },
        fallback: None,
    })
}

fn decide_reinstall(
    inv: &Inventory,
    cat: &Catalog,
    tree: &dyn Tree,
    customer: &CustomerId,
    vps: &VpsId,
    os: &str,
    appliance: Option<&str>,
) -> Result<Edit, Refusal> {
    let v = own_vps(inv, customer, vps, false)?;
    let os = cat.os(os)?;
    if cat.is_cloud_image(&os)
        && let Some(why) = inv
            .nodes
            .get(&v.node)
            .and_then(model::bootstraps::cloud_unsupported)
    {
        return Err(Refusal::NoCloudImage(format!(
            "OS `{os}` is a cloud image, and {why}"
        )));
    }
    let appliance = appliance.map(|a| cat.appliance(&os, a)).transpose()?;
    let path = vps_path(vps);
    let mut f = open(tree, &path)?;
    f.set_string("os", os.as_str());
    f.set_opt_str("appliance", appliance.as_ref().map(|a| a.as_str()));
    let generation = f.bump_action(ActionKind::Reinstall)?;
    let with = match &appliance {
        Some(a) => format!("{os} and {a}"),
        None => os.to_string(),
    };
    Ok(Edit {
        writes: vec![(path, Some(f.render()))],
        message: format!("{customer}: reinstall {vps} with {with} {VIA}"),
        decision: Decision::Action {
            vps: vps.clone(),
            action: ActionKind::Reinstall.key(),
            generation,
        },
        fallback: None,
    })
}

/// A restore asked from the panel: both VPSes the customer's (the source may be destroyed,
/// its backups kept), the target not suspended, the backup one of the source's published ones.
fn decide_restore(
    inv: &Inventory,
    tree: &dyn Tree,
    customer: &CustomerId,
    vps: &VpsId,
    snapshot: &str,
    from: Option<&VpsId>,
    published: &[model::status::BackupEntry],
) -> Result<Edit, Refusal> {
    own_vps(inv, customer, vps, false)?;
    if inv.settings.backup.repository.is_none() {
        return Err(Refusal::BackupsNotConfigured);
    }
    let source = from.unwrap_or(vps);
    if inv.vps.get(source).is_none_or(|v| &v.customer != customer) {
        return Err(Refusal::NotFound);
    }
    let shown: String = snapshot.chars().take(64).collect();
    let is_hex = !snapshot.is_empty()
        && snapshot
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    let backup = published
        .iter()
        .find(|b| is_hex && (b.id == snapshot || b.short_id == snapshot))
        .ok_or_else(|| {
            Refusal::UnknownBackup(format!(
                "`{}` is not a backup of {source}: pick one from its list",
                shown.escape_debug()
            ))
        })?;
    let path = vps_path(vps);
    let mut f = open(tree, &path)?;
    let generation = f.set_restore(&backup.id, from.map(VpsId::as_str))?;
    let of = if source == vps {
        String::new()
    } else {
        format!(" of {source}")
    };
    Ok(Edit {
        writes: vec![(path, Some(f.render()))],
        message: format!(
            "{customer}: restore {vps} from backup {}{of} {VIA}",
            backup.short_id
        ),
        decision: Decision::Action {
            vps: vps.clone(),
            action: "restore",
            generation,
        },
        fallback: None,
    })
}

/// An ISO attached or ejected from the panel: the customer's live VPS, on a node that boots
/// ISOs, a library ISO the library has (a customer's own URL and sha256 were parsed already).
fn decide_boot(
    inv: &Inventory,
    tree: &dyn Tree,
    customer: &CustomerId,
    vps: &VpsId,
    boot: Option<&model::media::Boot>,
) -> Result<Edit, Refusal> {
    use model::media::IsoSource;
    let v = own_vps(inv, customer, vps, false)?;
    let iso = boot.map(|b| match &b.iso {
        IsoSource::Library(id) => id.to_string(),
        IsoSource::Url { url, .. } => url.to_string(),
    });
    let decision = Decision::Boot {
        vps: vps.clone(),
        iso: iso.clone(),
        order: boot.map(|b| b.order.as_str()),
    };
    if v.boot.as_ref() == boot {
        return Ok(Edit::noop(decision));
    }
    if let Some(b) = boot {
        if let Some(why) = inv
            .nodes
            .get(&v.node)
            .and_then(model::media::iso_unsupported)
        {
            return Err(Refusal::NoIsoBoot(why));
        }
        if let IsoSource::Library(id) = &b.iso
            && !inv.settings.boot.library.iter().any(|e| &e.id == id)
        {
            return Err(Refusal::UnknownIso(format!(
                "ISO `{id}` is not in this site's library: pick one the panel lists"
            )));
        }
    }
    let path = vps_path(vps);
    let mut f = open(tree, &path)?;
    f.set_boot(boot);
    let what = match (boot, &iso) {
        (Some(b), Some(iso)) if b.order == model::media::BootOrder::Cd => {
            format!("boot {vps} from ISO {iso}")
        }
        (Some(_), Some(iso)) => format!("attach ISO {iso} to {vps} (disk boots first)"),
        _ => format!("eject the ISO of {vps}, boot from disk"),
    };
    Ok(Edit {
        writes: vec![(path, Some(f.render()))],
        message: format!("{customer}: {what} {VIA}"),
        decision,
        fallback: None,
    })
}

/// Rescue mode entered or left from the panel: the customer's own active VPS (a suspended one
/// is refused, 409), on a node that has a rescue system.
fn decide_rescue(
    inv: &Inventory,
    tree: &dyn Tree,
    customer: &CustomerId,
    vps: &VpsId,
    on: bool,
) -> Result<Edit, Refusal> {
    let v = own_vps(inv, customer, vps, false)?;
    let decision = Decision::Rescue {
        vps: vps.clone(),
        rescue: on,
    };
    if v.rescue == on {
        return Ok(Edit::noop(decision));
    }
    if on
        && let Some(why) = inv
            .nodes
            .get(&v.node)
            .and_then(model::media::rescue_unsupported)
    {
        return Err(Refusal::NoRescue(why));
    }
    let path = vps_path(vps);
    let mut f = open(tree, &path)?;
    f.set_rescue(on);
    let what = if on {
        format!("boot {vps} into the rescue system")
    } else {
        format!("leave the rescue system of {vps}, boot its own system")
    };
    Ok(Edit {
        writes: vec![(path, Some(f.render()))],
        message: format!("{customer}: {what} {VIA}"),
        decision,
        fallback: None,
    })
}

/// A snapshot asked from the panel: the customer's own active VPS; a take within its limit on
/// storage that has snapshots, under a new valid name; a revert or delete of a declared one.
fn decide_snapshot(
    inv: &Inventory,
    tree: &dyn Tree,
    customer: &CustomerId,
    vps: &VpsId,
    op: SnapshotOp,
    name: &str,
    at: DateTime<Utc>,
) -> Result<Edit, Refusal> {
    let v = own_vps(inv, customer, vps, false)?;
    let refuse = |code, message: String| Refusal::Snapshot { code, message };
    let Ok(snap) = name.parse::<model::SnapshotName>() else {
        let shown: String = name.chars().take(40).collect();
        return Err(refuse(
            "bad_snapshot_name",
            format!(
                "`{}` is not a snapshot name: lowercase letters, digits and '-' (not at either end), starting with a letter, at most 32",
                shown.escape_debug()
            ),
        ));
    };
    let declared = v.snapshots.has(&snap);
    let path = vps_path(vps);
    let mut f = open(tree, &path)?;
    let (message, decision) = match op {
        SnapshotOp::Take => {
            let limit = inv.snapshot_limit_of(v);
            if inv.snapshot_space_of(v).is_none() || limit == 0 {
                return Err(refuse(
                    "snapshots_unavailable",
                    format!("{vps} has no snapshots: its plan or its storage does not offer them"),
                ));
            }
            if declared {
                return Err(refuse(
                    "snapshot_exists",
                    format!("{vps} has a snapshot `{snap}` already: pick another name"),
                ));
            }
            if v.snapshots.list.len() >= limit as usize {
                return Err(refuse(
                    "snapshot_limit",
                    format!(
                        "{vps} keeps at most {limit} snapshot(s) and has {}: delete one first",
                        v.snapshots.list.len()
                    ),
                ));
            }
            f.add_snapshot(snap.as_str(), at)?;
            (
                format!("{customer}: take snapshot {snap} of {vps} {VIA}"),
                Decision::Snapshot {
                    vps: vps.clone(),
                    name: snap.to_string(),
                    declared: true,
                },
            )
        }
        SnapshotOp::Revert | SnapshotOp::Delete if !declared => {
            return Err(refuse(
                "unknown_snapshot",
                format!("{vps} has no snapshot `{snap}`"),
            ));
        }
        SnapshotOp::Revert => {
            let generation = f.set_revert(snap.as_str())?;
            (
                format!("{customer}: revert {vps} to snapshot {snap} {VIA}"),
                Decision::Action {
                    vps: vps.clone(),
                    action: "revert",
                    generation,
                },
            )
        }
        SnapshotOp::Delete => {
            f.remove_snapshot(snap.as_str());
            (
                format!("{customer}: delete snapshot {snap} of {vps} {VIA}"),
                Decision::Snapshot {
                    vps: vps.clone(),
                    name: snap.to_string(),
                    declared: false,
                },
            )
        }
    };
    Ok(Edit {
        writes: vec![(path, Some(f.render()))],
        message,
        decision,
        fallback: None,
    })
}

fn decide_ssh_keys(
    inv: &Inventory,
    tree: &dyn Tree,
    customer: &CustomerId,
    vps: &VpsId,
    keys: &[SshPublicKey],
) -> Result<Edit, Refusal> {
    own_vps(inv, customer, vps, false)?;
    let mut uniq: Vec<SshPublicKey> = Vec::new();
    for k in keys {
        if !uniq.iter().any(|u| u.key_part() == k.key_part()) {
            uniq.push(k.clone());
        }
    }
    if uniq.len() > MAX_SSH_KEYS {
        return Err(Refusal::TooManyKeys);
    }
    let decision = Decision::SshKeys {
        customer: customer.clone(),
        keys: uniq.len(),
    };
    let current = inv.customers.get(customer).ok_or(Refusal::NotFound)?;
    if current.ssh_keys == uniq {
        return Ok(Edit::noop(decision));
    }
    let path = customer_path(customer);
    let mut f = open(tree, &path)?;
    f.set_ssh_keys(&uniq);
    Ok(Edit {
        writes: vec![(path, Some(f.render()))],
        message: format!(
            "{customer}: set {} SSH key{} ({vps}) {VIA}",
            uniq.len(),
            if uniq.len() == 1 { "" } else { "s" }
        ),
        decision,
        fallback: None,
    })
}

/// One entry of the VPS's `[ptr]`: the address must be the VPS's own (else not found, like
/// another customer's VPS); setting the name it has already changes nothing.
fn decide_ptr(
    inv: &Inventory,
    tree: &dyn Tree,
    customer: &CustomerId,
    vps: &VpsId,
    address: std::net::IpAddr,
    name: Option<&model::values::Hostname>,
) -> Result<Edit, Refusal> {
    let v = own_vps(inv, customer, vps, false)?;
    if !v.owns(address) {
        return Err(Refusal::NotFound);
    }
    let decision = Decision::Ptr {
        vps: vps.clone(),
        address,
        name: name.unwrap_or(&v.hostname).clone(),
        custom: name.is_some(),
    };
    if v.ptr.get(&address) == name {
        return Ok(Edit::noop(decision));
    }
    let path = vps_path(vps);
    let mut f = open(tree, &path)?;
    f.set_ptr(address, name)?;
    let what = match name {
        Some(n) => format!("set the reverse name of {address} ({vps}) to {n}"),
        None => format!("reset the reverse name of {address} ({vps}) to the host name"),
    };
    Ok(Edit {
        writes: vec![(path, Some(f.render()))],
        message: format!("{customer}: {what} {VIA}"),
        decision,
        fallback: None,
    })
}

fn decide_reply(
    tree: &dyn Tree,
    customer: &CustomerId,
    ticket: &TicketId,
    message: &str,
    at: DateTime<Utc>,
) -> Result<Edit, Refusal> {
    let path = ticket.path();
    let text = tree.read(&path).ok_or(Refusal::NotFound)?;
    let t = tickets::parse(ticket.clone(), &text).map_err(|_| Refusal::NotFound)?;
    if &t.customer != customer {
        return Err(Refusal::NotFound);
    }
    if text.len().saturating_add(message.len()) > tickets::MAX_THREAD {
        return Err(Refusal::TicketTooLong);
    }
    let new = tickets::append(&path, &text, customer.as_str(), message, at)
        .map_err(|e| Refusal::Broken(e.to_string()))?;
    Ok(Edit {
        writes: vec![(path, Some(new))],
        message: format!("{customer}: reply to ticket {ticket} {VIA}"),
        decision: Decision::Ticket {
            ticket: ticket.clone(),
        },
        fallback: None,
    })
}

/// Whether this payment was already recorded: by its event, or by its Checkout Session under
/// another event.
fn already_recorded(p: &Payment, tree: &dyn Tree) -> bool {
    if tree.exists(&payment_path(&p.event)) {
        return true;
    }
    tree.entries(PAYMENTS_DIR)
        .unwrap_or_default()
        .iter()
        .filter(|e| !e.is_dir && e.name.ends_with(".toml"))
        .filter_map(|e| tree.read(&format!("{PAYMENTS_DIR}/{}", e.name)))
        .any(|text| record_names_session(&text, &p.session))
}

fn not_applied(p: &Payment, why: String) -> Edit {
    recorded_only(
        p,
        Applied::NotApplied(why.clone()),
        "not_applied",
        &why,
        "not applied",
    )
}

/// The payment record alone, nothing else changed: `result` is the decision's, `label` the
/// commit message's word for it.
fn recorded_only(
    p: &Payment,
    applied: Applied,
    result: &'static str,
    why: &str,
    label: &str,
) -> Edit {
    Edit {
        writes: vec![(payment_path(&p.event), Some(render_record(p, &applied)))],
        message: format!("stripe: record payment {} ({label}: {why})", p.event),
        decision: Decision::Payment {
            event: p.event.clone(),
            result,
            vps: None,
            invoice: None,
        },
        fallback: None,
    }
}

/// A payment that does not match what is due: recorded (so a second delivery is a no-op and
/// an admin sees it), nothing else changed.
fn refused(p: &Payment, why: String) -> Edit {
    recorded_only(p, Applied::Refused(why.clone()), "refused", &why, "refused")
}

fn decide_payment(
    p: &Payment,
    inv: &Inventory,
    cat: &Catalog,
    tree: &dyn Tree,
) -> Result<Edit, Refusal> {
    if already_recorded(p, tree) {
        return Ok(Edit::noop(Decision::Payment {
            event: p.event.clone(),
            result: "duplicate",
            vps: None,
            invoice: None,
        }));
    }
    // A payment on an implausible date buys nothing.
    if let Err(why) = check_created(p.paid_at, p.received_at) {
        return Ok(refused(p, why));
    }
    let book = Book::read(tree);
    let mut edit = match &p.purchase {
        Purchase::Renew {
            customer,
            vps,
            product,
            invoice,
        } => decide_renewal(
            p,
            inv,
            tree,
            &book,
            customer,
            vps,
            product,
            invoice.as_ref(),
        )?,
        Purchase::Order { .. } => decide_order(p, inv, cat, tree, &book)?,
        Purchase::TrafficBlock {
            customer,
            vps,
            product,
            period,
        } => decide_traffic_block(p, inv, tree, &book, customer, vps, product, *period)?,
    };
    if edit.fallback.is_none()
        && !matches!(
            edit.decision,
            Decision::Payment {
                result: "not_applied" | "refused",
                ..
            }
        )
    {
        edit.fallback = Some(Box::new(not_applied(
            p,
            "the change would make the inventory invalid (see the hooks log)".to_owned(),
        )));
    }
    Ok(edit)
}

/// Issues the invoice a payment pays when none was open: numbered after the invoices of this
/// head (decided again on a new head after a lost race, so the number follows that head), dated
/// the day the payment was received, its totals those `due` was checked against.
fn issue_paid(
    p: &Payment,
    inv: &Inventory,
    book: &Book,
    customer: &model::Customer,
    due: Due,
    kind: InvoiceKind,
) -> Result<Invoice, String> {
    let issued = p.received_at.date_naive();
    let number = book
        .next_number(&inv.settings.billing.invoice_number, issued)
        .map_err(|e| format!("no invoice number: {e}"))?;
    let draft = billing::invoice::Draft {
        number,
        issued,
        due: issued,
        lines: due.lines,
        kind,
    };
    billing::invoice::issue(draft, customer, &inv.settings, &due.currency)
        .map_err(|e| format!("no invoice: {e}"))
}

/// The invoice a renewal pays: the one named in the session (it must be this VPS's and
/// unpaid), or else the VPS's open renewal invoice of the product, or else a new one.
fn renewal_target(
    p: &Payment,
    inv: &Inventory,
    book: &Book,
    v: &Vps,
    prod: &model::Product,
    invoice: Option<&InvoiceNumber>,
) -> Result<Due, String> {
    let paid = p.paid_at.date_naive();
    let Some(n) = invoice else {
        return Ok(renewal_due(inv, book, v, prod, paid)
            .unwrap_or_else(|_| new_renewal_due(inv, v, prod, paid)));
    };
    let i = book
        .get(n)
        .filter(|i| i.customer == v.customer && i.renews().is_some_and(|(x, _)| *x == v.id))
        .ok_or_else(|| {
            format!(
                "invoice {n} is not a renewal invoice of {} on the head",
                v.id
            )
        })?;
    if let Some(event) = book.paid_by(n) {
        return Err(format!("invoice {n} is paid already (payment {event})"));
    }
    if !i.lines.iter().any(|l| l.product == prod.id) {
        return Err(format!("invoice {n} does not bill {}", prod.id));
    }
    Ok(Due::of_invoice(i))
}

/// The VPS a payment is for and its owner, or the `not_applied` record when it is not (any
/// more) a VPS of that customer.
fn paid_for<'a>(
    p: &Payment,
    inv: &'a Inventory,
    customer: &CustomerId,
    vps: &VpsId,
) -> Result<(&'a Vps, &'a model::Customer), Box<Edit>> {
    match (
        own_vps(inv, customer, vps, true),
        inv.customers.get(customer),
    ) {
        (Ok(v), Some(owner)) => Ok((v, owner)),
        _ => Err(Box::new(not_applied(
            p,
            format!("{vps} is not an active VPS of {customer}"),
        ))),
    }
}

#[allow(clippy::too_many_arguments)]
fn decide_renewal(
    p: &Payment,
    inv: &Inventory,
    tree: &dyn Tree,
    book: &Book,
    customer: &CustomerId,
    vps: &VpsId,
    product: &model::ProductId,
    invoice: Option<&InvoiceNumber>,
) -> Result<Edit, Refusal> {
    let (v, owner) = match paid_for(p, inv, customer, vps) {
        Ok(x) => x,
        Err(e) => return Ok(*e),
    };
    let Some(prod) = inv
        .products
        .get(product)
        .filter(|pr| pr.plan_id() == &v.product)
    else {
        return Ok(not_applied(
            p,
            format!("{product} does not renew {}'s plan {}", vps, v.product),
        ));
    };
    let due = match renewal_target(p, inv, book, v, prod, invoice) {
        Ok(due) => due,
        Err(why) => return Ok(not_applied(p, why)),
    };
    // What was paid must be exactly what the invoice asks, in its currency.
    if let Err(why) = due.check(p) {
        return Ok(refused(p, why));
    }
    let paid = p.paid_at.date_naive();
    let after = renewed_expiry(v.expires, paid, prod.period_months);
    let unsuspended = v.state == State::Suspended;
    let path = vps_path(vps);
    let mut f = open(tree, &path)?;
    if let Err(e) = f.set_date("expires", after) {
        return Ok(refused(p, e.to_string()));
    }
    if unsuspended {
        f.set_state(State::Active);
        f.set_suspension(None);
        f.remove("suspended");
    }
    let currency = due.currency.clone();
    let mut writes = vec![(path, Some(f.render()))];
    let number = match due.invoice.clone() {
        Some(n) => n,
        None => {
            let kind = InvoiceKind::Renewal {
                vps: vps.clone(),
                expires: v.expires,
                new_expiry: after,
            };
            match issue_paid(p, inv, book, owner, due, kind) {
                Ok(i) => {
                    writes.push((invoice_path(&i.number), Some(billing::invoice::render(&i))));
                    i.number
                }
                Err(why) => return Ok(not_applied(p, why)),
            }
        }
    };
    let applied = Applied::Renewed {
        invoice: number.clone(),
        vps: vps.clone(),
        before: v.expires,
        after,
        unsuspended,
    };
    writes.push((payment_path(&p.event), Some(render_record(p, &applied))));
    let to = Recipient {
        name: owner.name.clone(),
        email: owner.email.clone(),
        language: owner.language,
    };
    let mut renewed = v.clone();
    renewed.expires = after;
    let receipt = Receipt {
        event: &p.event,
        vps: &renewed,
        amount: p.amount,
        currency: &currency,
        expires: after,
        at: p.received_at,
    };
    let unmailed = add_mails(&mut writes, payment_mails(inv, tree, &to, &receipt, None));
    Ok(Edit {
        writes,
        message: format!(
            "stripe: renew {vps} for {customer} until {after}{}, pay {number} ({}){unmailed}",
            if unsuspended { ", lift suspension" } else { "" },
            p.event
        ),
        decision: Decision::Payment {
            event: p.event.clone(),
            result: "renewed",
            vps: Some(vps.clone()),
            invoice: Some(number),
        },
        fallback: None,
    })
}

/// A paid traffic block: checked against what the block costs for the VPS's traffic period on
/// the payment day (amount, currency, the period of the session), then its invoice issued and
/// paid and a `[[traffic_block]]` entry added to the VPS file. The next traffic run (`gitvps
/// monitor usage`) lifts a throttle or traffic suspension the bigger quota no longer calls for.
#[allow(clippy::too_many_arguments)]
fn decide_traffic_block(
    p: &Payment,
    inv: &Inventory,
    tree: &dyn Tree,
    book: &Book,
    customer: &CustomerId,
    vps: &VpsId,
    product: &model::ProductId,
    period: NaiveDate,
) -> Result<Edit, Refusal> {
    let (v, owner) = match paid_for(p, inv, customer, vps) {
        Ok(x) => x,
        Err(e) => return Ok(*e),
    };
    let paid = p.paid_at.date_naive();
    let (prod, current, due) = match crate::billing::traffic_block_due(inv, v, product, paid) {
        Ok(x) => x,
        Err(why) => return Ok(not_applied(p, why)),
    };
    if current.start != period {
        return Ok(not_applied(
            p,
            format!(
                "the block was bought for the traffic period from {period}, but {vps}'s period on the payment day starts {}",
                current.start
            ),
        ));
    }
    if let Err(why) = due.check(p) {
        return Ok(refused(p, why));
    }
    let Some(size) = prod.traffic_block() else {
        return Ok(not_applied(p, format!("{product} is not a traffic block")));
    };
    let kind = InvoiceKind::TrafficBlock {
        vps: vps.clone(),
        period,
    };
    let invoice = match issue_paid(p, inv, book, owner, due, kind) {
        Ok(i) => i,
        Err(why) => return Ok(not_applied(p, why)),
    };
    let path = vps_path(vps);
    let mut f = open(tree, &path)?;
    let block = model::TrafficBlock {
        period,
        size,
        invoice: invoice.number.clone(),
    };
    if let Err(e) = f.add_traffic_block(&block) {
        return Ok(not_applied(p, e.to_string()));
    }
    let number = invoice.number.clone();
    let applied = Applied::TrafficBlock {
        invoice: number.clone(),
        vps: vps.clone(),
        period,
    };
    let mut writes = vec![
        (path, Some(f.render())),
        (
            invoice_path(&number),
            Some(billing::invoice::render(&invoice)),
        ),
        (payment_path(&p.event), Some(render_record(p, &applied))),
    ];
    let to = Recipient {
        name: owner.name.clone(),
        email: owner.email.clone(),
        language: owner.language,
    };
    let receipt = BlockReceipt {
        event: &p.event,
        vps,
        amount: p.amount,
        currency: &invoice.currency,
        size,
        period: current,
        invoice: &number,
        at: p.received_at,
    };
    let unmailed = add_mails(&mut writes, traffic_block_mail(inv, tree, &to, &receipt));
    Ok(Edit {
        writes,
        message: format!(
            "stripe: {size} more traffic for {vps} of {customer} in the period from {period}, pay {number} ({}){unmailed}",
            p.event
        ),
        decision: Decision::Payment {
            event: p.event.clone(),
            result: "traffic_block",
            vps: Some(vps.clone()),
            invoice: Some(number),
        },
        fallback: None,
    })
}

/// Adds the outbox writes of a payment's mails; a mail that cannot be rendered (a broken
/// template override) does not stop the payment: the commit message says so.
fn add_mails(
    writes: &mut Vec<(String, Option<String>)>,
    mails: Result<Vec<(String, Option<String>)>, crate::paymail::PaymailError>,
) -> String {
    match mails {
        Ok(m) => {
            writes.extend(m);
            String::new()
        }
        Err(e) => format!(" (no mail: {e})"),
    }
}

/// The next free customer id of the form `c-NNNN`.
pub fn next_customer_id(inv: &Inventory) -> Option<CustomerId> {
    let max = inv
        .customers
        .keys()
        .filter_map(|c| c.as_str().strip_prefix("c-"))
        .filter_map(|n| n.parse::<u64>().ok())
        .max()
        .unwrap_or(0);
    format!("c-{:04}", max.saturating_add(1)).parse().ok()
}

/// The text of a new customer file.
pub fn new_customer_file(n: &crate::billing::NewCustomer, comment: &str) -> String {
    let mut d = DocumentMut::new();
    d["name"] = value(n.name.as_str());
    if let Some(c) = &n.company {
        d["company"] = value(c.as_str());
    }
    d["email"] = value(n.email.as_str());
    d["language"] = value(Keyword::as_str(n.language));
    d["password_hash"] = value(n.password_hash.as_str());
    d["ssh_keys"] = value(toml_edit::Array::new());
    let mut s = String::new();
    for line in comment.lines() {
        s.push_str("# ");
        s.push_str(line);
        s.push('\n');
    }
    s.push_str(&d.to_string());
    s
}

/// A customer value for placement, before its file exists.
fn synthetic_customer(id: &CustomerId, n: &crate::billing::NewCustomer) -> model::Customer {
    model::Customer {
        id: id.clone(),
        name: n.name.clone(),
        company: n.company.clone(),
        email: Some(n.email.clone()),
        country: None,
        address: Vec::new(),
        tax_id: None,
        reseller: None,
        language: n.language,
        password_hash: Some(n.password_hash.clone()),
        ssh_keys: Vec::new(),
        origin: model::Origin::synthetic(&customer_path(id)),
    }
}

/// `inv` with one more customer: placement needs the customer before its file exists.
fn with_customer(inv: &Inventory, customer: model::Customer) -> Inventory {
    let mut copy = inv.clone();
    copy.customers.insert(customer.id.clone(), customer);
    copy
}

/// A stand-in customer, as good as a real one for a capacity check.
fn probe_customer(id: &CustomerId) -> model::Customer {
    model::Customer {
        id: id.clone(),
        name: String::new(),
        company: None,
        email: None,
        country: None,
        address: Vec::new(),
        tax_id: None,
        reseller: None,
        language: Language::En,
        password_hash: None,
        ssh_keys: Vec::new(),
        origin: model::Origin::synthetic("probe"),
    }
}

/// Whether a VPS of `product` could be placed in `location` on `today`, for `customer` or,
/// for someone without an account yet, a stand-in. Checked before the customer pays.
pub fn dry_place(
    inv: &Inventory,
    customer: Option<&CustomerId>,
    product: &model::ProductId,
    location: &str,
    os: &model::OsId,
    today: NaiveDate,
) -> Result<(), PlaceRefusal> {
    use model::placement::{PlacementError, Request as PlaceReq, place};
    let holder;
    let (inv, customer) = match customer {
        Some(c) => (inv, c.clone()),
        None => {
            let probe = next_customer_id(inv)
                .ok_or_else(|| PlaceRefusal::BadOrder("no free customer id".to_owned()))?;
            holder = with_customer(inv, probe_customer(&probe));
            (&holder, probe)
        }
    };
    let req = PlaceReq {
        customer,
        product: product.clone(),
        location: location.to_owned(),
        os: Some(os.clone()),
        appliance: None,
        hostname: None,
        id: None,
        today,
    };
    match place(inv, &req) {
        Ok(_) => Ok(()),
        Err(e @ PlacementError::UnknownLocation { .. }) => {
            Err(PlaceRefusal::UnknownLocation(e.to_string()))
        }
        Err(PlacementError::NoCapacity { location, .. }) => Err(PlaceRefusal::NoCapacity(location)),
        Err(e) => Err(PlaceRefusal::BadOrder(e.to_string())),
    }
}

fn decide_order(
    p: &Payment,
    inv: &Inventory,
    cat: &Catalog,
    tree: &dyn Tree,
    book: &Book,
) -> Result<Edit, Refusal> {
    let Purchase::Order {
        customer,
        product,
        location,
        os,
        appliance,
    } = &p.purchase
    else {
        return Err(Refusal::NotFound);
    };
    // Only a public plan can be ordered, and what was paid must be exactly its invoice.
    let plan = match orderable(inv, product) {
        Ok(plan) => plan,
        Err(why) => return Ok(refused(p, why)),
    };
    let country = match customer {
        OrderCustomer::Existing(c) => inv.customers.get(c).and_then(|c| c.country.as_ref()),
        OrderCustomer::New(_) => None,
    };
    if let Err(why) = Due::of_lines(inv, order_lines(plan, None), country).check(p) {
        return Ok(refused(p, why));
    }
    if let Err(e) = cat.os(os.as_str()) {
        return Ok(not_applied(p, e.to_string()));
    }
    if let Some(a) = appliance
        && let Err(e) = cat.appliance(os, a.as_str())
    {
        return Ok(not_applied(p, e.to_string()));
    }
    let mut writes = Vec::new();
    let placed_in;
    let (buyer, inv_for_place) = match customer {
        OrderCustomer::Existing(c) => {
            let Some(buyer) = inv.customers.get(c) else {
                return Ok(not_applied(p, format!("customer {c} does not exist")));
            };
            (buyer.clone(), inv)
        }
        OrderCustomer::New(n) => {
            let Some(id) = next_customer_id(inv) else {
                return Ok(not_applied(p, "no free customer id".to_owned()));
            };
            let buyer = synthetic_customer(&id, n);
            placed_in = with_customer(inv, buyer.clone());
            writes.push((
                customer_path(&id),
                Some(new_customer_file(
                    n,
                    &format!("Created by gitvps-hooks from Stripe payment {}.", p.event),
                )),
            ));
            (buyer, &placed_in)
        }
    };
    let req = model::placement::Request {
        customer: buyer.id.clone(),
        product: product.clone(),
        location: location.to_owned(),
        os: Some(os.clone()),
        appliance: appliance.clone(),
        hostname: None,
        id: None,
        today: p.paid_at.date_naive(),
    };
    let placement = match model::placement::place(inv_for_place, &req) {
        Ok(placement) => placement,
        Err(e) => return Ok(not_applied(p, format!("placement failed: {e}"))),
    };
    let vps = &placement.vps;
    let due = Due::of_lines(inv, order_lines(plan, Some(vps)), buyer.country.as_ref());
    let currency = due.currency.clone();
    let kind = InvoiceKind::Order {
        vps: Some(vps.id.clone()),
    };
    let invoice = match issue_paid(p, inv, book, &buyer, due, kind) {
        Ok(i) => i,
        Err(why) => return Ok(not_applied(p, why)),
    };
    writes.push((
        vps_path(&vps.id),
        Some(new_vps_file(
            vps,
            &format!(
                "Ordered by {} through Stripe ({}), paid {}.",
                buyer.id,
                p.event,
                p.paid_at.date_naive()
            ),
        )),
    ));
    writes.push((
        invoice_path(&invoice.number),
        Some(billing::invoice::render(&invoice)),
    ));
    let applied = Applied::Ordered {
        invoice: invoice.number.clone(),
        customer: buyer.id.clone(),
        vps: vps.id.clone(),
    };
    writes.push((payment_path(&p.event), Some(render_record(p, &applied))));
    let to = Recipient {
        name: buyer.name.clone(),
        email: buyer.email.clone(),
        language: buyer.language,
    };
    let receipt = Receipt {
        event: &p.event,
        vps,
        amount: p.amount,
        currency: &currency,
        expires: vps.expires,
        at: p.received_at,
    };
    let facts = OrderFacts {
        product: plan.name.clone(),
        location: inv
            .pools
            .get(&placement.pool)
            .map_or_else(|| location.clone(), |pool| pool.location.clone()),
        os: cat.os_name(os),
    };
    let unmailed = add_mails(
        &mut writes,
        payment_mails(inv_for_place, tree, &to, &receipt, Some(&facts)),
    );
    Ok(Edit {
        writes,
        message: format!(
            "stripe: order {} for {} ({product} on {}), pay {} ({}){unmailed}",
            vps.id, buyer.id, placement.node, invoice.number, p.event
        ),
        decision: Decision::Payment {
            event: p.event.clone(),
            result: "ordered",
            vps: Some(vps.id.clone()),
            invoice: Some(invoice.number),
        },
        fallback: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::billing::{NewCustomer, Payment};
    use crate::tree::{DiskTree, MemTree};
    use std::path::PathBuf;

    /// The project's own example fleet (the project repo is an inventory repo).
    fn top() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
    }

    fn fleet() -> (Inventory, DiskTree) {
        (Inventory::load(&top()).unwrap(), DiskTree::new(top()))
    }

    /// The project's bootstraps catalog, as the store loads it.
    fn cat() -> Catalog {
        crate::catalog::catalog(std::sync::Arc::new(
            model::bootstraps::Catalog::load(&top()).unwrap(),
        ))
    }

    fn id<T: std::str::FromStr>(s: &str) -> T
    where
        T::Err: std::fmt::Debug,
    {
        s.parse().unwrap()
    }

    #[test]
    fn a_customer_reaches_only_its_own_live_vpses() {
        let (mut inv, _) = fleet();
        let jane: CustomerId = id("c-0001");
        assert!(own_vps(&inv, &jane, &id("xen02"), false).is_ok());
        assert_eq!(
            own_vps(&inv, &jane, &id("xen01"), false).unwrap_err(),
            Refusal::NotFound
        );
        assert_eq!(
            own_vps(&inv, &jane, &id("xen77"), false).unwrap_err(),
            Refusal::NotFound
        );
        let x: VpsId = id("xen02");
        inv.vps.get_mut(&x).unwrap().state = State::Suspended;
        assert_eq!(
            own_vps(&inv, &jane, &x, false).unwrap_err(),
            Refusal::Suspended(x.clone())
        );
        assert!(own_vps(&inv, &jane, &x, true).is_ok(), "renewing");
        inv.vps.get_mut(&x).unwrap().state = State::Destroyed;
        assert_eq!(
            own_vps(&inv, &jane, &x, true).unwrap_err(),
            Refusal::NotFound
        );
    }

    #[test]
    fn actions_bump_one_counter_with_a_message_naming_who_and_what() {
        let (inv, tree) = fleet();
        let e = decide(
            &Change::Action {
                customer: id("c-0002"),
                vps: id("xen03"),
                kind: ActionKind::Fsck,
            },
            &inv,
            &cat(),
            &tree,
        )
        .unwrap();
        assert_eq!(e.message, "c-0002: fsck xen03 (site)");
        assert_eq!(e.writes.len(), 1);
        assert_eq!(e.writes[0].0, "inventory/vps/xen03.toml");
        assert!(e.writes[0].1.as_ref().unwrap().contains("fsck = 1"));
        // Power already as asked: nothing to write.
        let e = decide(
            &Change::Power {
                customer: id("c-0002"),
                vps: id("xen03"),
                power: Power::Running,
            },
            &inv,
            &cat(),
            &tree,
        )
        .unwrap();
        assert!(e.writes.is_empty());
    }

    fn backup(id: &str) -> model::status::BackupEntry {
        model::status::BackupEntry {
            id: id.repeat(8),
            short_id: id.to_owned(),
            time: DateTime::from_timestamp(1_800_000_000, 0).unwrap(),
            size_bytes: 10 << 30,
        }
    }

    #[test]
    fn a_restore_names_a_published_backup_of_the_customers_own_vps() {
        let (mut inv, tree) = fleet();
        let restore_on = |inv: &Inventory| {
            let ask = Change::Restore {
                customer: id("c-0001"),
                vps: id("xen02"),
                snapshot: "0badcafe".into(),
                from: None,
                published: vec![backup("0badcafe")],
            };
            decide(&ask, inv, &cat(), &tree)
        };
        assert_eq!(restore_on(&inv).unwrap_err(), Refusal::BackupsNotConfigured);
        inv.settings.backup.repository = Some(model::backup::Repository::Local {
            path: "/mnt/backup/restic".parse().unwrap(),
        });
        assert!(restore_on(&inv).is_ok());
        let restore =
            |customer: &str, vps: &str, snapshot: &str, from: Option<&str>| Change::Restore {
                customer: id(customer),
                vps: id(vps),
                snapshot: snapshot.into(),
                from: from.map(id),
                published: vec![backup("4f2a9c1e"), backup("0badcafe")],
            };
        // By its short id, as the panel lists it: the full id is written.
        let e = decide(
            &restore("c-0001", "xen02", "0badcafe", None),
            &inv,
            &cat(),
            &tree,
        )
        .unwrap();
        assert_eq!(
            e.message,
            "c-0001: restore xen02 from backup 0badcafe (site)"
        );
        assert_eq!(e.writes[0].0, "inventory/vps/xen02.toml");
        let text = e.writes[0].1.as_deref().unwrap();
        assert!(
            text.contains(&format!(
                "[restore]\nsnapshot = \"{}\"\ngeneration = 1\n",
                "0badcafe".repeat(8)
            )),
            "{text}"
        );
        assert_eq!(
            e.decision,
            Decision::Action {
                vps: id("xen02"),
                action: "restore",
                generation: 1
            }
        );
        // Not in the list (another VPS's backup, a made-up id, a prefix): refused, nothing written.
        for bad in ["deadbeef", "0badca", "", "0BADCAFE", "0badcafe\n"] {
            let e =
                decide(&restore("c-0001", "xen02", bad, None), &inv, &cat(), &tree).unwrap_err();
            assert!(matches!(e, Refusal::UnknownBackup(_)), "{bad:?}: {e:?}");
        }
        // Another customer's VPS, as the target or as the source: not found.
        for (vps, from) in [
            ("xen03", None),
            ("xen02", Some("xen03")),
            ("xen02", Some("xen77")),
        ] {
            assert_eq!(
                decide(
                    &restore("c-0001", vps, "0badcafe", from),
                    &inv,
                    &cat(),
                    &tree
                )
                .unwrap_err(),
                Refusal::NotFound,
                "{vps} from {from:?}"
            );
        }
        // Into another VPS of the same customer: `from` is written.
        let e = decide(
            &restore("c-0003", "xen01", "4f2a9c1e", Some("xen04")),
            &inv,
            &cat(),
            &tree,
        )
        .unwrap();
        assert!(
            e.writes[0]
                .1
                .as_deref()
                .unwrap()
                .contains("from = \"xen04\"")
        );
        assert_eq!(
            e.message,
            "c-0003: restore xen01 from backup 4f2a9c1e of xen04 (site)"
        );
    }

    #[test]
    fn a_reset_request_commits_the_record_alone() {
        let (inv, tree) = fleet();
        let token = crate::reset::Token::new(&id("c-0001"), [7; crate::reset::TOKEN_BYTES]);
        let at = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let ask = |customer: &str| Change::RequestReset {
            customer: id(customer),
            hash: token.hash(),
            at,
        };
        let e = decide(&ask("c-0001"), &inv, &cat(), &tree).unwrap();
        assert_eq!(e.writes.len(), 1, "{:?}", e.writes);
        assert_eq!(e.writes[0].0, "resets/c-0001.toml");
        let text = e.writes[0].1.as_deref().unwrap();
        let record = crate::reset::Record::parse(text).unwrap();
        assert_eq!(record.hash, token.hash());
        assert_eq!(record.expires - record.created, 30 * 60);
        let secret = token.expose().rsplit('.').next().unwrap();
        assert!(!text.contains(secret) && !e.message.contains(secret));
        assert_eq!(
            decide(&ask("c-9999"), &inv, &cat(), &tree).unwrap_err(),
            Refusal::NotFound
        );
    }

    fn ptr(customer: &str, vps: &str, address: &str, name: Option<&str>) -> Change {
        Change::Ptr {
            customer: id(customer),
            vps: id(vps),
            address: id(address),
            name: name.map(id),
        }
    }

    #[test]
    fn a_ptr_name_is_one_entry_of_the_vps_file_for_its_own_address_only() {
        let (inv, tree) = fleet();
        let e = decide(
            &ptr("c-0001", "xen02", "66.255.255.34", Some("mail.example.net")),
            &inv,
            &cat(),
            &tree,
        )
        .unwrap();
        assert_eq!(
            e.message,
            "c-0001: set the reverse name of 66.255.255.34 (xen02) to mail.example.net (site)"
        );
        assert_eq!(paths(&e), ["inventory/vps/xen02.toml"]);
        let text = written(&e, "inventory/vps/xen02.toml").unwrap();
        assert!(
            text.ends_with("\n[ptr]\n\"66.255.255.34\" = \"mail.example.net\"\n"),
            "{text}"
        );
        // Any address of its /64.
        let e = decide(
            &ptr(
                "c-0001",
                "xen02",
                "2001:db8:66:22::25",
                Some("mx.example.net"),
            ),
            &inv,
            &cat(),
            &tree,
        )
        .unwrap();
        assert!(
            written(&e, "inventory/vps/xen02.toml")
                .unwrap()
                .contains("\"2001:db8:66:22::25\" = \"mx.example.net\"")
        );
        // Another VPS's address, another /64, another customer's VPS: not found.
        for (customer, vps, address) in [
            ("c-0001", "xen02", "66.255.255.10"),
            ("c-0001", "xen02", "2001:db8:66:23::1"),
            ("c-0001", "xen01", "66.255.255.10"),
            ("c-0001", "xen77", "66.255.255.34"),
        ] {
            assert_eq!(
                decide(
                    &ptr(customer, vps, address, Some("a.example.net")),
                    &inv,
                    &cat(),
                    &tree
                )
                .unwrap_err(),
                Refusal::NotFound,
                "{vps} {address}"
            );
        }
        // Back to the host name when none was set: nothing to write.
        let e = decide(
            &ptr("c-0001", "xen02", "66.255.255.34", None),
            &inv,
            &cat(),
            &tree,
        )
        .unwrap();
        assert!(e.writes.is_empty());
        assert_eq!(
            e.decision,
            Decision::Ptr {
                vps: id("xen02"),
                address: id("66.255.255.34"),
                name: id("xen02.example.net"),
                custom: false,
            }
        );
    }

    /// What `purchase` costs on the example fleet, paid on 2026-05-01 without an open invoice.
    fn due_for(purchase: &Purchase) -> Option<Due> {
        let inv = fleet().0;
        match purchase {
            Purchase::Renew { vps, product, .. } => {
                let v = inv.vps.get(vps)?;
                let p = inv.products.get(product)?;
                Some(new_renewal_due(&inv, v, p, id("2026-05-01")))
            }
            Purchase::Order { product, .. } => {
                let plan = orderable(&inv, product).ok()?;
                Some(Due::of_lines(&inv, order_lines(plan, None), None))
            }
            Purchase::TrafficBlock { vps, product, .. } => {
                let v = inv.vps.get(vps)?;
                crate::billing::traffic_block_due(&inv, v, product, id("2026-05-01"))
                    .ok()
                    .map(|(_, _, due)| due)
            }
        }
    }

    /// A payment of exactly what `purchase` costs on the example fleet.
    fn payment(event: &str, session: &str, purchase: Purchase) -> Payment {
        let amount = due_for(&purchase)
            .map(|d| d.totals.total)
            .unwrap_or_else(|| "59.00".parse().unwrap());
        Payment {
            event: id(event),
            paid_at: "2026-05-01T12:00:00Z".parse().unwrap(),
            received_at: "2026-05-01T12:00:00Z".parse().unwrap(),
            session: id(session),
            payment_intent: None,
            stripe_customer: None,
            amount,
            currency: "USD".into(),
            purchase,
        }
    }

    fn renewal(vps: &str, customer: &str, product: &str) -> Purchase {
        Purchase::Renew {
            customer: id(customer),
            vps: id(vps),
            product: id(product),
            invoice: None,
        }
    }

    /// The text written to `path` by an edit.
    fn written<'a>(e: &'a Edit, path: &str) -> Option<&'a str> {
        e.writes
            .iter()
            .find(|(p, _)| p == path)
            .and_then(|(_, t)| t.as_deref())
    }

    fn paths(e: &Edit) -> Vec<&str> {
        e.writes.iter().map(|(p, _)| p.as_str()).collect()
    }

    /// A tree with the VPS files of the fleet (what a renewal edits) and `extra` files.
    fn tree_with(extra: &[(String, String)]) -> MemTree {
        let (inv, disk) = fleet();
        let mut t = MemTree::new();
        for v in inv.vps.keys() {
            let path = vps_path(v);
            t = t.with(&path, &disk.read(&path).unwrap());
        }
        for (p, text) in extra {
            t = t.with(p, text);
        }
        t
    }

    /// The renewal invoices the billing run issues on `today` (xen04 from 2026-11-15 on).
    fn billing_run(inv: &Inventory, today: &str) -> Vec<billing::Invoice> {
        billing::decide(id(today), inv, &inv.settings, &billing::Ledger::default()).invoices
    }

    #[test]
    fn a_renewal_moves_expiry_and_a_recorded_one_is_a_noop() {
        let (inv, _) = fleet();
        let tree = tree_with(&[]);
        let p = payment("evt_a", "cs_a", renewal("xen04", "c-0003", "advanced-3m"));
        let e = decide(&Change::Payment(Box::new(p.clone())), &inv, &cat(), &tree).unwrap();
        // xen04 expires 2026-12-15, after the payment date: 3 months from it.
        assert!(
            written(&e, "inventory/vps/xen04.toml")
                .unwrap()
                .contains("expires = 2027-03-15")
        );
        // No invoice was open: the payment issues the first one, and names it.
        let invoice = written(&e, "billing/invoices/INV-2026-000001.toml").unwrap();
        assert!(invoice.contains("total = \"149.00\""), "{invoice}");
        let record = written(&e, "billing/payments/evt_a.toml").unwrap();
        assert!(record.contains("invoice = \"INV-2026-000001\""), "{record}");
        assert!(
            written(&e, "mail/outbox/payment-received.evt.a.eml").is_some(),
            "{:?}",
            paths(&e)
        );
        assert!(e.fallback.is_some(), "a payment is never lost");
        // Recorded already, by event or by session.
        let mut done = tree.clone();
        done.apply(&e.writes);
        let again = decide(&Change::Payment(Box::new(p)), &inv, &cat(), &done).unwrap();
        assert!(again.writes.is_empty());
        let other_event = payment("evt_b", "cs_a", renewal("xen04", "c-0003", "advanced-3m"));
        assert!(
            decide(&Change::Payment(Box::new(other_event)), &inv, &cat(), &done)
                .unwrap()
                .writes
                .is_empty()
        );
    }

    #[test]
    fn an_early_renewal_is_charged_its_invoice_with_the_customers_tax() {
        let (inv, _) = fleet();
        let tree = tree_with(&[]);
        // Jane (c-0001) lives in DE: 19 % on top of 149.00 is 28.31.
        let purchase = renewal("xen02", "c-0001", "advanced-3m");
        let due = due_for(&purchase).unwrap();
        assert_eq!(due.totals.total, id("177.31"));
        assert_eq!(
            due.checkout_lines().last().map(|l| (l.0.as_str(), l.1)),
            Some(("Tax (DE 19 %)", id("28.31")))
        );
        // The price without the tax does not pay it.
        let mut short = payment("evt_s", "cs_s", purchase.clone());
        short.amount = id("149.00");
        let e = decide(&Change::Payment(Box::new(short)), &inv, &cat(), &tree).unwrap();
        assert_eq!(paths(&e), ["billing/payments/evt_s.toml"]);
        let record = written(&e, "billing/payments/evt_s.toml").unwrap();
        assert!(
            record.contains("refused = true") && !record.contains("invoice ="),
            "{record}"
        );
        assert!(
            record.contains("paid 149.00 USD but is due 177.31 USD"),
            "{record}"
        );
        // The right amount renews and issues the invoice that says so.
        let p = payment("evt_t", "cs_t", purchase);
        let e = decide(&Change::Payment(Box::new(p)), &inv, &cat(), &tree).unwrap();
        let text = written(&e, "billing/invoices/INV-2026-000001.toml").unwrap();
        let issued =
            billing::invoice::parse("billing/invoices/INV-2026-000001.toml", text).unwrap();
        assert_eq!(issued.total, id("177.31"));
        assert_eq!(issued.tax.map(|t| t.amount), Some(id("28.31")));
        assert_eq!(
            e.decision,
            Decision::Payment {
                event: id("evt_t"),
                result: "renewed",
                vps: Some(id("xen02")),
                invoice: Some(id("INV-2026-000001")),
            }
        );
    }

    #[test]
    fn a_renewal_pays_the_open_invoice_only_with_its_amount_and_currency() {
        let (inv, _) = fleet();
        let issued = billing_run(&inv, "2026-11-20");
        let open = issued
            .iter()
            .find(|i| i.renews().is_some_and(|(v, _)| v.as_str() == "xen04"))
            .unwrap();
        let number = open.number.clone();
        let tree = tree_with(&[(
            billing::invoice_path(&number),
            billing::invoice::render(open),
        )]);
        let book = Book::read(&tree);
        assert!(book.open_renewal(&id("xen04"), id("2026-12-15")).is_some());
        let product = open.lines[0].product.to_string();
        let purchase = Purchase::Renew {
            customer: id("c-0003"),
            vps: id("xen04"),
            product: id(&product),
            invoice: Some(number.clone()),
        };
        let mut p = payment("evt_o", "cs_o", purchase);
        p.amount = open.total;
        // Another currency: recorded, refused, nothing renewed, the invoice still open.
        let mut eur = p.clone();
        eur.currency = "EUR".into();
        let e = decide(&Change::Payment(Box::new(eur)), &inv, &cat(), &tree).unwrap();
        assert_eq!(paths(&e), ["billing/payments/evt_o.toml"]);
        assert!(matches!(
            e.decision,
            Decision::Payment {
                result: "refused",
                ..
            }
        ));
        // The invoice's amount and currency pay it: no second invoice.
        let e = decide(&Change::Payment(Box::new(p.clone())), &inv, &cat(), &tree).unwrap();
        assert!(
            !paths(&e).iter().any(|p| p.starts_with("billing/invoices/")),
            "{:?}",
            paths(&e)
        );
        let record = written(&e, "billing/payments/evt_o.toml").unwrap();
        assert!(
            record.contains(&format!("invoice = \"{number}\"")),
            "{record}"
        );
        // Paid once, it cannot be paid again through another session.
        let mut done = tree.clone();
        done.apply(&e.writes);
        let mut twice = p;
        twice.event = id("evt_o2");
        twice.session = id("cs_o2");
        let e = decide(&Change::Payment(Box::new(twice)), &inv, &cat(), &done).unwrap();
        assert!(matches!(
            e.decision,
            Decision::Payment {
                result: "not_applied",
                ..
            }
        ));
    }

    #[test]
    fn a_new_invoice_takes_the_next_number_of_the_head_it_is_decided_on() {
        let (inv, _) = fleet();
        let p = payment("evt_n", "cs_n", renewal("xen04", "c-0003", "advanced-1m"));
        let first = decide(
            &Change::Payment(Box::new(p.clone())),
            &inv,
            &cat(),
            &tree_with(&[]),
        )
        .unwrap();
        assert!(written(&first, "billing/invoices/INV-2026-000001.toml").is_some());
        // Lost race: the head now holds an invoice issued meanwhile (the billing run's).
        let theirs = billing_run(&inv, "2026-05-01");
        let extra: Vec<(String, String)> = theirs
            .iter()
            .map(|i| {
                (
                    billing::invoice_path(&i.number),
                    billing::invoice::render(i),
                )
            })
            .collect();
        assert!(!extra.is_empty());
        let again = decide(
            &Change::Payment(Box::new(p)),
            &inv,
            &cat(),
            &tree_with(&extra),
        )
        .unwrap();
        let next = format!("billing/invoices/INV-2026-{:06}.toml", extra.len() + 1);
        assert!(written(&again, &next).is_some(), "{:?}", paths(&again));
    }

    #[test]
    fn payments_that_cannot_apply_are_recorded_as_not_applied() {
        let (inv, tree) = fleet();
        for purchase in [
            renewal("xen04", "c-0001", "advanced-3m"), // not Jane's
            renewal("xen01", "c-0003", "advanced-3m"), // xen01 is on `test`
            renewal("xen99", "c-0003", "advanced-1m"), // gone
        ] {
            let e = decide(
                &Change::Payment(Box::new(payment("evt_x", "cs_x", purchase))),
                &inv,
                &cat(),
                &tree,
            )
            .unwrap();
            assert_eq!(e.writes.len(), 1, "{e:?}");
            assert!(e.writes[0].1.as_ref().unwrap().contains("applied = false"));
            assert!(
                e.message
                    .starts_with("stripe: record payment evt_x (not applied: ")
            );
        }
    }

    #[test]
    fn dry_place_answers_before_payment_whether_an_order_would_land() {
        let (inv, _) = fleet();
        let today = "2026-05-01".parse().unwrap();
        let (advanced, debian) = (id("advanced"), id("debian-12"));
        let seattle = "Seattle, WA (USA)";
        assert_eq!(
            dry_place(&inv, None, &advanced, seattle, &debian, today),
            Ok(())
        );
        let jane = id("c-0001");
        assert_eq!(
            dry_place(&inv, Some(&jane), &advanced, seattle, &debian, today),
            Ok(())
        );
        assert!(matches!(
            dry_place(&inv, None, &advanced, "Atlantis", &debian, today),
            Err(PlaceRefusal::UnknownLocation(_))
        ));
    }

    #[test]
    fn an_order_for_someone_new_writes_customer_vps_and_record() {
        let (inv, tree) = fleet();
        assert_eq!(next_customer_id(&inv).unwrap().as_str(), "c-0004");
        let purchase = Purchase::Order {
            customer: OrderCustomer::New(NewCustomer {
                name: "Ann \"The Admin\" O'Neil".into(),
                company: Some("Ann = 1\n[x]".replace('\n', " ")),
                email: id("ann@example.org"),
                language: model::values::Language::En,
                password_hash: id(
                    "$argon2id$v=19$m=65536,t=3,p=4$gRqnVZzlQ1xo1IOoqZd94w$xdFOC/CniMwlmXcM6NLTf2c/vJDVL0IU/EZ/fePt0M0",
                ),
            }),
            product: id("advanced"),
            location: "Seattle, WA (USA)".into(),
            os: id("debian-12"),
            appliance: None,
        };
        let e = decide(
            &Change::Payment(Box::new(payment("evt_o", "cs_o", purchase))),
            &inv,
            &cat(),
            &tree,
        )
        .unwrap();
        let paths = paths(&e);
        assert_eq!(paths[0], "inventory/customers/c-0004.toml");
        assert!(paths[1].starts_with("inventory/vps/xen"));
        assert_eq!(
            paths[2..],
            [
                "billing/invoices/INV-2026-000001.toml",
                "billing/payments/evt_o.toml",
                "mail/outbox/payment-received.evt.o.eml",
                "mail/outbox/order-confirmed.evt.o.eml",
            ]
        );
        let cust = e.writes[0].1.as_ref().unwrap();
        let doc: toml_edit::DocumentMut = cust.parse().unwrap();
        assert_eq!(
            doc["name"].as_str(),
            Some("Ann \"The Admin\" O'Neil"),
            "quoted, not injected"
        );
        assert_eq!(doc["company"].as_str(), Some("Ann = 1 [x]"));
        let vps = e.writes[1].1.as_ref().unwrap();
        assert!(vps.contains("node = \"node0201\""), "{vps}");
        assert!(
            vps.contains("created = 2026-05-01") && vps.contains("expires = 2026-06-01"),
            "{vps}"
        );
    }
}
