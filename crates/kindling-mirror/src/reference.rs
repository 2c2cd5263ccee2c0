//! Image references as manifests write them (`registry.k8s.io/pause:3.10.1`, `busybox`,
//! `ghcr.io/x/y@sha256:…`), normalised as Docker and containerd do: a first component with a
//! dot, a colon or `localhost` is a registry; otherwise the image is on docker.io, and a
//! one-component name there is under `library/`.

use std::fmt;
use std::str::FromStr;

use crate::Digest;

/// A normalised image reference.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Reference {
    /// `registry.k8s.io`, `docker.io`, `127.0.0.1:5000`.
    pub registry: String,
    /// `pause`, `library/busybox`, `coredns/coredns`.
    pub repository: String,
    /// The tag; `latest` when the reference names neither a tag nor a digest.
    pub tag: Option<String>,
    pub digest: Option<Digest>,
}

impl Reference {
    /// `registry/repository`: the name the mirror keeps the image under, and the repository
    /// name a client asks kindling's registry for.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }
}

impl FromStr for Reference {
    type Err = String;
    fn from_str(s: &str) -> Result<Reference, String> {
        let bad = |why: &str| format!("{s:?} is not an image reference: {why}");
        let (rest, digest) = match s.split_once('@') {
            Some((rest, digest)) => (rest, Some(digest.parse::<Digest>().map_err(|e| bad(&e))?)),
            None => (s, None),
        };
        // A tag follows the last colon after the last slash (a registry port has a slash after it).
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..])),
            None => (rest, None),
        };
        if let Some(tag) = tag
            && !is_tag(tag)
        {
            return Err(bad(&format!(
                "tag {tag:?} is not [A-Za-z0-9_][A-Za-z0-9._-]{{0,127}}"
            )));
        }
        let (registry, repository) = match name.split_once('/') {
            Some((first, rest))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                (first.to_string(), rest.to_string())
            }
            _ => ("docker.io".to_string(), name.to_string()),
        };
        let repository = if registry == "docker.io" && !repository.contains('/') {
            format!("library/{repository}")
        } else {
            repository
        };
        if !is_repository(&repository) {
            return Err(bad(&format!(
                "repository {repository:?} is not lowercase path components [a-z0-9] joined by . _ __ or -"
            )));
        }
        let tag = match (tag, &digest) {
            (Some(tag), _) => Some(tag.to_string()),
            (None, Some(_)) => None,
            (None, None) => Some("latest".to_string()),
        };
        Ok(Reference {
            registry,
            repository,
            tag,
            digest,
        })
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

/// The distribution spec's tag grammar: `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`.
pub fn is_tag(tag: &str) -> bool {
    let mut bytes = tag.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_')
        && tag.len() <= 128
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// The distribution spec's repository name grammar: path components of `[a-z0-9]+` runs joined
/// by `.`, `_`, `__` or `-`s, separated by `/`. The registry host is a component too here, since
/// kindling's registry keeps every upstream's images under their full name.
pub fn is_repository(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && name.split('/').all(|component| {
            let runs: Vec<&str> = component.split(['.', '_', '-']).collect();
            // `a__b` splits to an empty run between the underscores; `a._b` must not pass.
            let separators_ok = !component.contains("._")
                && !component.contains("_.")
                && !component.contains("___")
                && !component.contains(".-")
                && !component.contains("-.")
                && !component.contains("_-")
                && !component.contains("-_")
                && !component.contains("..");
            separators_ok
                && runs.first().is_some_and(|r| !r.is_empty())
                && runs.last().is_some_and(|r| !r.is_empty())
                && component
                    .bytes()
                    .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'.' | b'_' | b'-'))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Reference {
        s.parse().unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn references_are_normalised_as_containerd_does() {
        let pause = parse("registry.k8s.io/pause:3.10.1");
        assert_eq!(pause.name(), "registry.k8s.io/pause");
        assert_eq!(pause.tag.as_deref(), Some("3.10.1"));
        assert_eq!(
            parse("busybox").to_string(),
            "docker.io/library/busybox:latest"
        );
        assert_eq!(
            parse("flannel/flannel:v1").name(),
            "docker.io/flannel/flannel"
        );
        assert_eq!(
            parse("localhost:5000/a/b").to_string(),
            "localhost:5000/a/b:latest"
        );
        assert_eq!(
            parse("registry.k8s.io/coredns/coredns:v1.12.1").repository,
            "coredns/coredns"
        );
        let pinned = parse(&format!("quay.io/x/y@sha256:{}", "a".repeat(64)));
        assert_eq!(pinned.tag, None);
        assert!(pinned.digest.is_some());
        for bad in ["Upper/Case:1", "a:b:c", "a/b:", "a//b", "a/-b"] {
            assert!(bad.parse::<Reference>().is_err(), "{bad}");
        }
    }

    #[test]
    fn names_follow_the_distribution_grammar() {
        for good in [
            "a",
            "a/b",
            "a.b/c-d",
            "a__b",
            "a---b",
            "registry.k8s.io/pause",
        ] {
            assert!(is_repository(good), "{good}");
        }
        for bad in ["", "A", "a/", "/a", "a/../b", "a._b", "-a", "a-", "a b"] {
            assert!(!is_repository(bad), "{bad}");
        }
        assert!(is_tag("v1.34.1") && is_tag("_x") && !is_tag(".x") && !is_tag(""));
    }
}
