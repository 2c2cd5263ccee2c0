//! The site's read-only image registry: the pull side of the OCI distribution spec (`/v2/`,
//! manifests and blobs by tag or digest with `HEAD` and `Range`, tag lists), answered from
//! `D/mirror` on the machine config server's TLS listener, whose certificate the nodes already
//! trust (it is signed by the cluster's root CA).
//!
//! Names are full image names (`registry.k8s.io/pause`): a client may ask for them so, or ask
//! as containerd does through a mirror, for `pause` with `?ns=registry.k8s.io`.
//!
//! Access follows the machine config server: with tokens, HTTP Basic credentials of a machine's
//! name and token (which each machine's containerd gets in its `hosts.toml`); by source address,
//! an inventory machine's address. An image is no secret, but the registry must not serve
//! whatever is in `D/mirror` to anyone who asks. Every blob is checked against its digest before
//! it is first served; a pull of a manifest, and each blob, is an `images` event.

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Router};
use futures_util::Stream;
use kindling_mirror::{BlobError, Digest, Mirror};
use tokio::io::AsyncSeekExt;

use crate::catalog::{Catalog, Entry};
use crate::client::ClientAddr;
use crate::events::Event;
use crate::{AppState, McsAuth};

pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/v2/", get(base))
        .route("/v2", get(base))
        .route("/v2/{*rest}", get(dispatch))
        .with_state(state)
}

/// A refusal in the distribution spec's shape: `{"errors":[{"code","message"}]}`.
struct RegistryError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

fn error(status: StatusCode, code: &'static str, message: impl Into<String>) -> RegistryError {
    RegistryError {
        status,
        code,
        message: message.into(),
    }
}

impl IntoResponse for RegistryError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({"errors": [{"code": self.code, "message": self.message}]});
        let mut response = (self.status, axum::Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"kindling\""),
            );
        }
        response
    }
}

/// Who is pulling: an inventory machine, or anyone when the server checks no identity.
fn admit<'c>(
    state: &AppState,
    catalog: &'c Catalog,
    headers: &HeaderMap,
    client: Option<std::net::IpAddr>,
) -> Result<Option<&'c Entry>, RegistryError> {
    if let Some(entry) = basic_credentials(headers).and_then(|(name, token)| {
        let entry = catalog.by_name(&name)?;
        catalog.verify(entry, &token).then_some(entry)
    }) {
        return Ok(Some(entry));
    }
    match state.mcs_auth {
        McsAuth::None => Ok(None),
        McsAuth::SourceIp => client
            .and_then(|ip| catalog.by_ip(ip))
            .map(Some)
            .ok_or_else(|| {
                error(
                    StatusCode::FORBIDDEN,
                    "DENIED",
                    "the registry serves only the inventory's machines, by their address",
                )
            }),
        McsAuth::Token => Err(error(
            StatusCode::UNAUTHORIZED,
            "UNAUTHORIZED",
            "the registry serves only the inventory's machines: give a machine's name and token \
             as Basic credentials (each machine's hosts.toml carries its own)",
        )),
    }
}

/// `Authorization: Basic base64(name:token)`.
fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    use base64::Engine as _;
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let encoded = value.strip_prefix("Basic ")?.trim();
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (name, token) = text.split_once(':')?;
    Some((name.to_string(), token.to_string()))
}

