//! Decoding `profiles/*.json` and `groups/*.json` with errors that name the field.
//!
//! serde_json reports the line and column of a problem but not the field it was in, so these
//! deserializers are written by hand: every value is read through [`value`], which prefixes its
//! error with "field `a.b`", and serde_json then appends the position. Unknown and duplicate
//! fields are errors, with a suggestion for near-misses.

use std::collections::BTreeMap;
use std::fmt;

use kindling_config::MacAddr;
use serde::de::{self, Deserialize, DeserializeSeed, Deserializer, MapAccess, Visitor};

/// A group file as written, before it is checked against the rest of the directory.
#[derive(Debug, Default)]
pub(crate) struct GroupFile {
    pub id: Option<String>,
    pub name: Option<String>,
    pub profile: Option<String>,
    pub selector: BTreeMap<String, String>,
    pub metadata: serde_json::Map<String, serde_json::Value>,
}

/// A profile file as written.
#[derive(Debug, Default)]
pub(crate) struct ProfileFile {
    pub id: Option<String>,
    pub name: Option<String>,
    pub ignition_id: Option<String>,
    pub cloud_id: Option<String>,
    pub generic_id: Option<String>,
    pub boot: Option<BootFile>,
}

/// A profile's `boot` object as written.
#[derive(Debug, Default)]
pub(crate) struct BootFile {
    pub kernel: Option<String>,
    pub initrd: Vec<String>,
    pub args: Vec<String>,
}

const GROUP_FIELDS: &[&str] = &["id", "name", "profile", "selector", "metadata"];
const PROFILE_FIELDS: &[&str] = &[
    "id",
    "name",
    "ignition_id",
    "cloud_id",
    "generic_id",
    "boot",
];
const BOOT_FIELDS: &[&str] = &["kernel", "initrd", "args"];

/// Separates a message from the position of its innermost error, which serde_json would
/// otherwise replace with the (less precise) position where the error surfaced.
const POSITION_MARK: char = '\u{1f}';

/// Splits " at line L column C", which serde_json appends, off `message`.
fn split_position(message: &str) -> (&str, Option<(usize, usize)>) {
    let Some(at) = message.rfind(" at line ") else {
        return (message, None);
    };
    let tail = &message[at + " at line ".len()..];
    let Some((line, column)) = tail.split_once(" column ") else {
        return (message, None);
    };
    match (line.parse(), column.parse()) {
        (Ok(line), Ok(column)) => (&message[..at], Some((line, column))),
        _ => (message, None),
    }
}

/// The line, column and message of a serde_json error from these deserializers: the position
/// is that of the innermost value at fault, and the message names its field.
pub(crate) fn locate(err: &serde_json::Error) -> (usize, usize, String) {
    let text = err.to_string();
    let (message, _) = split_position(&text);
    if let Some((message, position)) = message.split_once(POSITION_MARK)
        && let Some((line, column)) = position.split_once(':')
        && let (Ok(line), Ok(column)) = (line.parse(), column.parse())
    {
        return (line, column, message.to_string());
    }
    (err.line(), err.column(), message.to_string())
}

/// Prefixes `message` with the field path `path`, merging with a path the message already has
/// ("field `kernel`: …" inside `boot` becomes "field `boot.kernel`: …"), and keeps the
/// innermost position behind [`POSITION_MARK`].
fn at_field(path: &str, message: &str) -> String {
    let (message, position) = split_position(message);
    let message = match position {
        Some((line, column)) if !message.contains(POSITION_MARK) => {
            format!("{message}{POSITION_MARK}{line}:{column}")
        }
        _ => message.to_string(),
    };
    if let Some(rest) = message.strip_prefix("field `")
        && let Some((inner, tail)) = rest.split_once('`')
    {
        return format!("field `{path}.{inner}`{tail}");
    }
    format!("field `{path}`: {message}")
}

/// Reads the next map value, naming `path` in its error.
fn value<'de, A, T>(map: &mut A, path: &str) -> Result<T, A::Error>
where
    A: MapAccess<'de>,
    T: Deserialize<'de>,
{
    map.next_value::<T>()
        .map_err(|e| de::Error::custom(at_field(path, &e.to_string())))
}

