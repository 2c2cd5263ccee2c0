//! Loading a matchbox data directory into memory, checking every file and every reference.
//!
//! The layout is matchbox's (`docs/matchbox.md`, "Data"; `matchbox/storage/filestore.go`):
//!
//! ```text
//! <dir>/profiles/<id>.json   a profile; groups name it by file name, as matchbox's ProfileGet does
//! <dir>/groups/*.json        a group; its id is its `id` field, or the file name
//! <dir>/ignition/*           raw Ignition (.ign, .ignition) or Butane templates, by file name
//! <dir>/generic/*            generic templates, by file name
//! <dir>/assets/              static files served at /assets
//! ```
//!
//! matchbox reads these per request and skips a bad group or profile with a log line; kindling
//! reads them once and refuses the directory, listing every problem with its file, field and,
//! for JSON, line and column. Files without `.json` in `profiles/` and `groups/`, and
//! subdirectories there, are not read (matchbox never finds them either) and are listed in
//! [`DataDir::warnings`].

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::decode::{GroupFile, ProfileFile};
use crate::select::{self, Labels, NoMatch, Selected, Selection};
use crate::template::{Template, TemplateError, TemplateKind};
use crate::{Boot, Group, Profile};

/// A matchbox data directory, loaded and checked.
#[derive(Debug, Clone)]
pub struct DataDir {
    root: PathBuf,
    profiles: BTreeMap<String, Profile>,
    groups: Vec<Group>,
    selection: Selection,
    ignition: BTreeMap<String, Template>,
    generic: BTreeMap<String, Template>,
    assets: Option<PathBuf>,
    warnings: Vec<String>,
}

/// Everything wrong with a data directory.
#[derive(Debug, thiserror::Error)]
pub struct LoadError {
    /// Each problem found, in file order.
    pub problems: Vec<Problem>,
}

impl std::fmt::Display for LoadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.problems.as_slice() {
            [one] => write!(f, "{one}"),
            many => {
                write!(f, "{} problems:", many.len())?;
                for p in many {
                    write!(f, "\n  {p}")?;
                }
                Ok(())
            }
        }
    }
}

/// One thing wrong with one file.
#[derive(Debug, thiserror::Error)]
pub enum Problem {
    /// A file or directory could not be read.
    #[error("reading {}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// A JSON file is malformed, or a field has the wrong type or is unknown.
    #[error("{}:{line}:{column}: {message}", path.display())]
    Json {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What is wrong, naming the field where there is one.
        message: String,
    },
    /// A field is missing, or names something that does not exist.
    #[error("{}: field `{field}`: {message}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The field.
        field: String,
        /// What is wrong and what would fix it.
        message: String,
    },
    /// A template uses syntax kindling does not implement, or is malformed.
    #[error(transparent)]
    Template(#[from] TemplateError),
    /// A YAML template that is a Container Linux Config, which kindling does not translate.
    #[error(
        "{}: a Container Linux Config (it has no `variant:` line), which kindling does not translate: rewrite it as a Butane config (variant: fcos or flatcar), or give its Ignition JSON as a .ign file",
        path.display()
    )]
    ContainerLinuxConfig {
        /// The template.
        path: PathBuf,
    },
}

impl DataDir {
    /// Loads `profiles/*.json`, `groups/*.json`, `ignition/*` and `generic/*` from `dir`, and
    /// checks that every group names a profile and every profile names templates that exist.
    /// `profiles/` and `groups/` must exist; `ignition/`, `generic/` and `assets/` may not.
    pub fn load(dir: &Path) -> Result<DataDir, LoadError> {
        let mut loader = Loader {
            problems: Vec::new(),
            warnings: Vec::new(),
        };
        let ignition = loader.templates(&dir.join("ignition"), None);
        let generic = loader.templates(&dir.join("generic"), Some(TemplateKind::Generic));
        let profiles = loader.profiles(&dir.join("profiles"), &ignition, &generic);
        let mut groups = loader.groups(&dir.join("groups"), &profiles);
        if !loader.problems.is_empty() {
            return Err(LoadError {
                problems: loader.problems,
            });
        }
        let (selection, mut tie_warnings) = select::prepare(&mut groups);
        loader.warnings.append(&mut tie_warnings);
        let assets = Some(dir.join("assets")).filter(|p| p.is_dir());
        Ok(DataDir {
            root: dir.to_path_buf(),
            profiles,
            groups,
            selection,
            ignition,
            generic,
            assets,
            warnings: loader.warnings,
        })
    }

