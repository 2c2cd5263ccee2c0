//! Lints the zone files under `infra/named/` for the faults that make BIND refuse a zone or
//! answer wrongly, pointing at the file and line: an in-zone NS name without an address record,
//! a `*.app` wildcard instead of `*.apps`, a name missing its trailing dot, a reverse zone
//! naming servers from another domain, an API name on the wrong VIP.
//!
//! This is a reader for the zone files kindling and the usual runbooks write (RFC 1035 master
//! files: `$ORIGIN`, `$TTL`, parentheses, comments), not a full one; `named-checkzone` remains
//! the authority on syntax.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use super::{Area, Finding, Request, Severity};

/// One record as written: absolute owner, type, data words, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZoneRecord {
    pub line: usize,
    pub owner: String,
    pub rtype: String,
    /// The data words, with relative names as written.
    pub data: Vec<String>,
}

/// A zone file read back.
#[derive(Debug, Clone)]
pub struct ZoneFile {
    pub path: PathBuf,
    /// The zone's name, without the trailing dot.
    pub origin: String,
    pub records: Vec<ZoneRecord>,
}

const TYPES: &[&str] = &[
    "SOA", "NS", "A", "AAAA", "PTR", "CNAME", "MX", "TXT", "SRV", "CAA", "DNAME", "HINFO",
];

/// `name` as written in a zone with `origin`, made absolute (lower case, no trailing dot).
pub fn absolute(name: &str, origin: &str) -> String {
    let name = name.to_ascii_lowercase();
    if name == "@" {
        origin.to_string()
    } else if let Some(abs) = name.strip_suffix('.') {
        abs.to_string()
    } else if origin.is_empty() {
        name
    } else {
        format!("{name}.{origin}")
    }
}

impl ZoneFile {
    /// Reads the records of `text`, a zone whose origin is `origin` unless `$ORIGIN` says so.
    pub fn parse(path: PathBuf, text: &str, origin: &str) -> ZoneFile {
        let mut origin = origin.trim_end_matches('.').to_ascii_lowercase();
        let zone = origin.clone();
        let mut records = Vec::new();
        let mut last_owner = origin.clone();
        // Logical lines: a '(' continues a record over several lines until ')'.
        let mut pending: Option<(usize, bool, Vec<String>)> = None;
        for (i, raw) in text.lines().enumerate() {
            let line_no = i + 1;
            let words = words(raw);
            let (start, owner_given, mut acc) = match pending.take() {
                Some(p) => p,
                None => {
                    if words.is_empty() {
                        continue;
                    }
                    (line_no, !raw.starts_with(char::is_whitespace), Vec::new())
                }
            };
            acc.extend(words);
            if pending_depth(&acc) > 0 {
                pending = Some((start, owner_given, acc));
                continue;
            }
            let mut w = acc.into_iter();
            let Some(first) = w.next() else { continue };
            if first.starts_with('$') {
                if first.eq_ignore_ascii_case("$ORIGIN")
                    && let Some(o) = w.next()
                {
                    origin = absolute(&o, &origin);
                }
                continue;
            }
            let mut rest: Vec<String> = Vec::new();
            let owner = if owner_given {
                absolute(&first, &origin)
            } else {
                rest.push(first);
                last_owner.clone()
            };
            rest.extend(w);
            last_owner = owner.clone();
            // Skip TTL and class, in either order, to find the type.
            let Some(t) = rest
                .iter()
                .position(|x| TYPES.iter().any(|t| t.eq_ignore_ascii_case(x)))
            else {
                continue;
            };
            records.push(ZoneRecord {
                line: start,
                owner,
                rtype: rest[t].to_ascii_uppercase(),
                data: rest[t + 1..]
                    .iter()
                    .filter(|x| *x != "(" && *x != ")")
                    .cloned()
                    .collect(),
            });
        }
        ZoneFile {
            path,
            origin: zone,
            records,
        }
    }

    /// The absolute name a data word refers to, in this zone.
    fn target(&self, word: &str) -> String {
        absolute(word, &self.origin)
    }

    fn has_address(&self, name: &str) -> bool {
        self.records
            .iter()
            .any(|r| r.owner == name && (r.rtype == "A" || r.rtype == "AAAA"))
    }

    fn is_reverse(&self) -> bool {
        self.origin.ends_with("in-addr.arpa") || self.origin.ends_with("ip6.arpa")
    }
}

/// Splits a line into words, dropping comments; parentheses are words of their own. Quoted
/// strings are one word.
fn words(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    for c in line.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                cur.push(c);
            }
            ';' if !quoted => break,
            '(' | ')' if !quoted => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
                out.push(c.to_string());
            }
            c if c.is_whitespace() && !quoted => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
            }
            c => cur.push(c),
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

fn pending_depth(words: &[String]) -> i32 {
    words.iter().fold(0, |d, w| match w.as_str() {
        "(" => d + 1,
        ")" => d - 1,
        _ => d,
    })
}

