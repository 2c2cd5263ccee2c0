//! User snippets (`snippets/<machine-or-role>/*.bu`): the part of Butane that customises a
//! machine's files, units and SSH keys, turned into a [`Config`] to merge over kindling's own.
//!
//! Supported: variant `fcos` 1.0.0–1.5.0 and `flatcar` 1.0.0–1.1.0, with
//! `storage.files` (path, mode, overwrite, contents.inline or contents.source with
//! verification.hash), `storage.directories` (path, mode), `storage.links` (path, target, hard),
//! `systemd.units` (name, enabled, mask, contents, dropins) and `passwd.users` (name,
//! ssh_authorized_keys). Everything else is refused by name, never dropped: a snippet that
//! half-applies is worse than one that fails at `create ignition-configs`. Modes default as in
//! Butane's documentation (files 0644, directories 0755) and are written out explicitly.
//!
//! Problems are all reported at once, each as `file:line:col: field.path: message — hint`.

use std::fmt;

use ignition_config::v3_3;
use kindling_config::decode::{MapReader, UnknownKeys, boolean, describe, list, string};
use kindling_config::diagnostic::{Diagnostic, FieldPath, Report, Severity};
use kindling_config::yaml::{self, Node, Value};

use crate::render::{SCHEMES, UNIT_TYPES, is_unit_name};
use crate::{Config, data_url};

/// The Butane variants and versions snippets may declare.
const VARIANTS: &[(&str, &[&str])] = &[
    (
        "fcos",
        &["1.0.0", "1.1.0", "1.2.0", "1.3.0", "1.4.0", "1.5.0"],
    ),
    ("flatcar", &["1.0.0", "1.1.0"]),
];

/// Why a snippet was refused: every problem found, in file order.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct SnippetError {
    /// One per problem, each an error with its file, position and field path.
    pub problems: Vec<Diagnostic>,
}

/// One line per problem: `file:line:col: field.path: what is wrong — how to fix it`.
impl fmt::Display for SnippetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, problem) in self.problems.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{problem}")?;
        }
        Ok(())
    }
}

/// Reads a Butane snippet. `file_name` is how messages name the file (for example
/// `snippets/worker/10-chrony.bu`).
pub fn parse_snippet(file_name: &str, text: &str) -> Result<Config, SnippetError> {
    let root = match yaml::parse(text) {
        Ok(root) => root,
        Err(e) => {
            return Err(SnippetError {
                problems: vec![Diagnostic {
                    severity: Severity::Error,
                    file: file_name.to_string(),
                    pos: e.pos,
                    path: FieldPath::root(),
                    message: format!("is not valid YAML: {}", e.message),
                    hint: Some(
                        "fix the syntax at this position (indentation, quotes, ':' after keys)"
                            .into(),
                    ),
                }],
            });
        }
    };
    let mut problems = Vec::new();
    let config = Snippet::default().read(&root, &mut Report::new(file_name, &root, &mut problems));
    if problems.is_empty() {
        Ok(config)
    } else {
        problems.sort_by_key(|d| d.pos);
        Err(SnippetError { problems })
    }
}

/// How a mapping refuses the keys it did not read: those in `names` are Butane fields outside
/// kindling's subset and are called that; anything else is unknown, most likely a typo.
fn unsupported(names: &'static [&'static str]) -> UnknownKeys<'static> {
    UnknownKeys::Subset {
        unsupported: names,
        message: "is a Butane field outside the subset kindling supports in snippets",
    }
}

/// What one snippet has declared so far, to refuse a path or unit named twice.
#[derive(Default)]
struct Snippet {
    config: Config,
    paths: Vec<(String, FieldPath)>,
    units: Vec<(String, FieldPath)>,
}