    /// The group and profile `request` selects: of the groups whose selectors all match, the one
    /// with the most selectors; between equals, matchbox's order (the greater sorted
    /// `key=value,…` string first), then the smaller group id. A group without selectors is the
    /// default and matches every request.
    pub fn select(&self, request: &Labels) -> Result<Selected<'_>, NoMatch> {
        match self.selection.select(request) {
            Some(i) => {
                let group = &self.groups[i];
                let profile = &self.profiles[&group.profile];
                Ok(Selected { group, profile })
            }
            None => Err(self.selection.no_match(&self.groups, request)),
        }
    }

    /// The profile with id `id`.
    pub fn profile(&self, id: &str) -> Option<&Profile> {
        self.profiles.get(id)
    }

    /// Every profile, by id.
    pub fn profiles(&self) -> impl Iterator<Item = &Profile> {
        self.profiles.values()
    }

    /// The group with id `id`.
    pub fn group(&self, id: &str) -> Option<&Group> {
        self.groups.iter().find(|g| g.id == id)
    }

    /// Every group, in the order selection tries them.
    pub fn groups(&self) -> &[Group] {
        &self.groups
    }

    /// The `ignition/` file named `id` (a profile's `ignition_id`).
    pub fn ignition(&self, id: &str) -> Option<&Template> {
        self.ignition.get(id)
    }

    /// The `generic/` file named `id` (a profile's `generic_id`).
    pub fn generic(&self, id: &str) -> Option<&Template> {
        self.generic.get(id)
    }

    /// The Ignition or Butane template `profile` serves at `/ignition`, if it names one.
    pub fn ignition_for(&self, profile: &Profile) -> Option<&Template> {
        profile
            .ignition_id
            .as_deref()
            .and_then(|id| self.ignition(id))
    }

    /// The generic template `profile` serves at `/generic`, if it names one.
    pub fn generic_for(&self, profile: &Profile) -> Option<&Template> {
        profile
            .generic_id
            .as_deref()
            .and_then(|id| self.generic(id))
    }

    /// The directory served at `/assets`, if the data directory has one.
    pub fn assets_dir(&self) -> Option<&Path> {
        self.assets.as_deref()
    }

    /// The data directory itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Things worth telling the user that do not stop the load: files that were not read, and
    /// groups whose order kindling had to choose.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }
}

struct Loader {
    problems: Vec<Problem>,
    warnings: Vec<String>,
}

impl Loader {
    /// The regular files under `dir`, recursively, as (name relative to `dir` with `/`, path),
    /// sorted by name.
    fn files(&mut self, dir: &Path, recursive: bool) -> Vec<(String, PathBuf)> {
        let mut out = Vec::new();
        let mut pending = vec![(String::new(), dir.to_path_buf())];
        while let Some((prefix, current)) = pending.pop() {
            let entries = match fs::read_dir(&current) {
                Ok(e) => e,
                Err(source) => {
                    self.problems.push(Problem::Io {
                        path: current,
                        source,
                    });
                    continue;
                }
            };
            for entry in entries {
                let entry = match entry {
                    Ok(e) => e,
                    Err(source) => {
                        self.problems.push(Problem::Io {
                            path: current.clone(),
                            source,
                        });
                        continue;
                    }
                };
                let path = entry.path();
                let name = format!("{prefix}{}", entry.file_name().to_string_lossy());
                if path.is_dir() {
                    if recursive {
                        pending.push((format!("{name}/"), path));
                    } else {
                        self.warnings
                            .push(format!("{}: a directory; not read", path.display()));
                    }
                } else {
                    out.push((name, path));
                }
            }
        }
        out.sort();
        out
    }

    fn read(&mut self, path: &Path) -> Option<String> {
        match fs::read(path) {
            Ok(bytes) => match String::from_utf8(bytes) {
                Ok(text) => Some(text),
                Err(_) => {
                    self.problems.push(Problem::Io {
                        path: path.to_path_buf(),
                        source: io::Error::new(io::ErrorKind::InvalidData, "not UTF-8 text"),
                    });
                    None
                }
            },
            Err(source) => {
                self.problems.push(Problem::Io {
                    path: path.to_path_buf(),
                    source,
                });
                None
            }
        }
    }

