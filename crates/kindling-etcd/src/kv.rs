//! etcd's key-value API, leases and watches over the same JSON gateway: what `kindling serve`
//! keeps its shared state with when several replicas serve one site (see kindling-store).
//!
//! Keys and values travel base64-encoded; revisions and lease IDs as strings of digits; fields
//! at their default (0, false, empty) are left out of the JSON, as proto3 does. All calls are
//! async. A call is tried on each endpoint in turn, starting with the one that answered last,
//! until one answers.

use std::sync::atomic::Ordering;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::{Client, Endpoint, EtcdError, json_error};

/// A key and its value, with the revisions etcd keeps for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    pub key: Vec<u8>,
    pub value: Vec<u8>,
    /// The revision of the put that created the key.
    pub create_revision: i64,
    /// The revision of the last put.
    pub mod_revision: i64,
    /// The lease the key is attached to; 0 for none.
    pub lease: i64,
}

/// The keys to read: one key, or every key from `key` up to `end` (exclusive).
#[derive(Debug, Clone, Default)]
pub struct Range {
    pub key: Vec<u8>,
    pub end: Option<Vec<u8>>,
    /// The most keys to return; 0 for all.
    pub limit: i64,
    /// Read at this revision; 0 for the newest.
    pub revision: i64,
    /// Keys and revisions only, no values.
    pub keys_only: bool,
    /// Only keys last put at this revision or later; 0 for all.
    pub min_mod_revision: i64,
    /// Sorted by the revision of their last put (oldest first) rather than by key.
    pub by_mod_revision: bool,
}

impl Range {
    /// Exactly `key`.
    pub fn key(key: impl Into<Vec<u8>>) -> Range {
        Range {
            key: key.into(),
            ..Range::default()
        }
    }

    /// Every key that starts with `prefix`.
    pub fn prefix(prefix: impl Into<Vec<u8>>) -> Range {
        let key = prefix.into();
        let end = prefix_end(&key);
        Range {
            key,
            end: Some(end),
            ..Range::default()
        }
    }

    fn json(&self) -> Value {
        let mut body = json!({ "key": BASE64.encode(&self.key) });
        if let Some(end) = &self.end {
            body["range_end"] = BASE64.encode(end).into();
        }
        if self.limit > 0 {
            body["limit"] = self.limit.to_string().into();
        }
        if self.revision > 0 {
            body["revision"] = self.revision.to_string().into();
        }
        if self.keys_only {
            body["keys_only"] = true.into();
        }
        if self.min_mod_revision > 0 {
            body["min_mod_revision"] = self.min_mod_revision.to_string().into();
        }
        if self.by_mod_revision {
            body["sort_order"] = "ASCEND".into();
            body["sort_target"] = "MOD".into();
        }
        body
    }
}

/// The end of the range of keys that start with `prefix`: the prefix with its last byte that is
/// not 0xff incremented (etcd's `WithPrefix`).
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    // Every byte 0xff (or no prefix): to the end of the keyspace.
    vec![0]
}

/// What a range read found.
#[derive(Debug, Clone, Default)]
pub struct Ranged {
    pub kvs: Vec<KeyValue>,
    /// More keys matched than `limit` let through.
    pub more: bool,
    /// The store's revision when it was read.
    pub revision: i64,
}

/// One condition of a transaction.
#[derive(Debug, Clone)]
pub enum Compare {
    /// The key's create revision equals this; 0 means the key does not exist.
    Created(Vec<u8>, i64),
    /// The key's last put was at this revision.
    Modified(Vec<u8>, i64),
    /// The key's value equals this.
    Value(Vec<u8>, Vec<u8>),
}

// Transactions are written as JSON text directly rather than through serde_json's `Value`: a
// replica writes every event it records this way, a hundred at a time, and building the trees
// cost more than the rest of the request. Base64 and digits need no escaping.

/// `"name":"<base64 of bytes>"`.
fn field_b64(out: &mut String, name: &str, bytes: &[u8]) {
    out.push('"');
    out.push_str(name);
    out.push_str("\":\"");
    BASE64.encode_string(bytes, out);
    out.push('"');
}