/// Reads the next map value with `seed`, naming `path` in its error.
fn value_seed<'de, A, S>(map: &mut A, path: &str, seed: S) -> Result<S::Value, A::Error>
where
    A: MapAccess<'de>,
    S: DeserializeSeed<'de>,
{
    map.next_value_seed(seed)
        .map_err(|e| de::Error::custom(at_field(path, &e.to_string())))
}

/// Reads an optional string: JSON `null` and `""` both mean absent, as they do for matchbox's
/// protobuf-backed fields.
fn optional_string<'de, A: MapAccess<'de>>(
    map: &mut A,
    path: &str,
) -> Result<Option<String>, A::Error> {
    let s: Option<String> = value(map, path)?;
    Ok(s.filter(|s| !s.is_empty()))
}

fn string_list<'de, A: MapAccess<'de>>(map: &mut A, path: &str) -> Result<Vec<String>, A::Error> {
    let list: Option<Vec<String>> = value(map, path)?;
    Ok(list.unwrap_or_default())
}

/// Refuses the value of field `key` with `message`. Going through the value, rather than
/// returning from the map, makes serde_json report the position of that value.
fn refuse<'de, A: MapAccess<'de>, T>(
    map: &mut A,
    key: &str,
    message: String,
) -> Result<T, A::Error> {
    map.next_value_seed(Refuse(format!("field `{key}`: {message}")))?;
    Err(de::Error::custom(format!("field `{key}`: {message}")))
}

fn refuse_unknown<'de, A: MapAccess<'de>, T>(
    map: &mut A,
    what: &str,
    key: &str,
    known: &[&str],
) -> Result<T, A::Error> {
    let near = kindling_config::closest(key, known).or_else(|| {
        known
            .iter()
            .copied()
            .find(|k| k.starts_with(key) || key.starts_with(k))
    });
    let hint = match near {
        Some(near) => format!("; did you mean `{near}`?"),
        None => String::new(),
    };
    let message = format!(
        "not a {what} field (expected one of {}){hint}",
        known.join(", ")
    );
    refuse(map, key, message)
}

/// Refuses `key` the second time it is seen.
fn first_time<'de, A: MapAccess<'de>>(
    map: &mut A,
    seen: &mut Vec<String>,
    key: &str,
) -> Result<(), A::Error> {
    if seen.iter().any(|s| s == key) {
        return refuse(map, key, "given twice".into());
    }
    seen.push(key.to_string());
    Ok(())
}

/// A seed that fails on whatever value it is given.
struct Refuse(String);

impl<'de> DeserializeSeed<'de> for Refuse {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Refuse {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Err(E::custom(self.0))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Err(E::custom(self.0))
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Err(E::custom(self.0))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Err(E::custom(self.0))
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        Err(E::custom(self.0))
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Err(E::custom(self.0))
    }
    fn visit_seq<A: de::SeqAccess<'de>>(self, _: A) -> Result<(), A::Error> {
        Err(de::Error::custom(self.0))
    }
    fn visit_map<A: MapAccess<'de>>(self, _: A) -> Result<(), A::Error> {
        Err(de::Error::custom(self.0))
    }
}

impl<'de> Deserialize<'de> for GroupFile {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<GroupFile, D::Error> {
        struct GroupVisitor;
        impl<'de> Visitor<'de> for GroupVisitor {
            type Value = GroupFile;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(
                    "a matchbox group: an object with id, name, profile, selector and metadata",
                )
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<GroupFile, A::Error> {
                let mut group = GroupFile::default();
                let mut seen = Vec::new();
                while let Some(key) = map.next_key::<String>()? {
                    first_time(&mut map, &mut seen, &key)?;
                    match key.as_str() {
                        "id" => group.id = optional_string(&mut map, "id")?,
                        "name" => group.name = optional_string(&mut map, "name")?,
                        "profile" => group.profile = optional_string(&mut map, "profile")?,
                        "selector" => {
                            let selector: Option<Selector> = value(&mut map, "selector")?;
                            group.selector = selector.map(|s| s.0).unwrap_or_default();
                        }
                        "metadata" => {
                            let metadata: Metadata = value(&mut map, "metadata")?;
                            group.metadata = metadata.0;
                        }
                        other => return refuse_unknown(&mut map, "group", other, GROUP_FIELDS),
                    }
                }
                Ok(group)
            }
        }
        deserializer.deserialize_map(GroupVisitor)
    }
}

/// A group's `metadata`: an object, or null for none.
struct Metadata(serde_json::Map<String, serde_json::Value>);

