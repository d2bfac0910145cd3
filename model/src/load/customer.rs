//! Parsing one `inventory/customers/<id>.toml`: a customer's name, contact, billing address,
//! language, password hash and the SSH keys put on their VPSes.

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
    "country",
    "address",
    "tax_id",
    "reseller",
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
    let email = c.opt::<Email>(r, &mut o, "email");
    let country = c.opt::<Country>(r, &mut o, "country");
    let address = c.list::<String>(r, &mut o, "address");
    let tax_id = c.opt::<String>(r, &mut o, "tax_id");
    let reseller = c.opt::<CustomerId>(r, &mut o, "reseller");
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
            email,
            country,
            address,
            tax_id,
            reseller,
            language,
            password_hash,
            ssh_keys,
            origin: o,
        })
    })
}
