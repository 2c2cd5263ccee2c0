//! A tiny synchronous HTTP/1.1 GET, over plain TCP or rustls, with timeouts; just enough to
//! fetch `boot.ipxe` and `/readyz` and to see the certificate a TLS server presents.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};

/// The most doctor reads of a body: a boot script or a health answer is far smaller.
const MAX_RESPONSE: u64 = 1 << 20;

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("connecting to {addr}: {source}")]
    Connect {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("TLS handshake with {addr}: {source}")]
    Tls {
        addr: SocketAddr,
        source: rustls::Error,
    },
    #[error("talking to {addr}: {source}")]
    Io {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("{addr} answered something that is not HTTP/1.x")]
    NotHttp { addr: SocketAddr },
    #[error("reading the CA bundle {}: {reason}", path.display())]
    CaBundle { path: PathBuf, reason: String },
    #[error("'{0}' cannot be a TLS server name")]
    ServerName(String),
}

impl HttpError {
    /// The certificate was presented but rejected (wrong CA, wrong name, expired).
    pub fn is_certificate_error(&self) -> bool {
        match self {
            HttpError::Tls { source, .. } => matches!(source, rustls::Error::InvalidCertificate(_)),
            HttpError::Io { source, .. } => source
                .get_ref()
                .and_then(|e| e.downcast_ref::<rustls::Error>())
                .is_some_and(|e| matches!(e, rustls::Error::InvalidCertificate(_))),
            _ => false,
        }
    }
}

/// An HTTP response.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: u16,
    pub body: Vec<u8>,
}

/// How to reach a server: its address, the host name for `Host:` and SNI, and for HTTPS the
/// trust anchors.
pub struct Target<'a> {
    pub addr: SocketAddr,
    /// The URL's host: a name or an IP literal.
    pub host: &'a str,
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

