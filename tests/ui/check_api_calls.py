"""Checks the API calls the dashboard made in the browser against docs/openapi.yaml.

Usage: check_api_calls.py OPENAPI CALLS

CALLS is the JSON file tests/ui/dashboard.mjs writes: every request the pages made to /api/,
with its method, path, status, content type and (when JSON) body, and every event the page read
from the event stream. Each must be an operation of the file, with a status it documents, of the
content type it documents, and a body its schema accepts. Prints one line per finding; exits 1 if
there is any.
"""

import json
import re
import sys

import jsonschema
import yaml


def operation(spec, method, path):
    """The path template and operation that `method path` is, or (None, None)."""
    for template, item in spec["paths"].items():
        pattern = "^" + re.sub(r"\{[^}]+\}", "[^/]+", template) + "$"
        if re.match(pattern, path) and method.lower() in item:
            return template, item[method.lower()]
    return None, None


def follow(spec, node):
    """`node`, its `$ref` to the file's components followed."""
    while isinstance(node, dict) and "$ref" in node:
        target = spec
        for part in node["$ref"].lstrip("#/").split("/"):
            target = target[part]
        node = target
    return node


def validate(spec, schema, value):
    """Errors of `value` against `schema`, whose references are into the file."""
    root = dict(spec)
    root.update(schema)
    validator = jsonschema.Draft202012Validator(root)
    return [e.message for e in validator.iter_errors(value)]


def main():
    spec = yaml.safe_load(open(sys.argv[1]))
    calls = json.load(open(sys.argv[2]))
    findings = []
    for call in calls["calls"]:
        what = f"{call['method']} {call['path']} -> {call['status']}"
        template, op = operation(spec, call["method"], call["path"])
        if op is None:
            findings.append(f"{what}: not an operation of the file")
            continue
        response = op["responses"].get(str(call["status"]))
        if response is None:
            findings.append(f"{what}: status not documented for {template}")
            continue
        response = follow(spec, response)
        content = response.get("content", {})
        kind = call["contentType"].split(";")[0].strip()
        if content and kind not in content:
            findings.append(f"{what}: content type {kind}, documented {sorted(content)}")
            continue
        if kind == "application/json":
            errors = validate(spec, content[kind]["schema"], json.loads(call["body"]))
            findings.extend(f"{what}: {e}" for e in errors)
    event_schema = {"$ref": "#/components/schemas/Event"}
    for event in calls["events"]:
        findings.extend(f"event {event}: {e}" for e in validate(spec, event_schema, event))
    for finding in findings:
        print(finding)
    print(f"{len(calls['calls'])} calls and {len(calls['events'])} events checked, {len(findings)} findings")
    sys.exit(1 if findings else 0)


if __name__ == "__main__":
    main()
