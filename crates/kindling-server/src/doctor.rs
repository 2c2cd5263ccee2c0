//! The dashboard's doctor: `GET /api/v1/doctor` is the latest report (of `kindling doctor` or of
//! the dashboard's own run), `POST /api/v1/doctor` runs doctor here now, one run at a time.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use kindling_infra::doctor;

use crate::{AppState, Failure};

fn json(bytes: Vec<u8>) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], bytes).into_response()
}

/// The latest report.
pub async fn latest(State(state): State<Arc<AppState>>) -> Result<Response, Failure> {
    let dir = state
        .state_dir()
        .ok_or_else(|| Failure::new(StatusCode::NOT_FOUND, "no asset directory is served here"))?;
    let path = dir.join(doctor::LATEST);
    match tokio::fs::read(&path).await {
        Ok(bytes) => Ok(json(bytes)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(Failure::new(
            StatusCode::NOT_FOUND,
            "doctor has not run yet: run kindling doctor, or POST here",
        )),
        Err(e) => Err(Failure::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("reading {}: {e}", path.display()),
        )),
    }
}

/// Runs doctor on the served asset directory, keeps the report as the latest, and answers it.
pub async fn run(State(state): State<Arc<AppState>>) -> Result<Response, Failure> {
    let Ok(_running) = state.doctor_running.try_lock() else {
        return Err(Failure::new(
            StatusCode::CONFLICT,
            "doctor is running already; its report will be the latest",
        ));
    };
    let catalog = state.catalog()?;
    let dir = catalog.dir.clone();
    let keep = state.state_dir().unwrap_or_else(|| dir.clone());
    let store = state.store.get().cloned();
    let recorded = tokio::task::spawn_blocking(move || {
        let description = kindling_config::ClusterDescription::load(&dir)
            .map_err(|e| format!("{}: {e:?}", dir.display()))?
            .description;
        let request = doctor::Request {
            resolvers: doctor::Request::default_resolvers(&description),
            dir,
            description,
            areas: Vec::new(),
            now: time::OffsetDateTime::now_utc(),
            bootstrap_window: time::Duration::hours(24),
            timeouts: doctor::Timeouts::default(),
            store,
        };
        let report = doctor::run(&request);
        doctor::record(&keep, &report, "the dashboard")
            .map_err(|e| format!("keeping the report in {}: {e}", keep.display()))
    })
    .await
    .map_err(|e| Failure::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
    .map_err(|e| Failure::new(StatusCode::INTERNAL_SERVER_ERROR, e))?;
    Ok(json(recorded))
}
