//! Just enough HTTP/1.1 for etcd's gateway: one request per connection (`Connection: close`),
//! over rustls with a client certificate or over plain TCP, with connect and I/O timeouts, and a
//! bounded answer. etcd (Go's net/http) answers gateway errors chunked, with a trailer.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;

use crate::EtcdError;

/// The most we read of an answer: a member list of a few members is a few hundred bytes.
const MAX_RESPONSE: u64 = 1 << 20;

/// A parsed `http(s)://host:port` URL of an etcd member (client or peer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// The URL as given, without a trailing slash: how errors and membership name it.
    pub url: String,
    pub tls: bool,
    /// A name or an IP literal, without brackets.
    pub host: String,
    pub port: u16,
}

impl Endpoint {
    /// Parses `https://10.0.0.1:2379`, `https://[fd00::1]:2379` or `http://name:2379`. A missing
    /// port is etcd's client port, 2379. A path is not allowed: etcd URLs have none.
    pub fn parse(url: &str) -> Result<Endpoint, EtcdError> {
        let bad = |why: &str| EtcdError::Url {
            url: url.to_string(),
            reason: why.to_string(),
        };
        let trimmed = url.trim().trim_end_matches('/');
        let (tls, rest) = if let Some(rest) = trimmed.strip_prefix("https://") {
            (true, rest)
        } else if let Some(rest) = trimmed.strip_prefix("http://") {
            (false, rest)
        } else {
            return Err(bad("it must start with https:// or http://"));
        };
        if rest.contains(['/', '?', '#', '@']) {
            return Err(bad("an etcd URL is scheme://host:port, nothing more"));
        }
        let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
            let (host, after) = v6
                .split_once(']')
                .ok_or_else(|| bad("an IPv6 address needs its closing ']'"))?;
            if host.parse::<std::net::Ipv6Addr>().is_err() {
                return Err(bad("the bracketed host is not an IPv6 address"));
            }
            (host, after.strip_prefix(':'))
        } else {
            match rest.rsplit_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (rest, None),
            }
        };
        if host.is_empty() {
            return Err(bad("it has no host"));
        }
        let port = match port {
            None => 2379,
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| bad("the port is not a number from 1 to 65535"))?,
        };
        Ok(Endpoint {
            url: trimmed.to_string(),
            tls,
            host: host.to_string(),
            port,
        })
    }

    fn addr(&self) -> Result<SocketAddr, std::io::Error> {
        if let Ok(ip) = self.host.parse::<IpAddr>() {
            return Ok(SocketAddr::new(ip, self.port));
        }
        (self.host.as_str(), self.port)
            .to_socket_addrs()?
            .next()
            .ok_or_else(|| std::io::Error::other("the name has no address"))
    }

    fn host_header(&self) -> String {
        match self.host.parse::<IpAddr>() {
            Ok(IpAddr::V6(v6)) => format!("[{v6}]:{}", self.port),
            _ => format!("{}:{}", self.host, self.port),
        }
    }
}

/// An HTTP answer.
#[derive(Debug, Clone)]
pub(crate) struct Response {
    pub status: u16,
    pub body: Vec<u8>,
}

/// Connection settings shared by every request of a client.
#[derive(Clone)]
pub(crate) struct Transport {
    pub tls: Arc<rustls::ClientConfig>,
    pub connect_timeout: Duration,
    pub timeout: Duration,
}

impl Transport {
    /// `method path` with a JSON body (or none), on a new connection.
    pub fn request(
        &self,
        endpoint: &Endpoint,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
    ) -> Result<Response, EtcdError> {
        let url = endpoint.url.clone();
        let unreachable = |source: std::io::Error| EtcdError::Unreachable {
            endpoint: url.clone(),
            source,
        };
        let addr = endpoint.addr().map_err(unreachable)?;
        let tcp = TcpStream::connect_timeout(&addr, self.connect_timeout).map_err(unreachable)?;
        tcp.set_read_timeout(Some(self.timeout))
            .map_err(unreachable)?;
        tcp.set_write_timeout(Some(self.timeout))
            .map_err(unreachable)?;
        let mut request = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nUser-Agent: kindling\r\nAccept: application/json\r\nConnection: close\r\n",
            endpoint.host_header()
        )
        .into_bytes();
        if let Some(body) = body {
            request.extend_from_slice(
                format!(
                    "Content-Type: application/json\r\nContent-Length: {}\r\n",
                    body.len()
                )
                .as_bytes(),
            );
        }
        request.extend_from_slice(b"\r\n");
        if let Some(body) = body {
            request.extend_from_slice(body);
        }
        let mut raw = Vec::new();
        if endpoint.tls {
            let name = ServerName::try_from(endpoint.host.clone()).map_err(|_| EtcdError::Url {
                url: url.clone(),
                reason: "the host cannot be a TLS server name".into(),
            })?;
            let conn = rustls::ClientConnection::new(self.tls.clone(), name).map_err(|e| {
                EtcdError::Tls {
                    endpoint: url.clone(),
                    reason: e.to_string(),
                }
            })?;
            let mut tls = rustls::StreamOwned::new(conn, tcp);
            // The handshake first, so a refused certificate is reported as a TLS error.
            while tls.conn.is_handshaking() {
                tls.conn
                    .complete_io(&mut tls.sock)
                    .map_err(|e| tls_or_io(&url, e))?;
            }
            tls.write_all(&request).map_err(unreachable)?;
            match (&mut tls).take(MAX_RESPONSE).read_to_end(&mut raw) {
                Ok(_) => {}
                // Go closes without close_notify at times; what came is the answer.
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !raw.is_empty() => {}
                Err(e) => return Err(unreachable(e)),
            }
        } else {
            let mut tcp = tcp;
            tcp.write_all(&request).map_err(unreachable)?;
            tcp.take(MAX_RESPONSE)
                .read_to_end(&mut raw)
                .map_err(unreachable)?;
        }
        parse(&raw).ok_or(EtcdError::NotHttp { endpoint: url })
    }
}