impl Snippet {
    fn read(mut self, root: &Node, r: &mut Report) -> Config {
        let Some(mut top) = MapReader::new(root, FieldPath::root(), r) else {
            return self.config;
        };
        variant(&mut top, r);
        if let Some((node, path)) = top.take("storage") {
            self.storage(node, path, r);
        }
        if let Some((node, path)) = top.take("systemd") {
            self.systemd(node, path, r);
        }
        if let Some((node, path)) = top.take("passwd") {
            self.passwd(node, path, r);
        }
        top.finish(
            unsupported(&[
                "ignition",
                "kernel_arguments",
                "boot_device",
                "grub",
                "metadata",
                "openshift",
            ]),
            &["variant", "version", "storage", "systemd", "passwd"],
            r,
        );
        self.config
    }

    fn storage(&mut self, node: &Node, path: FieldPath, r: &mut Report) {
        let Some(mut fields) = MapReader::new(node, path, r) else {
            return;
        };
        for (item, path) in items(&mut fields, "files", r) {
            self.file(item, path, r);
        }
        for (item, path) in items(&mut fields, "directories", r) {
            self.directory(item, path, r);
        }
        for (item, path) in items(&mut fields, "links", r) {
            self.link(item, path, r);
        }
        fields.finish(
            unsupported(&["disks", "raid", "filesystems", "luks", "trees"]),
            &["files", "directories", "links"],
            r,
        );
    }

    fn file(&mut self, node: &Node, path: FieldPath, r: &mut Report) {
        let Some(mut fields) = MapReader::new(node, path, r) else {
            return;
        };
        let target = self.node_path(&mut fields, r);
        let mode = fields
            .take("mode")
            .map(|(node, path)| parse_mode(node, &path, r));
        let overwrite = fields
            .take("overwrite")
            .and_then(|(node, path)| boolean(node, &path, r));
        let contents = fields
            .take("contents")
            .map(|(node, path)| parse_contents(node, path, r));
        fields.finish(
            unsupported(&["append", "user", "group"]),
            &["path", "mode", "overwrite", "contents"],
            r,
        );
        let (Some(target), Some(mode), Some(contents)) = (
            target,
            mode.unwrap_or(Some(0o644)),
            contents.unwrap_or(Some(None)),
        ) else {
            return;
        };
        let mut file = v3_3::File::new(target);
        file.mode = Some(i64::from(mode));
        file.overwrite = overwrite;
        file.contents = contents;
        self.config.put_file(file);
    }

    fn directory(&mut self, node: &Node, path: FieldPath, r: &mut Report) {
        let Some(mut fields) = MapReader::new(node, path, r) else {
            return;
        };
        let target = self.node_path(&mut fields, r);
        let mode = fields
            .take("mode")
            .map(|(node, path)| parse_mode(node, &path, r));
        fields.finish(
            unsupported(&["overwrite", "user", "group"]),
            &["path", "mode"],
            r,
        );
        if let (Some(target), Some(mode)) = (target, mode.unwrap_or(Some(0o755))) {
            let mut dir = v3_3::Directory::new(target);
            dir.mode = Some(i64::from(mode));
            self.config.put_directory(dir);
        }
    }

    fn link(&mut self, node: &Node, path: FieldPath, r: &mut Report) {
        let Some(mut fields) = MapReader::new(node, path, r) else {
            return;
        };
        let target_path = self.node_path(&mut fields, r);
        let points_to = fields
            .require(
                "target",
                r,
                "write what the link points to, e.g. target: /usr/bin/true",
            )
            .and_then(|(node, path)| string(node, &path, r));
        let hard = fields
            .take("hard")
            .and_then(|(node, path)| boolean(node, &path, r));
        fields.finish(
            unsupported(&["overwrite", "user", "group"]),
            &["path", "target", "hard"],
            r,
        );
        if let (Some(target_path), Some(points_to)) = (target_path, points_to) {
            let mut link = v3_3::Link::new(target_path);
            link.target = Some(points_to);
            link.hard = hard;
            self.config.put_link(link);
        }
    }

