//! Stage records sent to `kindling serve` (`POST /api/v1/events` with the machine's MAC and
//! token): best effort, with short timeouts, so a server that is down or slow never holds a
//! stage up. The token is never logged.

use std::path::Path;
use std::time::Duration;

use crate::record::StageRecord;
use crate::{AgentError, io_error};

/// At most this long to connect, and this long for the exchange.
const TIMEOUT: Duration = Duration::from_secs(3);
/// The most read of an answer: the server's is empty, or a one-line reason.
const ANSWER_LIMIT: usize = 4096;

/// The machine's identity towards `kindling serve`.
#[derive(Clone)]
pub struct MachineIdentity {
    pub mac: String,
    pub token: String,
}

impl std::fmt::Debug for MachineIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MachineIdentity")
            .field("mac", &self.mac)
            .field("token", &"<redacted>")
            .finish()
    }
}

impl MachineIdentity {
    /// Reads the identity file that Ignition writes (root-only): `mac=<MAC>` and
    /// `token=<token>` lines. None when the file does not exist.
    pub fn read(path: &Path) -> Result<Option<MachineIdentity>, AgentError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_error("reading", path)(e)),
        };
        let get = |key: &str| {
            text.lines()
                .filter_map(|l| l.split_once('='))
                .find(|(k, _)| k.trim() == key)
                .map(|(_, v)| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        match (get("mac"), get("token")) {
            (Some(mac), Some(token)) => Ok(Some(MachineIdentity { mac, token })),
            _ => Err(AgentError::Identity {
                path: path.to_path_buf(),
                reason: "needs a mac= and a token= line".into(),
            }),
        }
    }
}

/// Sends records to one server.
#[derive(Debug, Clone)]
pub struct Reporter {
    /// `host:port` of the server's plain-HTTP listener, for the log.
    authority: String,
    target: kindling_http::Target,
    client: kindling_http::Client,
    identity: MachineIdentity,
}

/// How many times a report is sent before it is given up, and the wait between.
const ATTEMPTS: u32 = 3;
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// An id unique to one report of this machine: the time, the process and a counter.
fn report_id() -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{nanos:x}-{:x}-{n:x}", std::process::id())
}

impl Reporter {
    /// A reporter for `server_url` (`http://host:port`, `kindling serve`'s boot server).
    pub fn new(server_url: &str, identity: MachineIdentity) -> Option<Reporter> {
        let authority = server_url
            .strip_prefix("http://")?
            .trim_end_matches('/')
            .to_string();
        let target = kindling_http::Target::from_authority(&authority, 80)?;
        let timeouts = kindling_http::Timeouts {
            connect: TIMEOUT,
            exchange: TIMEOUT,
        };
        let client = kindling_http::Client::plain(timeouts)
            .with_user_agent("kindling-agent")
            .with_limit(ANSWER_LIMIT);
        Some(Reporter {
            authority,
            target,
            client,
            identity,
        })
    }

    /// Sends one record; failures are logged at debug level and otherwise ignored.
    pub fn send(&self, record: &StageRecord) {
        let stage = format!("agent {}: {} {}", record.agent, record.stage, record.phase);
        self.send_event(&stage, &record.result, &record.error_message);
    }

    /// Sends an event with this stage name and result, a few times if it must: with an id of
    /// its own, so that the server records it once however often it arrives (the load
    /// balancer may hand a retry to another replica).
    pub fn send_event(&self, stage: &str, result: &str, error: &str) {
        let body = serde_json::json!({
            "mac": self.identity.mac,
            "token": self.identity.token,
            "stage": stage,
            "result": result,
            "errorMessage": error,
            "id": report_id(),
        })
        .to_string();
        for attempt in 1..=ATTEMPTS {
            let answer = self
                .client
                .post_json(&self.target, "/api/v1/events", body.as_bytes());
            // Again only where another try may go better: no connection, or a server that
            // could not take it now. A refusal stays one; a silent server costs one timeout.
            let (problem, again) = match answer {
                Ok(response) if response.is_success() => return,
                Ok(response) => (format!("HTTP {}", response.status), response.status >= 500),
                Err(e) => {
                    let again = !matches!(e, kindling_http::HttpError::Timeout { .. });
                    (e.to_string(), again)
                }
            };
            tracing::debug!(
                "reporting '{stage}' to http://{} (attempt {attempt}): {problem}",
                self.authority
            );
            if !again {
                return;
            }
            if attempt < ATTEMPTS {
                std::thread::sleep(RETRY_AFTER);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader, Write};
    use std::net::TcpListener;

    use super::*;

    fn identity() -> MachineIdentity {
        MachineIdentity {
            mac: "52:54:00:7e:01:00".into(),
            token: "0123456789abcdef0123456789abcdef".into(),
        }
    }

    /// Reads one request from `stream` and answers it with `status` and no body: the request's
    /// head and body.
    fn answer(stream: std::net::TcpStream, status: &str) -> (String, Vec<u8>) {
        let mut reader = BufReader::new(stream);
        let mut head = String::new();
        let mut length = 0;
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                length = v.trim().parse().unwrap();
            }
            head.push_str(&line);
            if line == "\r\n" {
                break;
            }
        }
        let mut body = vec![0; length];
        std::io::Read::read_exact(&mut reader, &mut body).unwrap();
        let reply = format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\n\r\n");
        reader.get_mut().write_all(reply.as_bytes()).unwrap();
        (head, body)
    }