fn catalog_of(state: &AppState) -> Result<Arc<Catalog>, RegistryError> {
    state
        .catalog()
        .map_err(|f| error(StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE", f.reason))
}

/// `GET /v2/`: this is a registry (and, without credentials, how to give them).
async fn base(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    client: Option<Extension<ClientAddr>>,
) -> Response {
    let catalog = match catalog_of(&state) {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    match admit(&state, &catalog, &headers, client.map(|Extension(c)| c.0)) {
        Ok(_) => (
            [("Docker-Distribution-API-Version", "registry/2.0")],
            axum::Json(serde_json::json!({})),
        )
            .into_response(),
        Err(e) => e.into_response(),
    }
}

/// What a `/v2/<name>/...` path asks for. `<name>` may hold slashes, so the kind is the last
/// `/manifests/`, `/blobs/` or `/tags/list` in the path.
#[derive(Debug, PartialEq, Eq)]
enum Request<'a> {
    Manifest { name: &'a str, reference: &'a str },
    Blob { name: &'a str, digest: &'a str },
    Tags { name: &'a str },
}

fn parse(rest: &str) -> Option<Request<'_>> {
    if let Some(name) = rest.strip_suffix("/tags/list") {
        return Some(Request::Tags { name });
    }
    if let Some(i) = rest.rfind("/manifests/") {
        return Some(Request::Manifest {
            name: &rest[..i],
            reference: &rest[i + "/manifests/".len()..],
        });
    }
    let i = rest.rfind("/blobs/")?;
    Some(Request::Blob {
        name: &rest[..i],
        digest: &rest[i + "/blobs/".len()..],
    })
}

async fn dispatch(
    State(state): State<Arc<AppState>>,
    Path(rest): Path<String>,
    Query(query): Query<std::collections::HashMap<String, String>>,
    method: Method,
    headers: HeaderMap,
    client: Option<Extension<ClientAddr>>,
) -> Response {
    match answer(
        &state,
        &rest,
        &query,
        &method,
        &headers,
        client.map(|Extension(c)| c.0),
    )
    .await
    {
        Ok(response) => response,
        Err(e) => e.into_response(),
    }
}

async fn answer(
    state: &Arc<AppState>,
    rest: &str,
    query: &std::collections::HashMap<String, String>,
    method: &Method,
    headers: &HeaderMap,
    client: Option<std::net::IpAddr>,
) -> Result<Response, RegistryError> {
    let catalog = catalog_of(state)?;
    let puller = admit(state, &catalog, headers, client)?;
    let request = parse(rest).ok_or_else(|| {
        error(
            StatusCode::NOT_FOUND,
            "UNSUPPORTED",
            format!("/v2/{rest} is not a manifest, blob or tag list path"),
        )
    })?;
    let asked = match &request {
        Request::Manifest { name, .. } | Request::Blob { name, .. } | Request::Tags { name } => {
            *name
        }
    };
    // containerd, pulling through a mirror, names the upstream registry in `ns`.
    let name = match query.get("ns") {
        Some(ns) if !asked.starts_with(&format!("{ns}/")) => format!("{ns}/{asked}"),
        _ => asked.to_string(),
    };
    if !kindling_mirror::is_repository(&name) {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "NAME_INVALID",
            format!("{name:?} is not a repository name"),
        ));
    }
    let mirror = &catalog.mirror;
    if !mirror.has_repository(&name) {
        return Err(error(
            StatusCode::NOT_FOUND,
            "NAME_UNKNOWN",
            format!("no image {name} in the mirror; add it with kindling mirror"),
        ));
    }
    let machine = puller.map(|e| e.machine.name.clone());
    match request {
        Request::Tags { .. } => tags(mirror, &name, query),
        Request::Manifest { reference, .. } => {
            manifest(state, mirror, &name, reference, method, machine).await
        }
        Request::Blob { digest, .. } => {
            blob(state, mirror, &name, digest, method, headers, machine).await
        }
    }
}

fn tags(
    mirror: &Mirror,
    name: &str,
    query: &std::collections::HashMap<String, String>,
) -> Result<Response, RegistryError> {
    let last = query.get("last").map(String::as_str).unwrap_or("");
    let n = query
        .get("n")
        .and_then(|n| n.parse::<usize>().ok())
        .unwrap_or(usize::MAX);
    let tags: Vec<&str> = mirror
        .tags(name)
        .into_iter()
        .flatten()
        .filter(|t| *t > last)
        .take(n)
        .collect();
    Ok(axum::Json(serde_json::json!({"name": name, "tags": tags})).into_response())
}

