//! The mails a payment owes its customer, queued in the commit that applies it: payment
//! received (a renewal or an order), order confirmed with address and console (an order), and
//! a traffic block's receipt.
//!
//! Their ids come from the Stripe event, so a redelivered event, answered as a duplicate, queues
//! nothing new; a customer without an e-mail address gets no mail.

use chrono::{DateTime, NaiveDate, Utc};
use mail::{Draft, Kind, MailId};
use model::policy::InvoiceNumber;
use model::usage::Period;
use model::values::{Currency, Email, Language, Money, Size};
use model::{Inventory, Vps, VpsId};
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::billing::StripeId;
use crate::mails::{QueueError, queue};
use crate::tree::Tree;

/// Longest event part of a mail id before it is hashed instead (ids hold 151 characters).
const MAX_KEY: usize = 100;

/// The part of a mail id that names a Stripe event: lower case as ids must be, with `_` made
/// `.` and each capital written `-` and its small letter (`evt_1Ab` → `evt.1-ab`), so two events
/// never share it. An id too long for that (Stripe's are about 30 characters) is hashed.
pub fn event_key(event: &StripeId) -> String {
    let mut out = String::new();
    for c in event.as_str().chars() {
        match c {
            '_' => out.push('.'),
            'A'..='Z' => {
                out.push('-');
                out.push(c.to_ascii_lowercase());
            }
            c => out.push(c),
        }
    }
    if out.len() <= MAX_KEY {
        out
    } else {
        let digest = Sha256::digest(event.as_str().as_bytes());
        format!("h{}", crate::auth::hex(&digest[..16]))
    }
}

/// The mail id of a payment's mail of `kind`.
pub fn mail_id(kind: Kind, event: &StripeId) -> Result<MailId, mail::InvalidMailId> {
    format!("{kind}.{}", event_key(event)).parse()
}

/// Who a payment's mails go to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipient {
    /// The name the mail greets.
    pub name: String,
    /// The address; `None`: no mail.
    pub email: Option<Email>,
    /// The language of the mail and of the panel link.
    pub language: Language,
}

/// What a payment bought, as its mails tell it.
#[derive(Debug, Clone)]
pub struct Receipt<'a> {
    /// The event (names the mails).
    pub event: &'a StripeId,
    /// The VPS renewed or created.
    pub vps: &'a Vps,
    /// The amount paid.
    pub amount: Money,
    /// Its currency.
    pub currency: &'a Currency,
    /// The VPS's expiry now.
    pub expires: NaiveDate,
    /// When the payment was received (the mails' date).
    pub at: DateTime<Utc>,
}

/// What an order's confirmation adds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderFacts {
    /// The plan's name.
    pub product: String,
    /// Where the VPS runs.
    pub location: String,
    /// The OS's name.
    pub os: String,
}

/// The console command of a VPS: `ssh [-p PORT] <vps>@<node>`, the console user being the VPS
/// id on its node's sshd (see docs/operating.md); `None` when its node is unknown.
pub fn console_command(inv: &Inventory, vps: &Vps) -> Option<String> {
    let node = inv.nodes.get(&vps.node)?;
    let port = if node.port == 22 {
        String::new()
    } else {
        format!("-p {} ", node.port)
    };
    Some(format!("ssh {port}{}@{}", vps.id, node.address))
}

