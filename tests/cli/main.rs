//! Tests that run the real `kindling` binary, as a user would.

mod agent;
mod bringup;
mod cluster;
mod create;
mod day2;
mod discovery;
mod doctor;
mod faults;
mod fleet;
mod ha;
mod ignition_configs;
mod ignition_runner;
mod infra;
mod install;
mod invalid;
mod kube;
mod limits;
mod power;
mod qemu;
mod registry;
mod remove;
mod secrets;
mod serve;
mod storm;
mod ui;
mod update;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The repository's `tests/fixtures`.
pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

/// Runs `kindling` with `args`; the result's stdout and stderr are text.
pub fn kindling(args: &[&str]) -> Run {
    let output = Command::new(env!("CARGO_BIN_EXE_kindling"))
        .args(args)
        .env_remove("KINDLING_LOG_LEVEL")
        .output()
        .expect("kindling runs");
    Run(output)
}

pub struct Run(pub Output);

impl Run {
    pub fn code(&self) -> i32 {
        self.0
            .status
            .code()
            .expect("kindling exited, not killed by a signal")
    }
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.0.stdout).into_owned()
    }
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.0.stderr).into_owned()
    }
    /// Asserts the exit code, showing the output when it differs, and that nothing panicked.
    pub fn expect(&self, code: i32) -> &Run {
        assert!(
            !self.stderr().contains("panicked"),
            "kindling panicked:\n{}",
            self.stderr()
        );
        assert_eq!(
            self.code(),
            code,
            "stdout:\n{}\nstderr:\n{}",
            self.stdout(),
            self.stderr()
        );
        self
    }
}

/// Every file under `dir` with its contents, for before/after comparisons; but the command
/// log, `.kindling/kindling.log`, which every command appends to by design.
pub fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if !path.ends_with(".kindling/kindling.log") {
                files.insert(
                    path.strip_prefix(dir).unwrap().to_path_buf(),
                    std::fs::read(&path).unwrap(),
                );
            }
        }
    }
    files
}

/// The events in `dir`'s log once `done` holds of them, or after 10 s (the caller asserts):
/// kindling serve writes a request's event just after it answers, in batches.
pub fn events_when(
    dir: &Path,
    done: impl Fn(&[serde_json::Value]) -> bool,
) -> Vec<serde_json::Value> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let events: Vec<serde_json::Value> =
            std::fs::read_to_string(dir.join(".kindling/events.jsonl"))
                .unwrap_or_default()
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect();
        if done(&events) || std::time::Instant::now() > deadline {
            return events;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// A temp directory holding the given fixture files, copied.
pub fn dir_with(files: &[(&str, &Path)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, from) in files {
        std::fs::copy(from, dir.path().join(name)).unwrap();
    }
    dir
}

/// Fills `<dir>/mirror` with stand-ins for the binaries and images the description's machines
/// pull (see `kindling_testkit::mirror`), so that `create ignition-configs` makes their configs.
pub fn seed_mirror(dir: &Path) {
    let version = kindling_config::ClusterDescription::load(dir)
        .map(|l| l.description.inventory.kubernetes.version)
        .unwrap_or_else(|_| kindling_config::inventory::DEFAULT_KUBERNETES_VERSION.to_string());
    let images = kindling_assets::manifests::Images::for_version(&version);
    kindling_testkit::mirror::seed(dir, &version, &images.all());
}