impl<'de> Deserialize<'de> for Metadata {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Metadata, D::Error> {
        struct MetadataVisitor;
        impl<'de> Visitor<'de> for MetadataVisitor {
            type Value = Metadata;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object of keys and values")
            }
            fn visit_unit<E: de::Error>(self) -> Result<Metadata, E> {
                Ok(Metadata(serde_json::Map::new()))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Metadata, A::Error> {
                serde_json::Map::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(Metadata)
            }
        }
        deserializer.deserialize_any(MetadataVisitor)
    }
}

/// A group's `selector`: string values, `mac` normalised (matchbox's `Group.Normalize`).
struct Selector(BTreeMap<String, String>);

impl<'de> Deserialize<'de> for Selector {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Selector, D::Error> {
        struct SelectorVisitor;
        impl<'de> Visitor<'de> for SelectorVisitor {
            type Value = Selector;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object of label names and string values")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Selector, A::Error> {
                let mut selector = BTreeMap::new();
                while let Some(key) = map.next_key::<String>()? {
                    if selector.contains_key(&key) {
                        return refuse(&mut map, &key, "given twice".into());
                    }
                    let seed = SelectorValue {
                        mac: key.eq_ignore_ascii_case("mac"),
                    };
                    let value = value_seed(&mut map, &key, seed)?;
                    selector.insert(key, value);
                }
                Ok(Selector(selector))
            }
        }
        deserializer.deserialize_map(SelectorVisitor)
    }
}

/// One selector value: a string, which for `mac` must be a MAC address and is normalised.
struct SelectorValue {
    mac: bool,
}

impl<'de> DeserializeSeed<'de> for SelectorValue {
    type Value = String;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<String, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for SelectorValue {
    type Value = String;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.mac {
            "a MAC address string"
        } else {
            "a string"
        })
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
        if !self.mac {
            return Ok(v.to_string());
        }
        v.parse::<MacAddr>()
            .map(|mac| mac.to_string())
            .map_err(E::custom)
    }
}

impl<'de> Deserialize<'de> for ProfileFile {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<ProfileFile, D::Error> {
        struct ProfileVisitor;
        impl<'de> Visitor<'de> for ProfileVisitor {
            type Value = ProfileFile;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(
                    "a matchbox profile: an object with id, name, boot, ignition_id and generic_id",
                )
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ProfileFile, A::Error> {
                let mut profile = ProfileFile::default();
                let mut seen = Vec::new();
                while let Some(key) = map.next_key::<String>()? {
                    first_time(&mut map, &mut seen, &key)?;
                    match key.as_str() {
                        "id" => profile.id = optional_string(&mut map, "id")?,
                        "name" => profile.name = optional_string(&mut map, "name")?,
                        "ignition_id" => {
                            profile.ignition_id = optional_string(&mut map, "ignition_id")?
                        }
                        "cloud_id" => profile.cloud_id = optional_string(&mut map, "cloud_id")?,
                        "generic_id" => {
                            profile.generic_id = optional_string(&mut map, "generic_id")?
                        }
                        "boot" => profile.boot = value(&mut map, "boot")?,
                        other => return refuse_unknown(&mut map, "profile", other, PROFILE_FIELDS),
                    }
                }
                Ok(profile)
            }
        }
        deserializer.deserialize_map(ProfileVisitor)
    }
}

impl<'de> Deserialize<'de> for BootFile {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<BootFile, D::Error> {
        struct BootVisitor;
        impl<'de> Visitor<'de> for BootVisitor {
            type Value = BootFile;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object with kernel, initrd and args")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<BootFile, A::Error> {
                let mut boot = BootFile::default();
                let mut seen = Vec::new();
                while let Some(key) = map.next_key::<String>()? {
                    first_time(&mut map, &mut seen, &key)?;
                    match key.as_str() {
                        "kernel" => boot.kernel = optional_string(&mut map, "kernel")?,
                        "initrd" => boot.initrd = string_list(&mut map, "initrd")?,
                        "args" => boot.args = string_list(&mut map, "args")?,
                        other => return refuse_unknown(&mut map, "boot", other, BOOT_FIELDS),
                    }
                }
                Ok(boot)
            }
        }
        deserializer.deserialize_map(BootVisitor)
    }
}

