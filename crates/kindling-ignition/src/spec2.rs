//! Specs 2.2 and 2.3, which Ignition 0.x reads (RHCOS up to 4.5, whose Ignition rejects every 3.x
//! config). A config is held as 3.x and translated down only when it is written; [`down`] refuses
//! what 2.x cannot say rather than dropping it, and [`up`] reads kindling's own 2.x output back.
//!
//! The differences that matter (coreos/ignition docs/migrating-configs.md, "2.3.0 to 3.0.0"):
//! 3.x `merge` is 2.x `append`; every 2.x file, directory and link names its filesystem ("root");
//! a 2.x file overwrites by default where a 3.x one does not, so `overwrite` is always written;
//! 2.x has no `httpHeaders`, `compression`, `proxy`, sha256 hashes, LUKS or `shouldExist`.

use kindling_config::inventory::IgnitionVersion;
use serde_json::{Map, Value};

use crate::IgnitionError;

/// What 2.x writes for a file whose 3.x entry leaves the mode to Ignition's default (0644).
const FILE_MODE: i64 = 0o644;
/// The same for a directory (0755).
const DIRECTORY_MODE: i64 = 0o755;

const RESOURCE: &[&str] = &["source", "verification"];
const NODE: &[&str] = &["path", "overwrite", "user", "group"];
const UNIT: &[&str] = &["name", "enabled", "mask", "contents", "dropins"];
const DROPIN: &[&str] = &["name", "contents"];
const USER: &[&str] = &[
    "name",
    "passwordHash",
    "sshAuthorizedKeys",
    "uid",
    "gecos",
    "homeDir",
    "noCreateHome",
    "primaryGroup",
    "groups",
    "noUserGroup",
    "noLogInit",
    "shell",
    "system",
];
const GROUP: &[&str] = &["name", "gid", "passwordHash", "system"];

