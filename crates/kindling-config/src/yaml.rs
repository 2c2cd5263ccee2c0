//! A YAML document as a tree of nodes that remember where they were written.
//!
//! We build our own small tree from the parser's events instead of deserializing with serde so that
//! decoding can report every problem at once, each with its line and column, and so that fields
//! kindling does not use can be named instead of silently dropped.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::Arc;

use granit_parser::{Event, Parser, ScalarStyle};

/// Nesting deeper than this is refused: no cluster description needs it, and it keeps a hostile
/// file from exhausting the stack when the tree is dropped.
const MAX_DEPTH: usize = 64;
/// Upper bound on nodes, counting every alias expansion.
const MAX_NODES: usize = 5_000_000;
/// Upper bound on the nodes that aliases add, against "billion laughs" documents. An alias's
/// size is known before it is expanded, so a bomb is refused before it costs time or memory.
const MAX_ALIAS_NODES: usize = 500_000;

/// A 1-based line and column in a source file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Pos {
    pub line: u32,
    pub col: u32,
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.col)
    }
}

/// One YAML node and where it starts.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub value: Value,
    pub pos: Pos,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A scalar with its text after escape processing. `plain` is false for quoted and block
    /// scalars, which are always strings.
    Scalar {
        text: Box<str>,
        plain: bool,
    },
    Seq(Vec<Node>),
    Map(Vec<(Key, Node)>),
}

/// A mapping key and where it was written.
#[derive(Debug, Clone, PartialEq)]
pub struct Key {
    /// Shared between equal keys: an inventory repeats `name`, `role`, `mac` and `ip` for every
    /// machine, and 100,000 machines would otherwise hold 400,000 copies while loading.
    pub name: Arc<str>,
    pub pos: Pos,
}

/// A YAML syntax problem, with where it was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    pub pos: Pos,
    pub message: String,
}

impl Node {
    /// True for an absent value: `~`, `null`, or nothing at all after the key.
    pub fn is_null(&self) -> bool {
        matches!(&self.value, Value::Scalar { text, plain: true } if matches!(&**text, "" | "~" | "null" | "Null" | "NULL"))
    }

    /// Short name of the node's kind, for "expected X, found Y" messages.
    pub fn kind(&self) -> &'static str {
        match &self.value {
            _ if self.is_null() => "nothing",
            Value::Scalar { .. } => "a scalar",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }

    /// The value under `key`, if this node is a mapping that has it.
    pub fn get(&self, key: &str) -> Option<&Node> {
        match &self.value {
            Value::Map(entries) => entries
                .iter()
                .find(|(k, _)| &*k.name == key)
                .map(|(_, v)| v),
            _ => None,
        }
    }
}

/// Parses one YAML document. An empty file is a null node.
pub fn parse(text: &str) -> Result<Node, SyntaxError> {
    let mut builder = Builder::default();
    for event in Parser::new_from_str(text) {
        let (event, span) = event.map_err(|e| SyntaxError {
            pos: pos_of(e.marker()),
            message: e.info(),
        })?;
        builder.push(event, pos_of(&span.start))?;
    }
    Ok(builder.root.unwrap_or(Node {
        value: Value::Scalar {
            text: Box::default(),
            plain: true,
        },
        pos: Pos { line: 1, col: 1 },
    }))
}

fn pos_of(marker: &granit_parser::Marker) -> Pos {
    Pos {
        line: u32::try_from(marker.line()).unwrap_or(u32::MAX),
        col: u32::try_from(marker.col() + 1).unwrap_or(u32::MAX),
    }
}

enum Open {
    Seq {
        node: Node,
        anchor: usize,
        /// The node count when it opened: its size is the count at its end less this.
        start: usize,
    },
    Map {
        node: Node,
        anchor: usize,
        pending_key: Option<Key>,
        start: usize,
    },
}

#[derive(Default)]
struct Builder {
    stack: Vec<Open>,
    /// Every distinct key name seen, to share.
    keys: HashSet<Arc<str>>,
    /// Each anchored node, with its size in nodes.
    anchors: HashMap<usize, (Node, usize)>,
    root: Option<Node>,
    documents: usize,
    nodes: usize,
    alias_nodes: usize,
}

