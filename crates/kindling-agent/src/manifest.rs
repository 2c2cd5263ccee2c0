//! Reading YAML (the cluster manifests, the etcd pod) into JSON objects.

use kindling_config::yaml::{self, Node};
use serde_json::{Map, Value};

/// The documents of a YAML stream (`---` separated) as JSON, empty documents left out.
/// Plain scalars resolve with the YAML 1.2 core schema; quoted and block scalars are strings.
pub fn documents(text: &str) -> Result<Vec<Value>, String> {
    let mut docs = Vec::new();
    let mut current = String::new();
    let mut first_line = 1;
    let mut line_no = 0;
    let mut flush = |current: &mut String, first_line: usize| -> Result<(), String> {
        let node = yaml::parse(current).map_err(|e| {
            format!(
                "line {}: {}",
                first_line + e.pos.line.saturating_sub(1) as usize,
                e.message
            )
        })?;
        if !node.is_null() {
            docs.push(to_json(&node));
        }
        current.clear();
        Ok(())
    };
    for line in text.lines() {
        line_no += 1;
        if line == "---" || line.starts_with("--- ") || line == "..." {
            flush(&mut current, first_line)?;
            first_line = line_no + 1;
            continue;
        }
        current.push_str(line);
        current.push('\n');
    }
    flush(&mut current, first_line)?;
    Ok(docs)
}

pub(crate) fn to_json(node: &Node) -> Value {
    match &node.value {
        yaml::Value::Scalar { text, plain: false } => Value::String(text.clone()),
        yaml::Value::Scalar { text, plain: true } => resolve(text),
        yaml::Value::Seq(items) => items.iter().map(to_json).collect(),
        yaml::Value::Map(entries) => entries
            .iter()
            .map(|(k, v)| (k.name.clone(), to_json(v)))
            .collect::<Map<_, _>>()
            .into(),
    }
}

fn resolve(text: &str) -> Value {
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return Value::Null,
        "true" | "True" | "TRUE" => return Value::Bool(true),
        "false" | "False" | "FALSE" => return Value::Bool(false),
        _ => {}
    }
    let numeric_start = text
        .trim_start_matches(['-', '+'])
        .starts_with(|c: char| c.is_ascii_digit() || c == '.');
    if numeric_start {
        if let Ok(i) = text.parse::<i64>() {
            return Value::from(i);
        }
        if let Ok(f) = text.parse::<f64>()
            && f.is_finite()
        {
            return Value::from(f);
        }
    }
    Value::String(text.to_string())
}

/// The order objects are applied in: namespaces, then CRDs, then the rest; within each, as
/// written. A namespaced object needs its namespace, and a custom resource its definition.
pub fn apply_rank(object: &Value) -> u8 {
    match object.get("kind").and_then(Value::as_str) {
        Some("Namespace") => 0,
        Some("CustomResourceDefinition") => 1,
        _ => 2,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_split_and_resolve() {
        let docs = documents(
            "# a comment\napiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n---\n---\nkind: ConfigMap\ndata: {mode: \"0600\", n: 3, on: true}\n",
        )
        .unwrap();
        assert_eq!(docs.len(), 2);
        assert_eq!(apply_rank(&docs[0]), 0);
        assert_eq!(docs[1]["data"]["mode"], "0600");
        assert_eq!(docs[1]["data"]["n"], 3);
        assert_eq!(docs[1]["data"]["on"], true);
        let err = documents("a: 1\n---\nb: [\n").unwrap_err();
        assert!(err.starts_with("line 3"), "{err}");
    }
}
