//! etcd over its v3 JSON gateway: membership (list, add and remove members, and ask a member
//! whether it is healthy), which `kindling agent` needs: a master joins the cluster with
//! `member add`, and the bootstrap machine leaves it with `member remove`; and keys, leases and
//! watches (`kv`), which `kindling serve`'s replicas share their state with.
//!
//! etcd (3.4 and later) serves its v3 gRPC API as JSON over HTTP/1.1 on the client port, through
//! grpc-gateway: `POST /v3/cluster/member/list`, `/v3/cluster/member/add`,
//! `/v3/cluster/member/remove`, `/v3/maintenance/status`; and `GET /health`. 64-bit numbers
//! (member IDs) travel as JSON strings. Each request is one TLS connection with the client
//! certificate (kindling-http), tried on each endpoint in turn until one answers.
//!
//! Everything etcd sends is input: a malformed answer is an error, never a panic.

mod endpoint;
mod kv;

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use kindling_http::{HttpError, TlsSetupError};
use serde::Deserialize;

pub use endpoint::Endpoint;
pub use kv::{
    Change, Changes, Compare, KeyValue, Lease, Op, Range, Ranged, Txn, TxnResult, WATCH_IDLE,
    Watch, prefix_end,
};

/// Why an etcd request failed.
#[derive(Debug, thiserror::Error)]
pub enum EtcdError {
    #[error("'{url}' is not an etcd URL: {reason}")]
    Url { url: String, reason: String },
    #[error("reading {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: {reason}", path.display())]
    Pem { path: PathBuf, reason: String },
    #[error("setting up TLS: {0}")]
    TlsConfig(String),
    #[error("no etcd endpoint was given")]
    NoEndpoint,
    #[error("reaching {endpoint}: {source}")]
    Unreachable { endpoint: String, source: HttpError },
    #[error("TLS with {endpoint}: {reason}")]
    Tls { endpoint: String, reason: String },
    #[error("{endpoint} answered something that is not HTTP/1.x")]
    NotHttp { endpoint: String },
    #[error("{endpoint} refused: HTTP {status}: {message}")]
    Refused {
        endpoint: String,
        status: u16,
        message: String,
    },
    #[error("{endpoint} answered JSON that is not {what}: {reason}")]
    Json {
        endpoint: String,
        what: &'static str,
        reason: String,
    },
    #[error("no etcd endpoint answered: {0}")]
    AllFailed(String),
    #[error("the watch on {endpoint} was quiet for {}s", after.as_secs())]
    WatchQuiet { endpoint: String, after: Duration },
}

/// An etcd member ID. etcd prints them in hex (`etcdctl member list`), and so does this.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MemberId(pub u64);

impl fmt::Display for MemberId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:x}", self.0)
    }
}

/// A member of the cluster, as `member list` gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub id: MemberId,
    /// Empty until the member has started: etcd learns the name from the member itself.
    pub name: String,
    pub peer_urls: Vec<String>,
    /// Empty until the member has started.
    pub client_urls: Vec<String>,
    pub is_learner: bool,
}

impl Member {
    /// Whether the member has started and published its name and client URLs. An added member
    /// that has not started still counts for quorum.
    pub fn started(&self) -> bool {
        !self.name.is_empty()
    }

    /// Whether `peer_url` is one of this member's peer URLs (a trailing slash aside).
    pub fn has_peer_url(&self, peer_url: &str) -> bool {
        let want = peer_url.trim_end_matches('/');
        self.peer_urls
            .iter()
            .any(|u| u.trim_end_matches('/') == want)
    }
}

/// The members of the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Membership {
    pub members: Vec<Member>,
}

impl Membership {
    /// The member with this peer URL, started or not.
    pub fn by_peer_url(&self, peer_url: &str) -> Option<&Member> {
        self.members.iter().find(|m| m.has_peer_url(peer_url))
    }

    /// The started member named `name`.
    pub fn by_name(&self, name: &str) -> Option<&Member> {
        self.members.iter().find(|m| m.name == name)
    }