    /// The entry's `path`: required, absolute, and not used by another entry of this snippet.
    fn node_path(&mut self, fields: &mut MapReader, r: &mut Report) -> Option<String> {
        let (node, path) = fields.require(
            "path",
            r,
            "write the absolute path on the machine, e.g. path: /etc/example.conf",
        )?;
        let text = string(node, &path, r)?;
        if !text.starts_with('/') {
            r.error(
                &path,
                format!("'{text}' is not an absolute path"),
                &format!("start it with '/', e.g. /{}", text.trim_start_matches("./")),
            );
            return None;
        }
        declare_once(
            &mut self.paths,
            &text,
            path,
            r,
            &text,
            "keep one entry per path",
        )?;
        Some(text)
    }

    fn systemd(&mut self, node: &Node, path: FieldPath, r: &mut Report) {
        let Some(mut fields) = MapReader::new(node, path, r) else {
            return;
        };
        for (item, path) in items(&mut fields, "units", r) {
            self.unit(item, path, r);
        }
        fields.finish(unsupported(&[]), &["units"], r);
    }

    fn unit(&mut self, node: &Node, path: FieldPath, r: &mut Report) {
        let Some(mut fields) = MapReader::new(node, path, r) else {
            return;
        };
        let name = fields
            .require(
                "name",
                r,
                "write the unit's file name, e.g. name: example.service",
            )
            .and_then(|(node, path)| {
                let name = string(node, &path, r)?;
                if !is_unit_name(&name) {
                    r.error(
                        &path,
                        format!("'{name}' is not a systemd unit name"),
                        &format!(
                            "end it in a unit type, e.g. {name}.service; the types are .{}",
                            UNIT_TYPES.join(", .")
                        ),
                    );
                    return None;
                }
                let what = format!("unit {name}");
                let hint = "keep one entry per unit; put its drop-ins together";
                declare_once(&mut self.units, &name, path, r, &what, hint)?;
                Some(name)
            });
        let enabled = fields
            .take("enabled")
            .and_then(|(node, path)| boolean(node, &path, r));
        let mask = fields
            .take("mask")
            .and_then(|(node, path)| boolean(node, &path, r));
        let contents = fields
            .take("contents")
            .and_then(|(node, path)| unit_contents(node, &path, r));
        let mut dropins = Vec::new();
        for (item, path) in items(&mut fields, "dropins", r) {
            dropins.extend(dropin(item, path, r));
        }
        fields.finish(
            unsupported(&["contents_local"]),
            &["name", "enabled", "mask", "contents", "dropins"],
            r,
        );
        if let Some(name) = name {
            let mut unit = v3_3::Unit::new(name);
            unit.enabled = enabled;
            unit.mask = mask;
            unit.contents = contents;
            unit.dropins = (!dropins.is_empty()).then_some(dropins);
            self.config.put_unit(unit);
        }
    }

    fn passwd(&mut self, node: &Node, path: FieldPath, r: &mut Report) {
        let Some(mut fields) = MapReader::new(node, path, r) else {
            return;
        };
        for (item, path) in items(&mut fields, "users", r) {
            self.user(item, path, r);
        }
        fields.finish(unsupported(&["groups"]), &["users"], r);
    }

    fn user(&mut self, node: &Node, path: FieldPath, r: &mut Report) {
        let Some(mut fields) = MapReader::new(node, path, r) else {
            return;
        };
        let name = fields
            .require("name", r, "write the user's login name, e.g. name: core")
            .and_then(|(node, path)| {
                let name = string(node, &path, r)?;
                if !is_user_name(&name) {
                    r.error(
                        &path,
                        format!("'{name}' is not a valid user name"),
                        "use lowercase letters, digits, '_' and '-', starting with a letter or '_' (at most 32)",
                    );
                    return None;
                }
                Some(name)
            });
        let mut keys = Vec::new();
        for (item, path) in items(&mut fields, "ssh_authorized_keys", r) {
            match string(item, &path, r) {
                Some(key) if key.trim().is_empty() => {
                    r.error(&path, "is empty", "write one public key per item");
                }
                Some(key) => keys.push(key.trim().to_string()),
                None => {}
            }
        }
        fields.finish(
            unsupported(&[
                "password_hash",
                "ssh_authorized_keys_local",
                "uid",
                "gecos",
                "home_dir",
                "no_create_home",
                "primary_group",
                "groups",
                "no_user_group",
                "no_log_init",
                "shell",
                "should_exist",
                "system",
            ]),
            &["name", "ssh_authorized_keys"],
            r,
        );
        if let Some(name) = name {
            let mut user = v3_3::User::new(name);
            user.ssh_authorized_keys = (!keys.is_empty()).then_some(keys);
            self.config.put_user(user);
        }
    }
}