impl Builder {
    fn push(&mut self, event: Event<'_>, pos: Pos) -> Result<(), SyntaxError> {
        let error = |message: &str| SyntaxError {
            pos,
            message: message.to_string(),
        };
        match event {
            Event::DocumentStart(..) => {
                self.documents += 1;
                if self.documents > 1 {
                    return Err(error(
                        "a second YAML document ('---') was found; this file holds exactly one",
                    ));
                }
            }
            Event::Scalar(text, style, anchor, _tag) => {
                let node = Node {
                    value: Value::Scalar {
                        text: text.into(),
                        plain: style == ScalarStyle::Plain,
                    },
                    pos,
                };
                self.finish(node, anchor, 1)?;
            }
            Event::SequenceStart(_, anchor, _) => {
                self.open(
                    Open::Seq {
                        node: Node {
                            value: Value::Seq(Vec::new()),
                            pos,
                        },
                        anchor,
                        start: self.nodes,
                    },
                    pos,
                )?;
            }
            Event::MappingStart(_, anchor, _) => {
                self.open(
                    Open::Map {
                        node: Node {
                            value: Value::Map(Vec::new()),
                            pos,
                        },
                        anchor,
                        pending_key: None,
                        start: self.nodes,
                    },
                    pos,
                )?;
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let (node, anchor, start) = match self.stack.pop() {
                    Some(Open::Seq {
                        node,
                        anchor,
                        start,
                    })
                    | Some(Open::Map {
                        node,
                        anchor,
                        start,
                        ..
                    }) => (node, anchor, start),
                    None => return Err(error("unbalanced end of a collection")),
                };
                let size = self.nodes - start + 1;
                self.finish(node, anchor, size)?;
            }
            Event::Alias(id) => {
                let Some((target, size)) = self.anchors.get(&id) else {
                    return Err(error("alias refers to an unknown anchor"));
                };
                let size = *size;
                self.alias_nodes += size;
                if self.alias_nodes > MAX_ALIAS_NODES {
                    return Err(error(&format!(
                        "aliases expand to more than {MAX_ALIAS_NODES} nodes (a \"billion laughs\" document?); write the values out, or use fewer aliases"
                    )));
                }
                let node = Node {
                    value: target.value.clone(),
                    pos,
                };
                // The node itself is counted by finish.
                self.nodes += size - 1;
                self.finish(node, 0, size)?;
            }
            Event::UnresolvedAlias(name) => {
                return Err(error(&format!(
                    "alias *{name} has no anchor &{name} before it"
                )));
            }
            _ => {}
        }
        Ok(())
    }

    fn open(&mut self, open: Open, pos: Pos) -> Result<(), SyntaxError> {
        if self.stack.len() >= MAX_DEPTH {
            return Err(SyntaxError {
                pos,
                message: format!("nesting is deeper than {MAX_DEPTH} levels"),
            });
        }
        self.stack.push(open);
        Ok(())
    }

