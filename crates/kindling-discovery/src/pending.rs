//! The reports of discovered machines, one file per MAC under `.kindling/discovery/` of the
//! server's state directory, kept after the machine is accepted (its hardware stays useful).

use std::path::{Path, PathBuf};

use kindling_assets::{AtomicFiles, Mode, Storage as _};
use kindling_config::MacAddr;
use serde::{Deserialize, Serialize};

use crate::Hardware;

/// Where the reports are, under the state directory.
pub const DIR: &str = ".kindling/discovery";

/// A machine's report as the server accepted it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Discovered {
    /// The MAC it network-booted with.
    pub mac: MacAddr,
    /// The address it booted and reported from.
    pub address: std::net::IpAddr,
    /// RFC 3339.
    pub reported_at: String,
    pub hardware: Hardware,
}

#[derive(Debug, thiserror::Error)]
pub enum PendingError {
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a discovery report ({reason}); delete it and boot the machine again")]
    Corrupt { path: PathBuf, reason: String },
    #[error("no discovered machine has the MAC or SMBIOS UUID {key}{}", known_list(.known))]
    NotFound { key: String, known: Vec<String> },
}

fn known_list(known: &[String]) -> String {
    if known.is_empty() {
        "; none has reported yet (is kindling serve running with --discover?)".into()
    } else {
        format!("; the discovered ones are: {}", known.join(", "))
    }
}

fn path_of(state_dir: &Path, mac: MacAddr) -> PathBuf {
    state_dir.join(DIR).join(format!("{}.json", mac.hexhyp()))
}

/// Keeps `report`, replacing an earlier one of the same MAC; the file is whole or absent.
pub fn save(state_dir: &Path, report: &Discovered) -> Result<PathBuf, PendingError> {
    let path = path_of(state_dir, report.mac);
    let mut json = serde_json::to_vec_pretty(report).map_err(|e| PendingError::Corrupt {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    json.push(b'\n');
    AtomicFiles
        .write(&path, &json, Mode::Public)
        .map_err(|source| PendingError::Io {
            action: "writing",
            path: path.clone(),
            source,
        })?;
    Ok(path)
}

/// Every report kept, oldest first.
pub fn list(state_dir: &Path) -> Result<Vec<Discovered>, PendingError> {
    let dir = state_dir.join(DIR);
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(PendingError::Io {
                action: "reading",
                path: dir,
                source,
            });
        }
    };
    let mut found = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        let bytes = std::fs::read(&path).map_err(|source| PendingError::Io {
            action: "reading",
            path: path.clone(),
            source,
        })?;
        let report: Discovered =
            serde_json::from_slice(&bytes).map_err(|e| PendingError::Corrupt {
                path: path.clone(),
                reason: e.to_string(),
            })?;
        found.push(report);
    }
    found.sort_by(|a, b| a.reported_at.cmp(&b.reported_at).then(a.mac.cmp(&b.mac)));
    Ok(found)
}

/// The report of the machine with this MAC (in any of its forms) or SMBIOS UUID.
pub fn find(state_dir: &Path, key: &str) -> Result<Discovered, PendingError> {
    let all = list(state_dir)?;
    let mac: Option<MacAddr> = key.parse().ok();
    let wanted = |d: &Discovered| {
        Some(d.mac) == mac
            || d.hardware
                .system
                .uuid
                .as_deref()
                .is_some_and(|u| u.eq_ignore_ascii_case(key))
    };
    match all.iter().position(wanted) {
        Some(at) => Ok(all[at].clone()),
        None => Err(PendingError::NotFound {
            key: key.to_string(),
            known: all.iter().map(|d| d.mac.to_string()).collect(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(mac: &str, at: &str, uuid: &str) -> Discovered {
        let mut hardware = Hardware::default();
        hardware.system.uuid = Some(uuid.into());
        Discovered {
            mac: mac.parse().unwrap(),
            address: "10.0.0.9".parse().unwrap(),
            reported_at: at.into(),
            hardware,
        }
    }

    #[test]
    fn reports_are_kept_and_found_by_mac_or_uuid() {
        let dir = tempfile::tempdir().unwrap();
        assert!(list(dir.path()).unwrap().is_empty());
        let a = report("52:54:00:00:00:0a", "2026-12-07T10:00:01Z", "aaaa-1");
        let b = report("52:54:00:00:00:0b", "2026-12-07T10:00:00Z", "BBBB-2");
        save(dir.path(), &a).unwrap();
        save(dir.path(), &b).unwrap();
        assert_eq!(list(dir.path()).unwrap(), [b.clone(), a.clone()]);
        assert_eq!(find(dir.path(), "52-54-00-00-00-0A").unwrap(), a);
        assert_eq!(find(dir.path(), "bbbb-2").unwrap(), b);
        let err = find(dir.path(), "52:54:00:00:00:0c")
            .unwrap_err()
            .to_string();
        assert!(
            err.ends_with("the discovered ones are: 52:54:00:00:00:0b, 52:54:00:00:00:0a"),
            "{err}"
        );
        std::fs::write(dir.path().join(DIR).join("x.json"), "{").unwrap();
        let err = list(dir.path()).unwrap_err().to_string();
        assert!(err.contains("x.json is not a discovery report"), "{err}");
    }
}
