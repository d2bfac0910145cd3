//! Parsing one `inventory/customers/<id>.toml`: a customer's name, contact, language,
//! password hash and the SSH keys put on their VPSes.

use toml_edit::TableLike;

use super::build;
use crate::ids::CustomerId;
use crate::inventory::*;
use crate::read::{Obj, Reader};
use crate::values::*;

const CUSTOMER_KEYS: &[&str] = &[
    "name",
    "company",
    "email",
    "language",
    "password_hash",
    "ssh_keys",
];

pub(super) fn parse_customer(
    r: &mut Reader<'_>,
    id: CustomerId,
    t: &dyn TableLike,
) -> Option<Customer> {
    let c = Obj::new(t, "", None, CUSTOMER_KEYS);
    let mut o = r.origin(None);
    let name = c.req::<String>(r, &mut o, "name");
    let company = c.opt(r, &mut o, "company");
    let email = c.req::<Email>(r, &mut o, "email");
    let language = c
        .kw::<Language>(r, &mut o, "language")
        .unwrap_or(Language::En);
    let password_hash = c.opt(r, &mut o, "password_hash");
    let ssh_keys = c.list::<SshPublicKey>(r, &mut o, "ssh_keys");
    build(r, &c, || {
        Some(Customer {
            id,
            name: name?,
            company,
            email: email?,
            language,
            password_hash,
            ssh_keys,
            origin: o,
        })
    })
}