    /// etcd's `--initial-cluster` for the member `name` at `peer_url` joining this membership
    /// (`initial-cluster-state=existing`): every member's `name=peerURL`, itself included.
    ///
    /// etcd compares this list with the cluster's by peer URLs and count, so every member must be
    /// in it, started or not. A member that has not started has no name yet; it gets a
    /// placeholder (`unstarted-<id>`) so that two of them are not read as one member with two
    /// URLs. The joining member is listed under `name` whether or not the list has it yet.
    /// Entries are sorted by name.
    pub fn initial_cluster(&self, name: &str, peer_url: &str) -> String {
        let mut entries: Vec<(String, String)> = Vec::new();
        for m in &self.members {
            let own = m.has_peer_url(peer_url);
            let member_name = if own {
                name.to_string()
            } else if m.started() {
                m.name.clone()
            } else {
                format!("unstarted-{}", m.id)
            };
            for url in &m.peer_urls {
                entries.push((member_name.clone(), url.trim_end_matches('/').to_string()));
            }
        }
        if self.by_peer_url(peer_url).is_none() {
            entries.push((name.to_string(), peer_url.trim_end_matches('/').to_string()));
        }
        // etcd lists members by ID; by name, the same membership always reads the same.
        entries.sort();
        entries
            .iter()
            .map(|(n, u)| format!("{n}={u}"))
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// What `maintenance status` says about one member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub version: String,
    pub member: MemberId,
    /// The leader this member knows of; None without a leader.
    pub leader: Option<MemberId>,
}

/// The TLS identity of a client: the etcd CA it trusts and its client certificate.
pub struct ClientTls(kindling_http::Client);

impl ClientTls {
    /// No TLS: for a cluster asked over `http://` only.
    pub fn none() -> ClientTls {
        ClientTls(kindling_http::Client::plain(TIMEOUTS))
    }

    /// Reads the etcd CA certificate, and the client certificate and key, from PEM files.
    pub fn from_files(ca: &Path, cert: &Path, key: &Path) -> Result<ClientTls, EtcdError> {
        let read = |path: &Path| {
            std::fs::read(path).map_err(|source| EtcdError::Read {
                path: path.to_path_buf(),
                source,
            })
        };
        let tls = kindling_http::Tls::Roots {
            ca_pem: read(ca)?,
            client_identity: Some(kindling_http::Identity {
                cert_pem: read(cert)?,
                key_pem: read(key)?,
            }),
        };
        let pem_error = |path: &Path, reason: String| EtcdError::Pem {
            path: path.to_path_buf(),
            reason,
        };
        let client = kindling_http::Client::new(tls, TIMEOUTS).map_err(|e| match e {
            TlsSetupError::Roots(reason) => pem_error(ca, reason),
            TlsSetupError::Certificate(reason) => pem_error(cert, reason),
            TlsSetupError::Key(reason) => pem_error(key, reason),
            TlsSetupError::Config(reason) => EtcdError::TlsConfig(format!(
                "{} with {}: {reason}",
                cert.display(),
                key.display()
            )),
        })?;
        Ok(ClientTls(client))
    }
}

/// A client of the cluster's membership, through the given client URLs.
#[derive(Clone)]
pub struct Client {
    endpoints: Vec<Endpoint>,
    /// For `https://` endpoints.
    https: kindling_http::Client,
    /// For `http://` endpoints.
    http: kindling_http::Client,
    /// The index of the endpoint that answered last, asked first next time (async calls).
    preferred: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let urls: Vec<&str> = self.endpoints.iter().map(|e| e.url.as_str()).collect();
        f.debug_struct("Client").field("endpoints", &urls).finish()
    }
}

/// How long to wait for a TCP connection to a member.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// How long to wait for a member to answer. A membership change needs a quorum; without one,
/// etcd holds the request until its own timeout (about 7 s), and a caller retries.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

const TIMEOUTS: kindling_http::Timeouts = kindling_http::Timeouts {
    connect: CONNECT_TIMEOUT,
    exchange: REQUEST_TIMEOUT,
};

impl Client {
    /// A client that asks `endpoints` (client URLs such as `https://10.0.0.1:2379`) in order.
    pub fn new(endpoints: &[String], tls: &ClientTls) -> Result<Client, EtcdError> {
        let endpoints = endpoints
            .iter()
            .map(|e| Endpoint::parse(e))
            .collect::<Result<Vec<_>, _>>()?;
        if endpoints.is_empty() {
            return Err(EtcdError::NoEndpoint);
        }
        Ok(Client {
            endpoints,
            https: tls.0.clone(),
            http: kindling_http::Client::plain(TIMEOUTS),
            preferred: Default::default(),
        })
    }