impl Compare {
    fn write(&self, out: &mut String) {
        let (key, target) = match self {
            Compare::Created(key, _) => (key, "CREATE"),
            Compare::Modified(key, _) => (key, "MOD"),
            Compare::Value(key, _) => (key, "VALUE"),
        };
        out.push('{');
        field_b64(out, "key", key);
        out.push_str(&format!(",\"target\":\"{target}\",\"result\":\"EQUAL\","));
        match self {
            Compare::Created(_, rev) => out.push_str(&format!("\"create_revision\":\"{rev}\"")),
            Compare::Modified(_, rev) => out.push_str(&format!("\"mod_revision\":\"{rev}\"")),
            Compare::Value(_, value) => field_b64(out, "value", value),
        }
        out.push('}');
    }
}

/// One operation of a transaction.
#[derive(Debug, Clone)]
pub enum Op {
    /// Put a value, attached to a lease unless it is 0.
    Put {
        key: Vec<u8>,
        value: Vec<u8>,
        lease: i64,
    },
    /// Delete a key, or every key of a range.
    Delete {
        key: Vec<u8>,
        end: Option<Vec<u8>>,
    },
    Get(Range),
}

impl Op {
    pub fn put(key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) -> Op {
        Op::Put {
            key: key.into(),
            value: value.into(),
            lease: 0,
        }
    }

    /// The request's own JSON (as `/v3/kv/put` and the others take it), and the name it goes
    /// under in a transaction.
    fn write(&self, out: &mut String) -> &'static str {
        match self {
            Op::Put { key, value, lease } => {
                out.push('{');
                field_b64(out, "key", key);
                out.push(',');
                field_b64(out, "value", value);
                if *lease != 0 {
                    out.push_str(&format!(",\"lease\":\"{lease}\""));
                }
                out.push('}');
                "request_put"
            }
            Op::Delete { key, end } => {
                out.push('{');
                field_b64(out, "key", key);
                if let Some(end) = end {
                    out.push(',');
                    field_b64(out, "range_end", end);
                }
                out.push('}');
                "request_delete_range"
            }
            Op::Get(range) => {
                out.push_str(&range.json().to_string());
                "request_range"
            }
        }
    }
}

impl Txn {
    fn to_json(&self) -> Vec<u8> {
        let mut out = String::with_capacity(64 + 200 * (self.success.len() + self.compare.len()));
        out.push_str("{\"compare\":[");
        for (i, compare) in self.compare.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            compare.write(&mut out);
        }
        for (name, ops) in [("success", &self.success), ("failure", &self.failure)] {
            out.push_str(&format!("],\"{name}\":["));
            for (i, op) in ops.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                let mut inner = String::new();
                let kind = op.write(&mut inner);
                out.push_str(&format!("{{\"{kind}\":{inner}}}"));
            }
        }
        out.push_str("]}");
        out.into_bytes()
    }
}

/// If every comparison holds, the `success` operations, else the `failure` ones; atomically.
#[derive(Debug, Clone, Default)]
pub struct Txn {
    pub compare: Vec<Compare>,
    pub success: Vec<Op>,
    pub failure: Vec<Op>,
}

/// What a transaction did.
#[derive(Debug, Clone, Default)]
pub struct TxnResult {
    /// Whether the comparisons held (and so `success` ran).
    pub succeeded: bool,
    /// The store's revision after it.
    pub revision: i64,
    /// What each `Get` operation that ran found, in order.
    pub ranges: Vec<Ranged>,
}

/// A lease: keys attached to it go when it expires or is revoked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    pub id: i64,
    /// Seconds, as granted.
    pub ttl: i64,
}

/// What happened to a watched key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Put(KeyValue),
    /// The key and the revision of the delete.
    Delete(Vec<u8>, i64),
}

/// What a watch reports at once: the changes of one or more revisions.
#[derive(Debug, Clone, Default)]
pub struct Changes {
    pub changes: Vec<Change>,
    /// The store's revision at the time.
    pub revision: i64,
}

/// A watch on a range of keys; see [`Client::watch`].
pub struct Watch {
    lines: kindling_http::Lines,
    endpoint: String,
}

/// The gateway's JSON of a key-value: every field may be missing.
#[derive(Deserialize, Default)]
struct WireKv {
    #[serde(default)]
    key: String,
    #[serde(default)]
    value: String,
    #[serde(default)]
    create_revision: Option<String>,
    #[serde(default)]
    mod_revision: Option<String>,
    #[serde(default)]
    lease: Option<String>,
}

