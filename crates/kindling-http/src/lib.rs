//! A small blocking HTTP/1.1 client for kindling's own tools: `doctor` fetching `boot.ipxe` and
//! `/readyz` and checking the certificate a server presents, the etcd membership client on
//! etcd's JSON gateway, and the node agent's stage reports to `kindling serve`.
//!
//! One request per connection (`Connection: close`), over plain TCP or over rustls (aws-lc-rs)
//! trusting only the given root CA, optionally presenting a client certificate. The caller names
//! the host used for SNI and `Host:`, and may give the address too, so that an address found by
//! doctor's own resolver is still asked under its name.
//!
//! HTTP itself is hyper's client connection (`hyper::client::conn::http1`): the status line,
//! headers, `Content-Length`, chunked bodies and trailers are read by a real HTTP
//! implementation, not by hand. Each call runs on its own current-thread tokio runtime, so the
//! API is blocking, like its callers (it may also be called from inside a runtime: the call then
//! runs on a thread of its own). [`Client::get_async`] and [`Client::post_json_async`] are the
//! same for async callers, and [`Client::post_json_lines`] reads an answer that does not end
//! (etcd's watch) a line at a time.
//!
//! Bounds: resolving the name and connecting take at most [`Timeouts::connect`]; the TLS
//! handshake, the request and the whole answer at most [`Timeouts::exchange`]; a body larger
//! than the client's limit ([`DEFAULT_LIMIT`] unless set) is refused.
//!
//! A status other than 2xx is not an error: the [`Response`] carries it, with the body that
//! explains it. Errors keep what callers branch on: a connection refused or timed out, a TLS
//! failure with rustls's reason ([`HttpError::is_certificate_error`] for a certificate that was
//! presented and rejected), an answer that is not HTTP, and one that is too large.

use std::error::Error as _;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt as _, Full};
use hyper::Request;
use hyper::body::Bytes;
use hyper::header::{self, HeaderValue};
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt as _};
use tokio::net::TcpStream;

pub use hyper::HeaderMap;

/// The largest body a client reads unless told otherwise: a boot script, a health answer or a
/// member list is far smaller.
pub const DEFAULT_LIMIT: usize = 1 << 20;

/// How long a request may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// Resolving the name (unless the target has its address) and the TCP connection.
    pub connect: Duration,
    /// Everything after: the TLS handshake, the request and the whole answer.
    pub exchange: Duration,
}

/// How a client secures its connections.
pub enum Tls {
    /// Plain TCP.
    None,
    /// TLS, trusting only the CA certificates in `ca_pem`, presenting a client certificate when
    /// one is given.
    Roots {
        ca_pem: Vec<u8>,
        client_identity: Option<Identity>,
    },
    /// TLS without checking the server's certificate, for a server the user said to trust as
    /// it is (a BMC's self-signed certificate, `insecure: true`). The handshake's signatures
    /// are still checked; who signed the certificate is not.
    Unverified,
}

/// A client certificate (chain) and its private key, both PEM.
pub struct Identity {
    pub cert_pem: Vec<u8>,
    pub key_pem: Vec<u8>,
}

/// Why a [`Tls`] setting is not usable; the caller names the file the PEM came from.
#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    /// Something wrong with the CA certificates.
    #[error("{0}")]
    Roots(String),
    /// Something wrong with the client certificate.
    #[error("{0}")]
    Certificate(String),
    /// Something wrong with the client key.
    #[error("{0}")]
    Key(String),
    /// The certificate and key do not make a client identity, or rustls refused the settings.
    #[error("{0}")]
    Config(String),
}

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("resolving {host}: {source}")]
    Resolve { host: String, source: io::Error },
    #[error("connecting to {addr}: {source}")]
    Connect { addr: SocketAddr, source: io::Error },
    #[error("connecting to {addr}: no connection within {}", secs(*.timeout))]
    ConnectTimeout { addr: SocketAddr, timeout: Duration },
    #[error("'{0}' cannot be a TLS server name")]
    ServerName(String),
    /// rustls refused the connection, or the server refused it with a TLS alert.
    #[error("TLS with {addr}: {source}")]
    Tls {
        addr: SocketAddr,
        source: rustls::Error,
    },
    #[error("talking to {addr}: {source}")]
    Io { addr: SocketAddr, source: io::Error },
    #[error("talking to {addr}: {}", chain(.cause))]
    Exchange {
        addr: SocketAddr,
        cause: hyper::Error,
    },
    #[error("{addr} did not answer within {}", secs(*.timeout))]
    Timeout { addr: SocketAddr, timeout: Duration },
    #[error("{addr} answered something that is not HTTP/1.x: {}", chain(.cause))]
    Malformed {
        addr: SocketAddr,
        cause: hyper::Error,
    },
    #[error("{addr} answered more than {limit} bytes")]
    TooLarge { addr: SocketAddr, limit: usize },
    #[error("'{0}' is not a request path")]
    Path(String),
    #[error("starting the I/O runtime: {0}")]
    Runtime(io::Error),
}