fn tls_or_io(url: &str, e: std::io::Error) -> EtcdError {
    match e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        Some(tls) => EtcdError::Tls {
            endpoint: url.to_string(),
            reason: tls.to_string(),
        },
        None => EtcdError::Unreachable {
            endpoint: url.to_string(),
            source: e,
        },
    }
}

/// The status and body of a raw answer; None when it is not HTTP/1.x.
pub(crate) fn parse(raw: &[u8]) -> Option<Response> {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..split]).ok()?;
    let mut parts = head.lines().next()?.split(' ');
    if !parts.next()?.starts_with("HTTP/1.") {
        return None;
    }
    let status = parts.next()?.parse().ok()?;
    let header = |name: &str| {
        head.lines().skip(1).find_map(|l| {
            l.split_once(':')
                .filter(|(k, _)| k.trim().eq_ignore_ascii_case(name))
                .map(|(_, v)| v.trim())
        })
    };
    let body = &raw[split + 4..];
    let body = if header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        dechunk(body)
    } else if let Some(length) = header("content-length").and_then(|v| v.parse::<usize>().ok()) {
        body[..length.min(body.len())].to_vec()
    } else {
        body.to_vec()
    };
    Some(Response { status, body })
}

/// The body of a chunked answer, without the trailer; a malformed one yields what was read.
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
        let Some(chunk) = eol
            .checked_add(2 + size)
            .and_then(|end| data.get(eol + 2..end))
        else {
            body.extend_from_slice(data.get(eol + 2..).unwrap_or_default());
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

    #[test]
    fn endpoints_parse() {
        let e = Endpoint::parse("https://127.0.0.110:2379/").unwrap();
        assert_eq!(
            (e.url.as_str(), e.tls, e.host.as_str(), e.port),
            ("https://127.0.0.110:2379", true, "127.0.0.110", 2379)
        );
        let e = Endpoint::parse("https://[fd00::1]:2380").unwrap();
        assert_eq!((e.host.as_str(), e.port), ("fd00::1", 2380));
        assert_eq!(e.host_header(), "[fd00::1]:2380");
        assert_eq!(Endpoint::parse("http://etcd0").unwrap().port, 2379);
        for bad in [
            "127.0.0.1:2379",
            "https://",
            "https://h:0",
            "https://h:99999",
            "https://h:2379/v3",
            "https://[fd00::1:2379",
            "https://user@h:2379",
        ] {
            assert!(Endpoint::parse(bad).is_err(), "{bad}");
        }
    }

    /// etcd's gateway error, as etcd 3.4.23 sends it.
    #[test]
    fn a_chunked_answer_with_a_trailer() {
        let raw = b"HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/json\r\n\
            Trailer: Grpc-Trailer-Content-Type\r\nTransfer-Encoding: chunked\r\n\r\n\
            15\r\n{\"error\":\"no leader\"}\r\n0\r\nGrpc-Trailer-Content-Type: application/grpc\r\n\r\n";
        let r = parse(raw).unwrap();
        assert_eq!(r.status, 500);
        assert_eq!(r.body, b"{\"error\":\"no leader\"}");
        let r =
            parse(b"HTTP/1.1 200 OK\r\nContent-Length: 17\r\n\r\n{\"health\":\"true\"}").unwrap();
        assert_eq!(r.body, b"{\"health\":\"true\"}");
    }

    proptest! {
        /// Whatever comes back, reading it never panics.
        #[test]
        fn any_answer_is_read_without_panicking(
            head in "HTTP/1\\.[01] [0-9]{1,4} [ -~]{0,10}\r\n(Transfer-Encoding: chunked\r\n)?(Content-Length: [0-9]{1,3}\r\n)?\r\n",
            body in proptest::collection::vec(any::<u8>(), 0..200),
        ) {
            let mut raw = head.into_bytes();
            raw.extend_from_slice(&body);
            let _ = parse(&raw);
            let _ = dechunk(&body);
            let _ = parse(&body);
        }
    }
}
