//! Findings about a cluster description: what is wrong, where, and how to fix it.

use std::fmt;

use crate::yaml::{Node, Pos, Value};

/// How much a finding matters. Only errors stop kindling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Error,
    Warning,
    Info,
}

/// A dotted field path such as `machines[3].mac`, as the user would write it in the file.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FieldPath(Vec<Segment>);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Key(String),
    Index(usize),
}

impl FieldPath {
    pub fn root() -> FieldPath {
        FieldPath(Vec::new())
    }

    /// This path extended by a mapping key.
    pub fn key(&self, key: &str) -> FieldPath {
        let mut path = self.clone();
        path.0.push(Segment::Key(key.to_string()));
        path
    }

    /// This path extended by a list index.
    pub fn index(&self, index: usize) -> FieldPath {
        let mut path = self.clone();
        path.0.push(Segment::Index(index));
        path
    }

    /// The node this path names in `root`, if it exists.
    pub fn node<'n>(&self, root: &'n Node) -> Option<&'n Node> {
        let (node, complete) = self.deepest(root);
        complete.then_some(node)
    }

    /// Where this path points in `root`: the node itself if it exists, otherwise the deepest
    /// ancestor that does (a missing field is reported at the mapping that lacks it).
    pub fn locate(&self, root: &Node) -> Pos {
        self.deepest(root).0.pos
    }

    /// The deepest node along the path, and whether it is the whole path.
    fn deepest<'n>(&self, root: &'n Node) -> (&'n Node, bool) {
        let mut node = root;
        for segment in &self.0 {
            let next = match (segment, &node.value) {
                (Segment::Key(key), Value::Map(entries)) => entries
                    .iter()
                    .find(|(k, _)| &*k.name == key)
                    .map(|(_, v)| v),
                (Segment::Index(i), Value::Seq(items)) => items.get(*i),
                _ => None,
            };
            match next {
                Some(next) => node = next,
                None => return (node, false),
            }
        }
        (node, true)
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("(document)");
        }
        for (i, segment) in self.0.iter().enumerate() {
            match segment {
                Segment::Key(key) if i == 0 => write!(f, "{key}")?,
                Segment::Key(key) => write!(f, ".{key}")?,
                Segment::Index(index) => write!(f, "[{index}]")?,
            }
        }
        Ok(())
    }
}

/// One finding, printed as `file:line:col: field.path: what is wrong — how to fix it`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub severity: Severity,
    /// The file as the user named it (for example `dir/inventory.yaml`).
    pub file: String,
    pub pos: Pos,
    pub path: FieldPath,
    pub message: String,
    pub hint: Option<String>,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}: {}: {}",
            self.file, self.pos, self.path, self.message
        )?;
        if let Some(hint) = &self.hint {
            write!(f, " — {hint}")?;
        }
        Ok(())
    }
}

/// Collects the findings for one file, resolving field paths to positions in its tree. The
/// [`decode`](crate::decode) helpers report through it.
pub struct Report<'a> {
    file: &'a str,
    pub(crate) root: &'a Node,
    findings: &'a mut Vec<Diagnostic>,
    /// Paths of fields present but not used by kindling (OpenShift files only).
    pub(crate) unused: Vec<String>,
}

impl<'a> Report<'a> {
    /// Reports on `root`, parsed from the file named `file` in messages, into `findings`.
    pub fn new(file: &'a str, root: &'a Node, findings: &'a mut Vec<Diagnostic>) -> Report<'a> {
        Report {
            file,
            root,
            findings,
            unused: Vec::new(),
        }
    }

    /// A finding about the field at `path`, placed where that field is written (or, if it is
    /// missing, at the mapping that lacks it). An empty `hint` is left out.
    pub fn add(&mut self, severity: Severity, path: &FieldPath, message: String, hint: &str) {
        let pos = path.locate(self.root);
        self.add_at(severity, pos, path, message, hint);
    }

    fn add_at(
        &mut self,
        severity: Severity,
        pos: Pos,
        path: &FieldPath,
        message: String,
        hint: &str,
    ) {
        self.findings.push(Diagnostic {
            severity,
            file: self.file.to_string(),
            pos,
            path: path.clone(),
            message,
            hint: (!hint.is_empty()).then(|| hint.to_string()),
        });
    }

    pub fn error(&mut self, path: &FieldPath, message: impl Into<String>, hint: &str) {
        self.add(Severity::Error, path, message.into(), hint);
    }

    /// An error placed at `pos` rather than at the node `path` names: a key that should not be
    /// there is reported where the key is written.
    pub(crate) fn error_at(
        &mut self,
        pos: Pos,
        path: &FieldPath,
        message: impl Into<String>,
        hint: &str,
    ) {
        self.add_at(Severity::Error, pos, path, message.into(), hint);
    }

    pub fn warning(&mut self, path: &FieldPath, message: impl Into<String>, hint: &str) {
        self.add(Severity::Warning, path, message.into(), hint);
    }

    pub fn info(&mut self, path: &FieldPath, message: impl Into<String>, hint: &str) {
        self.add(Severity::Info, path, message.into(), hint);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::yaml;

    #[test]
    fn paths_print_as_written_and_locate_nodes() {
        let doc = yaml::parse("machines:\n  - name: a\n  - name: b\n    ip: 10.0.0.1\n").unwrap();
        let path = FieldPath::root().key("machines").index(1).key("ip");
        assert_eq!(path.to_string(), "machines[1].ip");
        assert_eq!(path.locate(&doc), Pos { line: 4, col: 9 });
        // A missing field points at the mapping that lacks it.
        let missing = FieldPath::root().key("machines").index(0).key("ip");
        assert_eq!(missing.locate(&doc).line, 2);
    }

    #[test]
    fn diagnostics_read_file_line_col_path_message_hint() {
        let d = Diagnostic {
            severity: Severity::Error,
            file: "inventory.yaml".into(),
            pos: Pos { line: 7, col: 10 },
            path: FieldPath::root().key("machines").index(0).key("mac"),
            message: "'zz' is not a MAC address".into(),
            hint: Some("write six hex pairs, e.g. 52:54:00:12:34:56".into()),
        };
        assert_eq!(
            d.to_string(),
            "inventory.yaml:7:10: machines[0].mac: 'zz' is not a MAC address — write six hex pairs, e.g. 52:54:00:12:34:56"
        );
    }
}
