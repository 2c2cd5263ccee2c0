//! Which group a request selects: matchbox's rule, with hash lookups by MAC and UUID.
//!
//! matchbox (`matchbox/server/server.go`, `SelectGroup`) sorts the groups with
//! `sort.Reverse(ByReqs)` and serves the first whose selectors all match the request's labels.
//! `ByReqs` (`storagepb/group.go`) orders by the number of selectors, then by the selectors
//! written as sorted `key=value` pairs joined with `,`; reversed, that is: **most selectors
//! first, then the greater selector string first**. Groups with identical selectors are left in
//! an unspecified order by matchbox (its docs: "avoid defining multiple default groups as
//! resolution will not be deterministic"); kindling puts the smaller group id first and warns.
//!
//! Labels are the request's query parameters, first value of each (`labelsFromRequest` in
//! `matchbox/http/parse.go`). A `mac` label is normalised to the lower-case colon form, and
//! dropped when it does not parse; a `mac` selector is normalised when the group is loaded
//! (`Group.Normalize`), so every MAC spelling matches. kindling also compares `uuid` labels and
//! selectors case-insensitively (and in braced or unhyphenated form), where matchbox compares
//! them byte for byte. Keys are matched exactly, as in matchbox, but for the machine's own
//! identity: `mac`, `uuid`, `serial` and `hostname` are one key in any case (`MAC=`, `Mac=`), in
//! requests and in selectors alike, where matchbox takes `MAC` for another label.

use std::cmp::Reverse;
use std::collections::{BTreeMap, HashMap};

use kindling_config::MacAddr;

use crate::{Group, Profile};

/// The request's labels: its query parameters (`mac`, `uuid`, `hostname`, `serial`, `os`, …)
/// and the raw query, which templates see as `.request.raw_query`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Labels {
    query: BTreeMap<String, String>,
    raw_query: String,
    ignored_mac: Option<String>,
}

impl Labels {
    /// Labels with no query.
    pub fn new() -> Labels {
        Labels::default()
    }

    /// The labels of a URL query string such as `mac=52-54-00-89-d8-10&os=installed`, decoded as
    /// Go's `url.ParseQuery` does (`+` is a space, `%XX` a byte; pairs that do not decode, or
    /// hold a `;`, are skipped). The first value of a repeated key wins.
    pub fn from_query(raw_query: &str) -> Labels {
        let mut labels = Labels {
            raw_query: raw_query.to_string(),
            ..Labels::default()
        };
        let mut first: BTreeMap<String, String> = BTreeMap::new();
        for pair in raw_query.split('&') {
            if pair.is_empty() || pair.contains(';') {
                continue;
            }
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let (Some(key), Some(value)) = (query_unescape(key), query_unescape(value)) else {
                continue;
            };
            first.entry(canonical_key(key)).or_insert(value);
        }
        for (key, value) in first {
            labels.insert(key, value);
        }
        labels
    }

    /// These labels with `key` set to `value` (a `mac` normalised, or dropped if it is not a MAC
    /// address). The raw query is left as it is.
    pub fn with(mut self, key: impl Into<String>, value: impl Into<String>) -> Labels {
        self.insert(key.into(), value.into());
        self
    }

    fn insert(&mut self, key: String, value: String) {
        let key = canonical_key(key);
        if key == "mac" {
            match value.parse::<MacAddr>() {
                Ok(mac) => {
                    self.query.insert(key, mac.to_string());
                }
                Err(_) => {
                    self.query.remove(&key);
                    self.ignored_mac = Some(value);
                }
            }
        } else {
            self.query.insert(key, value);
        }
    }