impl HttpError {
    /// The server presented a certificate and it was rejected (another CA, another name,
    /// expired).
    pub fn is_certificate_error(&self) -> bool {
        matches!(
            self,
            HttpError::Tls {
                source: rustls::Error::InvalidCertificate(_),
                ..
            }
        )
    }
}

fn secs(d: Duration) -> String {
    format!("{}s", d.as_secs_f64())
}

/// hyper's error with its causes: its own text is only the outermost one.
fn chain(e: &hyper::Error) -> String {
    let mut text = e.to_string();
    let mut next = e.source();
    while let Some(cause) = next {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        next = cause.source();
    }
    text
}

/// Where a request goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// A name or an IP literal, without brackets: for SNI and `Host:`.
    host: String,
    port: u16,
    /// Where to connect; None to resolve `host` with the system's resolver.
    addr: Option<SocketAddr>,
}

impl Target {
    /// `host` (a name or an IP literal, without brackets) at `port`, resolved on each request.
    pub fn new(host: impl Into<String>, port: u16) -> Target {
        Target {
            host: host.into(),
            port,
            addr: None,
        }
    }

    /// The server at `addr`, asked as `host` (SNI and `Host:`).
    pub fn at(addr: SocketAddr, host: impl Into<String>) -> Target {
        Target {
            host: host.into(),
            port: addr.port(),
            addr: Some(addr),
        }
    }

    /// `host:port`, `[v6]:port`, or a host alone at `default_port`; None when it is none of
    /// these.
    pub fn from_authority(authority: &str, default_port: u16) -> Option<Target> {
        let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
            let (host, after) = rest.split_once(']')?;
            host.parse::<std::net::Ipv6Addr>().ok()?;
            match after {
                "" => (host, None),
                _ => (host, Some(after.strip_prefix(':')?)),
            }
        } else {
            match authority.split_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (authority, None),
            }
        };
        if host.is_empty() || host.contains(['/', '@', '[', ']', ' ']) {
            return None;
        }
        let port = match port {
            None => default_port,
            Some(p) => p.parse::<u16>().ok().filter(|p| *p != 0)?,
        };
        Some(Target::new(host, port))
    }

    pub fn host(&self) -> &str {
        &self.host
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `Host:`'s value.
    fn authority(&self) -> String {
        match self.host.parse::<IpAddr>() {
            Ok(IpAddr::V6(v6)) => format!("[{v6}]:{}", self.port),
            _ => format!("{}:{}", self.host, self.port),
        }
    }
}

/// An HTTP answer, whatever its status.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Response {
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// A client: its TLS settings, timeouts, body limit and `User-Agent`. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Client {
    tls: Option<Arc<rustls::ClientConfig>>,
    timeouts: Timeouts,
    limit: usize,
    user_agent: HeaderValue,
    /// `Authorization: Bearer ...` on every request; marked sensitive, so never printed.
    authorization: Option<HeaderValue>,
}

impl Client {
    pub fn new(tls: Tls, timeouts: Timeouts) -> Result<Client, TlsSetupError> {
        let config = match tls {
            Tls::None => None,
            Tls::Roots {
                ca_pem,
                client_identity,
            } => Some(client_config(&ca_pem, client_identity.as_ref())?),
            Tls::Unverified => Some(unverified_config()?),
        };
        Ok(Client {
            tls: config,
            ..Client::plain(timeouts)
        })
    }