fn variant(top: &mut MapReader, r: &mut Report) {
    let supported = || {
        VARIANTS
            .iter()
            .map(|(name, versions)| {
                format!("{name} {}–{}", versions[0], versions[versions.len() - 1])
            })
            .collect::<Vec<_>>()
            .join(" or ")
    };
    let variant = top
        .require(
            "variant",
            r,
            &format!(
                "start the snippet with variant: fcos (kindling reads {})",
                supported()
            ),
        )
        .and_then(|(node, path)| Some((string(node, &path, r)?, path)));
    let version = top
        .require(
            "version",
            r,
            "write the Butane spec version, e.g. version: 1.5.0",
        )
        .and_then(|(node, path)| Some((string(node, &path, r)?, path)));
    let Some((variant, variant_path)) = variant else {
        return;
    };
    let Some((_, versions)) = VARIANTS.iter().find(|(name, _)| *name == variant) else {
        r.error(
            &variant_path,
            format!("variant '{variant}' is outside the supported subset"),
            &format!("use {}", supported()),
        );
        return;
    };
    if let Some((version, version_path)) = version
        && !versions.contains(&version.as_str())
    {
        r.error(
            &version_path,
            format!("version '{version}' of variant {variant} is outside the supported subset"),
            &format!("use one of {}", versions.join(", ")),
        );
    }
}

/// The items of the list under `key`, each with its path; nothing if absent or not a list.
fn items<'n>(
    fields: &mut MapReader<'n>,
    key: &'static str,
    r: &mut Report,
) -> Vec<(&'n Node, FieldPath)> {
    let Some((node, path)) = fields.take(key) else {
        return Vec::new();
    };
    let Some(items) = list(node, &path, r) else {
        return Vec::new();
    };
    items
        .iter()
        .enumerate()
        .map(|(i, item)| (item, path.index(i)))
        .collect()
}

/// `contents` of a file: `Some(None)` for a file with no contents, `None` after a problem.
fn parse_contents(node: &Node, path: FieldPath, r: &mut Report) -> Option<Option<v3_3::Resource>> {
    let mut fields = MapReader::new(node, path.clone(), r)?;
    let inline = fields
        .take("inline")
        .map(|(node, path)| string(node, &path, r));
    let source = fields.take("source").map(|(node, path)| {
        let url = string(node, &path, r)?;
        let scheme = url.split_once(':').map(|(scheme, _)| scheme);
        if scheme.is_some_and(|s| SCHEMES.contains(&s)) {
            Some(url)
        } else {
            r.error(
                &path,
                format!("'{url}' is not a URL Ignition can fetch"),
                &format!("use a URL starting with {}:", SCHEMES.join(":, ")),
            );
            None
        }
    });
    if let Some((_, local)) = fields.take("local") {
        r.error(
            &local,
            "is not supported in snippets: kindling does not read files beside them",
            "paste the text under contents.inline (a '|' block keeps lines), or serve the file and use contents.source with verification.hash",
        );
    }
    let mut verification = None;
    if let Some((node, path)) = fields.take("verification")
        && let Some(mut inner) = MapReader::new(node, path, r)
    {
        if let Some((node, path)) = inner.take("hash") {
            verification = Some(parse_hash(node, &path, r));
        }
        inner.finish(unsupported(&[]), &["hash"], r);
    }
    fields.finish(
        unsupported(&["compression", "http_headers"]),
        &["inline", "source", "verification"],
        r,
    );
    let source = match (inline, source) {
        (Some(_), Some(_)) => {
            r.error(
                &path,
                "sets both inline and source",
                "keep one: inline for text in the snippet, source for a URL",
            );
            return None;
        }
        (Some(text), None) => data_url::encode(text?.as_bytes()),
        (None, Some(url)) => url?,
        (None, None) => return Some(None),
    };
    Some(Some(v3_3::Resource {
        source: Some(source),
        verification: match verification {
            Some(hash) => Some(v3_3::Verification { hash: Some(hash?) }),
            None => None,
        },
        ..Default::default()
    }))
}