/// The outbox writes of a payment's mails: payment received, and order confirmed when `order`
/// is given. Nothing when the recipient has no address.
pub fn payment_mails(
    inv: &Inventory,
    tree: &dyn Tree,
    to: &Recipient,
    r: &Receipt<'_>,
    order: Option<&OrderFacts>,
) -> Result<Vec<(String, Option<String>)>, PaymailError> {
    let Some(email) = &to.email else {
        return Ok(Vec::new());
    };
    let settings = &inv.settings;
    let lang = to.language;
    let mut base = mail::links::common(settings, &to.name);
    base["vps"] = json!(r.vps.id.as_str());
    base["amount"] = json!(r.amount.with_decimals(r.currency.minor_units()));
    base["currency"] = json!(r.currency.as_str());
    base["expires"] = json!(r.expires.to_string());
    base["panel_url"] = json!(mail::links::vps(settings, lang, r.vps.id.as_str()));
    let mut drafts = vec![(Kind::PaymentReceived, base.clone())];
    if let Some(o) = order {
        let mut ctx = base;
        ctx["product"] = json!(o.product);
        ctx["location"] = json!(o.location);
        ctx["os"] = json!(o.os);
        let address: Vec<String> = r.vps.ips.iter().map(ToString::to_string).collect();
        ctx["address"] = json!(address.join(", "));
        ctx["console"] = json!(console_command(inv, r.vps).unwrap_or_default());
        drafts.push((Kind::OrderConfirmed, ctx));
    }
    let mut writes = Vec::new();
    for (kind, context) in drafts {
        let draft = Draft {
            id: mail_id(kind, r.event).map_err(PaymailError::Id)?,
            kind,
            lang,
            to: email.clone(),
            to_name: Some(to.name.clone()),
            reply_to: None,
            context,
            attachments: Vec::new(),
        };
        writes.push(queue(inv, tree, &draft, r.at)?);
    }
    Ok(writes)
}

/// What a paid traffic block's receipt tells.
#[derive(Debug, Clone)]
pub struct BlockReceipt<'a> {
    /// The event (names the mail).
    pub event: &'a StripeId,
    /// The VPS whose quota grew.
    pub vps: &'a VpsId,
    /// The amount paid.
    pub amount: Money,
    /// Its currency.
    pub currency: &'a Currency,
    /// The block's size.
    pub size: Size,
    /// The traffic period it counts in.
    pub period: Period,
    /// The invoice it paid.
    pub invoice: &'a InvoiceNumber,
    /// When the payment was received (the mail's date).
    pub at: DateTime<Utc>,
}

/// The outbox write of a paid traffic block's receipt; nothing when the recipient has no
/// address.
pub fn traffic_block_mail(
    inv: &Inventory,
    tree: &dyn Tree,
    to: &Recipient,
    r: &BlockReceipt<'_>,
) -> Result<Vec<(String, Option<String>)>, PaymailError> {
    let Some(email) = &to.email else {
        return Ok(Vec::new());
    };
    let settings = &inv.settings;
    let kind = Kind::TrafficBlockPaid;
    let last_day = r.period.end.pred_opt().unwrap_or(r.period.end);
    let mut context = mail::links::common(settings, &to.name);
    context["vps"] = json!(r.vps.as_str());
    context["amount"] = json!(r.amount.with_decimals(r.currency.minor_units()));
    context["currency"] = json!(r.currency.as_str());
    context["size"] = json!(r.size.to_string());
    context["period_start"] = json!(r.period.start.to_string());
    context["period_end"] = json!(last_day.to_string());
    context["invoice"] = json!(r.invoice.to_string());
    context["panel_url"] = json!(mail::links::vps(settings, to.language, r.vps.as_str()));
    let draft = Draft {
        id: mail_id(kind, r.event).map_err(PaymailError::Id)?,
        kind,
        lang: to.language,
        to: email.clone(),
        to_name: Some(to.name.clone()),
        reply_to: None,
        context,
        attachments: Vec::new(),
    };
    Ok(vec![queue(inv, tree, &draft, r.at)?])
}

/// Why a payment's mails could not be queued (the payment is applied without them).
#[derive(Debug, thiserror::Error)]
pub enum PaymailError {
    /// The templates or the message.
    #[error(transparent)]
    Queue(#[from] QueueError),
    /// The id (never: event keys are made to fit).
    #[error(transparent)]
    Id(mail::InvalidMailId),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_keys_are_mail_ids_and_keep_case_apart() {
        let a: StripeId = "evt_1NabcXYZ".parse().unwrap();
        let b: StripeId = "evt_1nabcxyz".parse().unwrap();
        assert_eq!(event_key(&a), "evt.1-nabc-x-y-z");
        assert_ne!(event_key(&a), event_key(&b));
        assert_eq!(
            mail_id(Kind::PaymentReceived, &a).unwrap().as_str(),
            "payment-received.evt.1-nabc-x-y-z"
        );
        let long: StripeId = format!("evt_{}", "A".repeat(200)).parse().unwrap();
        let key = event_key(&long);
        assert!(key.starts_with('h') && key.len() == 33, "{key}");
        assert!(mail_id(Kind::OrderConfirmed, &long).is_ok());
    }
}