    /// The value of label `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.query.get(key).map(String::as_str)
    }

    /// Every label, by key; templates see these as `.request.query`.
    pub fn query(&self) -> &BTreeMap<String, String> {
        &self.query
    }

    /// The query string as it arrived.
    pub fn raw_query(&self) -> &str {
        &self.raw_query
    }

    /// The request's `mac` label.
    pub fn mac(&self) -> Option<MacAddr> {
        self.get("mac").and_then(|m| m.parse().ok())
    }

    /// The request's `uuid` label in lower-case hyphenated form, whatever case or form it came in.
    pub fn uuid(&self) -> Option<String> {
        self.get("uuid").map(normalise_uuid)
    }

    /// A `mac` label that was not a MAC address and so was dropped.
    pub fn ignored_mac(&self) -> Option<&str> {
        self.ignored_mac.as_deref()
    }

    /// `mac=…, uuid=…` for messages: the identifying labels, or all of them.
    fn describe(&self) -> String {
        let key: Vec<String> = ["mac", "uuid", "hostname"]
            .iter()
            .filter_map(|k| {
                self.get(k)
                    .filter(|v| !v.is_empty())
                    .map(|v| format!("{k}={v}"))
            })
            .collect();
        if !key.is_empty() {
            return key.join(", ");
        }
        let all: Vec<String> = self.query.iter().map(|(k, v)| format!("{k}={v}")).collect();
        if all.is_empty() {
            "a request without labels".into()
        } else {
            all.join(", ")
        }
    }
}

/// Decodes one `application/x-www-form-urlencoded` component, or `None` if a `%` escape is bad.
fn query_unescape(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes.get(i + 1..i + 3)?;
                let hex = std::str::from_utf8(hex).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    Some(String::from_utf8_lossy(&out).into_owned())
}

/// A UUID in its lower-case hyphenated form, whatever case or form (braced, URN, unhyphenated)
/// it came in; anything that is not a UUID is only lower-cased.
pub(crate) fn normalise_uuid(s: &str) -> String {
    match uuid::Uuid::try_parse(s) {
        Ok(u) => u.hyphenated().to_string(),
        Err(_) => s.to_ascii_lowercase(),
    }
}

/// What a request selected: the group, and the profile it names.
#[derive(Debug, Clone, Copy)]
pub struct Selected<'a> {
    /// The most specific matching group.
    pub group: &'a Group,
    /// The group's profile.
    pub profile: &'a Profile,
}

impl Selected<'_> {
    /// The variables templates are rendered with for this group and request
    /// (see [`crate::template_vars`]).
    pub fn vars(&self, request: &Labels) -> serde_json::Value {
        crate::template_vars(self.group, request)
    }
}

/// No group matches a request; the reason is one line, fit for a 404 body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct NoMatch {
    /// Why nothing matched, naming the request's labels and the nearest group.
    pub reason: String,
}

/// One selector, ready to compare.
#[derive(Debug, Clone)]
enum Want {
    Mac(MacAddr),
    Uuid(String),
    Text(String),
}

/// The groups in selection order, with their selectors compiled and indexed.
#[derive(Debug, Clone, Default)]
pub(crate) struct Selection {
    selectors: Vec<Vec<(String, Want)>>,
    by_mac: HashMap<MacAddr, Vec<usize>>,
    by_uuid: HashMap<String, Vec<usize>>,
    rest: Vec<usize>,
}

/// Sorts `groups` into selection order and indexes them. Returns warnings about groups whose
/// selectors are the same, where the order is kindling's choice.
pub(crate) fn prepare(groups: &mut [Group]) -> (Selection, Vec<String>) {
    groups.sort_by_cached_key(|g| {
        (
            Reverse(g.selector.len()),
            Reverse(selector_string(g)),
            g.id.clone(),
        )
    });
    let mut warnings = Vec::new();
    for pair in groups.windows(2) {
        if selector_string(&pair[0]) == selector_string(&pair[1]) {
            let what = if pair[0].selector.is_empty() {
                "are both default groups (no selectors)".to_string()
            } else {
                format!("have the same selectors ({})", selector_string(&pair[0]))
            };
            warnings.push(format!(
                "groups `{}` ({}) and `{}` ({}) {what}; `{}` is chosen because its id sorts first (matchbox would choose either)",
                pair[0].id,
                pair[0].source.display(),
                pair[1].id,
                pair[1].source.display(),
                pair[0].id,
            ));
        }
    }
    let mut selection = Selection::default();
    for (i, group) in groups.iter().enumerate() {
        let compiled: Vec<(String, Want)> = group
            .selector
            .iter()
            .map(|(k, v)| (canonical_key(k.clone()), want(k, v)))
            .collect();
        let mac = compiled.iter().find_map(|(k, w)| match w {
            Want::Mac(m) if k == "mac" => Some(*m),
            _ => None,
        });
        let uuid = compiled.iter().find_map(|(k, w)| match w {
            Want::Uuid(u) if k == "uuid" => Some(u.clone()),
            _ => None,
        });
        match (mac, uuid) {
            (Some(mac), _) => selection.by_mac.entry(mac).or_default().push(i),
            (None, Some(uuid)) => selection.by_uuid.entry(uuid).or_default().push(i),
            (None, None) => selection.rest.push(i),
        }
        selection.selectors.push(compiled);
    }
    (selection, warnings)
}