    /// A client over plain TCP ([`Tls::None`]).
    pub fn plain(timeouts: Timeouts) -> Client {
        Client {
            tls: None,
            timeouts,
            limit: DEFAULT_LIMIT,
            user_agent: HeaderValue::from_static("kindling"),
            authorization: None,
        }
    }

    /// Sends `user` and `password` as HTTP Basic credentials with every request (marked
    /// sensitive, so never printed).
    pub fn with_basic_auth(mut self, user: &str, password: &str) -> Client {
        use base64::Engine as _;
        let encoded =
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        self.authorization =
            HeaderValue::from_str(&format!("Basic {encoded}"))
                .ok()
                .map(|mut value| {
                    value.set_sensitive(true);
                    value
                });
        self
    }

    /// Sends `token` as a bearer token with every request. A token that cannot be a header
    /// value is not sent (the server then refuses the request, and says why).
    pub fn with_bearer(mut self, token: &str) -> Client {
        self.authorization = HeaderValue::from_str(&format!("Bearer {}", token.trim()))
            .ok()
            .map(|mut value| {
                value.set_sensitive(true);
                value
            });
        self
    }

    pub fn with_user_agent(mut self, user_agent: &'static str) -> Client {
        self.user_agent = HeaderValue::from_static(user_agent);
        self
    }

    /// The largest body read; a larger one is [`HttpError::TooLarge`].
    pub fn with_limit(mut self, bytes: usize) -> Client {
        self.limit = bytes;
        self
    }

    pub fn with_timeouts(mut self, timeouts: Timeouts) -> Client {
        self.timeouts = timeouts;
        self
    }

    pub fn timeouts(&self) -> Timeouts {
        self.timeouts
    }

    /// `GET path`.
    pub fn get(&self, target: &Target, path: &str) -> Result<Response, HttpError> {
        block_on(self.get_async(target, path))?
    }

    /// `GET path`, in the caller's tokio runtime.
    pub async fn get_async(&self, target: &Target, path: &str) -> Result<Response, HttpError> {
        let request = self.request(target, hyper::Method::GET, path, "*/*")?;
        let request = request
            .body(Full::default())
            .map_err(|_| HttpError::Path(path.to_string()))?;
        self.exchange(target, request).await
    }

    /// `HEAD path`: the status and headers of what a GET would answer, without its body.
    pub fn head(&self, target: &Target, path: &str) -> Result<Response, HttpError> {
        let request = self.request(target, hyper::Method::HEAD, path, "*/*")?;
        let request = request
            .body(Full::default())
            .map_err(|_| HttpError::Path(path.to_string()))?;
        block_on(self.exchange(target, request))?
    }

    /// `POST path` with a JSON body.
    pub fn post_json(
        &self,
        target: &Target,
        path: &str,
        body: &[u8],
    ) -> Result<Response, HttpError> {
        let request = self.json_request(target, path, body.to_vec())?;
        block_on(self.exchange(target, request))?
    }

    /// `POST path` with a JSON body, in the caller's tokio runtime.
    pub async fn post_json_async(
        &self,
        target: &Target,
        path: &str,
        body: Vec<u8>,
    ) -> Result<Response, HttpError> {
        let request = self.json_request(target, path, body)?;
        self.exchange(target, request).await
    }

    /// `POST path` with a JSON body, and the answer's body read as it arrives, a line at a
    /// time: for answers that do not end, such as etcd's watch. The connect and exchange
    /// timeouts bound the wait for the status line; after it, each line must arrive within
    /// `idle`, and none may be longer than the client's limit.
    pub async fn post_json_lines(
        &self,
        target: &Target,
        path: &str,
        body: Vec<u8>,
        idle: Duration,
    ) -> Result<Lines, HttpError> {
        let request = self.json_request(target, path, body)?;
        let (addr, tcp) = self.connect(target).await?;
        let timeout = self.timeouts.exchange;
        let start = async {
            match &self.tls {
                None => start_lines(addr, tcp, request).await,
                Some(config) => {
                    let tls = tls_connect(addr, config, target, tcp).await?;
                    start_lines(addr, tls, request).await
                }
            }
        };
        let (status, body, connection) = tokio::time::timeout(timeout, start)
            .await
            .map_err(|_| HttpError::Timeout { addr, timeout })??;
        Ok(Lines {
            addr,
            status,
            body,
            connection,
            pending: Vec::new(),
            idle,
            limit: self.limit,
        })
    }

