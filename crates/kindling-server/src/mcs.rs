//! The machine config server: `/config/<pool>` over TLS, as the machine-config-operator serves
//! it. Each machine gets its pool's config with its own part merged in, and only with its token.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Router};
use kindling_config::MacAddr;
use kindling_ignition::IgnitionVersion;

use crate::catalog::Catalog;
use crate::client::{ClientAddr, PeerNode};
use crate::events::Event;
use crate::{AppState, Failure, McsAuth};
use kindling_ignition::Config;

/// The response header that names the rendering a config is.
pub const RENDERING_HEADER: header::HeaderName =
    header::HeaderName::from_static("x-kindling-rendering");

pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/config/{pool}", get(config))
        .route("/healthz", get(|| async { "ok\n" }))
        .with_state(state)
}

/// The spec to answer in, as the machine-config-operator picks it: for each Ignition media type
/// in the client's `Accept` header, the spec kindling answers that client in
/// ([`IgnitionVersion::for_client`]), and the highest of those. A client that names no Ignition
/// type (an OS installer's own HTTP client) gets `default`, the inventory's `ignitionVersion`.
pub fn version_from_accept(headers: &HeaderMap, default: IgnitionVersion) -> IgnitionVersion {
    let Some(accept) = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()) else {
        return default;
    };
    accept
        .split(',')
        .filter_map(|part| {
            let mut params = part.split(';');
            let media_type = params.next()?.trim();
            if !media_type.eq_ignore_ascii_case("application/vnd.coreos.ignition+json") {
                return None;
            }
            let version = params.find_map(|p| p.trim().strip_prefix("version="))?;
            let mut numbers = version.trim().split('.').map(str::parse::<u32>);
            let (Some(Ok(major)), Some(Ok(minor))) = (numbers.next(), numbers.next()) else {
                return None;
            };
            IgnitionVersion::for_client(major, minor)
        })
        .max()
        .unwrap_or(default)
}

/// The machine's identity, from the pointer config's headers (spec 3.1 and later) or its URL.
fn identity(
    headers: &HeaderMap,
    params: &HashMap<String, String>,
) -> (Option<String>, Option<String>) {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(String::from)
    };
    (
        header("x-kindling-mac").or_else(|| params.get("mac").cloned()),
        header("x-kindling-token").or_else(|| params.get("token").cloned()),
    )
}

async fn config(
    State(state): State<Arc<AppState>>,
    Path(pool): Path<String>,
    Query(params): Query<HashMap<String, String>>,
    headers: HeaderMap,
    client: Option<Extension<ClientAddr>>,
    peer: Option<Extension<PeerNode>>,
) -> Result<Response, Failure> {
    let catalog = state.catalog_at(params.get(crate::catalog::REVISION_PARAM))?;
    if !catalog.knows_pool(&pool) {
        return Err(Failure::new(
            StatusCode::NOT_FOUND,
            format!("no machine config pool {pool:?} in this cluster"),
        ));
    }
    let default = catalog.description.inventory.provisioning.ignition_version;
    let version = version_from_accept(&headers, default);
    let node = peer.and_then(|Extension(PeerNode(node))| node);
    let (rendering, config) = match (node, state.mcs_auth) {
        (Some(node), _) => node_config(&state, &catalog, &pool, &node, params.get("rendering"))?,
        (None, _) if params.contains_key("rendering") => {
            return Err(Failure::new(
                StatusCode::FORBIDDEN,
                "a rendering by name is served only to its node, which proves itself with its kubelet's client certificate",
            ));
        }
        // Static pointer files copied elsewhere carry no identity: every machine of the pool
        // gets the pool's config, without a machine part.
        (None, McsAuth::None) => {
            let (rendering, mut config) = catalog.pool_config(&pool).ok_or_else(|| {
                Failure::unavailable(&format!("the {pool} pool's config is not generated yet"))
            })?;
            catalog.add_registry_access(None, false, &mut config);
            catalog.add_rendering_name(&rendering, &mut config);
            (rendering, config)
        }
        (None, McsAuth::Token | McsAuth::SourceIp) => {
            let client = client.map(|Extension(ClientAddr(ip))| ip).ok_or_else(|| {
                Failure::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "the client's address is unknown",
                )
            })?;
            let entry = if state.mcs_auth == McsAuth::Token {
                let (mac, token) = identity(&headers, &params);
                let mac: MacAddr =
                    mac.as_deref().and_then(|m| m.parse().ok()).ok_or_else(|| {
                        Failure::new(
                            StatusCode::FORBIDDEN,
                            "this config is served only to its machine: the request names no MAC",
                        )
                    })?;
                let entry = catalog.by_mac(mac).ok_or_else(|| {
                    Failure::new(
                        StatusCode::FORBIDDEN,
                        format!("no machine in inventory.yaml has MAC {mac}"),
                    )
                })?;
                if !catalog.verify(entry, token.as_deref().unwrap_or_default()) {
                    return Err(state.deny(entry, "mcs", "wrong or missing machine token"));
                }
                entry
            } else {
                catalog.by_ip(client).ok_or_else(|| {
                    Failure::new(
                        StatusCode::FORBIDDEN,
                        format!("no machine in inventory.yaml has address {client}"),
                    )
                })?
            };
            if entry.pool != Some(pool.as_str()) {
                return Err(state.deny(
                    entry,
                    "mcs",
                    &format!("{} is not in pool {pool}", entry.machine.name),
                ));
            }
            if !catalog.pool_ready(&pool) {
                return Err(Failure::unavailable(&format!(
                    "the {pool} pool's config is not generated yet"
                )));
            }
            state.admit(entry, client, &format!("{pool} config"))?;
            let (rendering, mut config) = catalog
                .machine_config(entry)
                .ok_or_else(|| Failure::unavailable("no config yet"))?;
            state.events.record(Event::now(
                Some(&entry.machine.name),
                "mcs",
                Some(200),
                format!("pool {pool}, {rendering}, spec {version}"),
            ));
            catalog.add_agent_identity(entry, &mut config);
            let credentials = state.mcs_auth == McsAuth::Token;
            catalog.add_registry_access(Some(entry), credentials, &mut config);
            catalog.add_rendering_name(&rendering, &mut config);
            if let Some(dir) = state.state_dir() {
                state
                    .record_served(&dir, &entry.machine.name, &rendering)
                    .await;
            }
            (rendering, config)
        }
    };
    let bytes = config
        .render(version)
        .map_err(|e| Failure::unrenderable(&format!("the {pool} config"), version, e))?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/vnd.coreos.ignition+json"),
            (RENDERING_HEADER, rendering.as_str()),
        ],
        bytes,
    )
        .into_response())
}

