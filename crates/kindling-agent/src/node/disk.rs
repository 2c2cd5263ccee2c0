//! A rendering on a machine's disk: what Ignition wrote from it, checked for drift, and a new
//! rendering written the way Ignition would have written it.
//!
//! The layout is Ignition's (checked against Debian's Ignition 2.14 in the tests): files,
//! directories and links at their paths (files 0644 and directories 0755 unless the config says
//! otherwise); a unit's contents at `/etc/systemd/system/<unit>`, its drop-ins under
//! `<unit>.d/`; a mask as a link to `/dev/null`; and each unit the config enables or disables as
//! a line of `/etc/systemd/system-preset/20-ignition.preset` (compared as a set of lines).
//!
//! Not checked: users and their SSH keys (Ignition runs `useradd`; the keys are the user's to
//! change), and whether systemd has applied the presets (that is the running system's state,
//! which [`super::Host`] acts on, not the disk's).

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use kindling_assets::layout;
use kindling_ignition::{Config, Contents};

use crate::{AgentError, io_error};

/// Where Ignition writes units, and its preset file.
pub const UNITS_DIR: &str = "/etc/systemd/system";
pub const PRESET_FILE: &str = "/etc/systemd/system-preset/20-ignition.preset";

/// What a rendering puts at one path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Want {
    File { source: Source, mode: u32 },
    Directory { mode: u32 },
    Link { target: String },
}

/// Where a file's bytes come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Inline(Vec<u8>),
    /// Downloaded, and checked against its sha512 (hex) when the config gives one.
    Remote {
        url: String,
        sha512: Option<String>,
    },
}

/// Everything a rendering puts on disk, by absolute path on the machine.
pub fn expected(config: &Config) -> BTreeMap<String, Want> {
    let mut want = BTreeMap::new();
    for path in config.paths() {
        if let Some(file) = config.file(path) {
            let source = match file.contents {
                Contents::Empty => Source::Inline(Vec::new()),
                Contents::Inline(bytes) => Source::Inline(bytes),
                Contents::Remote { url, hash } => Source::Remote {
                    url,
                    sha512: hash.and_then(|h| h.strip_prefix("sha512-").map(str::to_string)),
                },
            };
            let mode = file.mode.unwrap_or(0o644);
            want.insert(path.to_string(), Want::File { source, mode });
        } else if let Some(mode) = config.directory(path) {
            let mode = mode.unwrap_or(0o755);
            want.insert(path.to_string(), Want::Directory { mode });
        } else if let Some((target, _hard)) = config.link(path) {
            let target = target.to_string();
            want.insert(path.to_string(), Want::Link { target });
        }
    }
    let mut presets = String::new();
    for name in config.units() {
        let Some(unit) = config.unit(name) else {
            continue;
        };
        let at = format!("{UNITS_DIR}/{name}");
        if unit.mask == Some(true) {
            let target = "/dev/null".to_string();
            want.insert(at.clone(), Want::Link { target });
        } else if let Some(contents) = unit.contents {
            let source = Source::Inline(contents.into_bytes());
            want.insert(
                at.clone(),
                Want::File {
                    source,
                    mode: 0o644,
                },
            );
        }
        for (dropin, contents) in unit.dropins {
            if let Some(contents) = contents {
                let source = Source::Inline(contents.into_bytes());
                let path = format!("{at}.d/{dropin}");
                want.insert(
                    path,
                    Want::File {
                        source,
                        mode: 0o644,
                    },
                );
            }
        }
        match unit.enabled {
            Some(true) => presets.push_str(&format!("enable {name}\n")),
            Some(false) => presets.push_str(&format!("disable {name}\n")),
            None => {}
        }
    }
    if !presets.is_empty() {
        let source = Source::Inline(presets.into_bytes());
        want.insert(
            PRESET_FILE.to_string(),
            Want::File {
                source,
                mode: 0o644,
            },
        );
    }
    want
}

/// How a path on disk differs from its rendering.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Difference {
    Missing,
    /// Something of another kind (a file where a link should be, ...).
    Kind {
        found: &'static str,
    },
    Contents,
    Mode {
        want: u32,
        found: u32,
    },
    LinkTarget {
        want: String,
        found: String,
    },
}

impl std::fmt::Display for Difference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Difference::Missing => f.write_str("missing"),
            Difference::Kind { found } => write!(f, "is a {found}"),
            Difference::Contents => f.write_str("contents changed"),
            Difference::Mode { want, found } => write!(f, "mode {found:04o}, not {want:04o}"),
            Difference::LinkTarget { want, found } => {
                write!(f, "links to {found}, not {want}")
            }
        }
    }
}

