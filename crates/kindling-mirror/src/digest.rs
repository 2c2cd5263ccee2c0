//! Content digests: `sha256:<64 hex digits>`, the only algorithm the mirror stores (the OCI
//! image spec's registered default; every image on registry.k8s.io, ghcr.io and quay.io uses it).

use std::fmt;
use std::io::{self, Read};
use std::str::FromStr;

use sha2::{Digest as _, Sha256, Sha512};

/// A `sha256:<hex>` digest, validated: lowercase hex, 64 digits.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct Digest(String);

impl Digest {
    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Digest {
        Digest(format!("sha256:{}", hex(&Sha256::digest(bytes))))
    }

    /// The 64 hex digits.
    pub fn hex(&self) -> &str {
        &self.0["sha256:".len()..]
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for Digest {
    type Err = String;
    fn from_str(s: &str) -> Result<Digest, String> {
        let Some((algorithm, hex)) = s.split_once(':') else {
            return Err(format!("{s:?} is not a digest (algorithm:hex)"));
        };
        if algorithm != "sha256" {
            return Err(format!(
                "digest {s:?} uses {algorithm}; kindling's mirror stores sha256 digests only"
            ));
        }
        if hex.len() != 64 || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(format!(
                "{s:?} is not a sha256 digest (64 lowercase hex digits)"
            ));
        }
        Ok(Digest(s.to_string()))
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Digest, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// What [`hash_reader`] found: the size and both digests Ignition may be given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hashes {
    pub size: u64,
    pub sha256: Digest,
    /// Lowercase hex: Ignition's `verification.hash` is `sha512-<hex>` (every spec reads sha512;
    /// sha256 needs 3.2).
    pub sha512: String,
}

/// Reads `reader` to the end, copying into `sink`, and hashes what passed.
pub fn hash_reader(reader: impl Read, mut sink: impl io::Write) -> io::Result<Hashes> {
    let mut sha256 = Sha256::new();
    let mut sha512 = Sha512::new();
    let size = each_chunk(reader, |chunk| {
        sha256.update(chunk);
        sha512.update(chunk);
        sink.write_all(chunk)
    })?;
    Ok(Hashes {
        size,
        sha256: Digest(format!("sha256:{}", hex(&sha256.finalize()))),
        sha512: hex(&sha512.finalize()),
    })
}

/// The sha256 digest of what `reader` yields, and its size.
pub fn sha256_of(reader: impl Read) -> io::Result<(Digest, u64)> {
    let mut sha256 = Sha256::new();
    let size = each_chunk(reader, |chunk| {
        sha256.update(chunk);
        Ok(())
    })?;
    Ok((Digest(format!("sha256:{}", hex(&sha256.finalize()))), size))
}

/// Calls `f` with each chunk `reader` yields, to the end; the bytes read.
fn each_chunk(
    mut reader: impl Read,
    mut f: impl FnMut(&[u8]) -> io::Result<()>,
) -> io::Result<u64> {
    let mut buffer = vec![0u8; 256 * 1024];
    let mut size = 0u64;
    loop {
        let n = match reader.read(&mut buffer) {
            Ok(0) => return Ok(size),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        f(&buffer[..n])?;
        size += n as u64;
    }
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_are_checked_and_computed() {
        let empty = Digest::of(b"");
        assert_eq!(
            empty.as_str(),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(empty.as_str().parse::<Digest>().unwrap(), empty);
        assert!(
            "sha512:00"
                .parse::<Digest>()
                .unwrap_err()
                .contains("sha256 digests only")
        );
        assert!("sha256:ABC".parse::<Digest>().is_err());
        assert!("e3b0c442".parse::<Digest>().is_err());
        let hashes = hash_reader(&b"abc"[..], io::sink()).unwrap();
        assert_eq!(hashes.size, 3);
        assert_eq!(hashes.sha256, Digest::of(b"abc"));
        assert!(hashes.sha512.starts_with("ddaf35a193617aba"));
    }
}
