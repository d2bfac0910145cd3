//! The pure core of gitvps DNS: the reverse zones of the pools and the forward zone of
//! `[vps] domain` built from the inventory, SOA serials that only grow, and the publishing plan.
//!
//! `gitvps dns build` and `gitvps dns apply` read the previous zones (a folder, or the DNS
//! servers over SSH), call [`build`], check every zone with `named-checkzone`, then write what
//! [`plan_server`] says. See `docs/dns.md`.

pub mod publish;
pub mod serial;
pub mod zone;

pub use publish::{
    Command, ListingError, Remote, ServerPlan, ZONE_LIST, ZoneChange, plan_server, previous_zones,
    read_command, zone_list,
};
pub use serial::{next_serial, serial_of};
pub use zone::{Built, DnsError, Record, RecordData, Zone, build, file_name, render, zones};
