//! Hypervisor drivers: turn planned steps into POSIX sh for the node.
//! Every word that came from a file is shell-quoted; every step is idempotent.

pub mod xen;