/// "a string", "a list", … for messages.
pub(crate) fn json_kind(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "a list",
        serde_json::Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn located<T: for<'de> Deserialize<'de>>(json: &str) -> Result<T, String> {
        serde_json::from_str(json).map_err(|e| {
            let (line, column, message) = locate(&e);
            format!("{line}:{column}: {message}")
        })
    }

    fn group(json: &str) -> Result<GroupFile, String> {
        located(json)
    }

    fn profile(json: &str) -> Result<ProfileFile, String> {
        located(json)
    }

    #[test]
    fn a_group_reads_as_matchbox_writes_it() {
        let g = group(
            r#"{"id":"node1","name":"test group","profile":"g1h2i3j4",
               "selector":{"uuid":"a1b2c3d4","mac":"52-DA-00-89-D8-10"},
               "metadata":{"some-key":"some-val"}}"#,
        )
        .unwrap();
        assert_eq!(g.id.as_deref(), Some("node1"));
        assert_eq!(g.selector["mac"], "52:da:00:89:d8:10");
        assert_eq!(g.selector["uuid"], "a1b2c3d4");
        assert_eq!(g.metadata["some-key"], "some-val");
    }

    #[test]
    fn errors_name_the_field_at_the_value_at_fault() {
        assert_eq!(
            group("{\n  \"profile\": 3\n}").unwrap_err(),
            "2:14: field `profile`: invalid type: integer `3`, expected a string"
        );
        assert_eq!(
            profile("{\"id\":\"x\",\n\"boot\":{\"kernel\":\"k\",\n\"args\":[\"a\",7]}}")
                .unwrap_err(),
            "3:13: field `boot.args`: invalid type: integer `7`, expected a string"
        );
        assert_eq!(
            group("{\"selector\": {\n  \"os\": true}}").unwrap_err(),
            "2:12: field `selector.os`: invalid type: boolean `true`, expected a string"
        );
    }

    #[test]
    fn unknown_fields_are_refused_with_a_suggestion() {
        assert_eq!(
            profile(r#"{"id":"x","ignition":"a.ign"}"#).unwrap_err(),
            "1:28: field `ignition`: not a profile field (expected one of id, name, ignition_id, cloud_id, generic_id, boot); did you mean `ignition_id`?"
        );
        let err =
            profile("{\"id\":\"x\",\"boot\":{\"kernel\":\"k\",\n\"cmdline\":{}}}").unwrap_err();
        assert!(
            err.starts_with("2:12: field `boot.cmdline`: not a boot field"),
            "{err}"
        );
        let err = group(r#"{"id":"x","selectors":{}}"#).unwrap_err();
        assert!(err.ends_with("did you mean `selector`?"), "{err}");
    }

    #[test]
    fn bad_selector_values_are_refused() {
        assert_eq!(
            group("{\"selector\":\n{\"mac\":\"not-a-mac\"}}").unwrap_err(),
            "2:18: field `selector.mac`: 'not-a-mac' is not a MAC address (expected six hex pairs such as 52:54:00:12:34:56, 52-54-00-12-34-56 or 5254.0012.3456)"
        );
        let err = group(r#"{"metadata":[1]}"#).unwrap_err();
        assert!(
            err.contains(
                "field `metadata`: invalid type: sequence, expected an object of keys and values"
            ),
            "{err}"
        );
        assert_eq!(
            group(r#"{"id":"a","id":"b"}"#).unwrap_err(),
            "1:18: field `id`: given twice"
        );
        let err = group(r#"{"selector":{"os":"a","os":"b"}}"#).unwrap_err();
        assert!(err.ends_with("field `selector.os`: given twice"), "{err}");
    }

    #[test]
    fn null_and_empty_strings_are_absent() {
        let p = profile(r#"{"id":"x","cloud_id":"","generic_id":null,"boot":{"initrd":null}}"#)
            .unwrap();
        assert_eq!(p.cloud_id, None);
        assert_eq!(p.generic_id, None);
        assert!(p.boot.unwrap().initrd.is_empty());
        assert!(group(r#"{"metadata":null}"#).unwrap().metadata.is_empty());
    }

    #[test]
    fn positions_are_split_only_when_they_are_positions() {
        assert_eq!(split_position("x at line 3 column 4"), ("x", Some((3, 4))));
        assert_eq!(split_position("look at line 3"), ("look at line 3", None));
        assert_eq!(
            split_position("x at line a column 4"),
            ("x at line a column 4", None)
        );
    }
}
