//! Reading a positioned YAML tree field by field, collecting every problem as a [`Diagnostic`].
//!
//! kindling-config has the same helpers for its own files; these differ in what an unknown key
//! means. A Butane field outside kindling's subset is real Butane, so the message says it is
//! not supported here rather than calling it a typo.

use kindling_config::diagnostic::{Diagnostic, FieldPath, Severity};
use kindling_config::yaml::{Key, Node, Pos, Value};

/// The problems found in one file.
pub(crate) struct Problems<'a> {
    pub file: &'a str,
    pub root: &'a Node,
    pub list: Vec<Diagnostic>,
}

impl Problems<'_> {
    /// A problem with the field at `path`, placed where that field is written.
    pub fn error(&mut self, path: &FieldPath, message: impl Into<String>, hint: &str) {
        let pos = path.locate(self.root);
        self.error_at(pos, path, message, hint);
    }

    pub fn error_at(&mut self, pos: Pos, path: &FieldPath, message: impl Into<String>, hint: &str) {
        self.list.push(Diagnostic {
            severity: Severity::Error,
            file: self.file.to_string(),
            pos,
            path: path.clone(),
            message: message.into(),
            hint: (!hint.is_empty()).then(|| hint.to_string()),
        });
    }
}

/// A mapping read key by key; whatever was not taken is reported by [`Fields::finish`].
pub(crate) struct Fields<'n> {
    entries: &'n [(Key, Node)],
    taken: Vec<bool>,
    pub path: FieldPath,
}

impl<'n> Fields<'n> {
    /// Starts reading `node` as a mapping; null reads as an empty one.
    pub fn new(node: &'n Node, path: FieldPath, p: &mut Problems) -> Option<Fields<'n>> {
        let entries: &[_] = match &node.value {
            Value::Map(entries) => entries,
            _ if node.is_null() => &[],
            _ => {
                p.error(
                    &path,
                    format!("expected a mapping of fields, found {}", node.kind()),
                    "write it as 'key: value' lines indented under the field",
                );
                return None;
            }
        };
        Some(Fields {
            taken: vec![false; entries.len()],
            entries,
            path,
        })
    }

    /// The value under `key`, unless absent or null, with its path.
    pub fn take(&mut self, key: &str) -> Option<(&'n Node, FieldPath)> {
        let i = self.entries.iter().position(|(k, _)| k.name == key)?;
        self.taken[i] = true;
        let node = &self.entries[i].1;
        (!node.is_null()).then(|| (node, self.path.key(key)))
    }

    /// Like [`Fields::take`], reporting the field as missing when it is.
    pub fn require(
        &mut self,
        key: &str,
        p: &mut Problems,
        hint: &str,
    ) -> Option<(&'n Node, FieldPath)> {
        let found = self.take(key);
        if found.is_none() {
            p.error(&self.path.key(key), "is required but missing", hint);
        }
        found
    }

    /// Reports each key not taken: a Butane field listed in `elsewhere` is outside kindling's
    /// subset; anything else is unknown, with the nearest `supported` name as a suggestion.
    pub fn finish(self, supported: &[&str], elsewhere: &[&str], p: &mut Problems) {
        for ((key, _), taken) in self.entries.iter().zip(&self.taken) {
            if *taken {
                continue;
            }
            let path = self.path.key(&key.name);
            let supported_list = if supported.is_empty() {
                "none".to_string()
            } else {
                supported.join(", ")
            };
            if elsewhere.contains(&key.name.as_str()) {
                p.error_at(
                    key.pos,
                    &path,
                    "is a Butane field outside the subset kindling supports in snippets",
                    &format!("remove it, or set it another way; supported here: {supported_list}"),
                );
            } else {
                let hint = match kindling_config::closest(&key.name, supported) {
                    Some(near) => format!("did you mean '{near}'?"),
                    None => format!("supported here: {supported_list}"),
                };
                p.error_at(
                    key.pos,
                    &path,
                    format!("unknown field '{}', outside the supported subset", key.name),
                    &hint,
                );
            }
        }
    }
}

/// The text of a scalar; quoted or not, since Butane strings may be written either way.
pub(crate) fn string(node: &Node, path: &FieldPath, p: &mut Problems) -> Option<String> {
    match &node.value {
        Value::Scalar { text, .. } => Some(text.clone()),
        _ => {
            p.error(
                path,
                format!("expected text, found {}", node.kind()),
                "write a single value on the same line as the key",
            );
            None
        }
    }
}

/// A plain `true` or `false`.
pub(crate) fn boolean(node: &Node, path: &FieldPath, p: &mut Problems) -> Option<bool> {
    match &node.value {
        Value::Scalar { text, plain: true } if text == "true" || text == "false" => {
            Some(text == "true")
        }
        _ => {
            p.error(
                path,
                format!("expected true or false, found {}", describe(node)),
                "write true or false, without quotes",
            );
            None
        }
    }
}

/// The items of a list; null reads as an empty list.
pub(crate) fn list<'n>(node: &'n Node, path: &FieldPath, p: &mut Problems) -> Option<&'n [Node]> {
    match &node.value {
        Value::Seq(items) => Some(items),
        _ if node.is_null() => Some(&[]),
        _ => {
            p.error(
                path,
                format!("expected a list, found {}", describe(node)),
                "write one '- item' per line, or [a, b]",
            );
            None
        }
    }
}

/// How a node reads in a message: scalars quoted, collections by kind.
pub(crate) fn describe(node: &Node) -> String {
    match &node.value {
        Value::Scalar { text, .. } if !node.is_null() => format!("'{text}'"),
        _ => node.kind().to_string(),
    }
}