/// One path that drifted from the rendering.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Drift {
    pub path: String,
    pub difference: Difference,
}

impl std::fmt::Display for Drift {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path, self.difference)
    }
}

/// `path` of the machine under `root`.
pub fn on_disk(root: &Path, path: &str) -> PathBuf {
    root.join(path.trim_start_matches('/'))
}

fn kind(meta: &std::fs::Metadata) -> &'static str {
    let t = meta.file_type();
    if t.is_symlink() {
        "link"
    } else if t.is_dir() {
        "directory"
    } else if t.is_file() {
        "file"
    } else {
        "special file"
    }
}

fn sha512_hex(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    format!("{:x}", sha2::Sha512::digest(bytes))
}

/// How `path` differs from `want`, if it does.
fn difference(root: &Path, path: &str, want: &Want) -> Result<Option<Difference>, AgentError> {
    let at = on_disk(root, path);
    let meta = match std::fs::symlink_metadata(&at) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(Some(Difference::Missing));
        }
        Err(e) => return Err(io_error("reading", &at)(e)),
    };
    let found = kind(&meta);
    let mode = meta.permissions().mode() & 0o7777;
    Ok(match want {
        Want::File { source, mode: want } => {
            if found != "file" {
                return Ok(Some(Difference::Kind { found }));
            }
            let bytes = std::fs::read(&at).map_err(io_error("reading", &at))?;
            let same = match source {
                Source::Inline(contents) if path == PRESET_FILE => same_lines(&bytes, contents),
                Source::Inline(contents) => bytes == *contents,
                Source::Remote { sha512, .. } => {
                    sha512.as_ref().is_none_or(|h| *h == sha512_hex(&bytes))
                }
            };
            if !same {
                Some(Difference::Contents)
            } else if mode != *want {
                Some(Difference::Mode {
                    want: *want,
                    found: mode,
                })
            } else {
                None
            }
        }
        Want::Directory { mode: want } => {
            if found != "directory" {
                Some(Difference::Kind { found })
            } else if mode != *want {
                Some(Difference::Mode {
                    want: *want,
                    found: mode,
                })
            } else {
                None
            }
        }
        Want::Link { target } => {
            if found != "link" {
                return Ok(Some(Difference::Kind { found }));
            }
            let link = std::fs::read_link(&at).map_err(io_error("reading the link", &at))?;
            let link = link.to_string_lossy().into_owned();
            (link != *target).then(|| Difference::LinkTarget {
                want: target.clone(),
                found: link,
            })
        }
    })
}

/// Whether two preset files hold the same lines. The order Ignition writes them in follows the
/// order its merge leaves the units in, and means nothing to systemd for exact unit names.
fn same_lines(a: &[u8], b: &[u8]) -> bool {
    let lines = |bytes: &[u8]| {
        let mut lines: Vec<Vec<u8>> = bytes.split(|b| *b == b'\n').map(<[u8]>::to_vec).collect();
        lines.retain(|l| !l.is_empty());
        lines.sort();
        lines
    };
    lines(a) == lines(b)
}

/// Every path under `root` that differs from what `config` put there.
pub fn check(root: &Path, config: &Config) -> Result<Vec<Drift>, AgentError> {
    let mut drift = Vec::new();
    for (path, want) in expected(config) {
        if let Some(difference) = difference(root, &path, &want)? {
            drift.push(Drift { path, difference });
        }
    }
    Ok(drift)
}

/// Gets a remote file's bytes (checked against `sha512` when given).
pub trait Fetch {
    fn fetch(&self, url: &str, sha512: Option<&str>) -> Result<Vec<u8>, AgentError>;
}

/// What writing a rendering changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Written {
    /// Paths written (created or replaced), in path order.
    pub changed: Vec<String>,
    /// Paths of the earlier rendering that the new one no longer has, removed.
    pub removed: Vec<String>,
}