    fn json_problem(path: &Path, err: &serde_json::Error) -> Problem {
        let (line, column, message) = crate::decode::locate(err);
        Problem::Json {
            path: path.to_path_buf(),
            line,
            column,
            message,
        }
    }

    /// The `.json` files of `dir`, as (file stem, path, text).
    fn json_files(&mut self, dir: &Path) -> Vec<(String, PathBuf, String)> {
        let mut out = Vec::new();
        for (name, path) in self.files(dir, false) {
            let Some(stem) = name.strip_suffix(".json") else {
                self.warnings
                    .push(format!("{}: not a .json file; not read", path.display()));
                continue;
            };
            if let Some(text) = self.read(&path) {
                out.push((stem.to_string(), path, text));
            }
        }
        out
    }

    /// Every file under `dir` as a template; `kind` None means by extension, for `ignition/`.
    fn templates(&mut self, dir: &Path, kind: Option<TemplateKind>) -> BTreeMap<String, Template> {
        let mut out = BTreeMap::new();
        if !dir.exists() {
            return out;
        }
        for (name, path) in self.files(dir, true) {
            let Some(text) = self.read(&path) else {
                continue;
            };
            let kind = kind.unwrap_or_else(|| TemplateKind::of_ignition_file(&name));
            // Butane says which variant it is on its first level; a Container Linux Config
            // has no such line, and would fail only when a machine asks for it (with a 500).
            if kind == TemplateKind::Butane && !text.lines().any(|l| l.starts_with("variant:")) {
                self.problems.push(Problem::ContainerLinuxConfig { path });
                continue;
            }
            if kind == TemplateKind::Ignition
                && let Err(err) = serde_json::from_str::<serde_json::Value>(&text)
            {
                self.problems.push(Self::json_problem(&path, &err));
                continue;
            }
            match Template::parse(name.clone(), path, kind, text) {
                Ok(t) => {
                    out.insert(name, t);
                }
                Err(e) => self.problems.push(e.into()),
            }
        }
        out
    }

    fn profiles(
        &mut self,
        dir: &Path,
        ignition: &BTreeMap<String, Template>,
        generic: &BTreeMap<String, Template>,
    ) -> BTreeMap<String, Profile> {
        let mut out = BTreeMap::new();
        for (stem, path, text) in self.json_files(dir) {
            let file: ProfileFile = match serde_json::from_str(&text) {
                Ok(f) => f,
                Err(err) => {
                    self.problems.push(Self::json_problem(&path, &err));
                    continue;
                }
            };
            let invalid = |field: &str, message: String| Problem::Invalid {
                path: path.clone(),
                field: field.into(),
                message,
            };
            match file.id.as_deref() {
                None => {
                    self.problems.push(invalid(
                        "id",
                        format!("is required; set it to \"{stem}\", the file's name"),
                    ));
                }
                Some(id) if id != stem => {
                    self.problems.push(invalid(
                        "id",
                        format!("\"{id}\" differs from the file name \"{stem}\"; groups find profiles by file name, so rename one to match the other"),
                    ));
                }
                Some(_) => {}
            }
            if file.cloud_id.is_some() {
                self.problems.push(invalid(
                    "cloud_id",
                    "Cloud-Config is not served by kindling (matchbox deprecated it); use ignition_id".into(),
                ));
            }
            for (field, wanted, known, sub) in [
                ("ignition_id", &file.ignition_id, ignition, "ignition"),
                ("generic_id", &file.generic_id, generic, "generic"),
            ] {
                if let Some(want) = wanted
                    && !known.contains_key(want)
                {
                    let root = dir.parent().unwrap_or(dir);
                    let message = if root.join(sub).join(want).is_file() {
                        format!("{sub}/{want} cannot be served (its own error says why)")
                    } else {
                        format!("no file {sub}/{want} in {}", root.display())
                    };
                    self.problems.push(invalid(field, message));
                }
            }
            let boot = match file.boot {
                Some(b) => match b.kernel {
                    Some(kernel) => Some(Boot {
                        kernel,
                        initrd: b.initrd,
                        args: b.args,
                    }),
                    None => {
                        self.problems.push(invalid(
                            "boot.kernel",
                            "is required when `boot` is given".into(),
                        ));
                        None
                    }
                },
                None => None,
            };
            out.insert(
                stem.clone(),
                Profile {
                    id: stem,
                    name: file.name.unwrap_or_default(),
                    boot,
                    ignition_id: file.ignition_id,
                    generic_id: file.generic_id,
                    source: path,
                },
            );
        }
        out
    }