    /// `PATCH path` with a JSON body, in the caller's tokio runtime.
    pub async fn patch_json_async(
        &self,
        target: &Target,
        path: &str,
        body: Vec<u8>,
    ) -> Result<Response, HttpError> {
        let request = self.json_request_as(hyper::Method::PATCH, target, path, body)?;
        self.exchange(target, request).await
    }

    fn json_request(
        &self,
        target: &Target,
        path: &str,
        body: Vec<u8>,
    ) -> Result<Request<Full<Bytes>>, HttpError> {
        self.json_request_as(hyper::Method::POST, target, path, body)
    }

    fn json_request_as(
        &self,
        method: hyper::Method,
        target: &Target,
        path: &str,
        body: Vec<u8>,
    ) -> Result<Request<Full<Bytes>>, HttpError> {
        self.request(target, method, path, "application/json")?
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::CONTENT_LENGTH, body.len())
            .body(Full::new(Bytes::from(body)))
            .map_err(|_| HttpError::Path(path.to_string()))
    }

    /// Only the TLS handshake (only the connection for a plain client): Ok when the server's
    /// certificate is valid for the target's host under the client's CA.
    pub fn handshake(&self, target: &Target) -> Result<(), HttpError> {
        block_on(async {
            let (addr, tcp) = self.connect(target).await?;
            let Some(config) = &self.tls else {
                return Ok(());
            };
            let timeout = self.timeouts.exchange;
            let mut tls = tokio::time::timeout(timeout, tls_connect(addr, config, target, tcp))
                .await
                .map_err(|_| HttpError::Timeout { addr, timeout })??;
            let _ = tokio::time::timeout(timeout, tls.shutdown()).await;
            Ok(())
        })?
    }

    fn request(
        &self,
        target: &Target,
        method: hyper::Method,
        path: &str,
        accept: &'static str,
    ) -> Result<hyper::http::request::Builder, HttpError> {
        let uri = path
            .parse::<hyper::Uri>()
            .ok()
            .filter(|u| u.scheme().is_none() && u.path().starts_with('/'))
            .ok_or_else(|| HttpError::Path(path.to_string()))?;
        let mut builder = Request::builder()
            .method(method)
            .uri(uri)
            .header(header::HOST, target.authority())
            .header(header::USER_AGENT, self.user_agent.clone())
            .header(header::ACCEPT, accept)
            .header(header::CONNECTION, "close");
        if let Some(authorization) = &self.authorization {
            builder = builder.header(header::AUTHORIZATION, authorization.clone());
        }
        Ok(builder)
    }

    async fn connect(&self, target: &Target) -> Result<(SocketAddr, TcpStream), HttpError> {
        let timeout = self.timeouts.connect;
        let addr = match target.addr {
            Some(addr) => addr,
            None => {
                let resolve = |source| HttpError::Resolve {
                    host: target.host.clone(),
                    source,
                };
                tokio::time::timeout(
                    timeout,
                    tokio::net::lookup_host((target.host.as_str(), target.port)),
                )
                .await
                .map_err(|_| resolve(io::ErrorKind::TimedOut.into()))?
                .map_err(resolve)?
                .next()
                .ok_or_else(|| resolve(io::Error::other("the name has no address")))?
            }
        };
        let tcp = tokio::time::timeout(timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| HttpError::ConnectTimeout { addr, timeout })?
            .map_err(|source| HttpError::Connect { addr, source })?;
        Ok((addr, tcp))
    }

    async fn exchange(
        &self,
        target: &Target,
        request: Request<Full<Bytes>>,
    ) -> Result<Response, HttpError> {
        let (addr, tcp) = self.connect(target).await?;
        let timeout = self.timeouts.exchange;
        let exchange = async {
            match &self.tls {
                None => self.http(addr, tcp, request).await,
                Some(config) => {
                    let tls = tls_connect(addr, config, target, tcp).await?;
                    self.http(addr, tls, request).await
                }
            }
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| HttpError::Timeout { addr, timeout })?
    }

    async fn http<S>(
        &self,
        addr: SocketAddr,
        io: S,
        request: Request<Full<Bytes>>,
    ) -> Result<Response, HttpError>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send,
    {
        let hyper_error = |e| hyper_error(addr, e);
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(io))
            .await
            .map_err(hyper_error)?;
        let exchange = async {
            let (parts, mut body) = sender
                .send_request(request)
                .await
                .map_err(hyper_error)?
                .into_parts();
            let too_large = HttpError::TooLarge {
                addr,
                limit: self.limit,
            };
            let declared = parts
                .headers
                .get(header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
            if declared.is_some_and(|n| n > self.limit as u64) {
                return Err(too_large);
            }
            let mut data = Vec::new();
            while let Some(frame) = body.frame().await {
                if let Ok(chunk) = frame.map_err(hyper_error)?.into_data() {
                    if data.len() + chunk.len() > self.limit {
                        return Err(too_large);
                    }
                    data.extend_from_slice(&chunk);
                }
            }
            Ok(Response {
                status: parts.status.as_u16(),
                headers: parts.headers,
                body: data,
            })
        };
        // The connection is driven here rather than spawned, so that no task outlives the call
        // in a caller's runtime. It ends once the whole answer has been handed over.
        let mut exchange = std::pin::pin!(exchange);
        tokio::select! {
            answer = &mut exchange => answer,
            ended = connection => match ended {
                Ok(()) => exchange.await,
                Err(e) => Err(hyper_error(e)),
            },
        }
    }
}