/// The selector as matchbox sorts it: `key=value` pairs, sorted, joined with `,`. UUIDs are
/// normalised so that their case does not change the order.
fn selector_string(group: &Group) -> String {
    let mut pairs: Vec<String> = group
        .selector
        .iter()
        .map(|(k, v)| match want(k, v) {
            Want::Uuid(u) => format!("{k}={u}"),
            _ => format!("{k}={v}"),
        })
        .collect();
    pairs.sort();
    pairs.join(",")
}

/// The keys that name the machine itself, matched in any case.
pub const IDENTITY_KEYS: [&str; 4] = ["mac", "uuid", "serial", "hostname"];

/// `key`, in lower case if it is one of [`IDENTITY_KEYS`] in any case; else as it is.
pub fn canonical_key(key: String) -> String {
    match IDENTITY_KEYS.iter().find(|k| key.eq_ignore_ascii_case(k)) {
        Some(k) => (*k).to_string(),
        None => key,
    }
}

fn want(key: &str, value: &str) -> Want {
    if key.eq_ignore_ascii_case("mac")
        && let Ok(mac) = value.parse()
    {
        return Want::Mac(mac);
    }
    if key.eq_ignore_ascii_case("uuid") {
        return Want::Uuid(normalise_uuid(value));
    }
    Want::Text(value.to_string())
}

