//! Kubelet bootstrap tokens: `<id>.<secret>`, as kubeadm and the bootstrap-token authenticator
//! define them.

use std::fmt;

const ALPHABET: &[u8; 36] = b"abcdefghijklmnopqrstuvwxyz0123456789";

/// A bootstrap token. Its secret is never printed by `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct BootstrapToken {
    /// 6 characters of `[a-z0-9]`; public (it names the Secret).
    pub id: String,
    /// 16 characters of `[a-z0-9]`.
    pub secret: String,
}

impl BootstrapToken {
    pub fn generate() -> BootstrapToken {
        BootstrapToken {
            id: random_chars(6),
            secret: random_chars(16),
        }
    }

    /// Reads `<id>.<secret>`.
    pub fn parse(text: &str) -> Option<BootstrapToken> {
        let (id, secret) = text.trim().split_once('.')?;
        let ok = |s: &str, len| s.len() == len && s.bytes().all(|b| ALPHABET.contains(&b));
        (ok(id, 6) && ok(secret, 16)).then(|| BootstrapToken {
            id: id.to_string(),
            secret: secret.to_string(),
        })
    }

    /// `<id>.<secret>`, the bearer token.
    pub fn token(&self) -> String {
        format!("{}.{}", self.id, self.secret)
    }
}

impl fmt::Debug for BootstrapToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BootstrapToken({}.<redacted>)", self.id)
    }
}

fn random_chars(n: usize) -> String {
    let mut out = String::with_capacity(n);
    while out.len() < n {
        let mut bytes = [0u8; 32];
        aws_lc_rs::rand::fill(&mut bytes).expect("the system random source works");
        // 252 = 7 × 36: rejecting bytes above it keeps every character equally likely.
        for b in bytes.into_iter().filter(|b| *b < 252) {
            if out.len() < n {
                out.push(ALPHABET[usize::from(b % 36)] as char);
            }
        }
    }
    out
}
