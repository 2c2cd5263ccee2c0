//! [`Config`]: a full Ignition config built entry by entry, merged with others, and rendered for
//! the spec version the machines read.
//!
//! The working representation is `ignition_config::v3_3::Config`. Every field kindling emits
//! exists with the same meaning from spec 3.0 to 3.4, so one representation serves them all and
//! [`Config::render`] only has to prove that the target version can express what is held.

use ignition_config::v3_3;
use kindling_config::inventory::IgnitionVersion;

use crate::{IgnitionError, data_url, render};

/// A full Ignition config: files, directories, links, systemd units and users.
///
/// Entries follow Ignition's own merge rules, so building a config and merging configs agree:
/// files, directories and links share one namespace keyed by path (a later entry of any of the
/// three kinds replaces an earlier one at the same path); units are keyed by name and a later
/// unit's fields override the earlier ones it sets, with drop-ins keyed by name within the unit;
/// users are keyed by name and their SSH keys accumulate.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    inner: v3_3::Config,
}

impl Default for Config {
    fn default() -> Self {
        Config::new()
    }
}

/// A file held by a [`Config`], as [`Config::file`] shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileEntry {
    /// Permission bits; `None` leaves Ignition's default (0644).
    pub mode: Option<u32>,
    /// `None` leaves Ignition's default (false: fail if something is already at the path).
    pub overwrite: Option<bool>,
    pub contents: Contents,
}

/// Where a file's bytes come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Contents {
    /// No contents: Ignition creates an empty file.
    Empty,
    /// Inline in the config (a `data:` URL), decoded.
    Inline(Vec<u8>),
    /// Downloaded by Ignition, checked against `hash` (`sha512-<hex>`) when set.
    Remote { url: String, hash: Option<String> },
}

/// A systemd unit held by a [`Config`], as [`Config::unit`] shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitEntry {
    /// `None` for a unit the OS ships, which the config only enables, masks or extends.
    pub contents: Option<String>,
    pub enabled: Option<bool>,
    pub mask: Option<bool>,
    /// `(name, contents)` of each drop-in, in order.
    pub dropins: Vec<(String, Option<String>)>,
}

impl Config {
    /// An empty config.
    pub fn new() -> Config {
        Config {
            inner: v3_3::Config::default(),
        }
    }

    /// A file with inline contents (a `data:` URL, see [`data_url`](crate::data_url)) and
    /// `overwrite: true`, so that it wins over whatever the OS image has at that path.
    pub fn add_file(&mut self, path: &str, contents: &[u8], mode: u32) {
        let mut file = v3_3::File::new(path.to_string());
        file.contents = Some(resource(data_url::encode(contents), None));
        file.mode = Some(i64::from(mode));
        file.overwrite = Some(true);
        self.put_file(file);
    }

    /// A file Ignition downloads from `url` and checks against a SHA-512 digest
    /// (`verification.hash: sha512-<hex>`); `overwrite: true`.
    pub fn add_remote_file(&mut self, path: &str, url: &str, sha512_hex: &str, mode: u32) {
        let mut file = v3_3::File::new(path.to_string());
        file.contents = Some(resource(
            url.to_string(),
            Some(format!("sha512-{}", sha512_hex.to_ascii_lowercase())),
        ));
        file.mode = Some(i64::from(mode));
        file.overwrite = Some(true);
        self.put_file(file);
    }

    /// A directory with the given mode.
    pub fn add_directory(&mut self, path: &str, mode: u32) {
        let mut dir = v3_3::Directory::new(path.to_string());
        dir.mode = Some(i64::from(mode));
        self.put_directory(dir);
    }

    /// A symbolic link at `path` pointing to `target`; `overwrite: true`.
    pub fn add_link(&mut self, path: &str, target: &str) {
        let mut link = v3_3::Link::new(path.to_string());
        link.target = Some(target.to_string());
        link.overwrite = Some(true);
        self.put_link(link);
    }

    /// A systemd unit with `contents`, enabled or explicitly disabled. Ignition records either
    /// choice in a preset file rather than creating `wants` links.
    pub fn add_unit(&mut self, name: &str, contents: &str, enabled: bool) {
        let mut unit = v3_3::Unit::new(name.to_string());
        unit.contents = Some(contents.to_string());
        unit.enabled = Some(enabled);
        self.put_unit(unit);
    }

