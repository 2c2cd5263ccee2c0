//! Who is on the other end of a machine config server connection: the TCP peer, or, behind a
//! load balancer that speaks the PROXY protocol (HAProxy's `send-proxy` / `send-proxy-v2`), the
//! client the balancer names in the header it sends before anything else.
//!
//! The header is read only from peers trusted to send it (`kindling serve --proxy-from`), and
//! from them it is required: anyone else could otherwise claim another machine's address.

use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Extension;
use axum_server::accept::Accept;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tower::Layer;

/// The client of a connection, as a request extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub IpAddr);

/// How long a trusted proxy may take to send its header.
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);

/// Sets `TCP_NODELAY`, finds the connection's client and adds it to every request on it.
#[derive(Clone)]
pub struct ClientAcceptor {
    /// Peers that put a PROXY protocol header in front of each connection.
    proxies: Arc<Vec<IpAddr>>,
    trouble: Arc<AcceptTrouble>,
}

impl ClientAcceptor {
    /// `trouble` is the listener's, told of each connection taken.
    pub fn new(proxies: Vec<IpAddr>, trouble: Arc<AcceptTrouble>) -> ClientAcceptor {
        ClientAcceptor {
            proxies: Arc::new(proxies),
            trouble,
        }
    }
}

/// How often a listener that still cannot accept is logged again.
const ACCEPT_LOG_EVERY: Duration = Duration::from_secs(30);
/// How long without a failed accept ends a spell of them: at the limit, connections that close
/// let a few be taken between failures, which is not yet the end of it.
const ACCEPT_QUIET: Duration = Duration::from_secs(5);

/// A listener's failures to accept: out of file descriptors (EMFILE, ENFILE), mostly. axum-server
/// waits 50 ms after each and tries again, so there is no busy loop, and the connections it has
/// go on being served. This logs the first failure, then once every [`ACCEPT_LOG_EVERY`] with
/// how many there were (not once per accept), and the first connection taken after
/// [`ACCEPT_QUIET`] without one.
pub struct AcceptTrouble {
    server: &'static str,
    failing: AtomicBool,
    spell: Mutex<Option<Spell>>,
}

/// A spell of failed accepts.
struct Spell {
    logged: Instant,
    last: Instant,
    count: u64,
}

impl AcceptTrouble {
    pub fn new(server: &'static str) -> AcceptTrouble {
        AcceptTrouble {
            server,
            failing: false.into(),
            spell: Mutex::new(None),
        }
    }

    /// axum-server's accept error handler: `peer` is known for a connection refused on its
    /// own (a bad PROXY header, a failed TLS handshake), which its acceptor logs.
    pub fn failed(&self, peer: Option<&SocketAddr>, error: &io::Error) {
        if peer.is_some() {
            return;
        }
        let server = self.server;
        self.failing.store(true, Ordering::Relaxed);
        let now = Instant::now();
        let mut spell = self.spell.lock().unwrap_or_else(|p| p.into_inner());
        match spell.as_mut() {
            None => {
                *spell = Some(Spell {
                    logged: now,
                    last: now,
                    count: 1,
                });
                tracing::error!(
                    "{server}: cannot accept connections: {error}; serving those it has and trying again every 50 ms (if it is the limit on open files, raise it: LimitNOFILE= in the unit)"
                );
            }
            Some(spell) => {
                spell.count += 1;
                spell.last = now;
                if now - spell.logged >= ACCEPT_LOG_EVERY {
                    spell.logged = now;
                    tracing::error!(
                        "{server}: still cannot accept connections: {error} ({} failed accepts so far)",
                        spell.count
                    );
                }
            }
        }
    }

    /// A connection was taken: if accepting had failed, it works again.
    fn accepted(&self) {
        if !self.failing.load(Ordering::Relaxed) {
            return;
        }
        let mut spell = self.spell.lock().unwrap_or_else(|p| p.into_inner());
        if spell
            .as_ref()
            .is_some_and(|s| s.last.elapsed() < ACCEPT_QUIET)
        {
            return;
        }
        self.failing.store(false, Ordering::Relaxed);
        if let Some(spell) = spell.take() {
            tracing::warn!(
                "{}: accepting connections again, after {} failed accepts",
                self.server,
                spell.count
            );
        }
    }
}

