//! `kindling install`'s phases and the record of those done (`.kindling/install.json`), so that
//! a run that was stopped, or killed, goes on from the first phase not done.

use std::path::{Path, PathBuf};
use std::time::Duration;

use kindling_assets::{AtomicFiles, Mode, Storage as _};
use serde::{Deserialize, Serialize};

/// The first day, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    /// Every asset that is missing: manifests, Ignition configs, infra configs.
    Create,
    /// `kindling serve` running for the directory.
    Serve,
    /// The environment checked.
    Doctor,
    /// The bootstrap machine and the masters powered on, booting from the network once.
    PowerControlPlane,
    BootstrapComplete,
    /// The workers powered on, booting from the network once.
    PowerWorkers,
    /// The kubelets' certificate requests of inventory machines approved.
    ApproveCsrs,
    InstallComplete,
    /// The bootstrap machine out of the load balancer, and powered off.
    RemoveBootstrap,
}

impl Phase {
    pub const ALL: [Phase; 9] = [
        Phase::Create,
        Phase::Serve,
        Phase::Doctor,
        Phase::PowerControlPlane,
        Phase::BootstrapComplete,
        Phase::PowerWorkers,
        Phase::ApproveCsrs,
        Phase::InstallComplete,
        Phase::RemoveBootstrap,
    ];

    /// Its name in the record and in `KINDLING_INSTALL_PAUSE_AFTER`.
    pub fn name(self) -> String {
        serde_json::to_value(self)
            .ok()
            .and_then(|v| v.as_str().map(String::from))
            .unwrap_or_default()
    }
}

/// A phase that finished.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Done {
    pub phase: Phase,
    /// RFC 3339.
    pub at: String,
    /// What it did, for people.
    pub note: String,
}

/// The phases done so far.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    pub done: Vec<Done>,
}

/// A test hook: after recording this phase, wait to be killed.
pub const PAUSE_AFTER: &str = "KINDLING_INSTALL_PAUSE_AFTER";

/// Where the record is.
pub fn record_path(dir: &Path) -> PathBuf {
    dir.join(".kindling/install.json")
}

#[derive(Debug, thiserror::Error)]
pub enum ProgressError {
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{path} is not kindling install's record ({reason}); delete it to start the install's phases again (each is safe to run again)"
    )]
    Damaged { path: PathBuf, reason: String },
}

impl Progress {
    /// The record of `dir`; empty before the first run.
    pub fn load(dir: &Path) -> Result<Progress, ProgressError> {
        let path = record_path(dir);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| ProgressError::Damaged {
                path,
                reason: e.to_string(),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Progress::default()),
            Err(source) => Err(ProgressError::Io {
                action: "reading",
                path,
                source,
            }),
        }
    }

    /// When `phase` finished, if it did.
    pub fn done(&self, phase: Phase) -> Option<&Done> {
        self.done.iter().find(|d| d.phase == phase)
    }

    /// Records `phase` as done, whole or not at all.
    pub fn record(&mut self, dir: &Path, phase: Phase, note: &str) -> Result<(), ProgressError> {
        self.done.retain(|d| d.phase != phase);
        self.done.push(Done {
            phase,
            at: time::OffsetDateTime::now_utc()
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default(),
            note: note.to_string(),
        });
        // In the phases' order, whatever the order they were done in (serve is done again).
        self.done.sort_by_key(|d| d.phase);
        let path = record_path(dir);
        let mut json = serde_json::to_vec_pretty(self).expect("a record serializes");
        json.push(b'\n');
        AtomicFiles
            .write(&path, &json, Mode::Public)
            .map_err(|source| ProgressError::Io {
                action: "writing",
                path,
                source,
            })?;
        if std::env::var(PAUSE_AFTER).is_ok_and(|p| p == phase.name()) {
            eprintln!(
                "{PAUSE_AFTER}: {} is done; waiting to be killed",
                phase.name()
            );
            loop {
                std::thread::sleep(Duration::from_secs(3600));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_done_are_kept_in_order_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let mut progress = Progress::load(dir.path()).unwrap();
        assert!(progress.done.is_empty());
        progress.record(dir.path(), Phase::Create, "made").unwrap();
        progress
            .record(dir.path(), Phase::PowerControlPlane, "4 machines")
            .unwrap();
        progress.record(dir.path(), Phase::Create, "again").unwrap();
        assert_eq!(progress.done[0].note, "again");
        let back = Progress::load(dir.path()).unwrap();
        assert_eq!(back, progress);
        assert_eq!(back.done(Phase::Create).unwrap().note, "again");
        assert!(back.done(Phase::Serve).is_none());
        assert_eq!(Phase::PowerControlPlane.name(), "power-control-plane");
        std::fs::write(record_path(dir.path()), "{").unwrap();
        let err = Progress::load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("is not kindling install's record"), "{err}");
    }
}