    /// Attaches a completed node of `size` nodes to its parent (or makes it the root).
    fn finish(&mut self, node: Node, anchor: usize, size: usize) -> Result<(), SyntaxError> {
        self.nodes += 1;
        if self.nodes > MAX_NODES {
            return Err(SyntaxError {
                pos: node.pos,
                message: format!("the document expands to more than {MAX_NODES} nodes"),
            });
        }
        if anchor != 0 {
            self.anchors.insert(anchor, (node.clone(), size));
        }
        match self.stack.last_mut() {
            None => self.root = Some(node),
            Some(Open::Seq { node: seq, .. }) => {
                if let Value::Seq(items) = &mut seq.value {
                    items.push(node);
                }
            }
            Some(Open::Map {
                node: map,
                pending_key,
                ..
            }) => match pending_key.take() {
                None => {
                    let name = match node.value {
                        Value::Scalar { text, .. } => text,
                        _ => {
                            return Err(SyntaxError {
                                pos: node.pos,
                                message: "a mapping key must be a plain string, not a collection"
                                    .to_string(),
                            });
                        }
                    };
                    if let Value::Map(entries) = &map.value
                        && let Some((first, _)) = entries.iter().find(|(k, _)| *k.name == *name)
                    {
                        return Err(SyntaxError {
                            pos: node.pos,
                            message: format!(
                                "duplicate key '{name}' (first written at line {}); keep one of them",
                                first.pos.line
                            ),
                        });
                    }
                    let name = match self.keys.get(&*name) {
                        Some(shared) => shared.clone(),
                        None => {
                            let shared: Arc<str> = name.into();
                            self.keys.insert(shared.clone());
                            shared
                        }
                    };
                    *pending_key = Some(Key {
                        name,
                        pos: node.pos,
                    });
                }
                Some(key) => {
                    if let Value::Map(entries) = &mut map.value {
                        entries.push((key, node));
                    }
                }
            },
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scalar(node: &Node) -> &str {
        match &node.value {
            Value::Scalar { text, .. } => text,
            other => panic!("not a scalar: {other:?}"),
        }
    }

    #[test]
    fn positions_are_one_based_and_point_at_values() {
        let doc = parse("a: 1\nb:\n  - x\n  - 'y'\n").unwrap();
        let a = doc.get("a").unwrap();
        assert_eq!(a.pos, Pos { line: 1, col: 4 });
        let Value::Seq(items) = &doc.get("b").unwrap().value else {
            panic!()
        };
        assert_eq!(items[1].pos, Pos { line: 4, col: 5 });
        assert_eq!(scalar(&items[1]), "y");
        assert_eq!(
            items[1].value,
            Value::Scalar {
                text: "y".into(),
                plain: false
            }
        );
    }

    #[test]
    fn empty_documents_and_missing_values_are_null() {
        assert!(parse("").unwrap().is_null());
        assert!(parse("a:\n").unwrap().get("a").unwrap().is_null());
        assert!(!parse("a: 'null'\n").unwrap().get("a").unwrap().is_null());
    }

    #[test]
    fn duplicate_keys_are_refused_with_both_lines() {
        let err = parse("a: 1\nb: 2\na: 3\n").unwrap_err();
        assert_eq!(err.pos.line, 3);
        assert!(err.message.contains("line 1"), "{}", err.message);
    }

    #[test]
    fn aliases_expand_and_laughs_are_bounded() {
        let doc = parse("x: &v hello\ny: *v\n").unwrap();
        assert_eq!(scalar(doc.get("y").unwrap()), "hello");

        let mut bomb = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..10 {
            let p = i - 1;
            bomb.push_str(&format!(
                "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
            ));
        }
        let err = parse(&bomb).unwrap_err();
        assert!(
            err.message.contains("aliases expand to more than"),
            "{}",
            err.message
        );
        // Refused at the alias that would cross the bound, not after expanding it.
        assert!(err.pos.line <= 10, "{err:?}");

        // Aliases as an inventory uses them: shared labels on 10,000 machines.
        let mut shared = String::from("labels: &l {zone: a, rack: r1, row: '7'}\nmachines:\n");
        for i in 0..10_000 {
            shared.push_str(&format!("  - {{name: m{i}, labels: *l}}\n"));
        }
        let doc = parse(&shared).unwrap();
        let Value::Seq(machines) = &doc.get("machines").unwrap().value else {
            panic!()
        };
        assert_eq!(
            scalar(machines[9_999].get("labels").unwrap().get("zone").unwrap()),
            "a"
        );
    }

    #[test]
    fn deep_nesting_is_refused() {
        let deep = "[".repeat(10_000);
        assert!(parse(&deep).is_err());
    }

    #[test]
    fn syntax_errors_have_positions() {
        let err = parse("a: [1, 2\nb: 3\n").unwrap_err();
        assert!(err.pos.line >= 1);
        assert!(!err.message.is_empty());
        assert!(parse("a: 1\n---\nb: 2\n").is_err());
    }
}
