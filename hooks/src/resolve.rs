//! Forward confirmation of a customer's PTR name (`dns.forward_confirm`): the name's A/AAAA
//! records must include the address. The lookup is a [`Resolver`], so tests need no network.

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::time::Duration;

use model::values::Hostname;

/// Longest a lookup may take before the route answers 503.
pub const LOOKUP_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a name's addresses are not known.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    /// The name has no A or AAAA record (or does not exist).
    #[error("{0} has no A or AAAA record")]
    NoAddress(Hostname),
    /// The resolver did not answer in time.
    #[error("the DNS lookup of {0} timed out")]
    Timeout(Hostname),
}

/// The future a [`Resolver`] returns.
pub type Lookup<'a> = Pin<Box<dyn Future<Output = Result<Vec<IpAddr>, ResolveError>> + Send + 'a>>;

/// Looks up the addresses (A and AAAA) of a host name.
pub trait Resolver: Send + Sync {
    /// Every address `name` resolves to.
    fn addresses<'a>(&'a self, name: &'a Hostname) -> Lookup<'a>;
}

/// The system's resolver (`getaddrinfo`, through tokio's blocking pool): what the machine
/// running the hooks sees, a Lambda's VPC resolver on AWS.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemResolver;

impl Resolver for SystemResolver {
    fn addresses<'a>(&'a self, name: &'a Hostname) -> Lookup<'a> {
        Box::pin(async move {
            let looked =
                tokio::time::timeout(LOOKUP_TIMEOUT, tokio::net::lookup_host((name.as_str(), 0)))
                    .await
                    .map_err(|_| ResolveError::Timeout(name.clone()))?;
            match looked {
                Ok(addrs) => Ok(addrs.map(|a| a.ip()).collect()),
                Err(e) => {
                    tracing::info!(name = %name, error = %e, "forward lookup failed");
                    Err(ResolveError::NoAddress(name.clone()))
                }
            }
        })
    }
}

/// Whether `name` forward-confirms `ip`: the decision on the addresses a lookup gave.
/// `Err` holds the sentence for the customer.
pub fn confirms(name: &Hostname, ip: IpAddr, found: &[IpAddr]) -> Result<(), String> {
    if found.contains(&ip) {
        return Ok(());
    }
    let kind = if ip.is_ipv4() { "A" } else { "AAAA" };
    let has: Vec<String> = found
        .iter()
        .filter(|a| a.is_ipv4() == ip.is_ipv4())
        .map(ToString::to_string)
        .collect();
    Err(if has.is_empty() {
        format!(
            "{name} has no {kind} record: add `{name}. {kind} {ip}` to its zone first, then set the reverse name again"
        )
    } else {
        format!(
            "{name} resolves to {} but not to {ip}: add `{name}. {kind} {ip}` to its zone first, then set the reverse name again",
            has.join(", ")
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn an_address_among_the_answers_confirms() {
        let n: Hostname = "mail.example.net".parse().unwrap();
        assert!(confirms(&n, ip("192.0.2.1"), &[ip("2001:db8::1"), ip("192.0.2.1")]).is_ok());
        assert!(confirms(&n, ip("2001:db8::1"), &[ip("2001:db8::1")]).is_ok());
    }

    #[test]
    fn a_missing_address_is_said_with_the_record_to_add() {
        let n: Hostname = "mail.example.net".parse().unwrap();
        let e = confirms(&n, ip("192.0.2.1"), &[]).unwrap_err();
        assert_eq!(
            e,
            "mail.example.net has no A record: add `mail.example.net. A 192.0.2.1` to its zone first, then set the reverse name again"
        );
        let e = confirms(&n, ip("192.0.2.1"), &[ip("192.0.2.9"), ip("2001:db8::1")]).unwrap_err();
        assert!(
            e.starts_with("mail.example.net resolves to 192.0.2.9 but not to 192.0.2.1"),
            "{e}"
        );
        let e = confirms(&n, ip("2001:db8::25"), &[ip("192.0.2.1")]).unwrap_err();
        assert!(e.contains("has no AAAA record"), "{e}");
    }
}