    /// Enables a unit the OS ships (its contents stay the OS's).
    pub fn enable_unit(&mut self, name: &str) {
        let mut unit = v3_3::Unit::new(name.to_string());
        unit.enabled = Some(true);
        self.put_unit(unit);
    }

    /// Masks a unit the OS ships, so that nothing starts it.
    pub fn mask_unit(&mut self, name: &str) {
        let mut unit = v3_3::Unit::new(name.to_string());
        unit.mask = Some(true);
        self.put_unit(unit);
    }

    /// A drop-in `name` (ending in `.conf`) for `unit`, which need not be defined by this config:
    /// extending a unit the OS ships is the usual case.
    pub fn add_dropin(&mut self, unit: &str, name: &str, contents: &str) {
        let mut entry = v3_3::Unit::new(unit.to_string());
        let mut dropin = v3_3::Dropin::new(name.to_string());
        dropin.contents = Some(contents.to_string());
        entry.dropins = Some(vec![dropin]);
        self.put_unit(entry);
    }

    /// SSH authorized keys for `user` (for example `core`), creating the user entry if absent.
    /// Keys already present are not repeated.
    pub fn add_ssh_keys(&mut self, user: &str, keys: &[String]) {
        let mut entry = v3_3::User::new(user.to_string());
        entry.ssh_authorized_keys = Some(keys.to_vec());
        self.put_user(entry);
    }

    /// Has Ignition wipe the partition table of `device`: a data disk that the description
    /// says may be wiped. Ignition touches no disk a config does not name.
    pub fn wipe_disk(&mut self, device: &str) {
        let disks = self.storage().disks.get_or_insert_with(Vec::new);
        disks.retain(|d| d.device != device);
        let mut disk = v3_3::Disk::new(device.to_string());
        disk.wipe_table = Some(true);
        disks.push(disk);
    }

    /// The devices whose partition tables this config wipes.
    pub fn wiped_disks(&self) -> Vec<&str> {
        let storage = self.inner.storage.as_ref();
        let disks = storage.and_then(|s| s.disks.as_ref()).into_iter().flatten();
        disks
            .filter(|d| d.wipe_table == Some(true))
            .map(|d| d.device.as_str())
            .collect()
    }

    /// `/etc/hostname` holding `hostname`, mode 0644.
    pub fn set_hostname(&mut self, hostname: &str) {
        self.add_file("/etc/hostname", format!("{hostname}\n").as_bytes(), 0o644);
    }

    /// Merges `other` over this config with Ignition's rules (see [`Config`]): its entries
    /// replace ours with the same key, the rest are appended in order.
    pub fn merge(&mut self, other: Config) {
        let other = other.inner;
        if let Some(storage) = other.storage {
            for disk in storage.disks.unwrap_or_default() {
                let disks = self.storage().disks.get_or_insert_with(Vec::new);
                disks.retain(|d| d.device != disk.device);
                disks.push(disk);
            }
            for dir in storage.directories.unwrap_or_default() {
                self.put_directory(dir);
            }
            for file in storage.files.unwrap_or_default() {
                self.put_file(file);
            }
            for link in storage.links.unwrap_or_default() {
                self.put_link(link);
            }
        }
        for unit in other.systemd.and_then(|s| s.units).unwrap_or_default() {
            self.put_unit(unit);
        }
        for user in other.passwd.and_then(|p| p.users).unwrap_or_default() {
            self.put_user(user);
        }
    }

    /// The config as JSON for spec `version`: compact (one line plus a final newline), as
    /// openshift-install and Butane write them, because machines read these files and people
    /// read them through `jq`.
    ///
    /// Fails if an entry is malformed (a relative path, a unit name without a unit type) or if
    /// `version` cannot express something the config holds. The latter is proven by parsing the
    /// output with `ignition-config` for that version: any key it does not know is a failure.
    pub fn render(&self, version: IgnitionVersion) -> Result<Vec<u8>, IgnitionError> {
        render::render(&self.inner, version)
    }

