//! The web dashboard under `/ui`: one HTML page and a small hand-written script, embedded in
//! the binary, that read the same JSON and SSE APIs automation uses. See ARCHITECTURE.md
//! ("The dashboard") for why there is no build step.
//!
//! [`gate`] decides, for every request of the boot server, whether it needs the admin
//! credential (see [`auth`]); the machines' own endpoints never do.

pub mod auth;

use std::sync::Arc;

use axum::Router;
use axum::extract::{Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use crate::AppState;
use auth::{AdminToken, COOKIE, CSRF_HEADER};

/// Marks the requests of the TLS listener (the machine config server's), whose session cookies
/// are `Secure`.
#[derive(Debug, Clone, Copy)]
pub struct OverTls;

/// The routes of the dashboard.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/ui", get(shell))
        .route("/ui/", get(shell))
        .route("/ui/login", get(login_page).post(login))
        .route("/ui/logout", post(logout))
        .route("/ui/static/{file}", get(static_file))
        .route("/ui/{*page}", get(shell))
        .with_state(state)
}

/// Whether a request needs the admin credential: the dashboard's pages and every API read, but
/// not the login page, the page's script and style (no secret in them), the machines' own
/// endpoints (boot, Ignition, their reports, FleetLock), health or metrics.
pub fn needs_admin(method: &Method, path: &str) -> bool {
    if path == "/ui/login" || path.starts_with("/ui/static/") {
        return false;
    }
    if path == "/ui" || path.starts_with("/ui/") {
        return true;
    }
    // Agents' reports are proven by each machine's own token (a discovered machine's: the one
    // its boot was given).
    let report =
        method == Method::POST && (path == "/api/v1/events" || path == "/api/v1/discovery");
    path.starts_with("/api/v1/") && !report
}

/// How a request proved it is the admin.
enum Proof {
    Bearer,
    Session(String),
}

fn proof(admin: &AdminToken, headers: &HeaderMap) -> Option<Proof> {
    if let Some(bearer) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    {
        return admin.verify(bearer).then_some(Proof::Bearer);
    }
    let session = session_cookie(headers)?;
    admin
        .check_session(session, now())
        .then(|| Proof::Session(session.to_string()))
}

/// The session cookie's value, if the request has one.
fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| auth::cookie(v, COOKIE))
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Whether the request's `Origin`, when it has one, is this server (the `Host` it was sent
/// to): a form posted from another site is refused.
fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
        .is_some_and(|o| o == host)
}

/// The admin check, in front of every route of the boot server (see [`needs_admin`]).
pub async fn gate(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    if !needs_admin(request.method(), request.uri().path()) {
        return next.run(request).await;
    }
    let catalog = match state.catalog() {
        Ok(catalog) => catalog,
        Err(failure) => return failure.into_response(),
    };
    let headers = request.headers();
    let safe = matches!(*request.method(), Method::GET | Method::HEAD);
    match proof(&catalog.admin, headers) {
        Some(Proof::Bearer) => {}
        Some(Proof::Session(session)) => {
            let csrf = headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok());
            if !safe
                && (!same_origin(headers)
                    || !csrf.is_some_and(|c| catalog.admin.check_csrf(&session, c)))
            {
                return refused(
                    StatusCode::FORBIDDEN,
                    "an action needs the page's X-Kindling-CSRF header, from this server's own pages",
                );
            }
        }
        None => {
            let path = request.uri().path();
            if safe && (path == "/ui" || path.starts_with("/ui/")) {
                let asked = request.uri().path_and_query().map_or(path, |p| p.as_str());
                let to = format!("/ui/login?next={}", percent_encode(asked));
                return redirect(&to, None);
            }
            let mut response = refused(
                StatusCode::UNAUTHORIZED,
                "this needs the admin token: Authorization: Bearer <the contents of auth/kindling-admin-token in the asset directory>",
            );
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"kindling\""),
            );
            return response;
        }
    }
    next.run(request).await
}

fn refused(status: StatusCode, reason: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("{reason}\n"),
    )
        .into_response()
}

fn redirect(to: &str, cookie: Option<String>) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    let headers = response.headers_mut();
    if let Ok(location) = HeaderValue::from_str(to) {
        headers.insert(header::LOCATION, location);
    }
    if let Some(cookie) = cookie.and_then(|c| HeaderValue::from_str(&c).ok()) {
        headers.insert(header::SET_COOKIE, cookie);
    }
    response
}

/// The headers every page of the dashboard carries: only its own script and style run, no
/// other site may frame it, and no address leaks to another site in a Referer (same-origin:
/// with no-referrer, Chromium sends `Origin: null` on the login form's post).
fn page(status: StatusCode, html: String) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
                 connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
            ),
            (header::X_FRAME_OPTIONS, "DENY"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "same-origin"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        html,
    )
        .into_response()
}

const SHELL: &str = include_str!("static/index.html");
const LOGIN: &str = include_str!("static/login.html");

/// Every page of the dashboard: the one HTML page; the script draws what the path names. It
/// carries the session's CSRF token for the script's actions.
async fn shell(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let csrf = match (state.catalog(), session_cookie(&headers)) {
        (Ok(catalog), Some(session)) => catalog.admin.csrf(session),
        _ => String::new(),
    };
    page(StatusCode::OK, SHELL.replace("{{csrf}}", &csrf))
}