    fn groups(&mut self, dir: &Path, profiles: &BTreeMap<String, Profile>) -> Vec<Group> {
        let mut out: Vec<Group> = Vec::new();
        for (stem, path, text) in self.json_files(dir) {
            let file: GroupFile = match serde_json::from_str(&text) {
                Ok(f) => f,
                Err(err) => {
                    self.problems.push(Self::json_problem(&path, &err));
                    continue;
                }
            };
            let invalid = |field: &str, message: String| Problem::Invalid {
                path: path.clone(),
                field: field.into(),
                message,
            };
            let id = file.id.unwrap_or(stem);
            let Some(profile) = file.profile else {
                self.problems.push(invalid(
                    "profile",
                    "is required: the id of the profile machines in this group get".into(),
                ));
                continue;
            };
            if !profiles.contains_key(&profile) {
                let known: Vec<&str> = profiles.keys().map(String::as_str).collect();
                let hint = match kindling_config::closest(&profile, &known) {
                    Some(near) => format!("; did you mean \"{near}\"?"),
                    None => String::new(),
                };
                self.problems.push(invalid(
                    "profile",
                    format!("no profile \"{profile}\" (profiles/{profile}.json){hint}"),
                ));
                continue;
            }
            if let Some(other) = out.iter().find(|g| g.id == id) {
                self.problems.push(invalid(
                    "id",
                    format!("\"{id}\" is also the id of {}", other.source.display()),
                ));
                continue;
            }
            out.push(Group {
                id,
                name: file.name.unwrap_or_default(),
                profile,
                selector: file.selector,
                metadata: serde_json::Value::Object(file.metadata),
                source: path,
            });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{grub_script, ipxe_script, render};
    use std::path::PathBuf;

    fn fixture_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/matchbox")
    }

    fn fixture() -> DataDir {
        DataDir::load(&fixture_dir()).unwrap_or_else(|e| panic!("{e}"))
    }

    fn selected(dir: &DataDir, query: &str) -> String {
        match dir.select(&Labels::from_query(query)) {
            Ok(s) => s.group.id.clone(),
            Err(e) => panic!("{query}: {e}"),
        }
    }

    #[test]
    fn the_fixture_loads_whole() {
        let dir = fixture();
        assert_eq!(
            dir.profiles().map(|p| p.id.as_str()).collect::<Vec<_>>(),
            ["fedora-coreos", "fedora-coreos-install"]
        );
        assert_eq!(dir.groups().len(), 8);
        assert_eq!(
            dir.ignition("fedora-coreos.ign").unwrap().kind(),
            TemplateKind::Ignition
        );
        assert_eq!(
            dir.ignition("fedora-coreos.yaml").unwrap().kind(),
            TemplateKind::Butane
        );
        assert_eq!(
            dir.generic("install.env").unwrap().kind(),
            TemplateKind::Generic
        );
        assert_eq!(
            dir.assets_dir(),
            Some(fixture_dir().join("assets").as_path())
        );
        let group = dir.group("node1-installed").unwrap();
        assert_eq!(
            group.selector["mac"], "52:54:00:89:d8:10",
            "normalised on load"
        );
        assert_eq!(group.profile, "fedora-coreos");
        let install = dir.profile("fedora-coreos-install").unwrap();
        assert_eq!(dir.generic_for(install).unwrap().id(), "install.env");
        assert_eq!(dir.ignition_for(install).unwrap().id(), "fedora-coreos.ign");
    }

    /// The order selection tries groups in: most selectors first; between equals, the greater
    /// `key=value` string first (matchbox's `sort.Reverse(ByReqs)`), then the smaller id.
    #[test]
    fn groups_are_tried_most_specific_first() {
        let dir = fixture();
        let order: Vec<&str> = dir.groups().iter().map(|g| g.id.as_str()).collect();
        assert_eq!(
            order,
            [
                "node2", // os=installed,uuid=16e7… > mac=…,os=installed
                "node1-installed",
                "zone-a", // zone=z1, twice: the smaller id first
                "zone-b",
                "region-us", // region=us-central1 > rack=r1 > mac=…
                "rack-r1",
                "node1",
                "default", // no selectors: the default group, tried last
            ]
        );
    }

    /// docs/matchbox.md, "Groups": "a request to /ignition?mac=52:54:00:89:d8:10 would render
    /// the Ignition template in the "etcd" Profile" (our node1), and "a request to /ignition
    /// would match the default group (which has no selectors)".
    #[test]
    fn documented_selections() {
        let dir = fixture();
        assert_eq!(selected(&dir, "mac=52:54:00:89:d8:10"), "node1");
        assert_eq!(selected(&dir, ""), "default");
        assert_eq!(selected(&dir, "mac=52:54:00:00:00:99"), "default");
        let s = dir.select(&Labels::new()).unwrap();
        assert_eq!(s.profile.id, "fedora-coreos-install");
    }

    /// matchbox/server/server.go, `SelectGroup`: "Groups are evaluated in sorted order from most
    /// selectors to least". The installed machine asks with os=installed (as
    /// examples/groups/etcd-install does) and gets the two-selector group.
    #[test]
    fn the_most_specific_group_wins() {
        let dir = fixture();
        assert_eq!(
            selected(&dir, "mac=52:54:00:89:d8:10&os=installed"),
            "node1-installed"
        );
        assert_eq!(selected(&dir, "mac=52:54:00:89:d8:10&os=live"), "node1");
        let s = dir
            .select(&Labels::from_query("mac=52:54:00:89:d8:10&os=installed"))
            .unwrap();
        assert_eq!(s.profile.id, "fedora-coreos");
    }

    /// storagepb/group_test.go, `TestNormalize`, and parse.go's `labelsFromRequest`: MAC
    /// selectors and labels are both normalised, so every spelling selects the same group.
    #[test]
    fn every_spelling_of_the_mac_selects_the_same_group() {
        let dir = fixture();
        for mac in [
            "52:54:00:89:d8:10",
            "52:54:00:89:D8:10",
            "52-54-00-89-d8-10",
            "52-54-00-89-D8-10",
            "5254.0089.d810",
            "5254.0089.D810",
        ] {
            assert_eq!(
                selected(&dir, &format!("mac={mac}&os=installed")),
                "node1-installed",
                "{mac}"
            );
            assert_eq!(selected(&dir, &format!("mac={mac}")), "node1", "{mac}");
        }
    }

    /// node2's selector is written in upper case; iPXE sends `${uuid}` in lower case. matchbox
    /// compares UUIDs byte for byte; kindling in any case.
    #[test]
    fn uuids_match_in_any_case() {
        let dir = fixture();
        for uuid in [
            "16e7d8a7-bfa9-428b-9117-363341bb330b",
            "16E7D8A7-BFA9-428B-9117-363341BB330B",
            "16e7d8a7bfa9428b9117363341bb330b",
        ] {
            assert_eq!(
                selected(&dir, &format!("uuid={uuid}&os=installed")),
                "node2",
                "{uuid}"
            );
        }
        assert_eq!(
            selected(&dir, "uuid=16e7d8a7-bfa9-428b-9117-363341bb330b"),
            "default"
        );
    }

    /// matchbox's `ByReqs`: equally specific groups are ordered by their sorted `key=value`
    /// strings and tried greatest first, so region-us beats rack-r1, and beats node1 too.
    /// Identical selectors are undefined in matchbox; kindling takes the smaller id and warns.
    #[test]
    fn ties_are_broken_deterministically() {
        let dir = fixture();
        assert_eq!(selected(&dir, "rack=r1&region=us-central1"), "region-us");
        assert_eq!(selected(&dir, "region=us-central1&rack=r1"), "region-us");
        assert_eq!(selected(&dir, "rack=r1"), "rack-r1");
        assert_eq!(
            selected(&dir, "mac=52:54:00:89:d8:10&region=us-central1"),
            "region-us"
        );
        assert_eq!(selected(&dir, "zone=z1"), "zone-a");
        assert_eq!(dir.warnings().len(), 1, "{:?}", dir.warnings());
        let warning = &dir.warnings()[0];
        assert!(warning.starts_with("groups `zone-a` ("), "{warning}");
        assert!(
            warning.ends_with("have the same selectors (zone=z1); `zone-a` is chosen because its id sorts first (matchbox would choose either)"),
            "{warning}"
        );
    }

    #[test]
    fn no_match_says_why_in_one_line() {
        let tmp = tempfile::tempdir().unwrap();
        write(tmp.path(), "profiles/p.json", r#"{"id":"p"}"#);
        write(
            tmp.path(),
            "groups/node1.json",
            r#"{"id":"node1","profile":"p","selector":{"mac":"52:54:00:89:d8:10","os":"installed"}}"#,
        );
        let dir = DataDir::load(tmp.path()).unwrap();
        let err = dir
            .select(&Labels::from_query("mac=52-54-00-89-d8-10"))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "no group matches mac=52:54:00:89:d8:10: group `node1` selects this mac but also needs os=installed, and the request has no os; there is no default group (a group without selectors)"
        );
        let err = dir
            .select(&Labels::from_query("mac=nonsense&serial=X1"))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "no group matches serial=X1 (mac 'nonsense' is not a MAC address, so it was ignored); there is no default group (a group without selectors)"
        );
        assert!(!err.reason.contains('\n'));
    }