    /// The file at `path`, if this config holds one.
    pub fn file(&self, path: &str) -> Option<FileEntry> {
        let file = self.files().iter().find(|f| f.path == path)?;
        let contents = match &file.contents {
            None => Contents::Empty,
            Some(resource) => {
                let source = resource.source.clone().unwrap_or_default();
                match data_url::decode(&source) {
                    Some(bytes) => Contents::Inline(bytes),
                    _ => Contents::Remote {
                        url: source,
                        hash: resource.verification.as_ref().and_then(|v| v.hash.clone()),
                    },
                }
            }
        };
        Some(FileEntry {
            mode: file.mode.and_then(|m| u32::try_from(m).ok()),
            overwrite: file.overwrite,
            contents,
        })
    }

    /// The mode of the directory at `path` (`Some(None)`: a directory with Ignition's default
    /// mode, 0755), if this config holds one.
    pub fn directory(&self, path: &str) -> Option<Option<u32>> {
        let dirs = self.inner.storage.as_ref()?.directories.as_ref()?;
        let dir = dirs.iter().find(|d| d.path == path)?;
        Some(dir.mode.and_then(|m| u32::try_from(m).ok()))
    }

    /// The target of the link at `path` and whether it is a hard link, if this config holds one.
    pub fn link(&self, path: &str) -> Option<(&str, bool)> {
        let links = self.inner.storage.as_ref()?.links.as_ref()?;
        let link = links.iter().find(|l| l.path == path)?;
        Some((link.target.as_deref()?, link.hard.unwrap_or(false)))
    }

    /// The unit `name`, if this config holds an entry for it.
    pub fn unit(&self, name: &str) -> Option<UnitEntry> {
        let units = self.inner.systemd.as_ref()?.units.as_ref()?;
        let unit = units.iter().find(|u| u.name == name)?;
        Some(UnitEntry {
            contents: unit.contents.clone(),
            enabled: unit.enabled,
            mask: unit.mask,
            dropins: unit
                .dropins
                .iter()
                .flatten()
                .map(|d| (d.name.clone(), d.contents.clone()))
                .collect(),
        })
    }

    /// The SSH keys configured for `user`, if this config has an entry for that user.
    pub fn ssh_keys(&self, user: &str) -> Option<&[String]> {
        let users = self.inner.passwd.as_ref()?.users.as_ref()?;
        let entry = users.iter().find(|u| u.name == user)?;
        Some(entry.ssh_authorized_keys.as_deref().unwrap_or_default())
    }

    /// Whether a file of this config is for its owner only (mode 0600 or stricter): a key, a
    /// kubeconfig, a token. A config that carries one is itself a secret.
    pub fn holds_owner_only_files(&self) -> bool {
        self.files()
            .iter()
            .any(|f| f.mode.is_some_and(|m| m & 0o077 == 0))
    }

    /// Every file, directory and link path, in that order.
    pub fn paths(&self) -> impl Iterator<Item = &str> {
        let storage = self.inner.storage.as_ref();
        let files = storage.and_then(|s| s.files.as_ref()).into_iter().flatten();
        let dirs = storage
            .and_then(|s| s.directories.as_ref())
            .into_iter()
            .flatten();
        let links = storage.and_then(|s| s.links.as_ref()).into_iter().flatten();
        files
            .map(|f| f.path.as_str())
            .chain(dirs.map(|d| d.path.as_str()))
            .chain(links.map(|l| l.path.as_str()))
    }

    /// Every unit name.
    pub fn units(&self) -> impl Iterator<Item = &str> {
        let units = self.inner.systemd.as_ref().and_then(|s| s.units.as_ref());
        units.into_iter().flatten().map(|u| u.name.as_str())
    }

