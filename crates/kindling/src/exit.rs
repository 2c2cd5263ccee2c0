//! Exit codes, shared with openshift-install where it has one for the same failure.

/// The process exit code. The numbers are documented in `kindling --help` and the README.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Code {
    /// An I/O failure or a bug.
    Internal = 1,
    /// The command line is wrong (clap exits with 2 for its own usage errors too).
    Usage = 2,
    /// The cluster description is invalid; nothing was written.
    InvalidDescription = 3,
    /// `doctor` found at least one error in the environment.
    DoctorFoundErrors = 4,
    /// `wait-for bootstrap-complete`: bootstrap timed out or failed.
    BootstrapFailed = 5,
    /// `wait-for install-complete`: the install timed out.
    InstallFailed = 6,
    /// The cluster's API could not be reached at all (name, connection, TLS): `approve-csrs`.
    ApiUnreachable = 7,
    /// The mirror lacks binaries or images the machines need: `create ignition-configs` made no
    /// config, `mirror` could not add them all.
    MirrorIncomplete = 8,
    /// `update`: a machine halted the rolling update (no progress, drift, its agent failed).
    UpdateHalted = 9,
}

/// A command that failed: the exit code, and the error to print if it was not printed already.
#[derive(Debug)]
pub struct Failure {
    pub code: Code,
    pub error: Option<anyhow::Error>,
}

impl Failure {
    /// The description was invalid and its findings have been printed.
    pub fn invalid_description() -> Failure {
        Failure {
            code: Code::InvalidDescription,
            error: None,
        }
    }
}

impl From<anyhow::Error> for Failure {
    fn from(error: anyhow::Error) -> Failure {
        Failure {
            code: Code::Internal,
            error: Some(error),
        }
    }
}
