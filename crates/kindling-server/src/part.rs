//! Machines' own Ignition parts (`ignition/machines/<name>.ign`), held compactly.
//!
//! Parts of one pool differ only in the machine's name, FQDN and address, so each part is kept
//! as its shape (the part with those three taken out) and machines with the same shape share
//! one copy. With 100,000 workers that is a few shapes instead of ~70 MB of JSON.

use std::collections::HashSet;
use std::sync::Arc;

/// What tells one machine's part from another's.
pub struct Identity<'a> {
    pub name: &'a str,
    pub fqdn: &'a str,
    pub ip: &'a str,
}

// JSON holds no raw control bytes (a part is checked to parse before it is shaped), and names
// and addresses are printable, so these occur in no part and match no identity: taking them
// out again is exact.
const FQDN: &[u8] = b"\0\x01";
const NAME: &[u8] = b"\0\x02";
const IP: &[u8] = b"\0\x03";

/// The shapes seen so far; machines with equal shapes get the same `Arc`.
#[derive(Default)]
pub struct Shapes(HashSet<Arc<[u8]>>);

impl Shapes {
    /// The shape of `part` for the machine `who`, shared with earlier machines where equal.
    pub fn intern(&mut self, part: &[u8], who: &Identity<'_>) -> Arc<[u8]> {
        debug_assert!(
            !part.contains(&0),
            "a part that parsed as JSON holds no NUL byte"
        );
        // The FQDN first: it contains the name.
        let shape = replace(part, who.fqdn.as_bytes(), FQDN);
        let shape = replace(&shape, who.name.as_bytes(), NAME);
        let shape = replace(&shape, who.ip.as_bytes(), IP);
        if let Some(known) = self.0.get(shape.as_slice()) {
            return known.clone();
        }
        let shape: Arc<[u8]> = shape.into();
        self.0.insert(shape.clone());
        shape
    }
}

/// The part a shape stands for, for the machine `who`.
pub fn expand(shape: &[u8], who: &Identity<'_>) -> Vec<u8> {
    let part = replace(shape, FQDN, who.fqdn.as_bytes());
    let part = replace(&part, NAME, who.name.as_bytes());
    replace(&part, IP, who.ip.as_bytes())
}

/// `haystack` with every non-overlapping `from`, left to right, replaced by `to`.
fn replace(haystack: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(haystack.len());
    if from.is_empty() {
        out.extend_from_slice(haystack);
        return out;
    }
    let mut rest = haystack;
    while let Some(at) = rest.windows(from.len()).position(|w| w == from) {
        out.extend_from_slice(&rest[..at]);
        out.extend_from_slice(to);
        rest = &rest[at + from.len()..];
    }
    out.extend_from_slice(rest);
    out
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn part(name: &str, fqdn: &str, ip: &str) -> Vec<u8> {
        format!(
            r#"{{"storage":{{"files":[{{"path":"/etc/hostname","contents":{{"source":"data:,{fqdn}%0A"}}}},{{"path":"/etc/kubernetes/kubelet.env","contents":{{"source":"data:,ARGS%3D%22--hostname-override%3D{name}%20--node-ip%3D{ip}%22"}}}}]}}}}"#
        )
        .into_bytes()
    }

    #[test]
    fn workers_of_a_pool_share_one_shape_and_each_gets_its_own_part_back() {
        let mut shapes = Shapes::default();
        let machines: Vec<(String, String, String)> = (0..100)
            .map(|i| {
                (
                    format!("worker{i}"),
                    format!("worker{i}.demo.example.com"),
                    format!("10.0.0.{}", i + 20),
                )
            })
            .collect();
        let mut held = Vec::new();
        for (name, fqdn, ip) in &machines {
            let who = Identity { name, fqdn, ip };
            held.push(shapes.intern(&part(name, fqdn, ip), &who));
        }
        assert!(held.iter().all(|shape| Arc::ptr_eq(shape, &held[0])));
        for ((name, fqdn, ip), shape) in machines.iter().zip(&held) {
            let who = Identity { name, fqdn, ip };
            assert_eq!(expand(shape, &who), part(name, fqdn, ip));
        }
    }

    #[test]
    fn a_part_with_more_than_the_identity_keeps_its_own_shape() {
        let mut shapes = Shapes::default();
        let who = Identity {
            name: "m0",
            fqdn: "m0.c.example.com",
            ip: "10.0.0.2",
        };
        let plain = part("m0", "m0.c.example.com", "10.0.0.2");
        let mut extra = plain.clone();
        extra.extend_from_slice(b" ");
        let a = shapes.intern(&plain, &who);
        let b = shapes.intern(&extra, &who);
        assert_ne!(a, b);
        assert_eq!(expand(&b, &who), extra);
    }

    proptest! {
        // Whatever the text and the identity (names that occur inside other words, an address
        // that is a prefix of another), shaping and expanding gives the part back exactly.
        #[test]
        fn expand_undoes_intern(
            text in "[a-zA-Z0-9.%\":,{} -]{0,200}",
            name in "[a-zA-Z0-9]{1,6}",
            domain in "[a-z.]{0,10}",
            ip in "[0-9.]{1,15}",
        ) {
            let fqdn = format!("{name}.{domain}");
            let who = Identity { name: &name, fqdn: &fqdn, ip: &ip };
            let mut shapes = Shapes::default();
            let shape = shapes.intern(text.as_bytes(), &who);
            prop_assert_eq!(expand(&shape, &who), text.as_bytes());
        }
    }
}
