//! Turning a `v3_3::Config` into JSON for a target spec, and refusing what that spec (or
//! Ignition's own validation) would not accept.
//!
//! Two checks guard every render. The structural one catches what `ignition-validate` would
//! reject but serde cannot see (relative paths, unit names without a unit type, malformed
//! hashes) and the features that changed meaning between specs (setuid bits, sha256). The
//! second parses the output back with `ignition-config` for the target version: any key that
//! spec does not know is a feature it lacks, which an older Ignition would silently ignore.

use ignition_config::v3_3;
use kindling_config::inventory::IgnitionVersion;
use serde_json::Value;

use crate::{IgnitionError, spec2};

/// The unit types systemd knows; Ignition refuses any other extension.
pub(crate) const UNIT_TYPES: &[&str] = &[
    "service",
    "socket",
    "device",
    "mount",
    "automount",
    "swap",
    "target",
    "path",
    "timer",
    "snapshot",
    "slice",
    "scope",
];

/// URL schemes Ignition fetches from (`arn:` aside, which needs spec 3.4 and AWS).
pub(crate) const SCHEMES: &[&str] = &["http", "https", "tftp", "s3", "gs", "data"];

pub(crate) fn render(
    config: &v3_3::Config,
    version: IgnitionVersion,
) -> Result<Vec<u8>, IgnitionError> {
    check(config, version)?;
    let mut value = serde_json::to_value(config)?;
    // The generated types write absent optional fields as `null`; Ignition reads null and
    // absent alike, and people read the file more easily without them.
    strip_nulls(&mut value);
    if version.major() == 2 {
        // No crate reads 2.x back; the translation refuses every field it does not know, and
        // the tests give its output to Ignition 0.35 itself.
        let mut json = serde_json::to_vec(&spec2::down(&value, version)?)?;
        json.push(b'\n');
        return Ok(json);
    }
    value["ignition"]["version"] = Value::from(version.as_str());
    let mut json = serde_json::to_vec(&value)?;
    let (_, warnings) = ignition_config::Config::parse_slice(&json)
        .map_err(|source| IgnitionError::Unparsable { version, source })?;
    if let Some(warning) = warnings.first() {
        let key = match warning {
            ignition_config::Warning::UnusedKey(key) => key.clone(),
            other => other.to_string(),
        };
        return Err(IgnitionError::UnknownField { version, key });
    }
    json.push(b'\n');
    Ok(json)
}

pub(crate) fn strip_nulls(value: &mut Value) {
    match value {
        Value::Object(map) => {
            map.retain(|_, v| !v.is_null());
            map.values_mut().for_each(strip_nulls);
        }
        Value::Array(items) => items.iter_mut().for_each(strip_nulls),
        _ => {}
    }
}

fn check(config: &v3_3::Config, version: IgnitionVersion) -> Result<(), IgnitionError> {
    let ignition = &config.ignition;
    let merges = ignition
        .config
        .iter()
        .flat_map(|c| c.merge.iter().flatten());
    for merge in merges {
        check_resource(merge, "the merged config", version)?;
    }
    let cas = ignition
        .security
        .iter()
        .flat_map(|s| s.tls.iter())
        .flat_map(|t| t.certificate_authorities.iter().flatten());
    for ca in cas {
        check_resource(ca, "a certificate authority", version)?;
    }

    let storage = config.storage.clone().unwrap_or_default();
    for file in storage.files.iter().flatten() {
        check_path(&file.path, "file")?;
        check_mode(file.mode, &file.path, version)?;
        if let Some(contents) = &file.contents {
            check_resource(contents, &format!("file {}", file.path), version)?;
        }
    }
    for disk in storage.disks.iter().flatten() {
        check_path(&disk.device, "disk")?;
    }
    for dir in storage.directories.iter().flatten() {
        check_path(&dir.path, "directory")?;
        check_mode(dir.mode, &dir.path, version)?;
    }
    for link in storage.links.iter().flatten() {
        check_path(&link.path, "link")?;
        if link.target.as_deref().unwrap_or_default().is_empty() {
            return Err(IgnitionError::Invalid(format!(
                "link {} has no target",
                link.path
            )));
        }
    }

    let units = config.systemd.iter().flat_map(|s| s.units.iter().flatten());
    for unit in units {
        check_unit_name(&unit.name)?;
        for dropin in unit.dropins.iter().flatten() {
            if !dropin.name.ends_with(".conf") || dropin.name.contains('/') {
                return Err(IgnitionError::Invalid(format!(
                    "drop-in '{}' of unit {} must be a file name ending in .conf",
                    dropin.name, unit.name
                )));
            }
        }
    }

    let users = config.passwd.iter().flat_map(|p| p.users.iter().flatten());
    for user in users {
        if user.name.is_empty() {
            return Err(IgnitionError::Invalid("a user has an empty name".into()));
        }
    }
    Ok(())
}