    /// A config read back from its JSON, of any spec from 3.0.0 to 3.4.0 (for example a pool
    /// config kindling rendered earlier), or a 2.2/2.3 config kindling wrote, to merge into or
    /// render again for another spec. The
    /// JSON must be valid for the spec it declares; a 3.4.0 config must not use what 3.4.0
    /// added (kindling's own configs do not).
    pub fn from_json(json: &[u8]) -> Result<Config, IgnitionError> {
        let value: serde_json::Value = serde_json::from_slice(json)
            .map_err(|e| IgnitionError::Invalid(format!("not an Ignition config: {e}")))?;
        let version = value["ignition"]["version"].as_str().unwrap_or_default();
        if version.starts_with("2.") {
            let up = crate::spec2::up(&value)?;
            return Config::from_json(&serde_json::to_vec(&up)?);
        }
        let (parsed, _warnings) = ignition_config::Config::parse_slice(json)
            .map_err(|e| IgnitionError::Invalid(format!("not an Ignition config: {e}")))?;
        use ignition_config::Config as Any;
        let as_3_4 = match parsed {
            Any::V3_0(_) | Any::V3_1(_) | Any::V3_2(_) | Any::V3_3(_) => None,
            Any::V3_4(config) => Some(config),
            _ => {
                return Err(IgnitionError::Invalid(
                    "only Ignition specs 3.0.0 to 3.4.0 can be read back".into(),
                ));
            }
        };
        // 3.1–3.3 only add fields to 3.0, so every such config is a valid 3.3 config once its
        // version says so. So is a 3.4 config that uses none of 3.4's additions.
        let mut value: serde_json::Value = serde_json::from_slice(json)?;
        value["ignition"]["version"] = serde_json::Value::from("3.3.0");
        let inner: v3_3::Config = serde_json::from_value(value)?;
        if let Some(config) = as_3_4 {
            // What 3.3's types cannot hold is dropped when read as 3.3: compare to find it.
            let mut read = serde_json::to_value(&inner)?;
            read["ignition"]["version"] = serde_json::Value::from("3.4.0");
            let mut whole = serde_json::to_value(&config)?;
            render::strip_nulls(&mut read);
            render::strip_nulls(&mut whole);
            if read != whole {
                return Err(IgnitionError::Invalid(
                    "this 3.4.0 config uses fields that spec 3.4.0 added (e.g. LUKS discard or \
                     open options, Clevis for Tang with an advertisement), which kindling cannot \
                     carry over; write it as 3.3.0 or leave those out"
                        .into(),
                ));
            }
        }
        Ok(Config { inner })
    }

    /// The `ignition-config` value underneath, for callers that need a field kindling does not
    /// build (read only: the builders keep its entries consistent).
    pub fn as_ignition(&self) -> &v3_3::Config {
        &self.inner
    }

    fn files(&self) -> &[v3_3::File] {
        let storage = self.inner.storage.as_ref();
        storage.and_then(|s| s.files.as_deref()).unwrap_or_default()
    }

    fn storage(&mut self) -> &mut v3_3::Storage {
        self.inner.storage.get_or_insert_with(Default::default)
    }

    /// A file replaces a directory or link at its path, and an earlier file in place.
    pub(crate) fn put_file(&mut self, file: v3_3::File) {
        let storage = self.storage();
        retain(&mut storage.directories, |d| d.path != file.path);
        retain(&mut storage.links, |l| l.path != file.path);
        replace_or_push(&mut storage.files, file, |a, b| a.path == b.path);
    }

    pub(crate) fn put_directory(&mut self, dir: v3_3::Directory) {
        let storage = self.storage();
        retain(&mut storage.files, |f| f.path != dir.path);
        retain(&mut storage.links, |l| l.path != dir.path);
        replace_or_push(&mut storage.directories, dir, |a, b| a.path == b.path);
    }

    pub(crate) fn put_link(&mut self, link: v3_3::Link) {
        let storage = self.storage();
        retain(&mut storage.files, |f| f.path != link.path);
        retain(&mut storage.directories, |d| d.path != link.path);
        replace_or_push(&mut storage.links, link, |a, b| a.path == b.path);
    }

    pub(crate) fn put_unit(&mut self, unit: v3_3::Unit) {
        let systemd = self.inner.systemd.get_or_insert_with(Default::default);
        let units = systemd.units.get_or_insert_with(Vec::new);
        let Some(existing) = units.iter_mut().find(|u| u.name == unit.name) else {
            units.push(unit);
            return;
        };
        existing.contents = unit.contents.or(existing.contents.take());
        existing.enabled = unit.enabled.or(existing.enabled);
        existing.mask = unit.mask.or(existing.mask);
        for dropin in unit.dropins.unwrap_or_default() {
            replace_or_push(&mut existing.dropins, dropin, |a, b| a.name == b.name);
        }
    }

