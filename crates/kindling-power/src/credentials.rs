//! A BMC's user and password, from the file the inventory names (never the inventory itself).

use std::path::{Path, PathBuf};

use crate::PowerError;

/// A BMC's credentials. Printed, the password is redacted.
#[derive(Clone)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

impl Credentials {
    /// Reads `path`: YAML with `username` and `password`. An error names the file and what is
    /// missing, and never shows its contents.
    pub fn load(path: &Path) -> Result<Credentials, PowerError> {
        let bad = |reason: &str| PowerError::Credentials {
            path: path.to_path_buf(),
            reason: reason.to_string(),
        };
        let text = std::fs::read_to_string(path).map_err(|e| bad(&e.to_string()))?;
        let root = kindling_config::yaml::parse(&text)
            .map_err(|_| bad("it is not YAML; write `username: ...` and `password: ...`"))?;
        let field = |key: &str| match root.get(key).map(|n| &n.value) {
            Some(kindling_config::yaml::Value::Scalar { text, .. }) if !text.is_empty() => {
                Ok(text.to_string())
            }
            _ => Err(bad(&format!("it has no {key}: write `{key}: ...`"))),
        };
        Ok(Credentials {
            username: field("username")?,
            password: field("password")?,
        })
    }
}

/// Where a machine's credentials file is: as written, relative to the asset directory `dir`.
pub fn path_of(dir: &Path, written: &str) -> PathBuf {
    dir.join(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_read_and_their_password_never_shown() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bmc.yaml");
        std::fs::write(&path, "username: admin\npassword: 's3cret: yes'\n").unwrap();
        let c = Credentials::load(&path).unwrap();
        assert_eq!(
            (c.username.as_str(), c.password.as_str()),
            ("admin", "s3cret: yes")
        );
        assert!(!format!("{c:?}").contains("s3cret"));

        std::fs::write(&path, "username: admin\npasswd: s3cret\n").unwrap();
        let e = Credentials::load(&path).unwrap_err().to_string();
        assert!(
            e.contains("it has no password") && !e.contains("s3cret"),
            "{e}"
        );
        let e = Credentials::load(&dir.path().join("none.yaml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("none.yaml"), "{e}");
    }
}
