//! Stage records: each stage's start and end, as one JSON line in `<log dir>/<agent>.jsonl`
//! (`bootstrap.jsonl`, `join-master.jsonl`), and as an event sent to `kindling serve`.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::report::Reporter;
use crate::{AgentError, io_error, now_rfc3339};

/// One record. `phase` is `start` or `end`; `result` is empty at the start and `done`, `failed`
/// or `skipped` at the end, with the error in `errorMessage` when it failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StageRecord {
    pub timestamp: String,
    /// Which agent: `bootstrap` or `join-master`.
    pub agent: String,
    pub phase: String,
    pub stage: String,
    pub result: String,
    pub error_message: String,
}

/// Where an agent's records go: its log file, and the server when it knows how to reach it.
pub struct Journal {
    agent: &'static str,
    path: PathBuf,
    reporter: Option<Reporter>,
}

impl Journal {
    /// Records of `agent` into `<log_dir>/<agent>.jsonl`, created as needed.
    pub fn new(
        agent: &'static str,
        log_dir: &Path,
        reporter: Option<Reporter>,
    ) -> Result<Journal, AgentError> {
        std::fs::create_dir_all(log_dir).map_err(io_error("creating", log_dir))?;
        Ok(Journal {
            agent,
            path: log_dir.join(format!("{agent}.jsonl")),
            reporter,
        })
    }

    /// The log file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn start(&self, stage: &str) -> Result<(), AgentError> {
        self.write("start", stage, "", "")
    }

    pub fn end(&self, stage: &str, result: Result<(), &AgentError>) -> Result<(), AgentError> {
        match result {
            Ok(()) => self.write("end", stage, "done", ""),
            Err(e) => self.write("end", stage, "failed", &e.to_string()),
        }
    }

    pub fn skipped(&self, stage: &str, why: &str) -> Result<(), AgentError> {
        self.write("end", stage, "skipped", why)
    }

    /// Appends the record to the log file, then reports it. The log comes first: it is the
    /// agent's own account and must not wait on the network.
    fn write(&self, phase: &str, stage: &str, result: &str, error: &str) -> Result<(), AgentError> {
        let record = StageRecord {
            timestamp: now_rfc3339(),
            agent: self.agent.to_string(),
            phase: phase.to_string(),
            stage: stage.to_string(),
            result: result.to_string(),
            error_message: error.to_string(),
        };
        let mut line = serde_json::to_string(&record).unwrap_or_default();
        line.push('\n');
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(io_error("opening", &self.path))?;
        file.write_all(line.as_bytes())
            .map_err(io_error("appending to", &self.path))?;
        if let Some(reporter) = &self.reporter {
            reporter.send(&record);
        }
        Ok(())
    }
}