    /// The Butane template, rendered for the installed node1 as matchbox's `collectVariables`
    /// would fill it: `.mac` from the group's selector, metadata, and the request's query.
    #[test]
    fn templates_render_exactly() {
        let dir = fixture();
        let labels = Labels::from_query("mac=52-54-00-89-d8-10&os=installed&foo=bar");
        let s = dir.select(&labels).unwrap();
        let template = dir.ignition_for(s.profile).unwrap();
        assert_eq!(
            render(template, &s.vars(&labels)).unwrap(),
            "variant: fcos
version: 1.4.0
passwd:
  users:
    - name: core
      ssh_authorized_keys:
        - ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKindlingTestKeyOne core@one
        - ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKindlingTestKeyTwo core@two
storage:
  files:
    - path: /etc/hostname
      mode: 0644
      contents:
        inline: node1.example.com
    - path: /etc/kindling/machine.env
      mode: 0644
      contents:
        inline: |
          MAC=52:54:00:89:d8:10
          FOO=bar
          QUERY=mac=52-54-00-89-d8-10&os=installed&foo=bar
          ETCD_NAME=node1
"
        );

        let labels =
            Labels::from_query("uuid=16e7d8a7-bfa9-428b-9117-363341bb330b&os=installed&foo=baz");
        let s = dir.select(&labels).unwrap();
        assert_eq!(
            render(template, &s.vars(&labels)).unwrap(),
            "variant: fcos
version: 1.4.0
storage:
  files:
    - path: /etc/hostname
      mode: 0644
      contents:
        inline: node2.example.com
    - path: /etc/kindling/machine.env
      mode: 0644
      contents:
        inline: |
          MAC=52:54:00:b2:2f:86
          FOO=baz
          QUERY=uuid=16e7d8a7-bfa9-428b-9117-363341bb330b&os=installed&foo=baz
          ETCD_NAME=none
"
        );

        let err = render(template, &s.vars(&Labels::from_query("uuid=x"))).unwrap_err();
        assert_eq!(err.line, 24);
        assert!(err.to_string().ends_with(
            "fedora-coreos.yaml:24: `{{.request.query.foo}}`: the request has no query parameter `foo`"
        ), "{err}");
    }