#[derive(Deserialize, Default)]
struct Header {
    #[serde(default)]
    revision: Option<String>,
}

#[derive(Deserialize, Default)]
struct WireRange {
    #[serde(default)]
    header: Header,
    #[serde(default)]
    kvs: Vec<WireKv>,
    #[serde(default)]
    more: bool,
}

fn number(endpoint: &str, field: &str, text: Option<&str>) -> Result<i64, EtcdError> {
    match text {
        None => Ok(0),
        Some(t) => t.parse().map_err(|_| {
            json_error(
                endpoint,
                "an etcd answer",
                format!("{field} is not a number in a string: {t:?}"),
            )
        }),
    }
}

fn bytes(endpoint: &str, field: &str, text: &str) -> Result<Vec<u8>, EtcdError> {
    BASE64.decode(text).map_err(|e| {
        json_error(
            endpoint,
            "an etcd answer",
            format!("{field} is not base64: {e}"),
        )
    })
}

impl WireKv {
    fn kv(self, endpoint: &str) -> Result<KeyValue, EtcdError> {
        Ok(KeyValue {
            key: bytes(endpoint, "key", &self.key)?,
            value: bytes(endpoint, "value", &self.value)?,
            create_revision: number(endpoint, "create_revision", self.create_revision.as_deref())?,
            mod_revision: number(endpoint, "mod_revision", self.mod_revision.as_deref())?,
            lease: number(endpoint, "lease", self.lease.as_deref())?,
        })
    }
}

impl WireRange {
    fn ranged(self, endpoint: &str) -> Result<Ranged, EtcdError> {
        Ok(Ranged {
            kvs: self
                .kvs
                .into_iter()
                .map(|kv| kv.kv(endpoint))
                .collect::<Result<_, _>>()?,
            more: self.more,
            revision: number(endpoint, "header.revision", self.header.revision.as_deref())?,
        })
    }
}

/// How long a watch may stay silent before it is taken for dead and should be made again. etcd
/// says nothing while nothing changes; the watch asks for progress reports, which etcd sends
/// every 10 minutes, so a quiet watch is also remade after this long.
pub const WATCH_IDLE: Duration = Duration::from_secs(30);

/// The largest answer read: a range or a transaction's reads (values travel in base64, a third
/// larger than they are).
const KV_LIMIT: usize = 16 << 20;

/// The longest line a watch reads: one revision's changes.
const WATCH_LIMIT: usize = 64 << 20;

impl Client {
    /// The keys of `range`.
    pub async fn range(&self, range: &Range) -> Result<Ranged, EtcdError> {
        let (endpoint, answer): (_, WireRange) = self
            .post_async(
                "/v3/kv/range",
                range.json().to_string().into_bytes(),
                "a range answer",
            )
            .await?;
        answer.ranged(&endpoint)
    }

    /// One key, if it exists.
    pub async fn get(&self, key: &[u8]) -> Result<Option<KeyValue>, EtcdError> {
        Ok(self.range(&Range::key(key)).await?.kvs.into_iter().next())
    }

    /// Puts `value` at `key`; the store's revision after it.
    pub async fn put(&self, key: &[u8], value: &[u8], lease: i64) -> Result<i64, EtcdError> {
        let op = Op::Put {
            key: key.to_vec(),
            value: value.to_vec(),
            lease,
        };
        let mut body = String::new();
        op.write(&mut body);
        let body = body.into_bytes();
        #[derive(Deserialize)]
        struct Put {
            #[serde(default)]
            header: Header,
        }
        let (endpoint, answer): (_, Put) =
            self.post_async("/v3/kv/put", body, "a put answer").await?;
        number(
            &endpoint,
            "header.revision",
            answer.header.revision.as_deref(),
        )
    }

