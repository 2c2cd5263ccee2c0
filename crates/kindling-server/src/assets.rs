//! `/assets/*`: files under `<dir>/assets/` (kernels, initramfs, images), streamed with HEAD and
//! Range support; `/assets/kindling` is the running kindling binary, which bootstrap.ign pins by
//! its sha512; `/assets/mirror/*` are the node binaries in `<dir>/mirror/files/` (the kubelet,
//! crictl, the CNI plugins), which every machine config pins by theirs.

use std::io::SeekFrom;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use crate::{AppState, Failure};

/// The file an `/assets/` path names, refusing anything that leaves the assets directory, and
/// what to do when it is missing.
fn resolve(state: &AppState, path: &str) -> Result<(PathBuf, &'static str), Failure> {
    const OS_IMAGES: &str =
        "put the OS images there (README: \"OS images\"), or point provisioning.osImages elsewhere";
    if path == "kindling" {
        return Ok((
            state.binary.clone(),
            "it is serve's own binary, removed or replaced since serve started: restart serve",
        ));
    }
    let relative = Path::new(path);
    if path.is_empty()
        || !relative
            .components()
            .all(|c| matches!(c, Component::Normal(_)))
    {
        return Err(Failure::new(
            StatusCode::NOT_FOUND,
            format!("no asset {path:?}"),
        ));
    }
    let (root, hint) = match (state.catalog(), state.matchbox()) {
        (Ok(catalog), _) => {
            if let Ok(rest) = relative.strip_prefix("mirror") {
                return Ok((
                    catalog.mirror.file_path(&rest.to_string_lossy()),
                    "run `kindling mirror` to fetch the node binaries",
                ));
            }
            (catalog.dir.join("assets"), OS_IMAGES)
        }
        (Err(_), Some(data)) => (
            data.root().join("assets"),
            "put the file in the matchbox data directory's assets/, where matchbox's -assets-path would have it",
        ),
        (Err(failure), None) => return Err(failure),
    };
    Ok((root.join(relative), hint))
}

fn content_type(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()) {
        Some("ign" | "json") => "application/json",
        Some("ipxe" | "txt" | "cfg") => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

/// What a `Range` header asks of `len` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ranged {
    /// One range, first and last byte: 206.
    One(u64, u64),
    /// Several ranges, each satisfiable: the whole file, 200, as RFC 9110 lets a server answer
    /// (a multipart answer would let a client ask for the same bytes many times over).
    Whole,
    /// Malformed, or not within the file: 416 with `Content-Range: bytes */len`.
    Unsatisfiable,
}

/// `bytes=a-b`, `bytes=a-` or `bytes=-n` within `len`, or several of them.
pub(crate) fn ranged(value: &str, len: u64) -> Ranged {
    let Some(spec) = value.trim().strip_prefix("bytes=") else {
        return Ranged::Unsatisfiable;
    };
    let ranges: Vec<Option<(u64, u64)>> = spec.split(',').map(|r| range(r, len)).collect();
    match ranges.as_slice() {
        [Some((start, end))] => Ranged::One(*start, *end),
        many if many.len() > 1 && many.iter().all(Option::is_some) => Ranged::Whole,
        _ => Ranged::Unsatisfiable,
    }
}

/// One `a-b`, `a-` or `-n` within `len`; None for anything else.
fn range(spec: &str, len: u64) -> Option<(u64, u64)> {
    let (start, end) = spec.split_once('-')?;
    let (start, end) = match (start.trim(), end.trim()) {
        ("", n) => {
            let n: u64 = n.parse().ok()?;
            (len.checked_sub(n.min(len))?, len.checked_sub(1)?)
        }
        (a, "") => (a.parse().ok()?, len.checked_sub(1)?),
        (a, b) => (
            a.parse().ok()?,
            b.parse::<u64>().ok()?.min(len.saturating_sub(1)),
        ),
    };
    (start <= end && end < len).then_some((start, end))
}