/// A client config trusting only the CAs in `ca_pem_file`.
pub fn client_config(ca_pem_file: &Path) -> Result<Arc<rustls::ClientConfig>, HttpError> {
    let bad = |reason: String| HttpError::CaBundle {
        path: ca_pem_file.to_path_buf(),
        reason,
    };
    let pem = std::fs::read(ca_pem_file).map_err(|e| bad(e.to_string()))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        roots
            .add(cert.map_err(|e| bad(e.to_string()))?)
            .map_err(|e| bad(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(bad("no certificate in it".into()));
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// `GET path` with `Connection: close`; reads at most 1 MiB of the answer.
pub fn get(
    target: &Target<'_>,
    path: &str,
    connect_timeout: Duration,
    timeout: Duration,
) -> Result<HttpResponse, HttpError> {
    let addr = target.addr;
    let io = |source| HttpError::Io { addr, source };
    let tcp = TcpStream::connect_timeout(&addr, connect_timeout)
        .map_err(|source| HttpError::Connect { addr, source })?;
    tcp.set_read_timeout(Some(timeout)).map_err(io)?;
    tcp.set_write_timeout(Some(timeout)).map_err(io)?;
    let host_header = match target.host.parse::<IpAddr>() {
        Ok(IpAddr::V6(v6)) => format!("[{v6}]:{}", addr.port()),
        _ => format!("{}:{}", target.host, addr.port()),
    };
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host_header}\r\nUser-Agent: kindling-doctor\r\nAccept: */*\r\nConnection: close\r\n\r\n"
    );
    let mut raw = Vec::new();
    match &target.tls {
        None => {
            let mut tcp = tcp;
            tcp.write_all(request.as_bytes()).map_err(io)?;
            tcp.take(MAX_RESPONSE).read_to_end(&mut raw).map_err(io)?;
        }
        Some(config) => {
            let name = server_name(target.host)?;
            let conn = rustls::ClientConnection::new(config.clone(), name)
                .map_err(|source| HttpError::Tls { addr, source })?;
            let mut tls = rustls::StreamOwned::new(conn, tcp);
            // Finish the handshake first, so a rejected certificate is reported as such.
            while tls.conn.is_handshaking() {
                tls.conn
                    .complete_io(&mut tls.sock)
                    .map_err(|e| tls_or_io(addr, e))?;
            }
            tls.write_all(request.as_bytes()).map_err(io)?;
            match (&mut tls).take(MAX_RESPONSE).read_to_end(&mut raw) {
                Ok(_) => {}
                // Servers often close without close_notify; what was read is the answer.
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !raw.is_empty() => {}
                Err(e) => return Err(io(e)),
            }
        }
    }
    parse(&raw).ok_or(HttpError::NotHttp { addr })
}

/// Only the TLS handshake: Ok when the server's certificate is valid for `host` under the
/// config's roots.
pub fn handshake(
    target: &Target<'_>,
    connect_timeout: Duration,
    timeout: Duration,
) -> Result<(), HttpError> {
    let addr = target.addr;
    let io = |source| HttpError::Io { addr, source };
    let Some(config) = &target.tls else {
        return Ok(());
    };
    let mut tcp = TcpStream::connect_timeout(&addr, connect_timeout)
        .map_err(|source| HttpError::Connect { addr, source })?;
    tcp.set_read_timeout(Some(timeout)).map_err(io)?;
    tcp.set_write_timeout(Some(timeout)).map_err(io)?;
    let mut conn = rustls::ClientConnection::new(config.clone(), server_name(target.host)?)
        .map_err(|source| HttpError::Tls { addr, source })?;
    while conn.is_handshaking() {
        conn.complete_io(&mut tcp).map_err(|e| tls_or_io(addr, e))?;
    }
    conn.send_close_notify();
    let _ = conn.complete_io(&mut tcp);
    Ok(())
}

fn server_name(host: &str) -> Result<ServerName<'static>, HttpError> {
    ServerName::try_from(host.to_string()).map_err(|_| HttpError::ServerName(host.to_string()))
}

fn tls_or_io(addr: SocketAddr, e: std::io::Error) -> HttpError {
    let tls = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        .cloned();
    match tls {
        Some(source) => HttpError::Tls { addr, source },
        None => HttpError::Io { addr, source: e },
    }
}

fn parse(raw: &[u8]) -> Option<HttpResponse> {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..split]).ok()?;
    let status_line = head.lines().next()?;
    let mut parts = status_line.split(' ');
    if !parts.next()?.starts_with("HTTP/1.") {
        return None;
    }
    let status = parts.next()?.parse().ok()?;
    let chunked = head.lines().skip(1).any(|l| {
        l.split_once(':').is_some_and(|(k, v)| {
            k.trim().eq_ignore_ascii_case("transfer-encoding")
                && v.trim().eq_ignore_ascii_case("chunked")
        })
    });
    let body = &raw[split + 4..];
    Some(HttpResponse {
        status,
        body: if chunked {
            dechunk(body)
        } else {
            body.to_vec()
        },
    })
}

/// The body of a chunked response; a malformed one yields what was read so far.
fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    loop {
        let Some(eol) = data.windows(2).position(|w| w == b"\r\n") else {
            return body;
        };
        let size = std::str::from_utf8(&data[..eol])
            .ok()
            .and_then(|s| usize::from_str_radix(s.split(';').next()?.trim(), 16).ok());
        let Some(size) = size.filter(|s| *s > 0) else {
            return body;
        };
        let Some(chunk) = data.get(eol + 2..eol + 2 + size) else {
            body.extend_from_slice(&data[(eol + 2).min(data.len())..]);
            return body;
        };
        body.extend_from_slice(chunk);
        data = data.get(eol + 2 + size + 2..).unwrap_or_default();
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// Whatever a server sends back, reading it never panics.
        #[test]
        fn any_answer_is_read_without_panicking(
            head in "HTTP/1\\.[01] [0-9]{1,4} [ -~]{0,10}\r\n(Transfer-Encoding: chunked\r\n)?\r\n",
            body in proptest::collection::vec(any::<u8>(), 0..200),
        ) {
            let mut raw = head.into_bytes();
            raw.extend_from_slice(&body);
            let _ = parse(&raw);
            let _ = dechunk(&body);
            let _ = parse(&body);
        }
    }

    #[test]
    fn plain_and_chunked_bodies() {
        let r = parse(b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\n#!ipxe\n").unwrap();
        assert_eq!((r.status, r.body.as_slice()), (200, &b"#!ipxe\n"[..]));
        let r = parse(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n#!i\r\n4\r\npxe\n\r\n0\r\n\r\n")
            .unwrap();
        assert_eq!(r.body, b"#!ipxe\n");
        assert!(parse(b"SSH-2.0-OpenSSH\r\n").is_none());
        assert!(parse(b"").is_none());
        assert!(parse(b"HTTP/1.1 abc\r\n\r\n").is_none());
        assert_eq!(dechunk(b"ff\r\nabc"), b"abc");
    }
}
