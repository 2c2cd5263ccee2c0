//! FleetLock, the protocol Zincati speaks before it reboots a Fedora CoreOS machine into an OS
//! update: `POST /v1/pre-reboot` takes a reboot slot, `POST /v1/steady-state` gives it back.
//! Each request carries the header `fleet-lock-protocol: true` and the body
//! `{"client_params": {"id": "<machine's app id>", "group": "<group>"}}` (Zincati sends no
//! Content-Type); an error is a non-2xx status with `{"kind": ..., "value": ...}`.
//!
//! The slots are the pool's ([`kindling_fleet::slots`]), shared with `kindling update`, so OS
//! reboots obey the same max-unavailable and maintenance windows as kindling's own rolling
//! updates. A machine is known by the address it asks from, which must be an inventory
//! machine's; the group it names must be its pool, which the pool configs set.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Deserialize;

use crate::AppState;
use crate::client::ClientAddr;
use crate::events::Event;
use kindling_fleet::slots::SlotsError;

/// The event stage of FleetLock's slots.
pub const STAGE: &str = "fleetlock";

/// The most a FleetLock request's body may hold (Zincati's is under 100 bytes).
pub const BODY_LIMIT: usize = 4 * 1024;

#[derive(Deserialize)]
struct Request {
    client_params: ClientParams,
}

#[derive(Deserialize)]
struct ClientParams {
    id: String,
    group: String,
}

/// A FleetLock error.
pub(crate) struct Refused {
    status: StatusCode,
    kind: &'static str,
    value: String,
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        let body = serde_json::json!({"kind": self.kind, "value": self.value});
        (self.status, Json(body)).into_response()
    }
}

fn refused(status: StatusCode, kind: &'static str, value: impl Into<String>) -> Refused {
    Refused {
        status,
        kind,
        value: value.into(),
    }
}

/// The machine asking, its pool's name and size, and the client's id.
struct Asker {
    machine: String,
    pool: &'static str,
    members: usize,
    id: String,
}

fn asker(
    state: &AppState,
    headers: &HeaderMap,
    body: &[u8],
    client: Option<Extension<ClientAddr>>,
) -> Result<Asker, Refused> {
    let protocol = headers
        .get("fleet-lock-protocol")
        .and_then(|v| v.to_str().ok());
    if protocol != Some("true") {
        return Err(refused(
            StatusCode::BAD_REQUEST,
            "missing_header",
            "a FleetLock request carries the header fleet-lock-protocol: true",
        ));
    }
    let request: Request = serde_json::from_slice(body).map_err(|e| {
        refused(
            StatusCode::BAD_REQUEST,
            "invalid_body",
            format!("expected {{\"client_params\": {{\"id\": ..., \"group\": ...}}}}: {e}"),
        )
    })?;
    let catalog = state
        .catalog()
        .map_err(|f| refused(f.status, "no_inventory", f.reason))?;
    let Some(Extension(ClientAddr(ip))) = client else {
        return Err(refused(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the client's address is unknown",
        ));
    };
    let entry = catalog.by_ip(ip).ok_or_else(|| {
        refused(
            StatusCode::FORBIDDEN,
            "unknown_machine",
            format!("no machine in inventory.yaml has address {ip}"),
        )
    })?;
    let pool = entry.pool.ok_or_else(|| {
        refused(
            StatusCode::FORBIDDEN,
            "no_pool",
            format!(
                "{} is in no pool: it never reboots into an update",
                entry.machine.name
            ),
        )
    })?;
    if request.client_params.group != pool {
        return Err(refused(
            StatusCode::BAD_REQUEST,
            "wrong_group",
            format!(
                "{} is in pool {pool}, not group {:?}; its Zincati config names its pool",
                entry.machine.name, request.client_params.group
            ),
        ));
    }
    let members = catalog
        .machines
        .iter()
        .filter(|m| m.pool == Some(pool))
        .count();
    Ok(Asker {
        machine: entry.machine.name.clone(),
        pool,
        members,
        id: request.client_params.id,
    })
}

/// Runs `change` on the asker's pool's slots, locked (a blocking file lock, off the async
/// threads); for the replicas of `serve --store`, on the slots they share in the store.
async fn with_slots<T: Send + 'static>(
    state: &AppState,
    pool: &'static str,
    mut change: impl FnMut(&mut kindling_fleet::slots::Locked) -> Result<T, SlotsError> + Send + 'static,
) -> Result<T, Refused> {
    state
        .catalog()
        .map_err(|f| refused(f.status, "no_inventory", f.reason))?;
    let Some(dir) = state.state_dir() else {
        return Err(refused(
            StatusCode::NOT_FOUND,
            "no_inventory",
            "no asset directory is served here",
        ));
    };
    let internal = |e: String| {
        tracing::error!("FleetLock: {e}");
        refused(StatusCode::INTERNAL_SERVER_ERROR, "internal", e)
    };
    if let Some(store) = state.store.get() {
        return kindling_fleet::slots::change_in_store(store, pool, change)
            .await
            .map_err(|e| internal(e.to_string()));
    }
    tokio::task::spawn_blocking(move || {
        let mut slots = kindling_fleet::slots::lock(&dir, pool)?;
        change(&mut slots)
    })
    .await
    .map_err(|e| internal(e.to_string()))?
    .map_err(|e| internal(e.to_string()))
}

pub(crate) async fn pre_reboot(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    client: Option<Extension<ClientAddr>>,
    body: Bytes,
) -> Result<StatusCode, Refused> {
    let who = asker(&state, &headers, &body, client)?;
    let (machine, by, members) = (
        who.machine.clone(),
        format!("zincati {}", who.id),
        who.members,
    );
    let (held, outcome) = with_slots(&state, who.pool, move |slots| {
        let held = slots.fleet.slots.contains_key(&machine);
        let outcome = slots.take(&machine, &by, members, jiff::Timestamp::now())?;
        if outcome.is_ok() {
            slots.save()?;
        }
        Ok((held, outcome))
    })
    .await?;
    match outcome {
        Ok(()) => {
            if !held {
                let detail = format!(
                    "reboot slot of pool {} taken (zincati {})",
                    who.pool, who.id
                );
                state
                    .events
                    .record(Event::now(Some(&who.machine), STAGE, Some(200), detail));
            }
            Ok(StatusCode::OK)
        }
        Err(refusal) => Err(refused(
            StatusCode::CONFLICT,
            "failed_lock",
            refusal.to_string(),
        )),
    }
}

pub(crate) async fn steady_state(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    client: Option<Extension<ClientAddr>>,
    body: Bytes,
) -> Result<StatusCode, Refused> {
    let who = asker(&state, &headers, &body, client)?;
    let machine = who.machine.clone();
    let released = with_slots(&state, who.pool, move |slots| {
        // Only Zincati's own slot: a slot a rolling update holds is the update's to give back.
        let zincati = slots
            .fleet
            .slots
            .get(&machine)
            .is_some_and(|s| s.by.starts_with("zincati "));
        if zincati {
            slots.release(&machine);
            slots.save()?;
        }
        Ok(zincati)
    })
    .await?;
    if released {
        let detail = format!("reboot slot of pool {} released", who.pool);
        state
            .events
            .record(Event::now(Some(&who.machine), STAGE, Some(200), detail));
    }
    Ok(StatusCode::OK)
}
