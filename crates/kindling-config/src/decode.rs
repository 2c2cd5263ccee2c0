//! Helpers that turn YAML nodes into typed values, reporting each problem and carrying on.
//!
//! Every helper returns `None` after reporting an error, so callers build what they can and the
//! user sees every problem in one run. The cluster description is read with them, and so are
//! other files users write for kindling, such as Butane snippets (`kindling-ignition`).

use std::str::FromStr;

use crate::diagnostic::{FieldPath, Report};
use crate::yaml::{Key, Node, Value};

/// What to say about a mapping key that the schema does not know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnknownKeys<'a> {
    /// kindling's own files: a typo must not be ignored.
    Reject,
    /// OpenShift's files: fields kindling does not use are kept and named at info level. A key
    /// that is a near miss of a field this mapping reads (the same but for case, or two edits
    /// away) is a typo, unless it is one of OpenShift's own fields (`real`): it is refused with
    /// "did you mean", as openshift-install does since openshift/installer#10287.
    Note { real: &'a [&'a str] },
    /// Files in a subset of another tool's schema, such as Butane snippets. A key listed in
    /// `unsupported` is a real field of that schema that kindling does not read: it is refused
    /// with `message`, not called a typo. Any other key is refused as unknown. Both are placed
    /// at the key, and the hint names the supported fields.
    Subset {
        unsupported: &'a [&'a str],
        message: &'a str,
    },
}

/// Reads a mapping field by field, remembering which keys were taken.
pub struct MapReader<'n> {
    entries: &'n [(Key, Node)],
    taken: Vec<bool>,
    /// Every field asked for, present or not: the fields this mapping reads. Field names are
    /// literals, so this costs no allocation per mapping (an inventory has one per machine).
    asked: Vec<&'static str>,
    pub path: FieldPath,
}

impl<'n> MapReader<'n> {
    /// Starts reading `node` as a mapping. A null node reads as an empty mapping.
    pub fn new(node: &'n Node, path: FieldPath, r: &mut Report) -> Option<MapReader<'n>> {
        let entries: &[_] = match &node.value {
            Value::Map(entries) => entries,
            _ if node.is_null() => &[],
            _ => {
                r.error(
                    &path,
                    format!("expected a mapping of fields, found {}", node.kind()),
                    "write it as 'key: value' lines indented under the field",
                );
                return None;
            }
        };
        Some(MapReader {
            taken: vec![false; entries.len()],
            asked: Vec::new(),
            entries,
            path,
        })
    }

    /// Every entry, for mappings whose keys are data (labels), not fields.
    pub fn entries(&self) -> &'n [(Key, Node)] {
        self.entries
    }

    /// The value under `key`, if present and not null, with its path.
    pub fn take(&mut self, key: &'static str) -> Option<(&'n Node, FieldPath)> {
        self.ask(key);
        let i = self.entries.iter().position(|(k, _)| &*k.name == key)?;
        self.taken[i] = true;
        let node = &self.entries[i].1;
        (!node.is_null()).then(|| (node, self.path.key(key)))
    }

    /// Whether `key` is present, even with a null value; marks it taken.
    pub fn has(&mut self, key: &'static str) -> bool {
        self.ask(key);
        let found = self.entries.iter().position(|(k, _)| &*k.name == key);
        if let Some(i) = found {
            self.taken[i] = true;
        }
        found.is_some()
    }

    /// Reports a required field that is missing.
    pub fn require(
        &mut self,
        key: &'static str,
        r: &mut Report,
        hint: &str,
    ) -> Option<(&'n Node, FieldPath)> {
        let found = self.take(key);
        if found.is_some() {
            return found;
        }
        // A near miss is what the user meant: one error, at the near miss, that says both.
        let near = (0..self.entries.len())
            .find(|&i| !self.taken[i] && is_near_miss(&self.entries[i].0.name, key));
        match near {
            Some(i) => {
                self.taken[i] = true;
                let k = &self.entries[i].0;
                r.error_at(
                    k.pos,
                    &self.path.key(key),
                    format!("is required; found '{}' at line {}", k.name, k.pos.line),
                    &format!("rename '{}' to '{key}'", k.name),
                );
            }
            None => r.error(&self.path.key(key), "is required but missing", hint),
        }
        None
    }