    /// Runs a transaction.
    pub async fn txn(&self, txn: &Txn) -> Result<TxnResult, EtcdError> {
        let body = txn.to_json();
        #[derive(Deserialize)]
        struct Answer {
            #[serde(default)]
            header: Header,
            #[serde(default)]
            succeeded: bool,
            #[serde(default)]
            responses: Vec<Response>,
        }
        #[derive(Deserialize)]
        struct Response {
            #[serde(default)]
            response_range: Option<WireRange>,
        }
        let (endpoint, answer): (_, Answer) = self
            .post_async("/v3/kv/txn", body, "a transaction answer")
            .await?;
        Ok(TxnResult {
            succeeded: answer.succeeded,
            revision: number(
                &endpoint,
                "header.revision",
                answer.header.revision.as_deref(),
            )?,
            ranges: answer
                .responses
                .into_iter()
                .filter_map(|r| r.response_range)
                .map(|r| r.ranged(&endpoint))
                .collect::<Result<_, _>>()?,
        })
    }

    /// Deletes a key, or every key of a range.
    pub async fn delete(&self, key: &[u8], end: Option<&[u8]>) -> Result<(), EtcdError> {
        let op = Op::Delete {
            key: key.to_vec(),
            end: end.map(<[u8]>::to_vec),
        };
        let mut body = String::new();
        op.write(&mut body);
        let body = body.into_bytes();
        let _: (_, Value) = self
            .post_async("/v3/kv/deleterange", body, "a delete answer")
            .await?;
        Ok(())
    }

    /// A new lease of `ttl` seconds.
    pub async fn lease_grant(&self, ttl: i64) -> Result<Lease, EtcdError> {
        #[derive(Deserialize)]
        struct Grant {
            #[serde(rename = "ID")]
            id: Option<String>,
            #[serde(rename = "TTL")]
            ttl: Option<String>,
            #[serde(default)]
            error: String,
        }
        let (endpoint, grant): (_, Grant) = self
            .post_async(
                "/v3/lease/grant",
                json!({ "TTL": ttl.to_string() }).to_string().into_bytes(),
                "a lease grant",
            )
            .await?;
        if !grant.error.is_empty() {
            return Err(EtcdError::Refused {
                endpoint,
                status: 200,
                message: grant.error,
            });
        }
        Ok(Lease {
            id: number(&endpoint, "ID", grant.id.as_deref())?,
            ttl: number(&endpoint, "TTL", grant.ttl.as_deref())?,
        })
    }

    /// Renews a lease: its TTL from now, or None when it has expired (or never was).
    pub async fn lease_keep_alive(&self, id: i64) -> Result<Option<i64>, EtcdError> {
        #[derive(Deserialize)]
        struct Answer {
            #[serde(default)]
            result: Option<Renewed>,
        }
        #[derive(Deserialize)]
        struct Renewed {
            #[serde(rename = "TTL")]
            ttl: Option<String>,
        }
        // A stream in gRPC; through the gateway, one request and its one answer.
        let (endpoint, answer): (_, Answer) = self
            .post_async(
                "/v3/lease/keepalive",
                json!({ "ID": id.to_string() }).to_string().into_bytes(),
                "a lease keep-alive answer",
            )
            .await?;
        let ttl = answer.result.and_then(|r| r.ttl);
        match number(&endpoint, "TTL", ttl.as_deref())? {
            ttl if ttl > 0 => Ok(Some(ttl)),
            _ => Ok(None),
        }
    }

    /// Ends a lease now, and with it the keys attached to it.
    pub async fn lease_revoke(&self, id: i64) -> Result<(), EtcdError> {
        let _: (_, Value) = self
            .post_async(
                "/v3/lease/revoke",
                json!({ "ID": id.to_string() }).to_string().into_bytes(),
                "a lease revoke answer",
            )
            .await?;
        Ok(())
    }

