//! The variables a group's templates see, and the `/metadata` env file.
//!
//! matchbox's `collectVariables` (`matchbox/http/parse.go`) starts from the group's metadata,
//! sets every selector under its lower-cased key (so `.mac` is the group's normalised MAC
//! selector, and a selector overrides metadata of the same name), then sets `request` to
//! `{"query": <labels>, "raw_query": <query string>}`, replacing any metadata under `request`.

use serde_json::{Map, Value};

use crate::{Group, Labels};

/// The variables for rendering `group`'s templates for `request`, as matchbox builds them.
pub fn template_vars(group: &Group, request: &Labels) -> Value {
    let mut vars: Map<String, Value> = match &group.metadata {
        Value::Object(m) => m.clone(),
        _ => Map::new(),
    };
    for (key, value) in &group.selector {
        vars.insert(key.to_lowercase(), Value::String(value.clone()));
    }
    let query: Map<String, Value> = request
        .query()
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect();
    let mut req = Map::new();
    req.insert("query".into(), Value::Object(query));
    req.insert(
        "raw_query".into(),
        Value::String(request.raw_query().into()),
    );
    vars.insert("request".into(), Value::Object(req));
    Value::Object(vars)
}

/// `vars` as the `/metadata` env file: `KEY=value` lines, nested objects flattened with `_`
/// (`{"a":{"b":1}}` is `A_B=1`), lists and nulls left out, as matchbox's `renderAsEnvFile`.
/// Unlike matchbox, which walks Go maps in random order, lines come in key order.
pub fn metadata_env(vars: &Value) -> String {
    let mut out = String::new();
    if let Value::Object(map) = vars {
        env_lines(&mut out, "", map);
    }
    out
}

fn env_lines(out: &mut String, prefix: &str, map: &Map<String, Value>) {
    for (key, value) in map {
        let name = format!("{prefix}{key}");
        match value {
            Value::String(s) => push_line(out, &name, s),
            Value::Bool(b) => push_line(out, &name, if *b { "true" } else { "false" }),
            Value::Number(n) => push_line(out, &name, &n.to_string()),
            Value::Object(inner) => env_lines(out, &format!("{name}_"), inner),
            Value::Array(_) | Value::Null => {}
        }
    }
}

fn push_line(out: &mut String, name: &str, value: &str) {
    out.push_str(&name.to_uppercase());
    out.push('=');
    out.push_str(value);
    out.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::collections::BTreeMap;

    fn group(selector: &[(&str, &str)], metadata: Value) -> Group {
        Group {
            id: "node1".into(),
            name: "node1".into(),
            profile: "etcd".into(),
            selector: selector
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>(),
            metadata,
            source: "groups/node1.json".into(),
        }
    }

    /// docs/matchbox.md, "Variables": a request `/generic?mac=52-54-00-89-d8-10&foo=some-param&bar=b`
    /// matching `node1.json`.
    #[test]
    fn variables_merge_metadata_selectors_and_the_request() {
        let g = group(
            &[("MAC", "52:54:00:89:d8:10")],
            json!({"etcd_name": "node1", "fleet_metadata": "role=etcd,name=node1",
                   "mac": "overridden", "request": "overwritten"}),
        );
        let labels = Labels::from_query("mac=52-54-00-89-d8-10&foo=some-param&bar=b");
        assert_eq!(
            template_vars(&g, &labels),
            json!({
                "etcd_name": "node1",
                "fleet_metadata": "role=etcd,name=node1",
                "mac": "52:54:00:89:d8:10",
                "request": {
                    "query": {"mac": "52:54:00:89:d8:10", "foo": "some-param", "bar": "b"},
                    "raw_query": "mac=52-54-00-89-d8-10&foo=some-param&bar=b"
                }
            })
        );
    }

    /// docs/api-http.md, "Metadata": `/metadata?mac=52-54-00-a1-9c-ae&foo=bar&count=3&gate=true`.
    #[test]
    fn metadata_renders_as_an_env_file() {
        let g = group(
            &[("mac", "52:54:00:a1:9c:ae")],
            json!({"meta": "data", "etcd_name": "node1", "some": {"nested": {"data": "some-value"}},
                   "list": [1], "nothing": null, "n": 3}),
        );
        let labels = Labels::from_query("mac=52-54-00-a1-9c-ae&foo=bar&count=3&gate=true");
        assert_eq!(
            metadata_env(&template_vars(&g, &labels)),
            "ETCD_NAME=node1\n\
             MAC=52:54:00:a1:9c:ae\n\
             META=data\n\
             N=3\n\
             REQUEST_QUERY_COUNT=3\n\
             REQUEST_QUERY_FOO=bar\n\
             REQUEST_QUERY_GATE=true\n\
             REQUEST_QUERY_MAC=52:54:00:a1:9c:ae\n\
             REQUEST_RAW_QUERY=mac=52-54-00-a1-9c-ae&foo=bar&count=3&gate=true\n\
             SOME_NESTED_DATA=some-value\n"
        );
    }
}