/// Zone statements in named.conf-style files: `zone "NAME" ... file "PATH";` (file name only).
fn zone_statements(text: &str) -> BTreeMap<String, String> {
    let mut map = BTreeMap::new();
    let mut rest = text;
    while let Some(i) = rest.find("zone \"") {
        rest = &rest[i + 6..];
        let Some((name, after)) = rest.split_once('"') else {
            break;
        };
        let block_end = after.find("};").unwrap_or(after.len());
        let block = &after[..block_end];
        if let Some(f) = block.find("file \"") {
            let file = &block[f + 6..];
            if let Some((file, _)) = file.split_once('"') {
                let base = Path::new(file)
                    .file_name()
                    .map_or(file.to_string(), |b| b.to_string_lossy().into_owned());
                map.insert(base, name.trim_end_matches('.').to_ascii_lowercase());
            }
        }
        rest = after;
    }
    map
}

/// The zone a file holds when no config names it: `db.example.com`, `example.com.zone`.
fn origin_from_file_name(name: &str) -> String {
    let n = name.strip_prefix("db.").unwrap_or(name);
    let n = n
        .strip_suffix(".zone")
        .or_else(|| n.strip_suffix(".db"))
        .unwrap_or(n);
    n.to_ascii_lowercase()
}

/// Reads every zone file under `dir`.
pub fn read_dir(dir: &Path) -> Result<Vec<ZoneFile>, String> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| format!("reading {}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    let mut texts = Vec::new();
    for path in files {
        let bytes = std::fs::read(&path).map_err(|e| format!("reading {}: {e}", path.display()))?;
        // named keeps its own binary files (journals, managed keys) next to the zones when
        // this is its `directory`: they are not ours to lint.
        if let Ok(text) = String::from_utf8(bytes) {
            texts.push((path, text));
        }
    }
    let mut origins = BTreeMap::new();
    for (_, text) in &texts {
        origins.extend(zone_statements(text));
    }
    Ok(texts
        .into_iter()
        .filter(|(_, text)| !text.contains("zone \"") && text.to_ascii_uppercase().contains("SOA"))
        .map(|(path, text)| {
            let base = path
                .file_name()
                .map(|b| b.to_string_lossy().into_owned())
                .unwrap_or_default();
            let origin = origins
                .get(&base)
                .cloned()
                .unwrap_or_else(|| origin_from_file_name(&base));
            ZoneFile::parse(path, &text, &origin)
        })
        .collect())
}

/// Runs the zone-file lint when `infra/named/` exists.
pub fn check(req: &Request) -> Vec<Finding> {
    let dir = req.dir.join("infra/named");
    if !dir.is_dir() {
        return Vec::new();
    }
    match read_dir(&dir) {
        Ok(zones) => lint(req, &zones, &req.dir),
        Err(e) => vec![Finding::new(
            Severity::Error,
            Area::Dns,
            "dns.zone-file",
            dir.display().to_string(),
            e,
        )],
    }
}