/// `config`, a 3.x config as JSON without nulls, written for `version` (2.2.0 or 2.3.0).
/// Anything 2.x has no field for is an error naming the field.
pub(crate) fn down(config: &Value, version: IgnitionVersion) -> Result<Value, IgnitionError> {
    let lacks = |key: String| IgnitionError::UnknownField { version, key };
    let top = object(config, "", lacks)?;
    only(
        top,
        &["ignition", "storage", "systemd", "passwd"],
        "",
        lacks,
    )?;

    let mut ignition = Map::new();
    ignition.insert("version".into(), version.as_str().into());
    if let Some(from) = top.get("ignition") {
        let from = object(from, "ignition", lacks)?;
        only(
            from,
            &["version", "config", "security", "timeouts"],
            "ignition",
            lacks,
        )?;
        if let Some(config) = from.get("config") {
            let config = object(config, "ignition.config", lacks)?;
            only(config, &["merge", "replace"], "ignition.config", lacks)?;
            let mut out = Map::new();
            if let Some(merge) = config.get("merge") {
                let merged = each(merge, "ignition.config.merge", lacks, |item, at| {
                    resource(item, &at, lacks)
                })?;
                out.insert("append".into(), merged);
            }
            if let Some(replace) = config.get("replace") {
                out.insert(
                    "replace".into(),
                    resource(replace, "ignition.config.replace", lacks)?,
                );
            }
            ignition.insert("config".into(), out.into());
        }
        if let Some(security) = from.get("security") {
            let security = object(security, "ignition.security", lacks)?;
            only(security, &["tls"], "ignition.security", lacks)?;
            let mut tls_out = Map::new();
            if let Some(tls) = security.get("tls") {
                let tls = object(tls, "ignition.security.tls", lacks)?;
                let at = "ignition.security.tls";
                only(tls, &["certificateAuthorities"], at, lacks)?;
                if let Some(cas) = tls.get("certificateAuthorities") {
                    let at = "ignition.security.tls.certificateAuthorities";
                    let cas = each(cas, at, lacks, |item, at| resource(item, &at, lacks))?;
                    tls_out.insert("certificateAuthorities".into(), cas);
                }
            }
            ignition.insert(
                "security".into(),
                Value::from(Map::from_iter([("tls".into(), tls_out.into())])),
            );
        }
        if let Some(timeouts) = from.get("timeouts") {
            let at = "ignition.timeouts";
            only(
                object(timeouts, at, lacks)?,
                &["httpResponseHeaders", "httpTotal"],
                at,
                lacks,
            )?;
            ignition.insert("timeouts".into(), timeouts.clone());
        }
    }
    let mut out = Map::new();
    out.insert("ignition".into(), ignition.into());

    if let Some(storage) = top.get("storage") {
        let storage = object(storage, "storage", lacks)?;
        only(
            storage,
            &["files", "directories", "links", "disks"],
            "storage",
            lacks,
        )?;
        let mut to = Map::new();
        if let Some(disks) = storage.get("disks") {
            // Spec 2.x has the same two fields kindling writes.
            let disks = each(disks, "storage.disks", lacks, |disk, at| {
                only(
                    object(disk, &at, lacks)?,
                    &["device", "wipeTable"],
                    &at,
                    lacks,
                )?;
                Ok(disk.clone())
            })?;
            to.insert("disks".into(), disks);
        }
        if let Some(files) = storage.get("files") {
            let files = each(files, "storage.files", lacks, |file, at| {
                let mut node = node(file, &at, &["mode", "contents"], lacks)?;
                node.entry("mode").or_insert(FILE_MODE.into());
                node.entry("overwrite").or_insert(false.into());
                let contents = match file.get("contents") {
                    Some(contents) => resource(contents, &format!("{at}.contents"), lacks)?,
                    // 3.x makes an empty file; 2.x wants a source for that.
                    None => serde_json::json!({ "source": "data:," }),
                };
                node.insert("contents".into(), contents);
                Ok(node.into())
            })?;
            to.insert("files".into(), files);
        }
        if let Some(directories) = storage.get("directories") {
            let directories = each(directories, "storage.directories", lacks, |dir, at| {
                let mut node = node(dir, &at, &["mode"], lacks)?;
                node.entry("mode").or_insert(DIRECTORY_MODE.into());
                Ok(node.into())
            })?;
            to.insert("directories".into(), directories);
        }
        if let Some(links) = storage.get("links") {
            let links = each(links, "storage.links", lacks, |link, at| {
                Ok(node(link, &at, &["target", "hard"], lacks)?.into())
            })?;
            to.insert("links".into(), links);
        }
        out.insert("storage".into(), to.into());
    }

    if let Some(systemd) = top.get("systemd") {
        let systemd = object(systemd, "systemd", lacks)?;
        only(systemd, &["units"], "systemd", lacks)?;
        if let Some(units) = systemd.get("units") {
            each(units, "systemd.units", lacks, |unit, at| {
                only(object(unit, &at, lacks)?, UNIT, &at, lacks)?;
                if let Some(dropins) = unit.get("dropins") {
                    each(dropins, &format!("{at}.dropins"), lacks, |d, at| {
                        only(object(d, &at, lacks)?, DROPIN, &at, lacks)?;
                        Ok(Value::Null)
                    })?;
                }
                Ok(Value::Null)
            })?;
        }
        out.insert("systemd".into(), Value::Object(systemd.clone()));
    }

    if let Some(passwd) = top.get("passwd") {
        let passwd = object(passwd, "passwd", lacks)?;
        only(passwd, &["users", "groups"], "passwd", lacks)?;
        for (key, fields) in [("users", USER), ("groups", GROUP)] {
            if let Some(list) = passwd.get(key) {
                each(list, &format!("passwd.{key}"), lacks, |item, at| {
                    only(object(item, &at, lacks)?, fields, &at, lacks)?;
                    Ok(Value::Null)
                })?;
            }
        }
        out.insert("passwd".into(), Value::Object(passwd.clone()));
    }
    Ok(out.into())
}