pub async fn serve(
    State(state): State<Arc<AppState>>,
    UrlPath(path): UrlPath<String>,
    method: axum::http::Method,
    headers: HeaderMap,
    client: Option<axum::Extension<crate::client::ClientAddr>>,
) -> Result<Response, Failure> {
    let (file_path, hint) = resolve(&state, &path)?;
    let not_found = || {
        Failure::new(
            StatusCode::NOT_FOUND,
            format!(
                "no asset {path:?}: kindling serve looked for {}; {hint}",
                file_path.display()
            ),
        )
    };
    let mut file = tokio::fs::File::open(&file_path)
        .await
        .map_err(|_| not_found())?;
    let meta = file.metadata().await.map_err(|e| {
        Failure::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("reading asset {path:?}: {e}"),
        )
    })?;
    // A directory opens, but its length is the file system's, and reading it fails midway.
    if !meta.is_file() {
        return Err(Failure::new(
            StatusCode::NOT_FOUND,
            format!("no asset {path:?}: it is a directory, not a file"),
        ));
    }
    let len = meta.len();
    let (status, start, end) = match byte_range(&headers, len, &path)? {
        Some((start, end)) => (StatusCode::PARTIAL_CONTENT, start, end),
        None => (StatusCode::OK, 0, len.saturating_sub(1)),
    };
    let count = if len == 0 { 0 } else { end - start + 1 };
    let mut response = Response::new(Body::empty());
    *response.status_mut() = status;
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(content_type(&file_path)),
    );
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(count));
    if status == StatusCode::PARTIAL_CONTENT
        && let Ok(value) = HeaderValue::from_str(&format!("bytes {start}-{end}/{len}"))
    {
        h.insert(header::CONTENT_RANGE, value);
    }
    if method == axum::http::Method::HEAD {
        return Ok(response);
    }
    // Firmware names no machine when it fetches a kernel; the download is still a boot step.
    // A node binary is fetched by Ignition from the address the machine's install is bound to.
    let stage = state.catalog().map_or("asset", |c| c.asset_stage(&path));
    let machine = match (stage, client) {
        ("binaries", Some(axum::Extension(client))) => state.machine_at(client.0),
        _ => None,
    };
    state.events.record(crate::Event::now(
        machine.as_deref(),
        stage,
        Some(status.as_u16()),
        path.clone(),
    ));
    file.seek(SeekFrom::Start(start)).await.map_err(|e| {
        Failure::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("reading asset {path:?}: {e}"),
        )
    })?;
    *response.body_mut() = file_body(file, count);
    Ok(response)
}

/// The one range of `len` bytes a request's `Range` asks for; None for all of them (no
/// `Range`, or several ranges); a 416 for a malformed or unsatisfiable one.
pub(crate) fn byte_range(
    headers: &HeaderMap,
    len: u64,
    what: &str,
) -> Result<Option<(u64, u64)>, Failure> {
    let Some(value) = headers.get(header::RANGE).and_then(|v| v.to_str().ok()) else {
        return Ok(None);
    };
    match ranged(value, len) {
        Ranged::One(start, end) => Ok(Some((start, end))),
        Ranged::Whole => Ok(None),
        Ranged::Unsatisfiable => {
            let mut failure = Failure::new(
                StatusCode::RANGE_NOT_SATISFIABLE,
                format!("range {value:?} is not within the {len} bytes of {what}"),
            );
            failure.content_range = Some(format!("bytes */{len}"));
            Err(failure)
        }
    }
}

/// `count` bytes of `file` from where it stands, in chunks large enough that a 200 MB layer is
/// not 50,000 trips through the runtime (the default chunk is 4 KiB).
pub(crate) fn file_body(file: tokio::fs::File, count: u64) -> Body {
    Body::from_stream(file_stream(file, count))
}

/// [`file_body`] as a stream, for callers that watch it end.
pub(crate) fn file_stream(
    file: tokio::fs::File,
    count: u64,
) -> tokio_util::io::ReaderStream<tokio::io::Take<tokio::fs::File>> {
    const CHUNK: usize = 256 * 1024;
    tokio_util::io::ReaderStream::with_capacity(file.take(count), CHUNK)
}

#[cfg(test)]
mod tests {
    use super::{Ranged, ranged};

    #[test]
    fn ranges_within_the_file_are_honoured() {
        use Ranged::*;
        assert_eq!(ranged("bytes=0-9", 100), One(0, 9));
        assert_eq!(ranged("bytes=90-", 100), One(90, 99));
        assert_eq!(ranged("bytes=-10", 100), One(90, 99));
        assert_eq!(ranged("bytes=-1000", 100), One(0, 99));
        assert_eq!(ranged("bytes=50-500", 100), One(50, 99));
        assert_eq!(ranged("bytes=100-", 100), Unsatisfiable);
        assert_eq!(ranged("bytes=9-0", 100), Unsatisfiable);
        assert_eq!(ranged("items=0-1", 100), Unsatisfiable);
        assert_eq!(ranged("bytes=0-0", 0), Unsatisfiable);
        assert_eq!(ranged("bytes=abc", 100), Unsatisfiable);
        assert_eq!(ranged("bytes=99999999999999999999-", 100), Unsatisfiable);
        // Several satisfiable ranges, overlapping or not: the whole file.
        assert_eq!(ranged("bytes=0-1,5-6", 100), Whole);
        assert_eq!(ranged("bytes=0-50,10-60,0-99", 100), Whole);
        assert_eq!(ranged("bytes=0-1,200-300", 100), Unsatisfiable);
        let huge = format!("bytes={}", vec!["0-0"; 10_000].join(","));
        assert_eq!(ranged(&huge, 100), Whole);
    }
}
