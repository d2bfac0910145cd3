//! Sending the outbox: every pending message in id order, each recorded as sent the moment the
//! server accepts it; a refused message is set aside, an unreachable server stops the run.

use chrono::{DateTime, Utc};

use crate::id::MailId;
use crate::message::envelope_of;
use crate::outbox::{Outbox, OutboxError};
use crate::smtp::{SendError, Transport};

/// What one [`deliver`] did.
#[derive(Debug, Default)]
pub struct Delivery {
    /// Accepted by the server and recorded in the sent log, in order.
    pub sent: Vec<MailId>,
    /// Refused for good, with the reason; moved to `mail/rejected/`.
    pub rejected: Vec<(MailId, String)>,
    /// Refused for now (4xx); still pending for the next run.
    pub deferred: Vec<(MailId, String)>,
    /// Why sending stopped early (server unreachable or refusing); the rest stay pending.
    pub stopped: Option<SendError>,
    /// The outbox could not be read or written; sending stopped there. When this follows an
    /// acceptance, that message was sent but is still pending: the next run sends it again.
    pub failed: Option<OutboxError>,
}

impl Delivery {
    /// Whether every pending message was handled (sent or rejected) without a stop.
    pub fn is_complete(&self) -> bool {
        self.stopped.is_none() && self.failed.is_none() && self.deferred.is_empty()
    }
}

/// Sends every pending message of `outbox` through `transport`, from and to the addresses of
/// its own `From` and `To` headers. Each acceptance is recorded with [`Outbox::mark_sent`] at
/// `now` before the next message goes; a permanently refused one (or one without usable
/// headers) goes to `mail/rejected/` and sending goes on; a connection-level failure stops.
pub fn deliver(outbox: &Outbox, transport: &dyn Transport, now: DateTime<Utc>) -> Delivery {
    let mut delivery = Delivery::default();
    let pending = match outbox.pending() {
        Ok(pending) => pending,
        Err(e) => {
            delivery.failed = Some(e);
            return delivery;
        }
    };
    for id in pending {
        let raw = match outbox.read(&id) {
            Ok(raw) => raw,
            Err(e) => {
                delivery.failed = Some(e);
                break;
            }
        };
        let outcome = envelope_of(&raw)
            .map_err(|e| e.to_string())
            .map(|(from, to)| transport.send(&from, &to, &raw));
        match outcome {
            Ok(Ok(())) => {
                if let Err(e) = outbox.mark_sent(&id, now) {
                    tracing::error!(%id, error = %e, "mail sent but not recorded: the next run sends it again");
                    delivery.failed = Some(e);
                    break;
                }
                tracing::info!(%id, "mail sent");
                delivery.sent.push(id);
            }
            Ok(Err(e)) if e.stops_delivery() => {
                tracing::warn!(%id, error = %e, "mail delivery stopped");
                delivery.stopped = Some(e);
                break;
            }
            Ok(Err(e @ SendError::Deferred { .. })) => {
                tracing::warn!(%id, error = %e, "mail deferred");
                delivery.deferred.push((id, e.to_string()));
            }
            Ok(Err(e)) => {
                if !reject(outbox, &mut delivery, id, e.to_string(), now) {
                    break;
                }
            }
            Err(reason) => {
                if !reject(outbox, &mut delivery, id, reason, now) {
                    break;
                }
            }
        }
    }
    delivery
}

/// Sets a message aside; false when the outbox failed (recorded in `delivery`).
fn reject(
    outbox: &Outbox,
    delivery: &mut Delivery,
    id: MailId,
    reason: String,
    now: DateTime<Utc>,
) -> bool {
    tracing::warn!(%id, %reason, "mail rejected");
    match outbox.reject(&id, &reason, now) {
        Ok(()) => {
            delivery.rejected.push((id, reason));
            true
        }
        Err(e) => {
            delivery.failed = Some(e);
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use model::values::Email;
    use std::cell::RefCell;

    /// Answers each send from a script; records what it was given.
    struct Scripted {
        answers: RefCell<Vec<Result<(), SendError>>>,
        seen: RefCell<Vec<(String, Vec<String>)>>,
    }

    impl Transport for Scripted {
        fn send(&self, from: &Email, to: &[Email], _raw: &[u8]) -> Result<(), SendError> {
            self.seen
                .borrow_mut()
                .push((from.to_string(), to.iter().map(Email::to_string).collect()));
            self.answers.borrow_mut().remove(0)
        }
    }

    fn msg(to: &str) -> Vec<u8> {
        format!("From: \"Billing\" <billing@example.net>\r\nTo: {to}\r\n\r\nhi\r\n").into_bytes()
    }

    fn err(kind: &str) -> SendError {
        let (server, reason) = ("127.0.0.1:25".to_owned(), "x".to_owned());
        match kind {
            "rejected" => SendError::Rejected { server, reason },
            "deferred" => SendError::Deferred { server, reason },
            _ => SendError::Unreachable { server, reason },
        }
    }

    #[test]
    fn sends_rejects_defers_and_stops_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = Outbox::open(dir.path()).unwrap();
        for (id, to) in [
            ("a", "a@example.net"),
            ("b", "b@example.net"),
            ("c", "c@example.net"),
            ("d", "d@example.net"),
            ("e", "e@example.net"),
            ("f", "nobody"),
        ] {
            outbox.put(&id.parse().unwrap(), &msg(to)).unwrap();
        }
        let transport = Scripted {
            answers: RefCell::new(vec![
                Ok(()),
                Err(err("rejected")),
                Err(err("deferred")),
                Ok(()),
                Err(err("unreachable")),
            ]),
            seen: RefCell::new(Vec::new()),
        };
        let now = "2026-12-09T06:00:00Z".parse().unwrap();
        let d = deliver(&outbox, &transport, now);
        let ids = |v: &[MailId]| v.iter().map(MailId::to_string).collect::<Vec<_>>();
        assert_eq!(ids(&d.sent), ["a", "d"]);
        assert_eq!(d.rejected.len(), 1);
        assert_eq!(d.rejected[0].0.as_str(), "b");
        assert_eq!(d.deferred.len(), 1);
        assert!(matches!(d.stopped, Some(SendError::Unreachable { .. })));
        assert!(!d.is_complete());
        assert_eq!(
            transport.seen.borrow()[0],
            (
                "billing@example.net".to_owned(),
                vec!["a@example.net".to_owned()]
            )
        );
        assert_eq!(ids(&outbox.pending().unwrap()), ["c", "e", "f"]);

        // Next run: c and e go; f has no usable To and is set aside without reaching the server.
        let transport = Scripted {
            answers: RefCell::new(vec![Ok(()), Ok(())]),
            seen: RefCell::new(Vec::new()),
        };
        let d = deliver(&outbox, &transport, now);
        assert_eq!(ids(&d.sent), ["c", "e"]);
        assert_eq!(d.rejected[0].0.as_str(), "f");
        assert!(d.rejected[0].1.contains("To"), "{}", d.rejected[0].1);
        assert!(d.is_complete());
        assert_eq!(transport.seen.borrow().len(), 2);
        assert!(outbox.pending().unwrap().is_empty());
    }
}