/// A 2.x config that [`down`] wrote, as 3.x JSON (version 3.3.0). What [`down`] never writes,
/// such as a node on a filesystem other than the root, is refused.
pub(crate) fn up(config: &Value) -> Result<Value, IgnitionError> {
    let invalid = |what: String| {
        IgnitionError::Invalid(format!(
            "this spec 2.x config has {what}, which kindling cannot read back; only configs \
             kindling wrote can be"
        ))
    };
    let mut config = config.clone();
    config["ignition"]["version"] = "3.3.0".into();
    if let Some(references) = config["ignition"]
        .get_mut("config")
        .and_then(Value::as_object_mut)
        && let Some(append) = references.remove("append")
    {
        references.insert("merge".into(), append);
    }
    if let Some(storage) = config.get_mut("storage").and_then(Value::as_object_mut) {
        for (kind, nodes) in storage.iter_mut() {
            if kind == "disks" {
                // Devices, not paths on a filesystem.
                continue;
            }
            for node in nodes.as_array_mut().into_iter().flatten() {
                let Some(node) = node.as_object_mut() else {
                    continue;
                };
                match node.remove("filesystem") {
                    Some(fs) if fs == "root" => {}
                    other => {
                        let path = node.get("path").and_then(Value::as_str).unwrap_or("?");
                        return Err(invalid(format!(
                            "{kind} entry {path} on filesystem {}",
                            other.unwrap_or(Value::Null)
                        )));
                    }
                }
                if kind == "files"
                    && node.get("contents") == Some(&serde_json::json!({ "source": "data:," }))
                {
                    node.remove("contents");
                }
            }
        }
    }
    Ok(config)
}

fn object<'v>(
    value: &'v Value,
    at: &str,
    lacks: impl Fn(String) -> IgnitionError,
) -> Result<&'v Map<String, Value>, IgnitionError> {
    value
        .as_object()
        .ok_or_else(|| lacks(format!("{at} (not an object)")))
}

/// Refuses a key of `map` that is not in `allowed`, naming it by its path.
fn only(
    map: &Map<String, Value>,
    allowed: &[&str],
    at: &str,
    lacks: impl Fn(String) -> IgnitionError,
) -> Result<(), IgnitionError> {
    match map.keys().find(|k| !allowed.contains(&k.as_str())) {
        None => Ok(()),
        Some(key) if at.is_empty() => Err(lacks(key.clone())),
        Some(key) => Err(lacks(format!("{at}.{key}"))),
    }
}

/// Each item of the list `value`, translated by `f(item, its path)`.
fn each(
    value: &Value,
    at: &str,
    lacks: impl Fn(String) -> IgnitionError,
    mut f: impl FnMut(&Value, String) -> Result<Value, IgnitionError>,
) -> Result<Value, IgnitionError> {
    let items = value
        .as_array()
        .ok_or_else(|| lacks(format!("{at} (not a list)")))?;
    let out = items
        .iter()
        .enumerate()
        .map(|(i, item)| f(item, format!("{at}[{i}]")))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(out.into())
}

/// A source with its verification; 2.x has the same shape without headers or compression.
fn resource(
    value: &Value,
    at: &str,
    lacks: impl Fn(String) -> IgnitionError,
) -> Result<Value, IgnitionError> {
    only(object(value, at, &lacks)?, RESOURCE, at, &lacks)?;
    Ok(value.clone())
}

/// A file, directory or link with its `extra` fields, on the root filesystem.
fn node(
    value: &Value,
    at: &str,
    extra: &[&str],
    lacks: impl Fn(String) -> IgnitionError,
) -> Result<Map<String, Value>, IgnitionError> {
    let map = object(value, at, &lacks)?;
    let allowed: Vec<&str> = NODE.iter().chain(extra).copied().collect();
    only(map, &allowed, at, &lacks)?;
    let mut node = map.clone();
    node.remove("contents");
    node.insert("filesystem".into(), "root".into());
    Ok(node)
}