async fn manifest(
    state: &AppState,
    mirror: &Arc<Mirror>,
    name: &str,
    reference: &str,
    method: &Method,
    machine: Option<String>,
) -> Result<Response, RegistryError> {
    let served = mirror.manifest(name, reference).cloned().ok_or_else(|| {
        error(
            StatusCode::NOT_FOUND,
            "MANIFEST_UNKNOWN",
            format!("no manifest {reference} for {name} in the mirror"),
        )
    })?;
    let path = verified(mirror, &served.digest).await?;
    let mut response = Response::new(Body::empty());
    let h = response.headers_mut();
    insert(h, header::CONTENT_TYPE, &served.media_type);
    insert(h, "Docker-Content-Digest", served.digest.as_str());
    insert(h, header::ETAG, &format!("\"{}\"", served.digest));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(served.size));
    if method == Method::HEAD {
        return Ok(response);
    }
    let bytes = tokio::fs::read(&path).await.map_err(|e| {
        error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "UNKNOWN",
            format!("reading {}: {e}", path.display()),
        )
    })?;
    state.events.record(Event::now(
        machine.as_deref(),
        "images",
        Some(200),
        match reference.contains(':') {
            true => format!("pull {name}@{reference}"),
            false => format!("pull {name}:{reference}"),
        },
    ));
    *response.body_mut() = Body::from(bytes);
    Ok(response)
}

async fn blob(
    state: &Arc<AppState>,
    mirror: &Arc<Mirror>,
    name: &str,
    digest: &str,
    method: &Method,
    headers: &HeaderMap,
    machine: Option<String>,
) -> Result<Response, RegistryError> {
    let digest: Digest = digest
        .parse()
        .map_err(|e: String| error(StatusCode::BAD_REQUEST, "DIGEST_INVALID", e))?;
    let path = verified(mirror, &digest).await?;
    let mut file = tokio::fs::File::open(&path)
        .await
        .map_err(|_| blob_unknown(name, &digest))?;
    let len = file
        .metadata()
        .await
        .map_err(|_| blob_unknown(name, &digest))?
        .len();
    let (status, start, end) = match crate::assets::byte_range(headers, len, digest.as_str()) {
        Ok(None) => (StatusCode::OK, 0, len.saturating_sub(1)),
        Ok(Some((start, end))) => (StatusCode::PARTIAL_CONTENT, start, end),
        Err(failure) => {
            let mut response =
                error(failure.status, "BLOB_UNKNOWN", failure.reason).into_response();
            if let Some(range) = &failure.content_range {
                insert(response.headers_mut(), header::CONTENT_RANGE, range);
            }
            return Ok(response);
        }
    };
    let count = if len == 0 { 0 } else { end - start + 1 };
    let mut response = Response::new(Body::empty());
    *response.status_mut() = status;
    let h = response.headers_mut();
    insert(h, header::CONTENT_TYPE, "application/octet-stream");
    insert(h, "Docker-Content-Digest", digest.as_str());
    insert(h, header::ETAG, &format!("\"{digest}\""));
    insert(h, header::ACCEPT_RANGES, "bytes");
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(count));
    if status == StatusCode::PARTIAL_CONTENT {
        insert(
            h,
            header::CONTENT_RANGE,
            &format!("bytes {start}-{end}/{len}"),
        );
    }
    if method == Method::HEAD {
        return Ok(response);
    }
    file.seek(std::io::SeekFrom::Start(start))
        .await
        .map_err(|_| blob_unknown(name, &digest))?;
    let state = Arc::clone(state);
    let what = format!("{name} blob {}", short(&digest));
    let pulled = Pulled {
        inner: crate::assets::file_stream(file, count),
        sent: 0,
        started: Instant::now(),
        // hyper stops polling a body once its Content-Length has gone out, so a whole blob
        // is told by its count rather than by the stream's end.
        done: Some(Box::new(move |sent, took| {
            let detail = if sent == count && count == len {
                format!("{what}: {} in {}", bytes(sent), millis(took))
            } else if sent == count {
                format!(
                    "{what}: {} (bytes {start}-{end} of {len}) in {}",
                    bytes(sent),
                    millis(took)
                )
            } else {
                format!("{what}: stopped after {} of {}", bytes(sent), bytes(count))
            };
            state.events.record(Event::now(
                machine.as_deref(),
                "images",
                Some(status.as_u16()),
                detail,
            ));
        })),
    };
    *response.body_mut() = Body::from_stream(pulled);
    Ok(response)
}

