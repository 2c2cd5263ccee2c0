//! The admin credential that the UI and the read APIs require.
//!
//! The boot network is hostile: any machine on it reaches the server. So what shows the site
//! (the machine list, the event stream, the UI) needs the admin token, a secret `serve` makes in
//! the asset directory at first start (`auth/kindling-admin-token`, mode 0600). Automation sends
//! it as `Authorization: Bearer <token>`. The login page takes it once and sets a session cookie
//! (HttpOnly, SameSite=Strict) that holds not the token but an HMAC under it, with the time it
//! was issued: it lasts [`SESSION`], and a new token voids every session.
//!
//! An action through a session (a POST) also needs the session's CSRF token in the
//! `X-Kindling-CSRF` header, which the page reads from its own HTML; a page of another site can
//! neither read it nor send the header without a CORS preflight, which is never granted.

use std::io;
use std::path::Path;
use std::time::Duration;

use aws_lc_rs::hmac;
use kindling_assets::{AtomicFiles, Mode, Storage};

/// Where the token lives in the asset directory.
pub const TOKEN_FILE: &str = kindling_assets::ADMIN_TOKEN_FILE;

/// How long a login lasts.
pub const SESSION: Duration = Duration::from_secs(12 * 3600);

/// The session cookie's name.
pub const COOKIE: &str = "kindling_session";

/// The header an action through a session carries its CSRF token in.
pub const CSRF_HEADER: &str = "x-kindling-csrf";

/// The admin token, and the key sessions and CSRF tokens are made with.
pub struct AdminToken {
    token: Vec<u8>,
    key: hmac::Key,
}

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminToken(<redacted>)")
    }
}

impl AdminToken {
    /// Reads the token of the asset directory `dir`, making it the first time (0600).
    pub fn load_or_create(dir: &Path) -> io::Result<AdminToken> {
        let path = dir.join(TOKEN_FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text.trim().to_string(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let mut bytes = [0u8; 32];
                aws_lc_rs::rand::fill(&mut bytes).map_err(|_| io::Error::other("no randomness"))?;
                let text = hex(&bytes);
                AtomicFiles.write(&path, format!("{text}\n").as_bytes(), Mode::Secret)?;
                tracing::info!(
                    "made the admin token of the UI and the API: {} (mode 0600)",
                    path.display()
                );
                text
            }
            Err(e) => return Err(e),
        };
        if text.len() < 32 || !text.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "{} must hold one token of at least 32 printable characters; delete it and \
                     restart kindling serve to make a new one",
                    path.display()
                ),
            ));
        }
        Ok(AdminToken::new(text.as_bytes()))
    }

    pub fn new(token: &[u8]) -> AdminToken {
        AdminToken {
            token: token.to_vec(),
            key: hmac::Key::new(hmac::HMAC_SHA256, token),
        }
    }

    /// Whether `given` is the token, compared in constant time.
    pub fn verify(&self, given: &str) -> bool {
        // Compare MACs of both: constant time whatever the lengths.
        let want = hmac::sign(&self.key, &self.token);
        let got = hmac::sign(&self.key, given.trim().as_bytes());
        aws_lc_rs::constant_time::verify_slices_are_equal(want.as_ref(), got.as_ref()).is_ok()
    }

    fn tag(&self, purpose: &str, value: &str) -> String {
        let message = format!("kindling ui {purpose}\0{value}");
        hex(&hmac::sign(&self.key, message.as_bytes()).as_ref()[..20])
    }

    /// A session cookie's value, issued at `issued` (seconds since the epoch).
    pub fn session(&self, issued: u64) -> String {
        format!("{issued}.{}", self.tag("session", &issued.to_string()))
    }

    /// Whether `cookie` is a session this token issued that has not expired at `now`.
    pub fn check_session(&self, cookie: &str, now: u64) -> bool {
        let Some((issued, _)) = cookie.split_once('.') else {
            return false;
        };
        let Ok(at) = issued.parse::<u64>() else {
            return false;
        };
        let want = self.session(at);
        let fresh = at <= now + 60 && now - at.min(now) < SESSION.as_secs();
        fresh
            && aws_lc_rs::constant_time::verify_slices_are_equal(want.as_bytes(), cookie.as_bytes())
                .is_ok()
    }

    /// The CSRF token of a session.
    pub fn csrf(&self, session: &str) -> String {
        self.tag("csrf", session)
    }

    /// Whether `given` is `session`'s CSRF token.
    pub fn check_csrf(&self, session: &str, given: &str) -> bool {
        let want = self.csrf(session);
        aws_lc_rs::constant_time::verify_slices_are_equal(want.as_bytes(), given.as_bytes()).is_ok()
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The value of cookie `name` in a `Cookie` header.
pub fn cookie<'h>(header: &'h str, name: &str) -> Option<&'h str> {
    header.split(';').find_map(|pair| {
        let (k, v) = pair.trim().split_once('=')?;
        (k == name).then_some(v)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_is_made_once_secret_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let first = AdminToken::load_or_create(dir.path()).unwrap();
        let text = std::fs::read_to_string(dir.path().join(TOKEN_FILE)).unwrap();
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(dir.path().join(TOKEN_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(first.verify(text.trim()));
        assert!(!first.verify(&text.trim()[1..]));
        assert!(!first.verify(""));
        let again = AdminToken::load_or_create(dir.path()).unwrap();
        assert!(again.verify(text.trim()));
        assert_eq!(format!("{first:?}"), "AdminToken(<redacted>)");
    }

    #[test]
    fn sessions_expire_and_belong_to_their_token() {
        let token = AdminToken::new(b"0123456789abcdef0123456789abcdef");
        let session = token.session(1_000);
        assert!(
            !session.contains("0123456789abcdef"),
            "the cookie is not the token"
        );
        assert!(token.check_session(&session, 1_000));
        assert!(token.check_session(&session, 1_000 + SESSION.as_secs() - 1));
        assert!(!token.check_session(&session, 1_000 + SESSION.as_secs()));
        assert!(!token.check_session(&session, 0), "issued in the future");
        let forged = session.replacen("1000", "2000", 1);
        assert!(!token.check_session(&forged, 2_000));
        let other = AdminToken::new(b"another token, as long as the first");
        assert!(!other.check_session(&session, 1_000));
        assert!(token.check_csrf(&session, &token.csrf(&session)));
        assert!(!token.check_csrf(&session, &token.csrf(&other.session(1_000))));
    }

    #[test]
    fn cookies_are_found_by_name() {
        assert_eq!(
            cookie("a=1; kindling_session=9.ab; b=2", COOKIE),
            Some("9.ab")
        );
        assert_eq!(cookie("kindling_sessionx=1", COOKIE), None);
    }
}