/// What a joined node's agent asks for, with its kubelet's certificate: a rendering of its
/// pool by name (the one it runs, to check its disk against; or the one it is told to move to),
/// else the one it is meant to be on. No install window applies: the certificate is the proof.
fn node_config(
    state: &AppState,
    catalog: &Catalog,
    pool: &str,
    node: &str,
    rendering: Option<&String>,
) -> Result<(String, Config), Failure> {
    let entry = catalog.by_name(node).ok_or_else(|| {
        Failure::new(
            StatusCode::FORBIDDEN,
            format!("no machine named {node} in inventory.yaml"),
        )
    })?;
    if entry.pool != Some(pool) {
        return Err(state.deny(entry, "mcs", &format!("{node} is not in pool {pool}")));
    }
    let name = match rendering {
        Some(name) => name.clone(),
        None => catalog
            .desired_rendering(entry)
            .ok_or_else(|| Failure::unavailable("no config yet"))?
            .to_string(),
    };
    let mut config = catalog
        .machine_config_at(entry, &name)
        .map_err(|e| {
            tracing::error!("{e}");
            Failure::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the rendering cannot be read",
            )
        })?
        .ok_or_else(|| {
            Failure::new(
                StatusCode::NOT_FOUND,
                format!("the {pool} pool has no rendering {name}"),
            )
        })?;
    state.events.record(Event::now(
        Some(node),
        "node-config",
        Some(200),
        format!("{name}, for its node agent"),
    ));
    catalog.add_agent_identity(entry, &mut config);
    let credentials = state.mcs_auth == McsAuth::Token;
    catalog.add_registry_access(Some(entry), credentials, &mut config);
    catalog.add_rendering_name(&name, &mut config);
    Ok((name, config))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::ACCEPT, value.parse().unwrap());
        headers
    }

    #[test]
    fn the_spec_follows_the_accept_header() {
        let default = IgnitionVersion::V3_2;
        // What Debian's Ignition 2.14 sends (real-clients.md A.2).
        let ignition_2_14 = "application/vnd.coreos.ignition+json;version=3.3.0, */*;q=0.1";
        assert_eq!(
            version_from_accept(&accept(ignition_2_14), default),
            IgnitionVersion::V3_3
        );
        assert_eq!(
            version_from_accept(
                &accept(
                    "application/vnd.coreos.ignition+json;version=3.1.0, application/vnd.coreos.ignition+json;version=3.0.0"
                ),
                default
            ),
            IgnitionVersion::V3_1
        );
        // Ignition 0.35 (RHCOS 4.5) reads spec 2.x only, and asks for 2.2.0
        // (../shared/tools/README.md); later 0.x builds ask for 2.4.0. All get 2.2.0.
        let ignition_0_35 = "application/vnd.coreos.ignition+json; version=2.2.0, \
            application/vnd.coreos.ignition+json; version=1; q=0.5, */*; q=0.1";
        assert_eq!(
            version_from_accept(&accept(ignition_0_35), default),
            IgnitionVersion::V2_2
        );
        assert_eq!(
            version_from_accept(
                &accept("application/vnd.coreos.ignition+json; version=2.4.0"),
                default
            ),
            IgnitionVersion::V2_2
        );
        // Ignition 2.26 reads up to 3.6.0; 3.4.0 is the newest kindling writes.
        assert_eq!(
            version_from_accept(
                &accept("application/vnd.coreos.ignition+json;version=3.6.0, */*;q=0.1"),
                default
            ),
            IgnitionVersion::V3_4
        );
        // Only spec 1 or no Ignition type at all: the inventory's choice.
        for other in [
            "application/vnd.coreos.ignition+json; version=1",
            "*/*",
            "application/json",
        ] {
            assert_eq!(version_from_accept(&accept(other), default), default);
        }
        assert_eq!(version_from_accept(&HeaderMap::new(), default), default);
    }
}