/// The blob's path once it is proven to match its digest (hashed on a blocking thread).
async fn verified(
    mirror: &Arc<Mirror>,
    digest: &Digest,
) -> Result<std::path::PathBuf, RegistryError> {
    let mirror = Arc::clone(mirror);
    let wanted = digest.clone();
    let outcome = tokio::task::spawn_blocking(move || mirror.verified_blob(&wanted))
        .await
        .map_err(|e| error(StatusCode::INTERNAL_SERVER_ERROR, "UNKNOWN", e.to_string()))?;
    match outcome {
        Ok((path, _)) => Ok(path),
        Err(BlobError::Missing) => Err(error(
            StatusCode::NOT_FOUND,
            "BLOB_UNKNOWN",
            format!("no blob {digest} in the mirror"),
        )),
        Err(BlobError::Corrupt { actual }) => {
            tracing::error!(
                "mirror blob {digest} does not match its digest (its content is {actual}): refused; run kindling mirror again to replace it"
            );
            Err(error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "BLOB_UNKNOWN",
                format!(
                    "the mirror's copy of {digest} is damaged (its content is {actual}); it is not served"
                ),
            ))
        }
        Err(BlobError::Unreadable(e)) => {
            Err(error(StatusCode::INTERNAL_SERVER_ERROR, "UNKNOWN", e))
        }
    }
}

fn blob_unknown(name: &str, digest: &Digest) -> RegistryError {
    error(
        StatusCode::NOT_FOUND,
        "BLOB_UNKNOWN",
        format!("no blob {digest} for {name} in the mirror"),
    )
}

fn insert(headers: &mut HeaderMap, name: impl header::IntoHeaderName, value: &str) {
    if let Ok(value) = HeaderValue::from_str(value) {
        headers.insert(name, value);
    }
}

fn short(digest: &Digest) -> String {
    format!("sha256:{}", &digest.hex()[..12])
}

fn bytes(n: u64) -> String {
    if n >= 1 << 20 {
        format!("{:.1} MiB", n as f64 / f64::from(1 << 20))
    } else {
        format!("{n} bytes")
    }
}

fn millis(d: Duration) -> String {
    format!("{} ms", d.as_millis())
}

type Done = Box<dyn FnOnce(u64, Duration) + Send>;

/// A blob's body that says, once, how much went out and how long it took: at its end, or when
/// it is dropped (after the last byte, or when the client goes away first).
struct Pulled<S> {
    inner: S,
    sent: u64,
    started: Instant,
    done: Option<Done>,
}

impl<S> Stream for Pulled<S>
where
    S: Stream<Item = std::io::Result<Bytes>> + Unpin,
{
    type Item = std::io::Result<Bytes>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Self::Item>> {
        let polled = std::pin::Pin::new(&mut self.inner).poll_next(cx);
        match &polled {
            Poll::Ready(Some(Ok(chunk))) => self.sent += chunk.len() as u64,
            Poll::Ready(None) => {
                if let Some(done) = self.done.take() {
                    done(self.sent, self.started.elapsed());
                }
            }
            _ => {}
        }
        polled
    }
}

impl<S> Drop for Pulled<S> {
    fn drop(&mut self) {
        if let Some(done) = self.done.take() {
            done(self.sent, self.started.elapsed());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_may_hold_slashes_and_the_last_kind_segment_wins() {
        assert_eq!(
            parse("registry.k8s.io/pause/manifests/3.10.1"),
            Some(Request::Manifest {
                name: "registry.k8s.io/pause",
                reference: "3.10.1"
            })
        );
        assert_eq!(
            parse("a/blobs/b/blobs/sha256:00"),
            Some(Request::Blob {
                name: "a/blobs/b",
                digest: "sha256:00"
            })
        );
        assert_eq!(
            parse("coredns/coredns/tags/list"),
            Some(Request::Tags {
                name: "coredns/coredns"
            })
        );
        assert_eq!(parse("nothing/here"), None);
    }
}