    #[test]
    fn the_identity_file_is_read_and_its_token_never_printed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("identity");
        assert!(MachineIdentity::read(&path).unwrap().is_none());
        std::fs::write(&path, "mac=52:54:00:7e:01:00\ntoken=abc\n").unwrap();
        let read = MachineIdentity::read(&path).unwrap().unwrap();
        assert_eq!(
            (read.mac.as_str(), read.token.as_str()),
            ("52:54:00:7e:01:00", "abc")
        );
        assert!(!format!("{read:?}").contains("abc"));
        std::fs::write(&path, "mac=52:54:00:7e:01:00\n").unwrap();
        let error = MachineIdentity::read(&path).unwrap_err().to_string();
        assert!(error.contains(&path.display().to_string()), "{error}");
    }

    /// What `kindling serve`'s `POST /api/v1/events` reads: mac, token, stage, result,
    /// errorMessage, and nothing else (it refuses unknown fields).
    #[test]
    fn a_record_is_posted_as_the_servers_event_report() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            answer(stream, "204 No Content")
        });
        let reporter = Reporter::new(&format!("http://127.0.0.1:{port}/"), identity()).unwrap();
        reporter.send(&StageRecord {
            timestamp: "t".into(),
            agent: "bootstrap".into(),
            phase: "end".into(),
            stage: "wait-masters".into(),
            result: "failed".into(),
            error_message: "etcd: no".into(),
        });
        let (head, body) = server.join().unwrap();
        assert!(
            head.starts_with("POST /api/v1/events HTTP/1.1\r\n"),
            "{head}"
        );
        let mut body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let id = body["id"].take();
        let id = id.as_str().unwrap();
        assert!(
            id.len() <= 64
                && id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)),
            "an id the server takes: {id}"
        );
        body.as_object_mut().unwrap().remove("id");
        assert_eq!(
            body,
            serde_json::json!({
                "mac": "52:54:00:7e:01:00",
                "token": "0123456789abcdef0123456789abcdef",
                "stage": "agent bootstrap: wait-masters end",
                "result": "failed",
                "errorMessage": "etcd: no",
            })
        );
    }

    /// A server that cannot take a report now (503, as a replica without its store may answer)
    /// gets it again, with the same id.
    #[test]
    fn a_report_is_sent_again_with_its_id_after_a_server_error() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            let mut ids = Vec::new();
            for status in ["503 Service Unavailable", "204 No Content"] {
                let (stream, _) = listener.accept().unwrap();
                let (_, body) = answer(stream, status);
                let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
                ids.push(body["id"].as_str().unwrap().to_string());
            }
            ids
        });
        let reporter = Reporter::new(&format!("http://127.0.0.1:{port}"), identity()).unwrap();
        reporter.send_event("installed", "done", "");
        let ids = server.join().unwrap();
        assert_eq!(ids.len(), 2);
        assert_eq!(ids[0], ids[1], "the same report, so the same id");
    }

    /// A server that accepts and never answers holds a report up for the timeout, no longer.
    #[test]
    fn a_silent_server_costs_at_most_the_timeout() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let reporter = Reporter::new(&format!("http://127.0.0.1:{port}"), identity()).unwrap();
        let started = std::time::Instant::now();
        reporter.send_event("agent-version", "0.1.0", "");
        assert!(started.elapsed() < TIMEOUT * 3, "{:?}", started.elapsed());
        drop(listener);
        assert!(Reporter::new("https://x:8080", identity()).is_none());
        assert!(Reporter::new("http://x:8080/api", identity()).is_none());
    }
}