    /// The same client with other timeouts.
    pub fn with_timeouts(self, connect: Duration, request: Duration) -> Client {
        let timeouts = kindling_http::Timeouts {
            connect,
            exchange: request,
        };
        Client {
            https: self.https.with_timeouts(timeouts),
            http: self.http.with_timeouts(timeouts),
            ..self
        }
    }

    /// The client URLs this client asks.
    pub fn endpoints(&self) -> impl Iterator<Item = &str> {
        self.endpoints.iter().map(|e| e.url.as_str())
    }

    /// Every member, started or not.
    pub fn member_list(&self) -> Result<Membership, EtcdError> {
        let (endpoint, answer): (_, MembersAnswer) =
            self.post("/v3/cluster/member/list", b"{}", "a member list")?;
        answer.membership(&endpoint)
    }

    /// Adds a member with these peer URLs. It must then start with the returned membership as
    /// its `--initial-cluster` and `--initial-cluster-state=existing`. etcd refuses (strict
    /// reconfiguration) while another added member has not started yet: retry then.
    pub fn member_add(&self, peer_urls: &[String]) -> Result<(Member, Membership), EtcdError> {
        let body = serde_json::json!({ "peerURLs": peer_urls }).to_string();
        let (endpoint, answer): (_, AddAnswer) = self.post(
            "/v3/cluster/member/add",
            body.as_bytes(),
            "a member add answer",
        )?;
        let added = answer
            .member
            .ok_or_else(|| json_error(&endpoint, "a member add answer", "no member".into()))?
            .member(&endpoint)?;
        let membership = MembersAnswer {
            members: answer.members,
        }
        .membership(&endpoint)?;
        Ok((added, membership))
    }

    /// Removes a member; the membership afterwards.
    pub fn member_remove(&self, id: MemberId) -> Result<Membership, EtcdError> {
        let body = serde_json::json!({ "ID": id.0.to_string() }).to_string();
        let (endpoint, answer): (_, MembersAnswer) = self.post(
            "/v3/cluster/member/remove",
            body.as_bytes(),
            "a member remove answer",
        )?;
        answer.membership(&endpoint)
    }

    /// `GET /health` on one member's client URL: Ok when it answers `{"health":"true"}`, which
    /// etcd does only with a leader and no alarm.
    pub fn health(&self, client_url: &str) -> Result<(), EtcdError> {
        let endpoint = Endpoint::parse(client_url)?;
        let response = self.send(&endpoint, "/health", None)?;
        #[derive(Deserialize)]
        struct Health {
            health: String,
            #[serde(default)]
            reason: String,
        }
        let health: Health = serde_json::from_slice(&response.body)
            .map_err(|e| json_error(&endpoint.url, "a health answer", e.to_string()))?;
        if response.status == 200 && health.health == "true" {
            Ok(())
        } else {
            Err(EtcdError::Refused {
                endpoint: endpoint.url,
                status: response.status,
                message: format!("unhealthy {}", health.reason).trim().to_string(),
            })
        }
    }

    /// `maintenance status` of one member, asked at its own client URL.
    pub fn status(&self, client_url: &str) -> Result<Status, EtcdError> {
        let endpoint = Endpoint::parse(client_url)?;
        let answer: StatusAnswer = self.post_to(
            &endpoint,
            "/v3/maintenance/status",
            b"{}",
            "a status answer",
        )?;
        let id = |s: &Option<String>, what| parse_id(&endpoint.url, s.as_deref(), what);
        Ok(Status {
            version: answer.version.unwrap_or_default(),
            member: id(
                &answer.header.unwrap_or_default().member_id,
                "header.member_id",
            )?,
            leader: match answer.leader.as_deref() {
                None | Some("0") => None,
                leader => Some(parse_id(&endpoint.url, leader, "leader")?),
            },
        })
    }

