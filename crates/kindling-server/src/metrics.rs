//! `/metrics` in Prometheus text format: requests by endpoint and status, a latency histogram,
//! and machines by their last stage.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;

use crate::AppState;

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 10] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0,
];

#[derive(Default)]
pub struct Metrics {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// By endpoint, then status: looked up by the endpoint's `&str`, with no allocation per
    /// request.
    requests: BTreeMap<String, BTreeMap<u16, u64>>,
    buckets: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

impl Metrics {
    pub fn observe(&self, endpoint: &str, status: u16, elapsed: Duration) {
        let Ok(mut m) = self.inner.lock() else { return };
        match m.requests.get_mut(endpoint) {
            Some(by_status) => *by_status.entry(status).or_default() += 1,
            None => {
                m.requests
                    .insert(endpoint.to_string(), BTreeMap::from([(status, 1)]));
            }
        }
        let seconds = elapsed.as_secs_f64();
        for (i, bound) in BUCKETS.iter().enumerate() {
            if seconds <= *bound {
                m.buckets[i] += 1;
            }
        }
        m.count += 1;
        m.sum += seconds;
    }

    fn render(&self, stages: &BTreeMap<String, usize>) -> String {
        let mut out = String::new();
        let Ok(m) = self.inner.lock() else { return out };
        out.push_str(
            "# HELP kindling_http_requests_total Requests served, by endpoint and status.\n",
        );
        out.push_str("# TYPE kindling_http_requests_total counter\n");
        let requests = m
            .requests
            .iter()
            .flat_map(|(endpoint, by_status)| by_status.iter().map(move |(s, n)| (endpoint, s, n)));
        for (endpoint, status, n) in requests {
            let _ = writeln!(
                out,
                "kindling_http_requests_total{{endpoint=\"{endpoint}\",status=\"{status}\"}} {n}"
            );
        }
        out.push_str("# HELP kindling_http_request_duration_seconds Time to answer a request.\n");
        out.push_str("# TYPE kindling_http_request_duration_seconds histogram\n");
        for (bound, n) in BUCKETS.iter().zip(m.buckets) {
            let _ = writeln!(
                out,
                "kindling_http_request_duration_seconds_bucket{{le=\"{bound}\"}} {n}"
            );
        }
        let _ = writeln!(
            out,
            "kindling_http_request_duration_seconds_bucket{{le=\"+Inf\"}} {}",
            m.count
        );
        let _ = writeln!(out, "kindling_http_request_duration_seconds_sum {}", m.sum);
        let _ = writeln!(
            out,
            "kindling_http_request_duration_seconds_count {}",
            m.count
        );
        out.push_str("# HELP kindling_machines Machines by the last stage they reached.\n");
        out.push_str("# TYPE kindling_machines gauge\n");
        for (stage, n) in stages {
            let _ = writeln!(out, "kindling_machines{{stage=\"{stage}\"}} {n}");
        }
        out
    }
}

pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route(
            "/metrics",
            get(|State(state): State<Arc<AppState>>| async move {
                let mut stages: BTreeMap<String, usize> = BTreeMap::new();
                if let Ok(catalog) = state.catalog() {
                    let last = state.events.last_stages();
                    for entry in &catalog.machines {
                        let stage = last.get(&entry.machine.name).map_or("none", |(s, _)| s);
                        match stages.get_mut(stage) {
                            Some(n) => *n += 1,
                            None => {
                                stages.insert(stage.to_string(), 1);
                            }
                        }
                    }
                }
                (
                    [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
                    state.metrics.render(&stages),
                )
                    .into_response()
            }),
        )
        .with_state(state)
}