    #[test]
    fn raw_ignition_and_generic_templates() {
        let dir = fixture();
        let labels = Labels::from_query("mac=52:54:00:89:d8:10&foo=bar");
        let s = dir.select(&labels).unwrap();
        assert_eq!(s.group.id, "node1");
        let ign = dir.ignition_for(s.profile).unwrap();
        assert_eq!(
            render(ign, &s.vars(&labels)).unwrap(),
            fs::read_to_string(fixture_dir().join("ignition/fedora-coreos.ign")).unwrap()
        );
        let generic = dir.generic_for(s.profile).unwrap();
        assert_eq!(
            render(generic, &s.vars(&labels)).unwrap(),
            "# mac=52:54:00:89:d8:10&foo=bar\nfoo=bar\nmac=52:54:00:89:d8:10\n"
        );
    }

    #[test]
    fn boot_scripts_for_the_install_profile() {
        let dir = fixture();
        let boot = dir
            .profile("fedora-coreos-install")
            .unwrap()
            .boot
            .as_ref()
            .unwrap();
        assert_eq!(
            ipxe_script(boot),
            "#!ipxe
kernel /assets/fedora-coreos/fedora-coreos-36.20220618.3.1-live-kernel-x86_64 initrd=main coreos.live.rootfs_url=http://matchbox.example.com:8080/assets/fedora-coreos/fedora-coreos-36.20220618.3.1-live-rootfs.x86_64.img coreos.inst.install_dev=/dev/sda coreos.inst.ignition_url=http://matchbox.example.com:8080/ignition?uuid=${uuid}&mac=${mac:hexhyp}&os=installed console=tty0 console=ttyS0
initrd --name main /assets/fedora-coreos/fedora-coreos-36.20220618.3.1-live-initramfs.x86_64.img
boot
"
        );
        let grub = grub_script(boot);
        assert!(grub.contains("\nlinux \"/assets/fedora-coreos/fedora-coreos-36.20220618.3.1-live-kernel-x86_64\" initrd=main coreos.live.rootfs_url="), "{grub}");
    }

