//! The pure core of gitvps billing: invoices and their numbering, the ledger of what was issued
//! and paid, the daily dunning decision and the revenue report. No I/O: callers pass texts in.
//!
//! `gitvps billing run` reads the repo into an [`Inventory`](model::Inventory) and a
//! [`Ledger`], calls [`decide`], writes the [`Run`] (invoice files, VPS edits, the outbox) in
//! one commit, then sends mail. See `docs/inventory.md` for the policy.

pub mod dunning;
pub mod html;
pub mod invoice;
pub mod ledger;
pub mod numbering;
mod read;
pub mod report;

pub use dunning::{Change, MailIntent, MailKind, Problem, Run, decide, renewal_product};
pub use invoice::{
    BuyerSnapshot, Invoice, InvoiceKind, Line, SellerSnapshot, TaxLine, invoice_path,
};
pub use ledger::{Ledger, Paid, PaymentRecord, Summary, parse_payment};
pub use model::policy::InvoiceNumber;
pub use numbering::{Numberer, NumberingError, next_number};
pub use report::{Month, Report, report};

use chrono::NaiveDate;

/// The new expiry after a renewal: the period counts from the later of the old expiry and
/// the payment date (a lapsed VPS is not charged for the time it was lapsed).
pub fn renewed_expiry(old: NaiveDate, paid: NaiveDate, period_months: u32) -> NaiveDate {
    model::add_months(old.max(paid), period_months)
}