/// An answer read a line at a time (see [`Client::post_json_lines`]). Dropping it closes the
/// connection.
pub struct Lines {
    addr: SocketAddr,
    status: u16,
    body: hyper::body::Incoming,
    /// Drives the connection while the body is read; aborted on drop.
    connection: tokio::task::JoinHandle<()>,
    /// What has arrived of the next line.
    pending: Vec<u8>,
    idle: Duration,
    limit: usize,
}

impl Lines {
    pub fn status(&self) -> u16 {
        self.status
    }

    /// The next line, without its newline; None once the answer has ended (a last line without
    /// a newline is given first).
    pub async fn next_line(&mut self) -> Result<Option<Vec<u8>>, HttpError> {
        loop {
            if let Some(end) = self.pending.iter().position(|b| *b == b'\n') {
                let mut line: Vec<u8> = self.pending.drain(..=end).collect();
                line.pop();
                return Ok(Some(line));
            }
            let (addr, idle) = (self.addr, self.idle);
            let frame = tokio::time::timeout(idle, self.body.frame())
                .await
                .map_err(|_| HttpError::Timeout {
                    addr,
                    timeout: idle,
                })?;
            match frame {
                None if self.pending.is_empty() => return Ok(None),
                None => return Ok(Some(std::mem::take(&mut self.pending))),
                Some(frame) => {
                    if let Ok(chunk) = frame.map_err(|e| hyper_error(addr, e))?.into_data() {
                        if self.pending.len() + chunk.len() > self.limit {
                            return Err(HttpError::TooLarge {
                                addr,
                                limit: self.limit,
                            });
                        }
                        self.pending.extend_from_slice(&chunk);
                    }
                }
            }
        }
    }

    /// The whole rest of the answer, within the limit: for an answer that is an error.
    pub async fn rest(mut self) -> Result<Vec<u8>, HttpError> {
        let mut all = Vec::new();
        while let Some(line) = self.next_line().await? {
            all.extend_from_slice(&line);
            all.push(b'\n');
        }
        Ok(all)
    }
}

impl Drop for Lines {
    fn drop(&mut self) {
        self.connection.abort();
    }
}