impl<S: Send + 'static> Accept<TcpStream, S> for ClientAcceptor {
    type Stream = TcpStream;
    type Service = axum::middleware::AddExtension<S, ClientAddr>;
    type Future = Pin<Box<dyn Future<Output = io::Result<(TcpStream, Self::Service)>> + Send>>;

    fn accept(&self, mut stream: TcpStream, service: S) -> Self::Future {
        self.trouble.accepted();
        let proxies = self.proxies.clone();
        Box::pin(async move {
            stream.set_nodelay(true)?;
            let peer = canonical(stream.peer_addr()?.ip());
            let client = if proxies.contains(&peer) {
                let header = tokio::time::timeout(HEADER_TIMEOUT, read_header(&mut stream))
                    .await
                    .map_err(|_| invalid(format!("{peer} sent no PROXY protocol header in time")))?
                    .map_err(|e| invalid(format!("from {peer}: {e}")))?;
                // LOCAL (v2) and UNKNOWN (v1) are the proxy speaking for itself, e.g. its
                // health checks.
                header.map_or(peer, |source| canonical(source.ip()))
            } else {
                // A connection that sends nothing is closed after the header timeout too:
                // hyper's timer starts with a request's first bytes, and the HTTP version is
                // read before that with no timeout, so 10,000 idle connections would otherwise
                // be kept for good.
                tokio::time::timeout(crate::HEADER_TIMEOUT, stream.peek(&mut [0u8; 1]))
                    .await
                    .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "sent nothing"))??;
                peer
            };
            Ok((stream, Extension(ClientAddr(client)).layer(service)))
        })
    }
}

fn invalid(message: String) -> io::Error {
    tracing::warn!("machine config server connection refused: {message}");
    io::Error::new(io::ErrorKind::InvalidData, message)
}

/// An IPv4 client on a dual-stack socket is seen as `::ffff:a.b.c.d`; the inventory has `a.b.c.d`.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

/// Why a PROXY protocol header was refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    #[error("the connection does not start with a PROXY protocol header")]
    Missing,
    #[error("malformed PROXY protocol v1 header: {0}")]
    V1(&'static str),
    #[error("malformed PROXY protocol v2 header: {0}")]
    V2(&'static str),
}

const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
/// The longest v1 line, CRLF included (the protocol's own bound).
const V1_MAX: usize = 107;
/// The most address and TLV bytes a v2 header may carry here; HAProxy sends tens.
const V2_MAX_BODY: usize = 1024;

/// Reads a PROXY protocol v1 or v2 header, and nothing after it: the TLS handshake follows.
/// `None` is a header in which the proxy speaks for itself (LOCAL, UNKNOWN).
async fn read_header(stream: &mut TcpStream) -> io::Result<Option<SocketAddr>> {
    let mut head = [0u8; 16];
    // No header is shorter than 15 bytes (`PROXY UNKNOWN\r\n`); v2's fixed part is 16.
    stream.read_exact(&mut head[..15]).await?;
    if head[..12] == V2_SIGNATURE[..] {
        stream.read_exact(&mut head[15..16]).await?;
        let length = usize::from(u16::from_be_bytes([head[14], head[15]]));
        if length > V2_MAX_BODY {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                HeaderError::V2("longer than 1024 bytes"),
            ));
        }
        let mut body = vec![0u8; length];
        stream.read_exact(&mut body).await?;
        return parse_v2(&head, &body).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e));
    }
    let mut line = head[..15].to_vec();
    while !line.ends_with(b"\r\n") {
        if line.len() >= V1_MAX || !line.starts_with(b"PROXY ") {
            break;
        }
        line.push(stream.read_u8().await?);
    }
    parse_v1(&line).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// Parses a v1 line, `PROXY TCP4 <src> <dst> <sport> <dport>\r\n` (or TCP6, or UNKNOWN).
pub fn parse_v1(line: &[u8]) -> Result<Option<SocketAddr>, HeaderError> {
    if !line.starts_with(b"PROXY ") {
        return Err(HeaderError::Missing);
    }
    let line = line
        .strip_suffix(b"\r\n")
        .ok_or(HeaderError::V1("no CRLF within 107 bytes"))?;
    let line = std::str::from_utf8(line).map_err(|_| HeaderError::V1("not ASCII"))?;
    let fields: Vec<&str> = line.split(' ').collect();
    match fields.get(1) {
        Some(&"UNKNOWN") => return Ok(None),
        Some(&"TCP4") | Some(&"TCP6") => {}
        _ => return Err(HeaderError::V1("the protocol is not TCP4, TCP6 or UNKNOWN")),
    }
    let [_, family, source, _destination, port, _destination_port] = fields[..] else {
        return Err(HeaderError::V1("not six fields"));
    };
    let ip: IpAddr = source
        .parse()
        .map_err(|_| HeaderError::V1("bad source address"))?;
    if ip.is_ipv4() != (family == "TCP4") {
        return Err(HeaderError::V1(
            "the source address is not of the family named",
        ));
    }
    let port: u16 = port
        .parse()
        .map_err(|_| HeaderError::V1("bad source port"))?;
    Ok(Some(SocketAddr::new(ip, port)))
}