/// Where a login goes on to: a page of the dashboard, never another site.
fn next_page(asked: Option<&str>) -> String {
    match asked {
        Some(path) if path.starts_with("/ui") && !path.starts_with("//") => path.to_string(),
        _ => "/ui/".to_string(),
    }
}

fn login_form(next: &str, error: Option<&str>) -> String {
    let error = error.map_or(String::new(), |e| {
        format!("<p class=\"error\" role=\"alert\">{}</p>", escape(e))
    });
    LOGIN
        .replace("{{next}}", &escape(next))
        .replace("{{error}}", &error)
}

async fn login_page(Query(params): Query<std::collections::HashMap<String, String>>) -> Response {
    let next = next_page(params.get("next").map(String::as_str));
    page(StatusCode::OK, login_form(&next, None))
}

/// The login form's post: the token, checked; a session cookie; on to the page asked for.
async fn login(
    State(state): State<Arc<AppState>>,
    tls: Option<axum::Extension<OverTls>>,
    headers: HeaderMap,
    axum::Form(fields): axum::Form<std::collections::HashMap<String, String>>,
) -> Response {
    let next = next_page(fields.get("next").map(String::as_str));
    if !same_origin(&headers) {
        return refused(StatusCode::FORBIDDEN, "a login from another site's page");
    }
    let catalog = match state.catalog() {
        Ok(catalog) => catalog,
        Err(failure) => return failure.into_response(),
    };
    let given = fields.get("token").map(String::as_str).unwrap_or("");
    if !catalog.admin.verify(given) {
        tracing::warn!("a login to the dashboard with a wrong token");
        return page(
            StatusCode::UNAUTHORIZED,
            login_form(
                &next,
                Some(
                    "That is not the admin token. It is the file auth/kindling-admin-token in the asset directory.",
                ),
            ),
        );
    }
    let cookie = format!(
        "{COOKIE}={}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{}",
        catalog.admin.session(now()),
        auth::SESSION.as_secs(),
        if tls.is_some() { "; Secure" } else { "" }
    );
    redirect(&next, Some(cookie))
}

/// Ends the session (an action: the gate checked its CSRF token).
async fn logout() -> Response {
    redirect(
        "/ui/login",
        Some(format!(
            "{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"
        )),
    )
}

/// The page's script, style and icon.
async fn static_file(axum::extract::Path(file): axum::extract::Path<String>) -> Response {
    let (body, kind): (&'static str, &str) = match file.as_str() {
        "app.js" => (
            include_str!("static/app.js"),
            "text/javascript; charset=utf-8",
        ),
        "app.css" => (include_str!("static/app.css"), "text/css; charset=utf-8"),
        "icon.svg" => (include_str!("static/icon.svg"), "image/svg+xml"),
        _ => return refused(StatusCode::NOT_FOUND, "no such file of the dashboard"),
    };
    (
        [
            (header::CONTENT_TYPE, kind),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

/// `text` safe inside HTML text and attribute values.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_machines_endpoints_stay_open_and_the_rest_needs_the_admin() {
        for (method, path) in [
            (Method::GET, "/boot.ipxe"),
            (Method::GET, "/ipxe"),
            (Method::GET, "/ignition"),
            (Method::GET, "/assets/fcos/kernel"),
            (Method::POST, "/api/v1/events"),
            (Method::POST, "/api/v1/discovery"),
            (Method::POST, "/v1/pre-reboot"),
            (Method::GET, "/healthz"),
            (Method::GET, "/ui/login"),
            (Method::POST, "/ui/login"),
            (Method::GET, "/ui/static/app.js"),
        ] {
            assert!(!needs_admin(&method, path), "{method} {path}");
        }
        for (method, path) in [
            (Method::GET, "/api/v1/machines"),
            (Method::GET, "/api/v1/discovery"),
            (Method::GET, "/api/v1/events"),
            (Method::GET, "/api/v1/machines/worker0"),
            (Method::GET, "/ui"),
            (Method::GET, "/ui/machines/worker0"),
            (Method::POST, "/ui/logout"),
        ] {
            assert!(needs_admin(&method, path), "{method} {path}");
        }
    }

    #[test]
    fn a_login_goes_on_only_to_the_dashboard() {
        assert_eq!(
            next_page(Some("/ui/machines?stage=ipxe")),
            "/ui/machines?stage=ipxe"
        );
        assert_eq!(next_page(Some("https://evil.example/")), "/ui/");
        assert_eq!(next_page(Some("//evil.example/ui")), "/ui/");
        assert_eq!(next_page(None), "/ui/");
        assert!(!login_form("/ui/\"><script>", None).contains("<script>"));
    }

    #[test]
    fn a_post_from_another_site_is_not_same_origin() {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, HeaderValue::from_static("10.0.0.1:8080"));
        assert!(same_origin(&headers));
        headers.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://10.0.0.1:8080"),
        );
        assert!(same_origin(&headers));
        headers.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://evil.example"),
        );
        assert!(!same_origin(&headers));
    }
}