/// `sha512-<hex>` or `sha256-<hex>`, as Ignition checks them.
fn parse_hash(node: &Node, path: &FieldPath, r: &mut Report) -> Option<String> {
    let text = string(node, path, r)?;
    let (function, hex) = text.split_once('-').unwrap_or(("", &text));
    let digits = match function {
        "sha512" => 128,
        "sha256" => 64,
        _ => 0,
    };
    if digits > 0 && hex.len() == digits && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        Some(text)
    } else {
        r.error(
            path,
            format!("'{text}' is not a hash Ignition can check"),
            "write sha512-<128 hex digits> (from sha512sum) or sha256-<64 hex digits>",
        );
        None
    }
}

/// A permission mode as Butane reads YAML: `0644` and `0o644` are octal, `420` is decimal.
fn parse_mode(node: &Node, path: &FieldPath, r: &mut Report) -> Option<u32> {
    let hint = "write the mode in octal with a leading 0 and no quotes, e.g. 0644";
    let Value::Scalar { text, plain: true } = &node.value else {
        r.error(
            path,
            format!("expected a permission mode, found {}", describe(node)),
            hint,
        );
        return None;
    };
    let (digits, radix) = match text.strip_prefix("0o") {
        Some(octal) => (octal, 8),
        None if text.len() > 1 && text.starts_with('0') => (&text[1..], 8),
        None => (&**text, 10),
    };
    let Ok(value) = u32::from_str_radix(digits, radix) else {
        r.error(path, format!("'{text}' is not a permission mode"), hint);
        return None;
    };
    if radix == 10 && value > 0o777 {
        let octal_digits = text.bytes().all(|b| (b'0'..=b'7').contains(&b));
        let fix = if octal_digits {
            format!("modes are octal: write 0{text}")
        } else {
            hint.to_string()
        };
        r.error(
            path,
            format!("mode {text} is decimal, which is {value:o} in octal"),
            &fix,
        );
        return None;
    }
    if value > 0o7777 {
        r.error(
            path,
            format!("mode {text} is more than 7777 in octal"),
            "use permission bits only, e.g. 0644 or 0755",
        );
        return None;
    }
    Some(value)
}

/// Unit text; a section header left open (`[Unit` without `]`) is what Ignition refuses.
fn unit_contents(node: &Node, path: &FieldPath, r: &mut Report) -> Option<String> {
    let text = string(node, path, r)?;
    let open = text
        .lines()
        .map(str::trim)
        .find(|line| line.starts_with('[') && !line.ends_with(']'));
    if let Some(line) = open {
        r.error(
            path,
            format!("section header '{line}' is not closed"),
            "write it as [Section] on its own line",
        );
        return None;
    }
    Some(text)
}

fn dropin(node: &Node, path: FieldPath, r: &mut Report) -> Option<v3_3::Dropin> {
    let mut fields = MapReader::new(node, path, r)?;
    let name = fields
        .require(
            "name",
            r,
            "write the drop-in's file name, e.g. name: 10-example.conf",
        )
        .and_then(|(node, path)| {
            let name = string(node, &path, r)?;
            if name.ends_with(".conf") && name.len() > 5 && !name.contains('/') {
                Some(name)
            } else {
                r.error(
                    &path,
                    format!("'{name}' is not a drop-in file name"),
                    "end it in .conf, e.g. 10-example.conf",
                );
                None
            }
        });
    let contents = fields
        .take("contents")
        .and_then(|(node, path)| unit_contents(node, &path, r));
    fields.finish(unsupported(&["contents_local"]), &["name", "contents"], r);
    let mut dropin = v3_3::Dropin::new(name?);
    dropin.contents = contents;
    Some(dropin)
}