fn check_path(path: &str, kind: &str) -> Result<(), IgnitionError> {
    if path.starts_with('/') {
        Ok(())
    } else {
        Err(IgnitionError::Invalid(format!(
            "{kind} path '{path}' is not absolute"
        )))
    }
}

fn check_mode(
    mode: Option<i64>,
    path: &str,
    version: IgnitionVersion,
) -> Result<(), IgnitionError> {
    let Some(mode) = mode else { return Ok(()) };
    if !(0..=0o7777).contains(&mode) {
        return Err(IgnitionError::Invalid(format!(
            "mode {mode:o} of {path} is not a permission mode (at most 7777 in octal)"
        )));
    }
    if mode & 0o7000 != 0 && version < IgnitionVersion::V3_4 {
        return Err(IgnitionError::Unsupported {
            version,
            feature: format!("the setuid, setgid or sticky bit (mode {mode:04o} of {path})"),
            needs: IgnitionVersion::V3_4,
        });
    }
    Ok(())
}

/// Checks what the resource's source and hash mean in `version`.
fn check_resource(
    resource: &v3_3::Resource,
    what: &str,
    version: IgnitionVersion,
) -> Result<(), IgnitionError> {
    let source = resource.source.as_deref().unwrap_or_default();
    let scheme = source.split_once(':').map(|(scheme, _)| scheme);
    if !scheme.is_some_and(|s| SCHEMES.contains(&s)) {
        return Err(IgnitionError::Invalid(format!(
            "the source of {what} ('{source}') is not a URL Ignition can fetch ({})",
            SCHEMES.join(", ")
        )));
    }
    if resource
        .http_headers
        .as_ref()
        .is_some_and(|h| !h.is_empty())
        && version < IgnitionVersion::V3_1
    {
        return Err(IgnitionError::Unsupported {
            version,
            feature: format!("HTTP headers for fetching {what}"),
            needs: IgnitionVersion::V3_1,
        });
    }
    let hash = resource
        .verification
        .as_ref()
        .and_then(|v| v.hash.as_deref());
    if let Some(hash) = hash {
        let (function, hex) = hash.split_once('-').unwrap_or(("", hash));
        let digits = match function {
            "sha512" => 128,
            "sha256" => 64,
            _ => 0,
        };
        if digits == 0 || hex.len() != digits || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(IgnitionError::Invalid(format!(
                "the hash of {what} ('{hash}') is not sha512-<128 hex digits> or sha256-<64 hex digits>"
            )));
        }
        if function == "sha256" && version < IgnitionVersion::V3_2 {
            return Err(IgnitionError::Unsupported {
                version,
                feature: format!("a sha256 hash for {what}"),
                needs: IgnitionVersion::V3_2,
            });
        }
    }
    Ok(())
}

fn check_unit_name(name: &str) -> Result<(), IgnitionError> {
    if is_unit_name(name) {
        Ok(())
    } else {
        Err(IgnitionError::Invalid(format!(
            "unit name '{name}' does not end in a systemd unit type (.{})",
            UNIT_TYPES.join(", .")
        )))
    }
}

/// Ignition's rule: a file name ending in one of systemd's unit types.
pub(crate) fn is_unit_name(name: &str) -> bool {
    name.rsplit_once('.').is_some_and(|(stem, ext)| {
        !stem.is_empty() && !name.contains('/') && UNIT_TYPES.contains(&ext)
    })
}