    /// Whether a started member is healthy: one of its client URLs answers `/health` with
    /// `true`, or failing that `maintenance status` names a leader.
    pub fn is_healthy(&self, member: &Member) -> bool {
        member.client_urls.iter().any(|url| {
            self.health(url).is_ok()
                || self
                    .status(url)
                    .is_ok_and(|s| s.leader.is_some() && s.member == member.id)
        })
    }

    /// POSTs to each endpoint in turn until one answers 200 with the expected JSON.
    fn post<T: for<'de> Deserialize<'de>>(
        &self,
        path: &str,
        body: &[u8],
        what: &'static str,
    ) -> Result<(String, T), EtcdError> {
        let mut failures = Vec::new();
        for endpoint in &self.endpoints {
            match self.post_to(endpoint, path, body, what) {
                Ok(answer) => return Ok((endpoint.url.clone(), answer)),
                Err(e) => failures.push(e),
            }
        }
        if failures.len() == 1 {
            return Err(failures.remove(0));
        }
        Err(EtcdError::AllFailed(
            failures
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; "),
        ))
    }

    fn post_to<T: for<'de> Deserialize<'de>>(
        &self,
        endpoint: &Endpoint,
        path: &str,
        body: &[u8],
        what: &'static str,
    ) -> Result<T, EtcdError> {
        let response = self.send(endpoint, path, Some(body))?;
        if response.status != 200 {
            #[derive(Deserialize)]
            struct GatewayError {
                #[serde(default)]
                message: String,
                #[serde(default)]
                error: String,
            }
            let message = match serde_json::from_slice::<GatewayError>(&response.body) {
                Ok(e) if !e.message.is_empty() => e.message,
                Ok(e) if !e.error.is_empty() => e.error,
                _ => String::from_utf8_lossy(&response.body)
                    .chars()
                    .take(200)
                    .collect(),
            };
            return Err(EtcdError::Refused {
                endpoint: endpoint.url.clone(),
                status: response.status,
                message,
            });
        }
        serde_json::from_slice(&response.body)
            .map_err(|e| json_error(&endpoint.url, what, e.to_string()))
    }

    /// `POST path` with a JSON body, or `GET path` without one, on a new connection.
    fn send(
        &self,
        endpoint: &Endpoint,
        path: &str,
        body: Option<&[u8]>,
    ) -> Result<kindling_http::Response, EtcdError> {
        let client = self.client_for(endpoint);
        let target = endpoint.target();
        let answer = match body {
            Some(body) => client.post_json(&target, path, body),
            None => client.get(&target, path),
        };
        answer.map_err(|e| self.http_error(endpoint, e))
    }

    fn client_for(&self, endpoint: &Endpoint) -> &kindling_http::Client {
        if endpoint.tls {
            &self.https
        } else {
            &self.http
        }
    }

    fn http_error(&self, endpoint: &Endpoint, e: HttpError) -> EtcdError {
        let url = || endpoint.url.clone();
        match e {
            HttpError::Tls { source, .. } => EtcdError::Tls {
                endpoint: url(),
                reason: source.to_string(),
            },
            HttpError::ServerName(_) => EtcdError::Url {
                url: url(),
                reason: "the host cannot be a TLS server name".into(),
            },
            HttpError::Malformed { .. } => EtcdError::NotHttp { endpoint: url() },
            source => EtcdError::Unreachable {
                endpoint: url(),
                source,
            },
        }
    }
}

fn json_error(endpoint: &str, what: &'static str, reason: String) -> EtcdError {
    EtcdError::Json {
        endpoint: endpoint.to_string(),
        what,
        reason,
    }
}

fn parse_id(endpoint: &str, id: Option<&str>, field: &str) -> Result<MemberId, EtcdError> {
    id.and_then(|s| s.parse::<u64>().ok())
        .map(MemberId)
        .ok_or_else(|| {
            json_error(
                endpoint,
                "an etcd answer",
                format!("{field} is not a uint64 in a string: {id:?}"),
            )
        })
}

/// A member as the gateway writes it: proto3 JSON, where empty fields are left out.
#[derive(Deserialize)]
struct WireMember {
    #[serde(rename = "ID")]
    id: Option<String>,
    #[serde(default)]
    name: String,
    #[serde(default, rename = "peerURLs")]
    peer_urls: Vec<String>,
    #[serde(default, rename = "clientURLs")]
    client_urls: Vec<String>,
    #[serde(default, rename = "isLearner")]
    is_learner: bool,
}

