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

/// The file an `/assets/` path names, refusing anything that leaves the assets directory.
fn resolve(state: &AppState, path: &str) -> Result<PathBuf, Failure> {
    if path == "kindling" {
        return Ok(state.binary.clone());
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
    let root = match (state.catalog(), &state.matchbox) {
        (Ok(catalog), _) => {
            if let Ok(rest) = relative.strip_prefix("mirror") {
                return Ok(catalog.mirror.file_path(&rest.to_string_lossy()));
            }
            catalog.dir.join("assets")
        }
        (Err(_), Some(data)) => data.root().join("assets"),
        (Err(failure), None) => return Err(failure),
    };
    Ok(root.join(relative))
}

fn content_type(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()) {
        Some("ign" | "json") => "application/json",
        Some("ipxe" | "txt" | "cfg") => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

/// `bytes=a-b`, `bytes=a-` or `bytes=-n` within `len`; None for anything else.
pub(crate) fn range(value: &str, len: u64) -> Option<(u64, u64)> {
    let spec = value.trim().strip_prefix("bytes=")?;
    if spec.contains(',') {
        return None;
    }
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
    let file_path = resolve(&state, &path)?;
    let mut file = tokio::fs::File::open(&file_path).await.map_err(|_| {
        Failure::new(
            StatusCode::NOT_FOUND,
            format!(
                "no asset {path:?}: kindling serve looked for {}; put the OS images there (README: \"OS images\"), or point provisioning.osImages elsewhere",
                file_path.display()
            ),
        )
    })?;
    let len = file
        .metadata()
        .await
        .map_err(|e| {
            Failure::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("reading asset {path:?}: {e}"),
            )
        })?
        .len();
    let requested = headers.get(header::RANGE).and_then(|v| v.to_str().ok());
    let (status, start, end) = match requested {
        None => (StatusCode::OK, 0, len.saturating_sub(1)),
        Some(value) => match range(value, len) {
            Some((start, end)) => (StatusCode::PARTIAL_CONTENT, start, end),
            None => {
                let mut failure = Failure::new(
                    StatusCode::RANGE_NOT_SATISFIABLE,
                    format!("range {value:?} is not within the {len} bytes of {path}"),
                );
                failure.content_range = Some(format!("bytes */{len}"));
                return Err(failure);
            }
        },
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
    use super::range;

    #[test]
    fn ranges_within_the_file_are_honoured() {
        assert_eq!(range("bytes=0-9", 100), Some((0, 9)));
        assert_eq!(range("bytes=90-", 100), Some((90, 99)));
        assert_eq!(range("bytes=-10", 100), Some((90, 99)));
        assert_eq!(range("bytes=50-500", 100), Some((50, 99)));
        assert_eq!(range("bytes=100-", 100), None);
        assert_eq!(range("bytes=9-0", 100), None);
        assert_eq!(range("bytes=0-1,5-6", 100), None);
        assert_eq!(range("items=0-1", 100), None);
        assert_eq!(range("bytes=0-0", 0), None);
    }
}