/// Makes the disk under `root` what `config` says, as Ignition would have written it, touching
/// only what differs; then removes what `earlier` (the rendering the machine ran) had and
/// `config` does not (files, links and units; directories stay, as they may hold data). Each
/// file is replaced atomically, so a crash leaves every file whole, and running it again
/// finishes the job.
pub fn write(
    root: &Path,
    earlier: Option<&Config>,
    config: &Config,
    fetch: &dyn Fetch,
) -> Result<Written, AgentError> {
    let want = expected(config);
    let mut written = Written::default();
    // Directories first, so that a file's directory has its mode before the file lands; the
    // file that names the rendering last, so that it never names one that is half written.
    let (dirs, rest): (Vec<_>, Vec<_>) = want
        .iter()
        .partition(|(_, w)| matches!(w, Want::Directory { .. }));
    let (last, rest): (Vec<_>, Vec<_>) = rest
        .into_iter()
        .partition(|(path, _)| *path == layout::RENDERING);
    for (path, want) in dirs.into_iter().chain(rest).chain(last) {
        if difference(root, path, want)?.is_none() {
            continue;
        }
        let at = on_disk(root, path);
        match want {
            Want::Directory { mode } => {
                if std::fs::symlink_metadata(&at).is_ok_and(|m| !m.is_dir()) {
                    std::fs::remove_file(&at).map_err(io_error("removing", &at))?;
                }
                std::fs::create_dir_all(&at).map_err(io_error("creating", &at))?;
                let perms = std::fs::Permissions::from_mode(*mode);
                std::fs::set_permissions(&at, perms)
                    .map_err(io_error("setting the mode of", &at))?;
            }
            Want::File { source, mode } => {
                let bytes = match source {
                    Source::Inline(bytes) => bytes.clone(),
                    Source::Remote { url, sha512 } => fetch.fetch(url, sha512.as_deref())?,
                };
                clear_non_file(&at)?;
                crate::write_atomic(&at, &bytes, *mode)?;
            }
            Want::Link { target } => {
                if let Some(parent) = at.parent() {
                    std::fs::create_dir_all(parent).map_err(io_error("creating", parent))?;
                }
                let tmp = at.with_extension("kindling-link");
                let _ = std::fs::remove_file(&tmp);
                std::os::unix::fs::symlink(target, &tmp).map_err(io_error("linking", &tmp))?;
                clear_non_file(&at)?;
                std::fs::rename(&tmp, &at).map_err(io_error("renaming into place", &at))?;
            }
        }
        written.changed.push(path.clone());
    }
    if let Some(earlier) = earlier {
        for (path, was) in expected(earlier) {
            if want.contains_key(&path) || matches!(was, Want::Directory { .. }) {
                continue;
            }
            let at = on_disk(root, &path);
            match std::fs::remove_file(&at) {
                Ok(()) => written.removed.push(path),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_error("removing", &at)(e)),
            }
        }
    }
    Ok(written)
}

/// What differs between two renderings, as [`Written`] would say it of a disk that held the
/// first: the paths the second changes or adds, and those it drops (directories stay). What
/// a move between them calls for follows from this, even when the move is finished after a
/// crash and the disk already holds part of it.
pub fn changes(earlier: &Config, config: &Config) -> Written {
    let (before, after) = (expected(earlier), expected(config));
    let changed = after
        .iter()
        .filter(|(path, want)| before.get(*path) != Some(*want))
        .map(|(path, _)| path.clone())
        .collect();
    let removed = before
        .iter()
        .filter(|(path, was)| !after.contains_key(*path) && !matches!(was, Want::Directory { .. }))
        .map(|(path, _)| path.clone())
        .collect();
    Written { changed, removed }
}