/// The names shadow-utils' `useradd` accepts without `--badname`.
fn is_user_name(name: &str) -> bool {
    let body = name.strip_suffix('$').unwrap_or(name);
    let mut chars = body.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_');
    first_ok
        && name.len() <= 32
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
}

/// Records that `name` is declared at `path`; a second declaration is an error that points back
/// at the first (`what` names it in the message).
fn declare_once(
    seen: &mut Vec<(String, FieldPath)>,
    name: &str,
    path: FieldPath,
    r: &mut Report,
    what: &str,
    hint: &str,
) -> Option<()> {
    if let Some((_, first)) = seen.iter().find(|(s, _)| s == name) {
        r.error(
            &path,
            format!("{what} is already declared at {first}"),
            hint,
        );
        return None;
    }
    seen.push((name.to_string(), path));
    Some(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::{Contents, FileEntry, IgnitionVersion};

    /// Uses every supported field; `crate::tests` also feeds it to `ignition-validate`.
    pub(crate) const GOOD: &str = r#"variant: fcos
version: 1.5.0
storage:
  files:
    - path: /etc/chrony.conf
      contents:
        inline: |
          server 10.0.0.1 iburst
    - path: /usr/local/bin/tool
      mode: 0755
      overwrite: true
      contents:
        source: https://example.com/tool
        verification:
          hash: sha512-00000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000
    - path: /etc/empty
      mode: 420
  directories:
    - path: /var/lib/tool
    - path: /var/lib/secret
      mode: 0o700
  links:
    - path: /etc/localtime
      target: /usr/share/zoneinfo/UTC
    - path: /usr/local/bin/tool2
      target: /usr/local/bin/tool
      hard: true
systemd:
  units:
    - name: tool.service
      enabled: true
      contents: |
        [Unit]
        Description=Tool
        [Service]
        ExecStart=/usr/local/bin/tool
        [Install]
        WantedBy=multi-user.target
    - name: kubelet.service
      dropins:
        - name: 10-tool.conf
          contents: |
            [Service]
            Environment=TOOL=1
    - name: zincati.service
      mask: true
passwd:
  users:
    - name: core
      ssh_authorized_keys:
        - ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOk ops@example
"#;

    #[test]
    fn a_good_snippet_becomes_the_expected_entries() {
        let config =
            parse_snippet("snippets/worker/10-tool.bu", GOOD).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            config.file("/etc/chrony.conf"),
            Some(FileEntry {
                mode: Some(0o644),
                overwrite: None,
                contents: Contents::Inline(b"server 10.0.0.1 iburst\n".to_vec()),
            })
        );
        assert_eq!(
            config.file("/usr/local/bin/tool"),
            Some(FileEntry {
                mode: Some(0o755),
                overwrite: Some(true),
                contents: Contents::Remote {
                    url: "https://example.com/tool".into(),
                    hash: Some(format!("sha512-{}", "0".repeat(128))),
                },
            })
        );
        assert_eq!(
            config.file("/etc/empty"),
            Some(FileEntry {
                mode: Some(0o644),
                overwrite: None,
                contents: Contents::Empty,
            })
        );
        assert_eq!(config.directory("/var/lib/tool"), Some(Some(0o755)));
        assert_eq!(config.directory("/var/lib/secret"), Some(Some(0o700)));
        assert_eq!(
            config.link("/etc/localtime"),
            Some(("/usr/share/zoneinfo/UTC", false))
        );
        assert_eq!(
            config.link("/usr/local/bin/tool2"),
            Some(("/usr/local/bin/tool", true))
        );
        let tool = config.unit("tool.service").unwrap();
        assert_eq!(tool.enabled, Some(true));
        assert!(
            tool.contents
                .unwrap()
                .starts_with("[Unit]\nDescription=Tool\n")
        );
        assert_eq!(
            config.unit("kubelet.service").unwrap().dropins,
            [(
                "10-tool.conf".to_string(),
                Some("[Service]\nEnvironment=TOOL=1\n".to_string())
            )]
        );
        assert_eq!(config.unit("zincati.service").unwrap().mask, Some(true));
        assert_eq!(
            config.ssh_keys("core").unwrap(),
            ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOk ops@example"]
        );
        for version in IgnitionVersion::ALL {
            config
                .render(version)
                .unwrap_or_else(|e| panic!("{version}: {e}"));
        }
    }

    #[test]
    fn every_supported_variant_and_version_is_read() {
        for (variant, versions) in VARIANTS {
            for version in *versions {
                let text = format!("variant: {variant}\nversion: {version}\n");
                assert!(parse_snippet("a.bu", &text).is_ok(), "{text}");
            }
        }
        assert_eq!(
            parse_snippet("a.bu", "variant: fcos\nversion: 1.0.0\n").unwrap(),
            Config::new()
        );
    }

    /// Each bad snippet, with where its first problem is and what it is about.
    const BAD: &[(&str, &str, &str)] = &[
        (
            "variant: fcos\nversion: 1.5.0\nstorage:\n  fils: []\n",
            "bad.bu:4:3: storage.fils: unknown field 'fils', outside the supported subset",
            "did you mean 'files'?",
        ),
        (
            "variant: fcos\nversion: 1.5.0\nstorage:\n  files:\n    - path: /etc/x\n      contents:\n        local: x.conf\n",
            "bad.bu:7:16: storage.files[0].contents.local: is not supported in snippets",
            "contents.inline",
        ),
        (
            "variant: fcos\nversion: 1.5.0\nsystemd:\n  units:\n    - name: a.service\n      enabled: \"yes\"\n",
            "bad.bu:6:16: systemd.units[0].enabled: expected true or false, found 'yes'",
            "without quotes",
        ),
        (
            "variant: fcos\nversion: 1.5.0\nstorage:\n  files:\n    - path: /etc/x\n      mode: 644\n",
            "bad.bu:6:13: storage.files[0].mode: mode 644 is decimal, which is 1204 in octal",
            "write 0644",
        ),
        (
            "variant: fcos\nversion: 1.5.0\nstorage:\n  directories:\n    - path: var/lib/x\n",
            "bad.bu:5:13: storage.directories[0].path: 'var/lib/x' is not an absolute path",
            "/var/lib/x",
        ),
        (
            "variant: fcos\nversion: 1.5.0\nsystemd:\n  units:\n    - name: kubelet\n",
            "bad.bu:5:13: systemd.units[0].name: 'kubelet' is not a systemd unit name",
            "e.g. kubelet.service; the types are .service, .socket",
        ),
        (
            "variant: openshift\nversion: 4.14.0\n",
            "bad.bu:1:10: variant: variant 'openshift' is outside the supported subset",
            "fcos 1.0.0–1.5.0 or flatcar 1.0.0–1.1.0",
        ),
        (
            "variant: fcos\nversion: 1.6.0\n",
            "bad.bu:2:10: version: version '1.6.0' of variant fcos is outside the supported subset",
            "1.5.0",
        ),
        (
            "variant: fcos\nversion: 1.5.0\nstorage:\n  files:\n    - path: /etc/x\n     mode: 0644\n",
            "bad.bu:6:6: (document): is not valid YAML",
            "fix the syntax",
        ),
        (
            "variant: fcos\nversion: 1.5.0\nstorage:\n  filesystems:\n    - device: /dev/sdb\n",
            "bad.bu:4:3: storage.filesystems: is a Butane field outside the subset",
            "supported here: files, directories, links",
        ),
        (
            "variant: fcos\nversion: 1.5.0\npasswd:\n  users:\n    - name: core\n      password_hash: $y$x\n",
            "bad.bu:6:7: passwd.users[0].password_hash: is a Butane field outside the subset",
            "name, ssh_authorized_keys",
        ),
        (
            "variant: fcos\nversion: 1.5.0\nstorage:\n  files:\n    - path: /etc/x\n      mode: \"0644\"\n",
            "bad.bu:6:13: storage.files[0].mode: expected a permission mode, found '0644'",
            "no quotes",
        ),
        (
            "variant: fcos\nversion: 1.5.0\nstorage:\n  files:\n    - path: /etc/x\n      contents:\n        source: gopher://h/x\n",
            "bad.bu:7:17: storage.files[0].contents.source: 'gopher://h/x' is not a URL Ignition can fetch",
            "https:",
        ),
        (
            "variant: fcos\nversion: 1.5.0\nstorage:\n  files:\n    - path: /etc/x\n  links:\n    - path: /etc/x\n      target: /y\n",
            "bad.bu:7:13: storage.links[0].path: /etc/x is already declared at storage.files[0].path",
            "one entry per path",
        ),
        (
            "variant: fcos\nversion: 1.5.0\nsystemd:\n  units:\n    - name: a.service\n      dropins:\n        - name: override\n",
            "bad.bu:7:17: systemd.units[0].dropins[0].name: 'override' is not a drop-in file name",
            ".conf",
        ),
        (
            "variant: fcos\nversion: 1.5.0\nsystemd:\n  units:\n    - name: a.service\n      contents: \"[Unit\\n\"\n",
            "bad.bu:6:17: systemd.units[0].contents: section header '[Unit' is not closed",
            "[Section]",
        ),
        (
            "variant: fcos\nversion: 1.5.0\npasswd:\n  users:\n    - name: bad name\n",
            "bad.bu:5:13: passwd.users[0].name: 'bad name' is not a valid user name",
            "lowercase",
        ),
        (
            "version: 1.5.0\n",
            "bad.bu:1:1: variant: is required but missing",
            "variant: fcos",
        ),
        (
            "variant: fcos\nversion: 1.5.0\nstorage:\n  files:\n    path: /etc/x\n",
            "bad.bu:5:5: storage.files: expected a list, found a mapping",
            "'- item'",
        ),
    ];

    #[test]
    fn each_bad_snippet_is_refused_at_the_right_place() {
        for (text, start, hint) in BAD {
            let err = parse_snippet("bad.bu", text).unwrap_err();
            let first = err.problems[0].to_string();
            assert!(
                first.starts_with(start),
                "{text}\nexpected: {start}\ngot:      {first}"
            );
            let (_, after_dash) = first
                .split_once(" — ")
                .unwrap_or_else(|| panic!("no hint: {first}"));
            assert!(
                after_dash.contains(hint),
                "{text}\nhint {hint:?} not in: {first}"
            );
        }
    }

    #[test]
    fn every_problem_is_reported_at_once_one_line_each() {
        let text = "variant: fcos\nversion: 1.5.0\nstorage:\n  files:\n    - path: etc/a\n      mode: 999\n  trees: []\nsystemd:\n  units:\n    - name: x\n";
        let err = parse_snippet("s.bu", text).unwrap_err();
        let lines: Vec<String> = err.to_string().lines().map(str::to_string).collect();
        assert_eq!(lines.len(), 4, "{err}");
        assert!(
            lines[0].starts_with("s.bu:5:13: storage.files[0].path:"),
            "{}",
            lines[0]
        );
        assert!(
            lines[1].starts_with("s.bu:6:13: storage.files[0].mode:"),
            "{}",
            lines[1]
        );
        assert!(
            lines[2].starts_with("s.bu:7:3: storage.trees:"),
            "{}",
            lines[2]
        );
        assert!(
            lines[3].starts_with("s.bu:10:13: systemd.units[0].name:"),
            "{}",
            lines[3]
        );
        assert_eq!(err.problems.len(), 4);
    }
}