    pub(crate) fn put_user(&mut self, user: v3_3::User) {
        let passwd = self.inner.passwd.get_or_insert_with(Default::default);
        let users = passwd.users.get_or_insert_with(Vec::new);
        let Some(existing) = users.iter_mut().find(|u| u.name == user.name) else {
            users.push(user);
            return;
        };
        for key in user.ssh_authorized_keys.unwrap_or_default() {
            let keys = existing.ssh_authorized_keys.get_or_insert_with(Vec::new);
            if !keys.contains(&key) {
                keys.push(key);
            }
        }
    }
}

fn resource(source: String, hash: Option<String>) -> v3_3::Resource {
    v3_3::Resource {
        source: Some(source),
        verification: hash.map(|hash| v3_3::Verification { hash: Some(hash) }),
        ..Default::default()
    }
}

/// Keeps the list's order: a replaced entry stays where the first one was, as in Ignition.
fn replace_or_push<T>(list: &mut Option<Vec<T>>, item: T, same: impl Fn(&T, &T) -> bool) {
    let list = list.get_or_insert_with(Vec::new);
    match list.iter_mut().find(|existing| same(existing, &item)) {
        Some(existing) => *existing = item,
        None => list.push(item),
    }
}

fn retain<T>(list: &mut Option<Vec<T>>, keep: impl FnMut(&T) -> bool) {
    if let Some(list) = list {
        list.retain(keep);
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    fn rendered(config: &Config, version: IgnitionVersion) -> Value {
        let bytes = config.render(version).unwrap_or_else(|e| panic!("{e}"));
        serde_json::from_slice(&bytes).unwrap()
    }

    fn keys(n: &[&str]) -> Vec<String> {
        n.iter().map(|k| k.to_string()).collect()
    }

    #[test]
    fn a_rendered_config_reads_back_the_same_from_every_spec() {
        let mut config = Config::new();
        config.set_hostname("m0.example.com");
        config.add_file("/etc/kubernetes/kubelet.env", b"ARGS=1\n", 0o644);
        config.add_unit("kubelet.service", "[Service]\nExecStart=/bin/true\n", true);
        for version in IgnitionVersion::ALL {
            let json = config.render(version).unwrap();
            let back = Config::from_json(&json).unwrap_or_else(|e| panic!("{version:?}: {e}"));
            assert_eq!(back.render(version).unwrap(), json, "{version:?}");
        }
    }

    #[test]
    fn what_a_read_back_would_lose_is_refused() {
        // LUKS discard is new in 3.4.0; 3.3's types cannot hold it.
        let luks = br#"{"ignition":{"version":"3.4.0"},"storage":{"luks":[{"name":"root","device":"/dev/sda4","discard":true}]}}"#;
        let e = Config::from_json(luks).unwrap_err().to_string();
        assert!(e.contains("fields that spec 3.4.0 added"), "{e}");
        let newer = br#"{"ignition":{"version":"3.5.0"}}"#;
        let e = Config::from_json(newer).unwrap_err().to_string();
        assert!(e.contains("3.0.0 to 3.4.0"), "{e}");
    }

    #[test]
    fn every_version_is_rendered_with_its_own_version_string() {
        let mut config = Config::new();
        config.set_hostname("m0");
        for version in IgnitionVersion::ALL {
            let json = rendered(&config, version);
            assert_eq!(json["ignition"]["version"], version.as_str());
            if version.major() == 2 {
                continue; // no crate parses 2.x: tests.rs gives it to Ignition 0.35
            }
            let (parsed, warnings) =
                ignition_config::Config::parse_slice(&config.render(version).unwrap()).unwrap();
            assert!(warnings.is_empty());
            let expected = match version {
                IgnitionVersion::V3_0 => matches!(parsed, ignition_config::Config::V3_0(_)),
                IgnitionVersion::V3_1 => matches!(parsed, ignition_config::Config::V3_1(_)),
                IgnitionVersion::V3_2 => matches!(parsed, ignition_config::Config::V3_2(_)),
                IgnitionVersion::V3_3 => matches!(parsed, ignition_config::Config::V3_3(_)),
                IgnitionVersion::V3_4 => matches!(parsed, ignition_config::Config::V3_4(_)),
                IgnitionVersion::V2_2 | IgnitionVersion::V2_3 => unreachable!(),
            };
            assert!(expected, "{version} parsed as {parsed:?}");
        }
    }

    #[test]
    fn output_is_one_line_without_nulls() {
        let mut config = Config::new();
        config.add_unit("a.service", "[Unit]\n", true);
        config.add_ssh_keys("core", &keys(&["ssh-ed25519 AAAA k"]));
        let bytes = config.render(IgnitionVersion::V3_3).unwrap();
        let text = String::from_utf8(bytes).unwrap();
        assert_eq!(text.matches('\n').count(), 1, "{text}");
        assert!(text.ends_with("}\n"));
        assert!(!text.contains("null"), "{text}");
        assert_eq!(
            serde_json::from_str::<Value>(&text).unwrap(),
            json!({
                "ignition": {"version": "3.3.0"},
                "passwd": {"users": [{"name": "core", "sshAuthorizedKeys": ["ssh-ed25519 AAAA k"]}]},
                "systemd": {"units": [{"name": "a.service", "contents": "[Unit]\n", "enabled": true}]}
            })
        );
    }

    #[test]
    fn builders_make_the_entries_ignition_expects() {
        let mut config = Config::new();
        config.add_file("/etc/motd", b"hello\n", 0o644);
        config.add_remote_file("/usr/local/bin/kindling", "https://h/k", "AB12", 0o755);
        config.add_directory("/var/lib/kindling", 0o700);
        config.add_link("/etc/localtime", "/usr/share/zoneinfo/UTC");
        config.add_unit("kindling.service", "[Unit]\n", false);
        config.add_dropin("kubelet.service", "10-kindling.conf", "[Service]\n");
        config.add_ssh_keys("core", &keys(&["k1"]));
        config.set_hostname("m0.example.com");

        assert_eq!(
            config.file("/etc/motd"),
            Some(FileEntry {
                mode: Some(0o644),
                overwrite: Some(true),
                contents: Contents::Inline(b"hello\n".to_vec()),
            })
        );
        assert_eq!(
            config.file("/usr/local/bin/kindling").unwrap().contents,
            Contents::Remote {
                url: "https://h/k".into(),
                hash: Some("sha512-ab12".into()),
            }
        );
        assert_eq!(
            config.file("/etc/hostname").unwrap().contents,
            Contents::Inline(b"m0.example.com\n".to_vec())
        );
        assert_eq!(config.directory("/var/lib/kindling"), Some(Some(0o700)));
        assert_eq!(
            config.link("/etc/localtime"),
            Some(("/usr/share/zoneinfo/UTC", false))
        );
        assert_eq!(
            config.unit("kindling.service").unwrap().enabled,
            Some(false)
        );
        let kubelet = config.unit("kubelet.service").unwrap();
        assert_eq!(
            kubelet.contents, None,
            "a drop-in leaves the OS's unit alone"
        );
        assert_eq!(
            kubelet.dropins,
            [(
                "10-kindling.conf".to_string(),
                Some("[Service]\n".to_string())
            )]
        );
        assert_eq!(config.ssh_keys("core"), Some(&keys(&["k1"])[..]));
        assert_eq!(config.ssh_keys("root"), None);
        assert_eq!(
            config.paths().collect::<Vec<_>>(),
            [
                "/etc/motd",
                "/usr/local/bin/kindling",
                "/etc/hostname",
                "/var/lib/kindling",
                "/etc/localtime"
            ]
        );
        assert_eq!(
            config.units().collect::<Vec<_>>(),
            ["kindling.service", "kubelet.service"]
        );
        assert_eq!(
            config
                .as_ignition()
                .storage
                .as_ref()
                .unwrap()
                .files
                .as_ref()
                .unwrap()
                .len(),
            3
        );
    }

    #[test]
    fn a_later_entry_replaces_an_earlier_one_at_the_same_key() {
        let mut config = Config::new();
        config.add_file("/etc/a", b"one", 0o600);
        config.add_file("/etc/b", b"b", 0o644);
        config.add_file("/etc/a", b"two", 0o640);
        assert_eq!(config.paths().collect::<Vec<_>>(), ["/etc/a", "/etc/b"]);
        assert_eq!(
            config.file("/etc/a").unwrap(),
            FileEntry {
                mode: Some(0o640),
                overwrite: Some(true),
                contents: Contents::Inline(b"two".to_vec()),
            }
        );
        // Files, directories and links share one namespace, as in Ignition's merge.
        config.add_directory("/etc/a", 0o755);
        config.add_link("/etc/b", "/etc/a");
        assert_eq!(config.file("/etc/a"), None);
        assert_eq!(config.file("/etc/b"), None);
        assert_eq!(config.paths().collect::<Vec<_>>(), ["/etc/a", "/etc/b"]);
        config.add_file("/etc/a", b"back", 0o644);
        assert_eq!(config.directory("/etc/a"), None);
    }

    #[test]
    fn merge_follows_ignition_rules() {
        let mut base = Config::new();
        base.add_file("/etc/a", b"base", 0o644);
        base.add_file("/etc/keep", b"keep", 0o644);
        base.add_directory("/etc/d", 0o755);
        base.add_unit("kubelet.service", "[Unit]\nDescription=base\n", true);
        base.add_dropin("kubelet.service", "10-a.conf", "[Service]\nA=1\n");
        base.add_dropin("kubelet.service", "20-b.conf", "[Service]\nB=1\n");
        base.add_ssh_keys("core", &keys(&["k1", "k2"]));

        let mut other = Config::new();
        other.add_file("/etc/a", b"other", 0o600);
        other.add_link("/etc/d", "/tmp");
        other.add_file("/etc/new", b"new", 0o644);
        other.add_dropin("kubelet.service", "10-a.conf", "[Service]\nA=2\n");
        other.add_dropin("kubelet.service", "30-c.conf", "[Service]\nC=1\n");
        other.add_unit("extra.service", "[Unit]\n", false);
        other.add_ssh_keys("core", &keys(&["k2", "k3"]));
        other.add_ssh_keys("ops", &keys(&["o1"]));

        base.merge(other);
        assert_eq!(
            base.file("/etc/a").unwrap().contents,
            Contents::Inline(b"other".to_vec())
        );
        assert_eq!(base.file("/etc/a").unwrap().mode, Some(0o600));
        assert!(base.file("/etc/keep").is_some());
        assert_eq!(base.directory("/etc/d"), None);
        assert_eq!(base.link("/etc/d"), Some(("/tmp", false)));
        assert_eq!(
            base.paths().collect::<Vec<_>>(),
            ["/etc/a", "/etc/keep", "/etc/new", "/etc/d"]
        );

        let kubelet = base.unit("kubelet.service").unwrap();
        assert_eq!(
            kubelet.contents.as_deref(),
            Some("[Unit]\nDescription=base\n"),
            "a unit that only brings drop-ins keeps the contents it merges into"
        );
        assert_eq!(kubelet.enabled, Some(true));
        let dropins: Vec<_> = kubelet
            .dropins
            .iter()
            .map(|(name, contents)| (name.as_str(), contents.as_deref().unwrap()))
            .collect();
        assert_eq!(
            dropins,
            [
                ("10-a.conf", "[Service]\nA=2\n"),
                ("20-b.conf", "[Service]\nB=1\n"),
                ("30-c.conf", "[Service]\nC=1\n"),
            ]
        );
        assert_eq!(
            base.units().collect::<Vec<_>>(),
            ["kubelet.service", "extra.service"]
        );
        assert_eq!(base.ssh_keys("core"), Some(&keys(&["k1", "k2", "k3"])[..]));
        assert_eq!(base.ssh_keys("ops"), Some(&keys(&["o1"])[..]));
    }

    #[test]
    fn merging_a_unit_overrides_only_the_fields_it_sets() {
        let mut base = Config::new();
        base.add_unit("a.service", "[Unit]\n", true);
        let mut other = Config::new();
        other.add_unit("a.service", "[Unit]\nDescription=new\n", false);
        base.merge(other);
        let unit = base.unit("a.service").unwrap();
        assert_eq!(unit.contents.as_deref(), Some("[Unit]\nDescription=new\n"));
        assert_eq!(unit.enabled, Some(false));
        assert_eq!(unit.mask, None);
    }

    #[test]
    fn features_a_spec_lacks_are_refused_by_name() {
        let mut config = Config::new();
        config.add_file("/usr/local/bin/su", b"x", 0o4755);
        for version in [IgnitionVersion::V3_0, IgnitionVersion::V3_3] {
            let err = config.render(version).unwrap_err();
            assert!(
                matches!(
                    err,
                    IgnitionError::Unsupported {
                        needs: IgnitionVersion::V3_4,
                        ..
                    }
                ),
                "{err}"
            );
            assert!(err.to_string().contains("setuid"), "{err}");
        }
        assert_eq!(
            rendered(&config, IgnitionVersion::V3_4)["storage"]["files"][0]["mode"],
            0o4755
        );

        let mut config = Config::new();
        config.add_remote_file("/x", "https://h/x", &"0".repeat(128), 0o644);
        config.render(IgnitionVersion::V3_0).unwrap();
        let mut inner = config.inner.clone();
        inner.storage.as_mut().unwrap().files.as_mut().unwrap()[0]
            .contents
            .as_mut()
            .unwrap()
            .verification = Some(v3_3::Verification {
            hash: Some(format!("sha256-{}", "0".repeat(64))),
        });
        let config = Config { inner };
        let err = config.render(IgnitionVersion::V3_1).unwrap_err();
        assert!(err.to_string().contains("needs spec 3.2.0"), "{err}");
        config.render(IgnitionVersion::V3_2).unwrap();
    }

    #[test]
    fn a_key_the_target_spec_does_not_know_fails_the_render() {
        // kernelArguments arrived in spec 3.3; only the re-parse can see it.
        let mut config = Config::new();
        config.inner.kernel_arguments = Some(v3_3::KernelArguments {
            should_exist: Some(vec!["quiet".into()]),
            should_not_exist: None,
        });
        let err = config.render(IgnitionVersion::V3_2).unwrap_err();
        assert_eq!(
            err.to_string(),
            "Ignition spec 3.2.0 has no field $.kernelArguments; it would be ignored — target a later spec, or leave the feature out"
        );
        config.render(IgnitionVersion::V3_3).unwrap();
    }

    #[test]
    fn malformed_entries_are_refused_whatever_the_spec() {
        type Build = fn(&mut Config);
        let cases: [(Build, &str); 6] = [
            (
                |c| c.add_file("etc/x", b"", 0o644),
                "file path 'etc/x' is not absolute",
            ),
            (
                |c| c.add_directory("var", 0o755),
                "directory path 'var' is not absolute",
            ),
            (
                |c| c.add_unit("kubelet", "", true),
                "unit name 'kubelet' does not end",
            ),
            (
                |c| c.add_dropin("a.service", "10-x", ""),
                "drop-in '10-x' of unit a.service",
            ),
            (
                |c| c.add_file("/x", b"", 0o17777),
                "mode 17777 of /x is not a permission mode",
            ),
            (
                |c| c.add_remote_file("/x", "https://h/x", "abc", 0o644),
                "the hash of file /x ('sha512-abc') is not",
            ),
        ];
        for (build, message) in cases {
            let mut config = Config::new();
            build(&mut config);
            let err = config.render(IgnitionVersion::V3_3).unwrap_err();
            assert!(err.to_string().starts_with(message), "{err}");
        }
        let mut config = Config::new();
        config.add_remote_file("/x", "gopher://h/x", &"0".repeat(128), 0o644);
        let err = config.render(IgnitionVersion::V3_3).unwrap_err();
        assert!(
            err.to_string().contains("not a URL Ignition can fetch"),
            "{err}"
        );
    }
}