/// A directory where a file or link must go is removed (only if empty: never someone's data).
fn clear_non_file(at: &Path) -> Result<(), AgentError> {
    if std::fs::symlink_metadata(at).is_ok_and(|m| m.is_dir()) {
        std::fs::remove_dir(at).map_err(io_error("removing the directory", at))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    struct NoFetch;
    impl Fetch for NoFetch {
        fn fetch(&self, url: &str, _: Option<&str>) -> Result<Vec<u8>, AgentError> {
            panic!("nothing should be downloaded, but {url} was")
        }
    }

    fn config() -> Config {
        let mut c = Config::new();
        c.add_file("/etc/kubernetes/kubelet.env", b"NODE=w0\n", 0o644);
        c.add_file("/etc/kubernetes/pki/ca.crt", b"CA", 0o600);
        c.add_directory("/var/lib/kindling", 0o700);
        c.add_link("/etc/localtime", "/usr/share/zoneinfo/UTC");
        c.add_unit(
            "kubelet.service",
            "[Service]\nExecStart=/usr/local/bin/kubelet\n",
            true,
        );
        c.add_dropin(
            "kubelet.service",
            "10-env.conf",
            "[Service]\nEnvironment=A=1\n",
        );
        c.mask_unit("docker.service");
        c.enable_unit("containerd.service");
        c
    }

    #[test]
    fn a_written_rendering_has_no_drift_and_an_edit_is_found_and_reverted() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        let c = config();
        let written = write(root, None, &c, &NoFetch).unwrap();
        assert_eq!(written.changed.len(), 8, "{written:?}");
        assert_eq!(check(root, &c).unwrap(), []);
        assert_eq!(
            std::fs::read_to_string(root.join("etc/systemd/system-preset/20-ignition.preset"))
                .unwrap(),
            "enable kubelet.service\nenable containerd.service\n"
        );
        // Writing again changes nothing.
        assert_eq!(write(root, None, &c, &NoFetch).unwrap(), Written::default());

        let env = root.join("etc/kubernetes/kubelet.env");
        std::fs::write(&env, "NODE=evil\n").unwrap();
        std::fs::set_permissions(
            root.join("etc/kubernetes/pki/ca.crt"),
            std::fs::Permissions::from_mode(0o644),
        )
        .unwrap();
        std::fs::remove_file(root.join("etc/systemd/system/docker.service")).unwrap();
        let drift: Vec<String> = check(root, &c)
            .unwrap()
            .iter()
            .map(|d| d.to_string())
            .collect();
        assert_eq!(
            drift,
            [
                "/etc/kubernetes/kubelet.env: contents changed",
                "/etc/kubernetes/pki/ca.crt: mode 0644, not 0600",
                "/etc/systemd/system/docker.service: missing",
            ]
        );
        let reverted = write(root, None, &c, &NoFetch).unwrap();
        assert_eq!(reverted.changed.len(), 3);
        assert_eq!(std::fs::read(&env).unwrap(), b"NODE=w0\n");
        assert_eq!(check(root, &c).unwrap(), []);
    }

    #[test]
    fn a_new_rendering_replaces_what_changed_and_removes_what_it_dropped() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        let old = config();
        write(root, None, &old, &NoFetch).unwrap();
        let mut new = config();
        new.add_file("/etc/kubernetes/kubelet.env", b"NODE=w0 V=2\n", 0o644);
        let mut new_without = Config::new();
        for path in new.paths() {
            if path != "/etc/localtime" {
                if let Some(f) = new.file(path) {
                    let Contents::Inline(bytes) = f.contents else {
                        panic!()
                    };
                    new_without.add_file(path, &bytes, f.mode.unwrap());
                } else if let Some(mode) = new.directory(path) {
                    new_without.add_directory(path, mode.unwrap());
                }
            }
        }
        new_without.add_unit(
            "kubelet.service",
            "[Service]\nExecStart=/usr/local/bin/kubelet\n",
            true,
        );
        let written = write(root, Some(&old), &new_without, &NoFetch).unwrap();
        assert!(
            written
                .changed
                .contains(&"/etc/kubernetes/kubelet.env".to_string()),
            "{written:?}"
        );
        assert!(
            written.changed.contains(&PRESET_FILE.to_string()),
            "{written:?}"
        );
        assert_eq!(
            written.removed,
            [
                "/etc/localtime",
                "/etc/systemd/system/docker.service",
                "/etc/systemd/system/kubelet.service.d/10-env.conf",
            ]
        );
        assert_eq!(check(root, &new_without).unwrap(), []);
        assert!(root.join("var/lib/kindling").is_dir());
    }

    #[test]
    fn remote_files_are_checked_by_their_digest() {
        struct Mirror;
        impl Fetch for Mirror {
            fn fetch(&self, url: &str, sha512: Option<&str>) -> Result<Vec<u8>, AgentError> {
                assert_eq!(url, "http://server/assets/mirror/kubelet");
                assert_eq!(sha512, Some(sha512_hex(b"ELF").as_str()));
                Ok(b"ELF".to_vec())
            }
        }
        let tmp = tempfile::tempdir().unwrap();
        let mut c = Config::new();
        c.add_remote_file(
            "/usr/local/bin/kubelet",
            "http://server/assets/mirror/kubelet",
            &sha512_hex(b"ELF"),
            0o755,
        );
        write(tmp.path(), None, &c, &Mirror).unwrap();
        assert_eq!(check(tmp.path(), &c).unwrap(), []);
        std::fs::write(tmp.path().join("usr/local/bin/kubelet"), "ELF!").unwrap();
        assert_eq!(
            check(tmp.path(), &c).unwrap()[0].difference,
            Difference::Contents
        );
    }
}