/// Parses a v2 header: the 16-byte fixed part and the body its length announces.
pub fn parse_v2(head: &[u8; 16], body: &[u8]) -> Result<Option<SocketAddr>, HeaderError> {
    if head[..12] != V2_SIGNATURE[..] {
        return Err(HeaderError::Missing);
    }
    let (version, command) = (head[12] >> 4, head[12] & 0x0f);
    if version != 2 {
        return Err(HeaderError::V2("version is not 2"));
    }
    match command {
        0 => return Ok(None), // LOCAL
        1 => {}               // PROXY
        _ => return Err(HeaderError::V2("unknown command")),
    }
    let (family, transport) = (head[13] >> 4, head[13] & 0x0f);
    if transport != 1 && family != 0 {
        return Err(HeaderError::V2("the transport is not TCP"));
    }
    match family {
        0 => Ok(None), // AF_UNSPEC: the proxy does not know
        1 => {
            let a = body
                .get(..12)
                .ok_or(HeaderError::V2("short IPv4 addresses"))?;
            let ip = Ipv4Addr::new(a[0], a[1], a[2], a[3]);
            Ok(Some(SocketAddr::new(
                ip.into(),
                u16::from_be_bytes([a[8], a[9]]),
            )))
        }
        2 => {
            let a = body
                .get(..36)
                .ok_or(HeaderError::V2("short IPv6 addresses"))?;
            let mut octets = [0u8; 16];
            octets.copy_from_slice(&a[..16]);
            Ok(Some(SocketAddr::new(
                Ipv6Addr::from(octets).into(),
                u16::from_be_bytes([a[32], a[33]]),
            )))
        }
        _ => Err(HeaderError::V2("the address family is not IPv4 or IPv6")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> Option<SocketAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn v1_lines_as_haproxy_sends_them() {
        assert_eq!(
            parse_v1(b"PROXY TCP4 192.168.126.120 192.168.126.2 51234 22623\r\n"),
            Ok(addr("192.168.126.120:51234"))
        );
        assert_eq!(
            parse_v1(b"PROXY TCP6 fd00::5 fd00::1 40000 22623\r\n"),
            Ok(addr("[fd00::5]:40000"))
        );
        assert_eq!(parse_v1(b"PROXY UNKNOWN\r\n"), Ok(None));
    }

    #[test]
    fn malformed_v1_lines_are_refused() {
        for bad in [
            &b"GET / HTTP/1.1\r\n"[..],
            b"PROXY TCP4 192.168.126.120 192.168.126.2 51234 22623\n",
            b"PROXY TCP4 192.168.126.120 192.168.126.2 51234\r\n",
            b"PROXY TCP4 fd00::5 fd00::1 1 2\r\n",
            b"PROXY TCP4 300.1.1.1 1.1.1.1 1 2\r\n",
            b"PROXY UDP4 1.1.1.1 1.1.1.1 1 2\r\n",
            b"PROXY TCP4 1.1.1.1 1.1.1.1 70000 2\r\n",
        ] {
            assert!(parse_v1(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }

    fn v2(command: u8, family: u8, body: &[u8]) -> ([u8; 16], Vec<u8>) {
        let mut head = [0u8; 16];
        head[..12].copy_from_slice(V2_SIGNATURE);
        head[12] = 0x20 | command;
        head[13] = family;
        head[14..].copy_from_slice(&(body.len() as u16).to_be_bytes());
        (head, body.to_vec())
    }

    #[test]
    fn v2_headers_as_haproxy_sends_them() {
        // IPv4: source, destination, source port, destination port; then a TLV HAProxy adds.
        let mut body = vec![192, 168, 126, 120, 192, 168, 126, 2, 0xc8, 0x22, 0x58, 0x5f];
        body.extend_from_slice(&[0x03, 0x00, 0x04, 1, 2, 3, 4]);
        let (head, body) = v2(1, 0x11, &body);
        assert_eq!(parse_v2(&head, &body), Ok(addr("192.168.126.120:51234")));

        let mut body = vec![0u8; 36];
        body[0] = 0xfd;
        body[15] = 5;
        body[32..34].copy_from_slice(&40000u16.to_be_bytes());
        let (head, body) = v2(1, 0x21, &body);
        assert_eq!(parse_v2(&head, &body), Ok(addr("[fd00::5]:40000")));

        // LOCAL: HAProxy's own health checks.
        let (head, body) = v2(0, 0x00, &[]);
        assert_eq!(parse_v2(&head, &body), Ok(None));
    }

    #[test]
    fn malformed_v2_headers_are_refused() {
        let (head, body) = v2(1, 0x11, &[192, 168, 126, 120]);
        assert_eq!(
            parse_v2(&head, &body),
            Err(HeaderError::V2("short IPv4 addresses"))
        );
        let (mut head, body) = v2(1, 0x11, &[0; 12]);
        head[12] = 0x11;
        assert!(parse_v2(&head, &body).is_err());
        let (head, body) = v2(1, 0x12, &[0; 12]);
        assert_eq!(
            parse_v2(&head, &body),
            Err(HeaderError::V2("the transport is not TCP"))
        );
        let (head, body) = v2(1, 0x31, &[0; 216]);
        assert!(parse_v2(&head, &body).is_err());
    }

    #[tokio::test]
    async fn a_header_is_read_to_its_end_and_no_further() {
        use tokio::io::AsyncWriteExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let at = listener.local_addr().unwrap();
        let send = |bytes: Vec<u8>| async move {
            let mut client = TcpStream::connect(at).await.unwrap();
            client.write_all(&bytes).await.unwrap();
            client
        };
        for (header, expected) in [
            (
                b"PROXY TCP4 10.0.0.7 10.0.0.1 5000 22623\r\n".to_vec(),
                addr("10.0.0.7:5000"),
            ),
            (b"PROXY UNKNOWN\r\n".to_vec(), None),
            (
                {
                    let (head, body) = v2(1, 0x11, &[10, 0, 0, 8, 10, 0, 0, 1, 0x13, 0x88, 0, 1]);
                    [head.to_vec(), body].concat()
                },
                addr("10.0.0.8:5000"),
            ),
        ] {
            let mut bytes = header;
            bytes.extend_from_slice(b"\x16\x03\x01");
            let _client = send(bytes).await;
            let (mut server, _) = listener.accept().await.unwrap();
            assert_eq!(read_header(&mut server).await.unwrap(), expected);
            let mut next = [0u8; 3];
            server.read_exact(&mut next).await.unwrap();
            assert_eq!(
                &next, b"\x16\x03\x01",
                "the TLS record after the header is left"
            );
        }
        // A TLS ClientHello where a header should be.
        let _client =
            send(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03abcdefghijklmnop".to_vec()).await;
        let (mut server, _) = listener.accept().await.unwrap();
        assert!(read_header(&mut server).await.is_err());
    }
}

/// The node a machine config server client proved to be with its client certificate: the
/// kubelet's own (`CN=system:node:<name>`, `O=system:nodes`), issued by the cluster's CSR
/// signer or root CA. Only a machine that has joined the cluster holds one, so the node agent
/// fetches its renderings with it after the install window has closed. Clients without a
/// certificate (Ignition, container runtimes) are served as before, as `PeerNode(None)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerNode(pub Option<String>);

impl PeerNode {
    /// The node a verified certificate names, if it is a node's.
    pub fn from_certificate(der: &[u8]) -> Option<String> {
        let info = kindling_pki::inspect::inspect_der(der).ok()?;
        let name = info.common_name?.strip_prefix("system:node:")?.to_string();
        info.organizations
            .iter()
            .any(|o| o == "system:nodes")
            .then_some(name)
    }
}

/// Adds [`PeerNode`] to every request of a TLS connection, after the handshake verified it.
#[derive(Debug, Clone)]
pub struct NodeAcceptor<A>(pub A);

impl<A, I, S> Accept<I, S> for NodeAcceptor<A>
where
    A: Accept<I, S, Stream = tokio_rustls::server::TlsStream<TcpStream>>
        + Clone
        + Send
        + Sync
        + 'static,
    A::Future: Send + 'static,
    A::Service: Send + 'static,
    I: Send + 'static,
    S: Send + 'static,
{
    type Stream = A::Stream;
    type Service = axum::middleware::AddExtension<A::Service, PeerNode>;
    type Future = Pin<Box<dyn Future<Output = io::Result<(Self::Stream, Self::Service)>> + Send>>;

    fn accept(&self, stream: I, service: S) -> Self::Future {
        let inner = self.0.accept(stream, service);
        Box::pin(async move {
            let (stream, service) = inner.await?;
            let (_, connection) = stream.get_ref();
            let node = connection
                .peer_certificates()
                .and_then(|chain| chain.first())
                .and_then(|leaf| PeerNode::from_certificate(leaf));
            Ok((stream, Extension(PeerNode(node)).layer(service)))
        })
    }
}