/// Sends `request` on `io` and returns the answer's status and body, with the connection
/// driven by a task of its own, as a body read over time needs.
async fn start_lines<S>(
    addr: SocketAddr,
    io: S,
    request: Request<Full<Bytes>>,
) -> Result<(u16, hyper::body::Incoming, tokio::task::JoinHandle<()>), HttpError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| hyper_error(addr, e))?;
    let connection = tokio::spawn(async move {
        let _ = connection.await;
    });
    match sender.send_request(request).await {
        Ok(response) => {
            let (parts, body) = response.into_parts();
            Ok((parts.status.as_u16(), body, connection))
        }
        Err(e) => {
            connection.abort();
            Err(hyper_error(addr, e))
        }
    }
}

/// A rustls client config trusting only `ca_pem`'s certificates.
fn client_config(
    ca_pem: &[u8],
    identity: Option<&Identity>,
) -> Result<Arc<rustls::ClientConfig>, TlsSetupError> {
    let certs = |pem: &[u8]| -> Result<Vec<CertificateDer<'static>>, String> {
        let certs = CertificateDer::pem_slice_iter(pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| e.to_string())?;
        if certs.is_empty() {
            return Err("no certificate in it".into());
        }
        Ok(certs)
    };
    let mut roots = rustls::RootCertStore::empty();
    for cert in certs(ca_pem).map_err(TlsSetupError::Roots)? {
        roots
            .add(cert)
            .map_err(|e| TlsSetupError::Roots(format!("not a usable CA certificate: {e}")))?;
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsSetupError::Config(e.to_string()))?
        .with_root_certificates(roots);
    let config = match identity {
        None => builder.with_no_client_auth(),
        Some(identity) => {
            let chain = certs(&identity.cert_pem).map_err(TlsSetupError::Certificate)?;
            let key = PrivateKeyDer::from_pem_slice(&identity.key_pem)
                .map_err(|e| TlsSetupError::Key(format!("no private key: {e}")))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| TlsSetupError::Config(e.to_string()))?
        }
    };
    Ok(Arc::new(config))
}

/// [`Tls::Unverified`]: any certificate, with its handshake signatures checked.
fn unverified_config() -> Result<Arc<rustls::ClientConfig>, TlsSetupError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsSetupError::Config(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
        .with_no_client_auth();
    Ok(Arc::new(config))
}

#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

async fn tls_connect(
    addr: SocketAddr,
    config: &Arc<rustls::ClientConfig>,
    target: &Target,
    tcp: TcpStream,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, HttpError> {
    let name = ServerName::try_from(target.host.clone())
        .map_err(|_| HttpError::ServerName(target.host.clone()))?;
    tokio_rustls::TlsConnector::from(config.clone())
        .connect(name, tcp)
        .await
        .map_err(|source| match rustls_cause(&source) {
            Some(tls) => HttpError::Tls {
                addr,
                source: tls.clone(),
            },
            None => HttpError::Io { addr, source },
        })
}

fn hyper_error(addr: SocketAddr, cause: hyper::Error) -> HttpError {
    if let Some(tls) = rustls_cause(&cause) {
        return HttpError::Tls {
            addr,
            source: tls.clone(),
        };
    }
    if cause.is_parse() || cause.is_parse_status() {
        HttpError::Malformed { addr, cause }
    } else {
        HttpError::Exchange { addr, cause }
    }
}

/// The rustls error in `e`'s chain. `io::Error::source` skips the error it wraps, so each
/// `io::Error` is looked into.
fn rustls_cause<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    let mut next = Some(e);
    while let Some(e) = next {
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        let wrapped = e
            .downcast_ref::<io::Error>()
            .and_then(|io| io.get_ref())
            .and_then(|inner| inner.downcast_ref::<rustls::Error>());
        if wrapped.is_some() {
            return wrapped;
        }
        next = e.source();
    }
    None
}

/// Runs `future` to completion on a current-thread runtime of its own; inside another runtime,
/// on a thread of its own (a runtime cannot block inside another).
fn block_on<T: Send>(future: impl Future<Output = T> + Send) -> Result<T, HttpError> {
    let run = move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map(|runtime| runtime.block_on(future))
            .map_err(HttpError::Runtime)
    };
    if tokio::runtime::Handle::try_current().is_err() {
        return run();
    }
    std::thread::scope(|scope| {
        scope
            .spawn(run)
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

#[cfg(test)]
mod tests;