/// The faults in `zones`; subjects are `file:line`, relative to `base`.
pub fn lint(req: &Request, zones: &[ZoneFile], base: &Path) -> Vec<Finding> {
    let d = &req.description;
    let domain = d.cluster_domain();
    let base_domain = d.install_config.base_domain.to_ascii_lowercase();
    let lb = &d.inventory.load_balancer;
    let mut expected: BTreeMap<String, (IpAddr, String)> = BTreeMap::new();
    expected.insert(d.api_host(), (lb.api_vip, "the API VIP".into()));
    expected.insert(d.api_int_host(), (lb.api_int_vip, "the api-int VIP".into()));
    for m in &d.inventory.machines {
        expected.insert(d.fqdn(m), (m.ip, format!("{}'s address", m.name)));
    }
    let mut out = Vec::new();
    let mut clean = 0;
    for z in zones {
        let before = out.len();
        let rel = z
            .path
            .strip_prefix(base)
            .unwrap_or(&z.path)
            .display()
            .to_string();
        let at = |r: &ZoneRecord| format!("{rel}:{}", r.line);
        let err = |r: &ZoneRecord, what: String| {
            Finding::new(Severity::Error, Area::Dns, "dns.zone-file", at(r), what)
        };
        for r in &z.records {
            let first = r.data.first().map(String::as_str).unwrap_or_default();
            match r.rtype.as_str() {
                "NS" => {
                    let target = z.target(first);
                    let in_zone = target == z.origin || target.ends_with(&format!(".{}", z.origin));
                    if in_zone && !z.has_address(&target) {
                        out.push(
                            err(r, format!("the zone {} has NS {target}, which is inside the zone but has no A or AAAA record in it: BIND refuses to load the whole zone", z.origin))
                                .why("every name in the zone then answers SERVFAIL: api, api-int and the machines do not resolve")
                                .fix(format!("add '{target}. IN A <the DNS server's address>' to {rel}, raise the serial and reload")),
                        );
                    }
                }
                "A" | "AAAA" => {
                    if let (Some((ip, what)), Ok(got)) =
                        (expected.get(&r.owner), first.parse::<IpAddr>())
                        && got != *ip
                    {
                        let role = req
                            .describe_ip(got)
                            .map(|x| format!(" ({x})"))
                            .unwrap_or_default();
                        out.push(
                            err(
                                r,
                                format!("{} points at {got}{role}, not {ip} ({what})", r.owner),
                            )
                            .why("machines and clients would reach the wrong service at this name")
                            .fix(format!(
                                "change it to '{}. IN {} {ip}', raise the serial and reload",
                                r.owner, r.rtype
                            )),
                        );
                    }
                }
                _ => {}
            }
            if r.owner == format!("*.app.{domain}") {
                out.push(
                    err(r, format!("the wildcard is '*.app.{domain}', not '*.apps.{domain}'"))
                        .why("routes (console, OAuth) live under *.apps; with the typo none of them resolves and the install never completes")
                        .fix(format!("rename the owner to '*.apps.{domain}.' (or '*.apps' relative to {})", z.origin)),
                );
            }
            // A relative name with dots in the data of a reverse zone almost always lacks its
            // trailing dot: "master0.demo.example.com" becomes "...in-addr.arpa".
            if z.is_reverse() && matches!(r.rtype.as_str(), "PTR" | "NS" | "SOA") {
                for w in r.data.iter().take(if r.rtype == "SOA" { 2 } else { 1 }) {
                    if w.contains('.') && !w.ends_with('.') {
                        out.push(
                            err(r, format!("'{w}' has no trailing dot, so it means '{}'", z.target(w)))
                                .why("relative names get the zone's origin appended; the machine would be named after the reverse zone")
                                .fix(format!("write '{w}.'")),
                        );
                    }
                }
            }
            if z.is_reverse() && matches!(r.rtype.as_str(), "NS" | "SOA") {
                let server = z.target(first);
                if !(server.ends_with(&format!(".{base_domain}")) || server == base_domain) {
                    out.push(
                        Finding::new(
                            Severity::Warning,
                            Area::Dns,
                            "dns.zone-file",
                            at(r),
                            format!("the reverse zone {} names {} server {server}, outside {base_domain}", z.origin, r.rtype),
                        )
                        .why("a reverse zone copied from another domain names servers that do not serve this cluster")
                        .fix("name the forward zone's name server, as in its NS record"),
                    );
                }
            }
        }
        if out.len() == before {
            clean += 1;
        }
    }
    if clean > 0 {
        out.push(Finding::new(
            Severity::Ok,
            Area::Dns,
            "dns.zone-file",
            "infra/named/",
            format!("{clean} zone file(s) have none of the faults doctor knows"),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const ZONE: &str = r#"$TTL 1h
@ IN SOA ns1 hostmaster (
  1 ; serial
  1h 15m 1w 1h )
  IN NS ns1
api     IN A 10.0.0.10
*.app   IN A 10.0.0.11
www 300 IN CNAME api ; comment
"#;

    #[test]
    fn records_with_parentheses_comments_and_blank_owners() {
        let z = ZoneFile::parse("z".into(), ZONE, "demo.example.");
        let got: Vec<_> = z
            .records
            .iter()
            .map(|r| (r.line, r.owner.as_str(), r.rtype.as_str(), r.data.join(" ")))
            .collect();
        assert_eq!(
            got,
            [
                (
                    2,
                    "demo.example",
                    "SOA",
                    "ns1 hostmaster 1 1h 15m 1w 1h".into()
                ),
                (5, "demo.example", "NS", "ns1".into()),
                (6, "api.demo.example", "A", "10.0.0.10".into()),
                (7, "*.app.demo.example", "A", "10.0.0.11".into()),
                (8, "www.demo.example", "CNAME", "api".into()),
            ]
        );
        assert!(!z.has_address("ns1.demo.example"));
    }

    #[test]
    fn origin_and_names() {
        assert_eq!(absolute("@", "x.y"), "x.y");
        assert_eq!(absolute("A.", "x.y"), "a");
        assert_eq!(absolute("a", "x.y"), "a.x.y");
        let z = ZoneFile::parse("z".into(), "$ORIGIN sub.x.y.\nb IN A 1.2.3.4\n", "x.y");
        assert_eq!(z.records[0].owner, "b.sub.x.y");
        let conf = "zone \"demo.example\" IN { type master; file \"/etc/bind/db.demo\"; };\nzone \"0.10.in-addr.arpa\" { file \"rev\"; };";
        let m = zone_statements(conf);
        assert_eq!(m["db.demo"], "demo.example");
        assert_eq!(m["rev"], "0.10.in-addr.arpa");
        assert_eq!(origin_from_file_name("db.demo.example"), "demo.example");
        assert_eq!(
            origin_from_file_name("0.10.in-addr.arpa.zone"),
            "0.10.in-addr.arpa"
        );
    }
}