impl WireMember {
    fn member(self, endpoint: &str) -> Result<Member, EtcdError> {
        Ok(Member {
            id: parse_id(endpoint, self.id.as_deref(), "member ID")?,
            name: self.name,
            peer_urls: self.peer_urls,
            client_urls: self.client_urls,
            is_learner: self.is_learner,
        })
    }
}

#[derive(Deserialize)]
struct MembersAnswer {
    #[serde(default)]
    members: Vec<WireMember>,
}

impl MembersAnswer {
    fn membership(self, endpoint: &str) -> Result<Membership, EtcdError> {
        Ok(Membership {
            members: self
                .members
                .into_iter()
                .map(|m| m.member(endpoint))
                .collect::<Result<_, _>>()?,
        })
    }
}

#[derive(Deserialize)]
struct AddAnswer {
    member: Option<WireMember>,
    #[serde(default)]
    members: Vec<WireMember>,
}

#[derive(Deserialize, Default)]
struct Header {
    member_id: Option<String>,
}

#[derive(Deserialize)]
struct StatusAnswer {
    header: Option<Header>,
    version: Option<String>,
    leader: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: u64, name: &str, peer: &str) -> Member {
        Member {
            id: MemberId(id),
            name: name.into(),
            peer_urls: vec![peer.into()],
            client_urls: vec![],
            is_learner: false,
        }
    }

    /// What etcd 3.4.23 answers to member add.
    #[test]
    fn a_member_add_answer_reads() {
        let body = r#"{"header":{"cluster_id":"15118495548433857066","member_id":"13668033151171901709","raft_term":"2"},"member":{"ID":"9254078352605787286","peerURLs":["http://127.0.0.1:23802"]},"members":[{"ID":"9254078352605787286","peerURLs":["http://127.0.0.1:23802"]},{"ID":"13668033151171901709","name":"a","peerURLs":["http://127.0.0.1:23801"],"clientURLs":["http://127.0.0.1:23791"]}]}"#;
        let answer: AddAnswer = serde_json::from_str(body).unwrap();
        let added = answer.member.unwrap().member("e").unwrap();
        assert_eq!(added.id, MemberId(9254078352605787286));
        assert!(!added.started());
        let members = MembersAnswer {
            members: answer.members,
        }
        .membership("e")
        .unwrap();
        assert_eq!(members.members.len(), 2);
        assert!(members.by_name("a").unwrap().started());
    }

    #[test]
    fn ids_that_are_not_uint64_strings_are_errors() {
        for body in [
            r#"{"members":[{"ID":"-1"}]}"#,
            r#"{"members":[{"name":"a"}]}"#,
            r#"{"members":[{"ID":"18446744073709551616"}]}"#,
        ] {
            let answer: MembersAnswer = serde_json::from_str(body).unwrap();
            assert!(answer.membership("e").is_err(), "{body}");
        }
        assert!(serde_json::from_str::<MembersAnswer>(r#"{"members":[{"ID":12}]}"#).is_err());
    }

    #[test]
    fn initial_cluster_lists_every_member_and_the_joiner_once() {
        let members = Membership {
            members: vec![
                member(1, "bootstrap", "https://10.0.0.1:2380"),
                member(2, "", "https://10.0.0.2:2380"),
                member(3, "", "https://10.0.0.3:2380"),
            ],
        };
        assert_eq!(
            members.initial_cluster("master0", "https://10.0.0.2:2380/"),
            "bootstrap=https://10.0.0.1:2380,master0=https://10.0.0.2:2380,unstarted-3=https://10.0.0.3:2380"
        );
        let alone = Membership {
            members: vec![member(1, "bootstrap", "https://10.0.0.1:2380")],
        };
        assert_eq!(
            alone.initial_cluster("master0", "https://10.0.0.2:2380"),
            "bootstrap=https://10.0.0.1:2380,master0=https://10.0.0.2:2380"
        );
        assert_eq!(MemberId(255).to_string(), "ff");
    }
}