    fn ask(&mut self, key: &'static str) {
        if !self.asked.contains(&key) {
            self.asked.push(key);
        }
    }

    /// Reports every key that was not taken, as `policy` says; `known` lists the fields this
    /// mapping reads, for "did you mean" hints. Returns the paths of keys kept as unused (only
    /// [`UnknownKeys::Note`] keeps any).
    pub fn finish(self, policy: UnknownKeys, known: &[&str], r: &mut Report) -> Vec<String> {
        let mut unused = Vec::new();
        let mut read: Vec<&str> = known.to_vec();
        for asked in &self.asked {
            if !read.contains(asked) {
                read.push(asked);
            }
        }
        for ((key, _), taken) in self.entries.iter().zip(&self.taken) {
            if *taken {
                continue;
            }
            let path = self.path.key(&key.name);
            let name = &*key.name;
            match policy {
                UnknownKeys::Reject => {
                    let hint = typo_hint(name, &read, "known fields here");
                    r.error(&path, format!("unknown field '{name}'"), &hint);
                }
                UnknownKeys::Note { real } => match read.iter().find(|k| is_near_miss(name, k)) {
                    Some(near) if !real.contains(&name) => r.error_at(
                        key.pos,
                        &path,
                        format!("unknown field '{name}'"),
                        &format!("did you mean '{near}'?"),
                    ),
                    _ => unused.push(path.to_string()),
                },
                UnknownKeys::Subset {
                    unsupported,
                    message,
                } if unsupported.contains(&name) => {
                    let hint = format!(
                        "remove it, or set it another way; supported here: {}",
                        field_list(&read)
                    );
                    r.error_at(key.pos, &path, message, &hint);
                }
                UnknownKeys::Subset { .. } => {
                    let hint = typo_hint(name, &read, "supported here");
                    let message = format!("unknown field '{name}', outside the supported subset");
                    r.error_at(key.pos, &path, message, &hint);
                }
            }
        }
        unused
    }
}

/// "did you mean" the nearest known name, or else `{label}: ` and every known name.
fn typo_hint(name: &str, known: &[&str], label: &str) -> String {
    match closest(name, known) {
        Some(near) => format!("did you mean '{near}'?"),
        None => format!("{label}: {}", field_list(known)),
    }
}

fn field_list(known: &[&str]) -> String {
    if known.is_empty() {
        "none".to_string()
    } else {
        known.join(", ")
    }
}

/// Whether `name` is `field` misspelt: the same but for case, or at most two edits away.
fn is_near_miss(name: &str, field: &str) -> bool {
    name != field && edit_distance(&name.to_ascii_lowercase(), &field.to_ascii_lowercase()) <= 2
}

/// The known name nearest to a misspelt one, if it is near enough to be a typo: within two
/// edits, or a quarter of a long name's length, ignoring case. For "did you mean" hints.
pub fn closest<'a>(name: &str, known: &[&'a str]) -> Option<&'a str> {
    let lower = name.to_ascii_lowercase();
    known
        .iter()
        .map(|k| (edit_distance(&lower, &k.to_ascii_lowercase()), *k))
        .filter(|(d, k)| *d <= 2.max(k.len() / 4))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

/// The text of a scalar. Numbers and booleans are taken as written.
pub fn string(node: &Node, path: &FieldPath, r: &mut Report) -> Option<String> {
    match &node.value {
        Value::Scalar { text, .. } => Some(text.to_string()),
        _ => {
            r.error(
                path,
                format!("expected a string, found {}", node.kind()),
                "write a single value on the same line as the key",
            );
            None
        }
    }
}

