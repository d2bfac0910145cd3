//! The VPS actions: power (`start`, `stop`), counters (`reboot`, `fsck`), `reinstall`,
//! `restore` (a published backup), snapshots (`snapshot`, `revert`, `delete-snapshot`), and
//! the customer's console keys (`PUT /api/vps/{id}/ssh-keys`).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::response::Response;
use model::edit::ActionKind;
use model::values::{Power, SshPublicKey};
use serde::Deserialize;

use super::extract::{RawBody, parse_json};
use super::{ApiError, App, Authed, JsonBody, answer, parse_vps};
use crate::apikeys::Scope;
use crate::decide::{Change, MAX_SSH_KEYS, Refusal, SnapshotOp};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ReinstallReq {
    os: String,
    #[serde(default)]
    appliance: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SnapshotReq {
    name: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RestoreReq {
    snapshot: String,
    #[serde(default)]
    from: Option<String>,
}

pub(super) async fn vps_action(
    State(app): State<Arc<App>>,
    Path((id, action)): Path<(String, String)>,
    a: Authed,
    RawBody(body): RawBody,
) -> Result<Response, ApiError> {
    let vps = parse_vps(&id)?;
    let route = match action.as_str() {
        "start" => "start",
        "stop" => "stop",
        "reboot" => "reboot",
        "fsck" => "fsck",
        "reinstall" => "reinstall",
        "restore" => "restore",
        "snapshot" => "snapshot",
        "revert" => "revert",
        "delete-snapshot" => "delete-snapshot",
        _ => return Err(ApiError::not_found()),
    };
    // A revert or a deletion loses data, as a reinstall does; taking a snapshot loses none.
    a.require(
        if matches!(
            route,
            "reinstall" | "restore" | "revert" | "delete-snapshot"
        ) {
            Scope::Reinstall
        } else {
            Scope::Power
        },
    )?;
    app.quota(&a, route)?;
    let (customer, fingerprint) = (a.customer, a.credential);
    let change = match action.as_str() {
        "start" => Change::Power {
            customer,
            vps,
            power: Power::Running,
        },
        "stop" => Change::Power {
            customer,
            vps,
            power: Power::Stopped,
        },
        "reboot" => Change::Action {
            customer,
            vps,
            kind: ActionKind::Reboot,
        },
        "fsck" => Change::Action {
            customer,
            vps,
            kind: ActionKind::Fsck,
        },
        "reinstall" => {
            let req: ReinstallReq = parse_json(&body)?;
            // Ids are checked here; membership of the catalog on the head, by `decide`.
            let bad = |what: &str, v: &str| {
                ApiError::unprocessable(
                    "not_in_catalog",
                    format!(
                        "`{}` is not an {what} id",
                        v.chars().take(40).collect::<String>().escape_debug()
                    ),
                )
            };
            if req.os.parse::<model::OsId>().is_err() {
                return Err(bad("OS", &req.os));
            }
            if let Some(ap) = &req.appliance
                && ap.parse::<model::ApplianceId>().is_err()
            {
                return Err(bad("appliance", ap));
            }
            Change::Reinstall {
                customer,
                vps,
                os: req.os,
                appliance: req.appliance,
            }
        }
        "restore" => {
            let req: RestoreReq = parse_json(&body)?;
            let from = match &req.from {
                // An id that cannot be a VPS is no VPS of the asker's: the same 404.
                Some(f) => Some(parse_vps(f)?),
                None => None,
            };
            // The list the panel showed: what the last backup run published for the source.
            let source = from.as_ref().unwrap_or(&vps);
            let published = a
                .snapshot
                .status
                .get(source)
                .and_then(|s| s.backups.clone())
                .unwrap_or_default();
            Change::Restore {
                customer,
                vps,
                snapshot: req.snapshot,
                from,
                published,
            }
        }
        "snapshot" | "revert" | "delete-snapshot" => {
            let req: SnapshotReq = parse_json(&body)?;
            Change::Snapshot {
                customer,
                vps,
                op: match route {
                    "snapshot" => SnapshotOp::Take,
                    "revert" => SnapshotOp::Revert,
                    _ => SnapshotOp::Delete,
                },
                name: req.name,
                at: chrono::Utc::now(),
            }
        }
        _ => return Err(ApiError::not_found()),
    };
    Ok(answer(app.store.apply_as(change, fingerprint).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SshKeysReq {
    keys: Vec<String>,
}

pub(super) async fn ssh_keys(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    a: Authed,
    JsonBody(req): JsonBody<SshKeysReq>,
) -> Result<Response, ApiError> {
    let vps = parse_vps(&id)?;
    a.require(Scope::SshKeys)?;
    app.quota(&a, "ssh-keys")?;
    if req.keys.len() > MAX_SSH_KEYS {
        return Err(Refusal::TooManyKeys.into());
    }
    let keys = req
        .keys
        .iter()
        .enumerate()
        .map(|(i, k)| {
            k.parse::<SshPublicKey>().map_err(|e| {
                ApiError::unprocessable("invalid_ssh_key", format!("key {}: {e}", i + 1))
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(answer(
        app.store
            .apply_as(
                Change::SshKeys {
                    customer: a.customer,
                    vps,
                    keys,
                },
                a.credential,
            )
            .await?,
    ))
}