    /// Watches `range` (its key and end) from revision `from` (0: from now). The first answer
    /// says the watch is made; [`Watch::next`] then gives the changes as they come.
    pub async fn watch(&self, range: &Range, from: i64) -> Result<Watch, EtcdError> {
        let mut create = json!({ "key": BASE64.encode(&range.key), "progress_notify": true });
        if let Some(end) = &range.end {
            create["range_end"] = BASE64.encode(end).into();
        }
        if from > 0 {
            create["start_revision"] = from.to_string().into();
        }
        let body = serde_json::to_vec(&json!({ "create_request": create }))
            .map_err(|e| EtcdError::TlsConfig(e.to_string()))?;
        let mut failures = Vec::new();
        for endpoint in self.in_preference() {
            let client = self.client_for(endpoint).clone().with_limit(WATCH_LIMIT);
            let lines = client
                .post_json_lines(&endpoint.target(), "/v3/watch", body.clone(), WATCH_IDLE)
                .await;
            let lines = match lines {
                Ok(lines) => lines,
                Err(e) => {
                    failures.push(self.http_error(endpoint, e));
                    continue;
                }
            };
            if lines.status() != 200 {
                let status = lines.status();
                let message = lines.rest().await.unwrap_or_default();
                failures.push(refused(endpoint, status, &message));
                continue;
            }
            let mut watch = Watch {
                lines,
                endpoint: endpoint.url.clone(),
            };
            match watch.read().await {
                Ok(first) if first.created => {
                    self.prefer(endpoint);
                    return Ok(watch);
                }
                Ok(_) => failures.push(json_error(
                    &endpoint.url,
                    "a watch answer",
                    "the first answer did not say the watch was made".into(),
                )),
                Err(e) => failures.push(e),
            }
        }
        Err(all_failed(failures))
    }

    /// POSTs `body` to each endpoint in turn, from the preferred one, until one answers 200
    /// with the expected JSON.
    async fn post_async<T: for<'de> Deserialize<'de>>(
        &self,
        path: &str,
        body: Vec<u8>,
        what: &'static str,
    ) -> Result<(String, T), EtcdError> {
        let mut failures = Vec::new();
        for endpoint in self.in_preference() {
            let answer = self
                .client_for(endpoint)
                .clone()
                .with_limit(KV_LIMIT)
                .post_json_async(&endpoint.target(), path, body.clone())
                .await;
            let response = match answer {
                Ok(response) => response,
                Err(e) => {
                    failures.push(self.http_error(endpoint, e));
                    continue;
                }
            };
            if response.status != 200 {
                failures.push(refused(endpoint, response.status, &response.body));
                continue;
            }
            match serde_json::from_slice(&response.body) {
                Ok(answer) => {
                    self.prefer(endpoint);
                    return Ok((endpoint.url.clone(), answer));
                }
                Err(e) => failures.push(json_error(&endpoint.url, what, e.to_string())),
            }
        }
        Err(all_failed(failures))
    }

    /// The endpoints, the one that last answered first.
    fn in_preference(&self) -> impl Iterator<Item = &Endpoint> {
        let first = self.preferred.load(Ordering::Relaxed) % self.endpoints.len();
        self.endpoints[first..]
            .iter()
            .chain(&self.endpoints[..first])
    }

    fn prefer(&self, endpoint: &Endpoint) {
        if let Some(i) = self.endpoints.iter().position(|e| e.url == endpoint.url) {
            self.preferred.store(i, Ordering::Relaxed);
        }
    }
}

fn refused(endpoint: &Endpoint, status: u16, body: &[u8]) -> EtcdError {
    #[derive(Deserialize)]
    struct GatewayError {
        #[serde(default)]
        message: String,
        #[serde(default)]
        error: String,
    }
    let message = match serde_json::from_slice::<GatewayError>(body) {
        Ok(e) if !e.message.is_empty() => e.message,
        Ok(e) if !e.error.is_empty() => e.error,
        _ => String::from_utf8_lossy(body).chars().take(200).collect(),
    };
    EtcdError::Refused {
        endpoint: endpoint.url.clone(),
        status,
        message,
    }
}

fn all_failed(mut failures: Vec<EtcdError>) -> EtcdError {
    match failures.len() {
        0 => EtcdError::NoEndpoint,
        1 => failures.remove(0),
        _ => EtcdError::AllFailed(
            failures
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; "),
        ),
    }
}

/// One answer on a watch's stream.
struct WatchAnswer {
    created: bool,
    changes: Changes,
}

impl Watch {
    /// The next changes; a progress report comes as changes with none in them. An error means
    /// the watch is over (the member went away, or etcd canceled it): make a new one from the
    /// revision after the last one seen. [`EtcdError::WatchQuiet`] is no failure: nothing
    /// changed for [`WATCH_IDLE`], and the watch is made again in case its member is gone
    /// without a word.
    pub async fn next(&mut self) -> Result<Changes, EtcdError> {
        Ok(self.read().await?.changes)
    }