/// A scalar parsed with `FromStr`; `what` names the expected kind of value in the error.
pub fn parsed<T: FromStr>(
    node: &Node,
    path: &FieldPath,
    r: &mut Report,
    what: &str,
    hint: &str,
) -> Option<T> {
    let text = string(node, path, r)?;
    match text.trim().parse() {
        Ok(value) => Some(value),
        Err(_) => {
            r.error(path, format!("'{text}' is not {what}"), hint);
            None
        }
    }
}

/// A plain (unquoted) non-negative integer.
pub fn count(node: &Node, path: &FieldPath, r: &mut Report) -> Option<u32> {
    match &node.value {
        Value::Scalar { text, plain: true } if text.parse::<u32>().is_ok() => text.parse().ok(),
        _ => {
            r.error(
                path,
                format!("expected a whole number, found {}", describe(node)),
                "write a number such as 3, without quotes",
            );
            None
        }
    }
}

/// A plain `true` or `false`.
pub fn boolean(node: &Node, path: &FieldPath, r: &mut Report) -> Option<bool> {
    match &node.value {
        Value::Scalar { text, plain: true } if matches!(&**text, "true" | "false") => {
            Some(&**text == "true")
        }
        _ => {
            r.error(
                path,
                format!("expected true or false, found {}", describe(node)),
                "write true or false, without quotes",
            );
            None
        }
    }
}

/// The items of a list; null is an empty list.
pub fn list<'n>(node: &'n Node, path: &FieldPath, r: &mut Report) -> Option<&'n [Node]> {
    match &node.value {
        Value::Seq(items) => Some(items),
        _ if node.is_null() => Some(&[]),
        _ => {
            r.error(
                path,
                format!("expected a list, found {}", describe(node)),
                "write one '- item' per line, or [a, b]",
            );
            None
        }
    }
}

/// A list of scalars, each parsed with `FromStr`.
pub fn parsed_list<T: FromStr>(
    node: &Node,
    path: &FieldPath,
    r: &mut Report,
    what: &str,
    hint: &str,
) -> Vec<T> {
    let Some(items) = list(node, path, r) else {
        return Vec::new();
    };
    items
        .iter()
        .enumerate()
        .filter_map(|(i, item)| parsed(item, &path.index(i), r, what, hint))
        .collect()
}

/// How a node reads in a message: a scalar as its quoted text, anything else by its kind.
pub fn describe(node: &Node) -> String {
    match &node.value {
        Value::Scalar { text, .. } if !node.is_null() => format!("'{text}'"),
        _ => node.kind().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typos_get_a_suggestion() {
        let known = ["installDisk", "ignitionVersion", "serverURL"];
        assert_eq!(closest("instalDisk", &known), Some("installDisk"));
        assert_eq!(closest("serverUrl", &known), Some("serverURL"));
        assert_eq!(closest("color", &known), None);
    }

    #[test]
    fn a_subset_tells_unsupported_fields_from_typos_at_the_key() {
        let root = crate::yaml::parse("name: a\nnme: b\nshell:\n  - x\n").unwrap();
        let mut findings = Vec::new();
        let mut r = Report::new("f.bu", &root, &mut findings);
        let mut m = MapReader::new(&root, FieldPath::root(), &mut r).unwrap();
        m.take("name");
        let policy = UnknownKeys::Subset {
            unsupported: &["shell"],
            message: "is outside the subset",
        };
        assert!(m.finish(policy, &["name", "ssh_keys"], &mut r).is_empty());
        let lines: Vec<String> = findings.iter().map(ToString::to_string).collect();
        assert_eq!(
            lines,
            [
                "f.bu:2:1: nme: unknown field 'nme', outside the supported subset — did you mean 'name'?",
                "f.bu:3:1: shell: is outside the subset — remove it, or set it another way; supported here: name, ssh_keys",
            ]
        );
    }
}
