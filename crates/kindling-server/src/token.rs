//! Per-machine tokens: proof that a request comes from the machine it claims to be.
//!
//! A token is an HMAC-SHA256 of the machine's name and MAC under a key only the server holds
//! (`tls/machine-token.key`, made on first use, mode 0600). The server puts it into that machine's
//! boot arguments and pointer config; secret-bearing configs are served only with it. A token is
//! useless for any other machine, and the server can check it without storing tokens.

use std::io;
use std::path::Path;

use aws_lc_rs::hmac;
use kindling_assets::{AtomicFiles, Mode, Storage};
use kindling_config::MacAddr;

/// Where the key lives in the asset directory.
pub const KEY_FILE: &str = "tls/machine-token.key";

/// The server's token key.
pub struct TokenKey(hmac::Key);

impl std::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenKey(<redacted>)")
    }
}

impl TokenKey {
    /// Reads the key of the asset directory `dir`, making it the first time.
    pub fn load_or_create(dir: &Path) -> io::Result<TokenKey> {
        let path = dir.join(KEY_FILE);
        let hex = match std::fs::read_to_string(&path) {
            Ok(text) => text.trim().to_string(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let mut bytes = [0u8; 32];
                aws_lc_rs::rand::fill(&mut bytes).map_err(|_| io::Error::other("no randomness"))?;
                let hex = to_hex(&bytes);
                AtomicFiles.write(&path, format!("{hex}\n").as_bytes(), Mode::Secret)?;
                hex
            }
            Err(e) => return Err(e),
        };
        let bytes = from_hex(&hex).filter(|b| b.len() == 32).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{} is not 64 hex digits; delete it to make a new key (handed-out tokens stop working)", path.display()),
            )
        })?;
        Ok(TokenKey::from_bytes(&bytes))
    }

    pub fn from_bytes(bytes: &[u8]) -> TokenKey {
        TokenKey(hmac::Key::new(hmac::HMAC_SHA256, bytes))
    }

    /// The token of a machine: 32 hex digits.
    pub fn token(&self, machine: &str, mac: MacAddr) -> String {
        to_hex(&self.tag(machine, mac).as_ref()[..16])
    }

    /// Whether `token` is this machine's, compared in constant time.
    pub fn verify(&self, machine: &str, mac: MacAddr, token: &str) -> bool {
        let Some(given) = from_hex(token).filter(|b| b.len() == 16) else {
            return false;
        };
        let want = self.tag(machine, mac);
        aws_lc_rs::constant_time::verify_slices_are_equal(&want.as_ref()[..16], &given).is_ok()
    }

    fn tag(&self, machine: &str, mac: MacAddr) -> hmac::Tag {
        let message = format!("kindling machine token\0{machine}\0{mac}");
        hmac::sign(&self.0, message.as_bytes())
    }
}

fn to_hex(bytes: &[u8]) -> String {
    // Not format!("{b:02x}") per byte: a token is made on every /ipxe and /ignition request.
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut hex = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        hex.push(char::from(DIGITS[usize::from(b >> 4)]));
        hex.push(char::from(DIGITS[usize::from(b & 15)]));
    }
    hex
}

fn from_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| {
            text.get(i..i + 2)
                .and_then(|pair| u8::from_str_radix(pair, 16).ok())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mac(s: &str) -> MacAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_token_is_good_only_for_its_own_machine_and_mac() {
        let key = TokenKey::from_bytes(&[7; 32]);
        let token = key.token("worker0", mac("52:54:00:00:00:20"));
        assert_eq!(token.len(), 32);
        assert!(key.verify("worker0", mac("52-54-00-00-00-20"), &token));
        assert!(!key.verify("worker0", mac("52:54:00:00:00:21"), &token));
        assert!(!key.verify("worker1", mac("52:54:00:00:00:20"), &token));
        assert!(!key.verify("worker0", mac("52:54:00:00:00:20"), "zz"));
        assert!(!key.verify("worker0", mac("52:54:00:00:00:20"), ""));
        let other = TokenKey::from_bytes(&[8; 32]);
        assert!(!other.verify("worker0", mac("52:54:00:00:00:20"), &token));
    }

    #[test]
    fn the_key_is_made_once_with_mode_0600_and_read_back() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let first = TokenKey::load_or_create(dir.path()).unwrap();
        let again = TokenKey::load_or_create(dir.path()).unwrap();
        let m = mac("52:54:00:00:00:20");
        assert_eq!(first.token("w", m), again.token("w", m));
        let mode = std::fs::metadata(dir.path().join(KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(!format!("{first:?}").contains(&first.token("w", m)));
    }
}