    async fn read(&mut self) -> Result<WatchAnswer, EtcdError> {
        #[derive(Deserialize)]
        struct Line {
            #[serde(default)]
            result: Option<Result_>,
            #[serde(default)]
            error: Option<Value>,
        }
        #[derive(Deserialize)]
        struct Result_ {
            #[serde(default)]
            header: Header,
            #[serde(default)]
            created: bool,
            #[serde(default)]
            canceled: bool,
            #[serde(default)]
            compact_revision: Option<String>,
            #[serde(default)]
            cancel_reason: String,
            #[serde(default)]
            events: Vec<WireEvent>,
        }
        #[derive(Deserialize)]
        struct WireEvent {
            #[serde(default, rename = "type")]
            kind: String,
            #[serde(default)]
            kv: WireKv,
        }
        let endpoint = self.endpoint.clone();
        let line = loop {
            match self.lines.next_line().await {
                Ok(Some(line)) if line.iter().all(u8::is_ascii_whitespace) => continue,
                Ok(Some(line)) => break line,
                Ok(None) => {
                    return Err(EtcdError::Refused {
                        endpoint,
                        status: 200,
                        message: "the watch ended".into(),
                    });
                }
                Err(kindling_http::HttpError::Timeout { .. }) => {
                    return Err(EtcdError::WatchQuiet {
                        endpoint,
                        after: WATCH_IDLE,
                    });
                }
                Err(source) => {
                    return Err(EtcdError::Unreachable { endpoint, source });
                }
            }
        };
        let line: Line = serde_json::from_slice(&line)
            .map_err(|e| json_error(&endpoint, "a watch answer", e.to_string()))?;
        if let Some(error) = line.error {
            return Err(EtcdError::Refused {
                endpoint,
                status: 200,
                message: error.to_string(),
            });
        }
        let result = line
            .result
            .ok_or_else(|| json_error(&endpoint, "a watch answer", "no result".into()))?;
        if result.canceled {
            let compacted = number(
                &endpoint,
                "compact_revision",
                result.compact_revision.as_deref(),
            )?;
            let message = if compacted > 0 {
                format!("the revisions watched from were compacted (up to {compacted})")
            } else {
                format!("the watch was canceled: {}", result.cancel_reason)
            };
            return Err(EtcdError::Refused {
                endpoint,
                status: 200,
                message,
            });
        }
        let mut changes = Vec::with_capacity(result.events.len());
        for event in result.events {
            let kv = event.kv.kv(&endpoint)?;
            changes.push(match event.kind.as_str() {
                "DELETE" => Change::Delete(kv.key, kv.mod_revision),
                _ => Change::Put(kv),
            });
        }
        Ok(WatchAnswer {
            created: result.created,
            changes: Changes {
                changes,
                revision: number(
                    &endpoint,
                    "header.revision",
                    result.header.revision.as_deref(),
                )?,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_ends_past_every_key_with_the_prefix() {
        assert_eq!(prefix_end(b"/kindling/"), b"/kindling0");
        assert_eq!(prefix_end(b"a\xff"), b"b");
        assert_eq!(prefix_end(b"\xff\xff"), vec![0]);
        assert_eq!(prefix_end(b""), vec![0]);
    }

    #[test]
    fn transactions_are_written_as_the_gateway_reads_them() {
        let txn = Txn {
            compare: vec![
                Compare::Created(b"k".to_vec(), 0),
                Compare::Modified(b"m".to_vec(), 12),
            ],
            success: vec![
                Op::Put {
                    key: b"k".to_vec(),
                    value: b"v".to_vec(),
                    lease: 7,
                },
                Op::Delete {
                    key: b"a".to_vec(),
                    end: Some(b"b".to_vec()),
                },
            ],
            failure: vec![Op::Get(Range::key("k"))],
        };
        let written: Value = serde_json::from_slice(&txn.to_json()).unwrap();
        assert_eq!(
            written,
            json!({
                "compare": [
                    {"key": "aw==", "target": "CREATE", "result": "EQUAL", "create_revision": "0"},
                    {"key": "bQ==", "target": "MOD", "result": "EQUAL", "mod_revision": "12"},
                ],
                "success": [
                    {"request_put": {"key": "aw==", "value": "dg==", "lease": "7"}},
                    {"request_delete_range": {"key": "YQ==", "range_end": "Yg=="}},
                ],
                "failure": [{"request_range": {"key": "aw=="}}],
            })
        );
    }
}
