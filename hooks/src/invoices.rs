//! A customer's invoices as the panel shows them: the invoice files of the head that bill it,
//! whether a payment record settles each, and the HTML document of one (`billing::html`).
//!
//! Pure over a [`Tree`]: a file that does not read is logged and left out, never a panic, so
//! one broken file hides itself only (`gitvps validate` and `billing run` name it to the operator).

use billing::html::{HtmlError, Templates};
use billing::invoice::{INVOICES_DIR, invoice_path};
use billing::ledger::{Ledger, PAYMENTS_DIR, parse_payment};
use billing::{InvoiceNumber, invoice};
use model::CustomerId;

use crate::tree::Tree;

/// The invoice templates of the head: the built-in ones with the repo's `templates/invoice/`.
pub fn templates(tree: &dyn Tree) -> Result<Templates, HtmlError> {
    Templates::with_overrides(tree.files(billing::html::TEMPLATES_DIR))
}

/// The ledger of `customer`: its invoices (every one, or only the one `only` names) and which
/// of them the payment records settle. Another customer's invoice is never in it.
pub fn ledger_of(tree: &dyn Tree, customer: &CustomerId, only: Option<&InvoiceNumber>) -> Ledger {
    let mut ledger = Ledger::default();
    let files: Vec<(String, String)> = match only {
        Some(n) => {
            let path = invoice_path(n);
            tree.read(&path).map(|t| (path, t)).into_iter().collect()
        }
        None => tree
            .files(INVOICES_DIR)
            .into_iter()
            .filter(|(name, _)| name.ends_with(".toml"))
            .map(|(name, text)| (format!("{INVOICES_DIR}/{name}"), text))
            .collect(),
    };
    for (path, text) in files {
        match invoice::parse(&path, &text) {
            Ok(inv) if &inv.customer == customer => {
                ledger.invoices.insert(inv.number.clone(), inv);
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(file = %path, error = %e, "unreadable invoice left out"),
        }
    }
    if ledger.invoices.is_empty() {
        return ledger;
    }
    let mut records = Vec::new();
    for (name, text) in tree.files(PAYMENTS_DIR) {
        let path = format!("{PAYMENTS_DIR}/{name}");
        match parse_payment(&path, &text) {
            Ok(r) => records.push(r),
            Err(e) => {
                tracing::warn!(file = %path, error = %e, "unreadable payment record left out")
            }
        }
    }
    // Earliest first, as `Ledger::load` settles them; a record naming an invoice of another
    // customer settles nothing here.
    records.sort_by(|a, b| (a.paid_at, &a.event).cmp(&(b.paid_at, &b.event)));
    for r in &records {
        let _ = ledger.record_payment(r);
    }
    ledger
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::MemTree;

    fn invoice_text(number: &str, customer: &str, vps: &str) -> String {
        format!(
            "number = \"{number}\"\ncustomer = \"{customer}\"\nissued = 2026-12-05\ndue = 2026-12-12\n\
             currency = \"USD\"\nsubtotal = \"59.00\"\ntotal = \"59.00\"\n\n[kind]\ntype = \"renewal\"\n\
             vps = \"{vps}\"\nexpires = 2026-12-05\nnew_expiry = 2027-01-05\n\n[seller]\nname = \"S\"\n\
             address = []\n\n[buyer]\nname = \"B\"\naddress = []\n\n[[line]]\ndescription = \"d\"\n\
             product = \"advanced\"\nvps = \"{vps}\"\nquantity = 1\nunit = \"59.00\"\namount = \"59.00\"\n"
        )
    }

    fn tree() -> MemTree {
        MemTree::new()
            .with(
                "billing/invoices/INV-1.toml",
                &invoice_text("INV-1", "c-0001", "xen02"),
            )
            .with(
                "billing/invoices/INV-2.toml",
                &invoice_text("INV-2", "c-0002", "xen03"),
            )
            .with(
                "billing/invoices/INV-3.toml",
                &invoice_text("INV-3", "c-0001", "xen02"),
            )
            .with("billing/invoices/INV-4.toml", "number = broken")
            .with(
                "billing/payments/evt_1.toml",
                "event = \"evt_1\"\nkind = \"renew\"\ncustomer = \"c-0001\"\nvps = \"xen02\"\n\
                 invoice = \"INV-3\"\namount = \"59.00\"\ncurrency = \"usd\"\n\
                 paid_at = \"2026-12-06T10:00:00Z\"\napplied = true\n",
            )
            .with(
                "billing/payments/evt_2.toml",
                "event = \"evt_2\"\nkind = \"renew\"\ncustomer = \"c-0002\"\nvps = \"xen03\"\n\
                 invoice = \"INV-2\"\namount = \"59.00\"\ncurrency = \"usd\"\n\
                 paid_at = \"2026-12-06T10:00:00Z\"\napplied = true\n",
            )
    }

    #[test]
    fn a_customer_sees_its_own_invoices_only_with_their_payments() {
        let c: CustomerId = "c-0001".parse().unwrap();
        let l = ledger_of(&tree(), &c, None);
        let numbers: Vec<&str> = l.invoices.keys().map(InvoiceNumber::as_str).collect();
        assert_eq!(
            numbers,
            ["INV-1", "INV-3"],
            "INV-2 is c-0002's, INV-4 broken"
        );
        let paid: Vec<&str> = l.paid.keys().map(InvoiceNumber::as_str).collect();
        assert_eq!(paid, ["INV-3"]);

        let other: InvoiceNumber = "INV-2".parse().unwrap();
        assert!(ledger_of(&tree(), &c, Some(&other)).invoices.is_empty());
        let missing: InvoiceNumber = "INV-9".parse().unwrap();
        assert!(ledger_of(&tree(), &c, Some(&missing)).invoices.is_empty());
        let three: InvoiceNumber = "INV-3".parse().unwrap();
        let one = ledger_of(&tree(), &c, Some(&three));
        assert_eq!(one.invoices.len(), 1);
        assert!(one.is_paid(&three));
    }

    #[test]
    fn a_broken_template_override_is_an_error() {
        let t = tree().with("templates/invoice/layout.html", "{% if %}");
        assert!(templates(&t).is_err());
        assert!(templates(&tree()).is_ok());
    }
}