impl Selection {
    /// The first selector of group `i` the request does not satisfy.
    fn unmet<'s>(&'s self, i: usize, labels: &Labels) -> Option<&'s (String, Want)> {
        self.selectors[i].iter().find(|(key, want)| {
            let Some(have) = labels.get(key) else {
                return true;
            };
            match want {
                Want::Mac(m) => have.parse::<MacAddr>().ok() != Some(*m),
                Want::Uuid(u) => normalise_uuid(have) != *u,
                Want::Text(t) => have != t,
            }
        })
    }

    /// The groups a request could match: those indexed under its MAC and UUID, and the rest.
    fn candidates<'s>(&'s self, labels: &Labels) -> [&'s [usize]; 3] {
        let by_mac = labels
            .mac()
            .and_then(|m| self.by_mac.get(&m))
            .map_or(&[][..], Vec::as_slice);
        let by_uuid = labels
            .uuid()
            .and_then(|u| self.by_uuid.get(&u))
            .map_or(&[][..], Vec::as_slice);
        [by_mac, by_uuid, &self.rest]
    }

    /// The index of the group `labels` select, in selection order.
    pub(crate) fn select(&self, labels: &Labels) -> Option<usize> {
        let mut best: Option<usize> = None;
        for list in self.candidates(labels) {
            for &i in list {
                if best.is_some_and(|b| b < i) {
                    break;
                }
                if self.unmet(i, labels).is_none() {
                    best = Some(i);
                    break;
                }
            }
        }
        best
    }

    /// Why no group matches `labels`.
    pub(crate) fn no_match(&self, groups: &[Group], labels: &Labels) -> NoMatch {
        let mut reason = format!("no group matches {}", labels.describe());
        if let Some(bad) = labels.ignored_mac() {
            reason.push_str(&format!(
                " (mac '{bad}' is not a MAC address, so it was ignored)"
            ));
        }
        let [by_mac, by_uuid, _] = self.candidates(labels);
        let near = by_mac
            .first()
            .map(|&i| (i, "mac"))
            .or_else(|| by_uuid.first().map(|&i| (i, "uuid")));
        if let Some((i, key)) = near
            && let Some((need, want)) = self.unmet(i, labels)
        {
            let value = match want {
                Want::Mac(m) => m.to_string(),
                Want::Uuid(u) => u.clone(),
                Want::Text(t) => t.clone(),
            };
            let has = match labels.get(need) {
                Some(v) => format!("{need}={v}"),
                None => format!("no {need}"),
            };
            reason.push_str(&format!(
                ": group `{}` selects this {key} but also needs {need}={value}, and the request has {has}",
                groups[i].id
            ));
        }
        reason.push_str("; there is no default group (a group without selectors)");
        NoMatch { reason }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn queries_decode_as_go_does() {
        let l = Labels::from_query(
            "mac=52-54-00-89-D8-10&foo=some+param&bar=b%26c&foo=second&x;y=1&bad=%zz&flag",
        );
        assert_eq!(l.get("mac"), Some("52:54:00:89:d8:10"));
        assert_eq!(l.get("foo"), Some("some param"));
        assert_eq!(l.get("bar"), Some("b&c"));
        assert_eq!(l.get("flag"), Some(""));
        assert_eq!(l.get("bad"), None);
        assert_eq!(l.get("x;y"), None);
        assert_eq!(
            l.raw_query(),
            "mac=52-54-00-89-D8-10&foo=some+param&bar=b%26c&foo=second&x;y=1&bad=%zz&flag"
        );
    }

    #[test]
    fn a_bad_mac_label_is_dropped_and_remembered() {
        let l = Labels::from_query("mac=zz&uuid=1");
        assert_eq!(l.get("mac"), None);
        assert_eq!(l.ignored_mac(), Some("zz"));
        let l = Labels::new().with("MAC", "0050.5696.11C2");
        assert_eq!(l.get("mac"), Some("00:50:56:96:11:c2"));
    }

    #[test]
    fn the_machines_identity_keys_are_one_key_in_any_case_and_others_are_exact() {
        let l = Labels::from_query(
            "MAC=52-54-00-89-D8-10&Uuid=A1B2&HOSTNAME=node1&Serial=S1&Os=installed&mac=52:54:00:00:00:01",
        );
        assert_eq!(
            l.get("mac"),
            Some("52:54:00:89:d8:10"),
            "the first value wins"
        );
        assert_eq!(l.get("uuid"), Some("A1B2"));
        assert_eq!(l.get("hostname"), Some("node1"));
        assert_eq!(l.get("serial"), Some("S1"));
        assert_eq!(l.get("Os"), Some("installed"));
        assert_eq!(l.get("os"), None);
        assert_eq!(canonical_key("Mac".into()), "mac");
        assert_eq!(canonical_key("macs".into()), "macs");
    }

    #[test]
    fn uuids_normalise_across_case_and_form() {
        let want = "16e7d8a7-bfa9-428b-9117-363341bb330b";
        for form in [
            "16E7D8A7-BFA9-428B-9117-363341BB330B",
            "16e7d8a7bfa9428b9117363341bb330b",
            "{16e7d8a7-bfa9-428b-9117-363341bb330b}",
            "urn:uuid:16E7D8A7-BFA9-428B-9117-363341BB330B",
        ] {
            assert_eq!(normalise_uuid(form), want, "{form}");
        }
        assert_eq!(normalise_uuid("A1B2C3D4"), "a1b2c3d4");
    }

    proptest! {
        #[test]
        fn every_spelling_of_a_mac_is_one_label(octets in any::<[u8; 6]>(), upper in any::<bool>(), form in 0..3usize) {
            let mac = MacAddr::new(octets);
            let hex: Vec<String> = octets.iter().map(|b| format!("{b:02x}")).collect();
            let mut text = match form {
                0 => hex.join(":"),
                1 => hex.join("-"),
                _ => format!("{}{}.{}{}.{}{}", hex[0], hex[1], hex[2], hex[3], hex[4], hex[5]),
            };
            if upper {
                text = text.to_uppercase();
            }
            let labels = Labels::from_query(&format!("mac={text}"));
            prop_assert_eq!(labels.mac(), Some(mac));
            let canonical = mac.to_string();
            prop_assert_eq!(labels.get("mac"), Some(canonical.as_str()));
        }

        #[test]
        fn every_spelling_of_a_uuid_normalises_alike(bytes in any::<[u8; 16]>(), upper in any::<bool>(), braced in any::<bool>()) {
            let u = uuid::Uuid::from_bytes(bytes);
            let mut text = u.hyphenated().to_string();
            if upper {
                text = text.to_uppercase();
            }
            if braced {
                text = format!("{{{text}}}");
            }
            prop_assert_eq!(normalise_uuid(&text), u.hyphenated().to_string());
        }

        #[test]
        fn query_parsing_never_panics(q in "\\PC{0,40}") {
            let _ = Labels::from_query(&q);
        }
    }
}
