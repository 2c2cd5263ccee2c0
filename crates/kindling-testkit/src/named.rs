//! BIND's `named` on a loopback port.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;

use crate::{Daemon, Proto, READY_TIMEOUT, StartError, port, retry};

/// A real `named` in the foreground on 127.0.0.1 and a port of [`port`], as the test user,
/// with everything it writes in a temporary directory. Stopped when dropped.
pub struct Named {
    daemon: Daemon,
    addr: SocketAddr,
    _run: tempfile::TempDir,
}

impl Named {
    /// Starts `named` with `directory` as its working directory (where relative zone file names
    /// point) and `zones` (zone statements, or an `include`) after its options. Ready when its
    /// own process holds UDP and TCP on its port and it says "running"; on a port someone else
    /// took, it starts again on another.
    pub fn start(directory: &Path, zones: &str) -> Named {
        retry(3, || Named::start_once(directory, zones))
    }

    fn start_once(directory: &Path, zones: &str) -> Result<Named, StartError> {
        let port = port();
        let run = tempfile::tempdir().map_err(|e| StartError::new(format!("tempdir: {e}")))?;
        let r = run.path().display();
        let conf = format!(
            "options {{\n  directory \"{d}\";\n  pid-file \"{r}/named.pid\";\n  session-keyfile \"{r}/session.key\";\n  managed-keys-directory \"{r}\";\n  listen-on port {port} {{ 127.0.0.1; }};\n  listen-on-v6 {{ none; }};\n  recursion no;\n  dnssec-validation no;\n  notify no;\n}};\ncontrols {{ }};\n{zones}\n",
            d = directory.display()
        );
        let conf_path = run.path().join("named.conf");
        std::fs::write(&conf_path, conf)
            .map_err(|e| StartError::new(format!("{}: {e}", conf_path.display())))?;
        let mut command = Command::new("named");
        command
            .arg("-g")
            .arg("-c")
            .arg(&conf_path)
            .args(["-n", "1"]);
        let mut daemon = Daemon::spawn("named", command, &run.path().join("named.log"))?;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        daemon.wait_listening(
            &[(addr, Proto::Udp), (addr, Proto::Tcp)],
            READY_TIMEOUT,
            |d| d.log().contains("running"),
        )?;
        Ok(Named {
            daemon,
            addr,
            _run: run,
        })
    }

    /// Where it answers.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The end of its log.
    pub fn log(&self) -> String {
        self.daemon.log()
    }
}