    fn write(root: &Path, name: &str, text: &str) {
        let path = root.join(name);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, text).unwrap();
    }

    fn problems(files: &[(&str, &str)]) -> Vec<String> {
        let tmp = tempfile::tempdir().unwrap();
        fs::create_dir_all(tmp.path().join("profiles")).unwrap();
        fs::create_dir_all(tmp.path().join("groups")).unwrap();
        for (name, text) in files {
            write(tmp.path(), name, text);
        }
        let err = DataDir::load(tmp.path()).expect_err("the directory should be refused");
        let root = format!("{}/", tmp.path().display());
        err.problems
            .iter()
            .map(|p| p.to_string().replace(&root, ""))
            .collect()
    }

    #[test]
    fn bad_json_is_refused_with_file_line_and_column() {
        assert_eq!(
            problems(&[(
                "groups/bad.json",
                "{\n  \"id\": \"bad\"\n  \"profile\": \"p\"\n}"
            )]),
            ["groups/bad.json:3:3: expected `,` or `}`"]
        );
        assert_eq!(
            problems(&[
                ("profiles/p.json", r#"{"id":"p"}"#),
                (
                    "groups/g.json",
                    "{\n  \"profile\": \"p\",\n  \"selector\": {\"mac\": \"52:54:00\"}\n}"
                ),
            ]),
            [
                "groups/g.json:3:32: field `selector.mac`: '52:54:00' is not a MAC address (expected six hex pairs such as 52:54:00:12:34:56, 52-54-00-12-34-56 or 5254.0012.3456)"
            ]
        );
        assert_eq!(
            problems(&[(
                "profiles/p.json",
                "{\n  \"id\": \"p\",\n  \"boot\": {\"kernel\": \"k\", \"initrds\": []}\n}"
            )]),
            [
                "profiles/p.json:3:39: field `boot.initrds`: not a boot field (expected one of kernel, initrd, args); did you mean `initrd`?"
            ]
        );
        assert_eq!(
            problems(&[("ignition/a.ign", "{\"ignition\": }")]),
            ["ignition/a.ign:1:14: expected value"]
        );
    }

    #[test]
    fn broken_references_are_refused_naming_the_field() {
        let got = problems(&[
            (
                "profiles/p.json",
                r#"{"id":"p","ignition_id":"missing.yaml","generic_id":"gone"}"#,
            ),
            ("profiles/q.json", r#"{"id":"other"}"#),
            (
                "profiles/r.json",
                r#"{"name":"no id","cloud_id":"c.yaml","boot":{"args":[]}}"#,
            ),
            ("groups/a.json", r#"{"id":"a","profile":"pp"}"#),
            ("groups/b.json", r#"{"id":"a","profile":"p"}"#),
            ("groups/c.json", r#"{"selector":{}}"#),
        ]);
        let dir_name = "ignition/missing.yaml in ";
        assert!(
            got[0].starts_with("profiles/p.json: field `ignition_id`: no file "),
            "{got:?}"
        );
        assert!(got[0].contains(dir_name), "{got:?}");
        assert!(
            got[1].starts_with("profiles/p.json: field `generic_id`: no file generic/gone"),
            "{got:?}"
        );
        assert_eq!(
            got[2..],
            [
                "profiles/q.json: field `id`: \"other\" differs from the file name \"q\"; groups find profiles by file name, so rename one to match the other",
                "profiles/r.json: field `id`: is required; set it to \"r\", the file's name",
                "profiles/r.json: field `cloud_id`: Cloud-Config is not served by kindling (matchbox deprecated it); use ignition_id",
                "profiles/r.json: field `boot.kernel`: is required when `boot` is given",
                "groups/a.json: field `profile`: no profile \"pp\" (profiles/pp.json); did you mean \"p\"?",
                "groups/c.json: field `profile`: is required: the id of the profile machines in this group get",
            ]
        );
    }

    #[test]
    fn duplicate_group_ids_are_refused() {
        let got = problems(&[
            ("profiles/p.json", r#"{"id":"p"}"#),
            ("groups/a.json", r#"{"id":"same","profile":"p"}"#),
            ("groups/b.json", r#"{"id":"same","profile":"p"}"#),
        ]);
        assert_eq!(
            got,
            ["groups/b.json: field `id`: \"same\" is also the id of groups/a.json"]
        );
    }

    #[test]
    fn unsupported_template_syntax_is_refused_with_file_and_line() {
        let got = problems(&[
            (
                "ignition/worker.yaml",
                "variant: fcos\nversion: 1.4.0\n{{if eq .role \"worker\"}}x{{end}}\n",
            ),
            ("generic/setup.cfg", "a={{.a}}\nb={{.b | printf \"%q\"}}\n"),
        ]);
        assert_eq!(
            got,
            [
                "ignition/worker.yaml:3: `{{if eq .role \"worker\"}}`: the function `eq` is not supported; kindling supports {{.key}}, {{$var}}, {{index}}, {{if}}/{{else}}/{{end}} and {{range}}",
                "generic/setup.cfg:2: `{{.b | printf \"%q\"}}`: pipelines (`|`) are not supported; kindling supports {{.key}}, {{$var}}, {{index}}, {{if}}/{{else}}/{{end}} and {{range}}",
            ]
        );
    }

    #[test]
    fn missing_directories_and_stray_files() {
        let tmp = tempfile::tempdir().unwrap();
        let err = DataDir::load(tmp.path()).unwrap_err();
        assert_eq!(err.problems.len(), 2, "{err}");
        assert!(
            err.to_string().starts_with("2 problems:\n  reading "),
            "{err}"
        );
        write(tmp.path(), "profiles/p.json", r#"{"id":"p"}"#);
        write(tmp.path(), "groups/README.md", "not a group");
        write(tmp.path(), "groups/old/g.json", "{}");
        let dir = DataDir::load(tmp.path()).unwrap();
        assert_eq!(dir.groups().len(), 0);
        assert_eq!(dir.warnings().len(), 2, "{:?}", dir.warnings());
        assert!(dir.select(&Labels::new()).is_err());
    }

    /// matchbox's older `.yaml` templates are Container Linux Configs: refused when the data
    /// directory loads, with the file and what to do, not with a 500 when a machine asks.
    #[test]
    fn a_container_linux_config_is_refused_at_load_with_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        for sub in ["profiles", "groups", "ignition"] {
            std::fs::create_dir_all(d.join(sub)).unwrap();
        }
        std::fs::write(
            d.join("profiles/etcd.json"),
            r#"{"id": "etcd", "ignition_id": "etcd.yaml"}"#,
        )
        .unwrap();
        std::fs::write(
            d.join("groups/default.json"),
            r#"{"id": "default", "profile": "etcd"}"#,
        )
        .unwrap();
        let clc = "---\nsystemd:\n  units:\n    - name: etcd-member.service\n      enable: true\n";
        std::fs::write(d.join("ignition/etcd.yaml"), clc).unwrap();
        let err = DataDir::load(d).unwrap_err().to_string();
        assert!(
            err.contains(
                "ignition/etcd.yaml: a Container Linux Config (it has no `variant:` line)"
            ),
            "{err}"
        );
        std::fs::write(
            d.join("ignition/etcd.yaml"),
            format!(
                "variant: flatcar\nversion: 1.0.0\n{}",
                &clc[4..].replace("enable:", "enabled:")
            ),
        )
        .unwrap();
        DataDir::load(d).unwrap();
    }
}
