//! The client against servers on loopback ports: raw TCP ones that answer byte for byte what a
//! test gives them, and rustls ones with certificates from a test CA.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::thread::JoinHandle;
use std::time::Instant;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls::server::WebPkiClientVerifier;

use super::*;

const QUICK: Timeouts = Timeouts {
    connect: Duration::from_secs(2),
    exchange: Duration::from_secs(5),
};

fn plain() -> Client {
    Client::plain(QUICK)
}

/// What a server read: the request head and body.
struct Seen {
    head: String,
    body: Vec<u8>,
    /// How many certificates the client presented (TLS servers only).
    client_certs: usize,
}

fn read_request(stream: impl Read) -> io::Result<(String, Vec<u8>)> {
    let mut reader = BufReader::new(stream);
    let mut head = String::new();
    let mut length = 0;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            length = v.trim().parse().unwrap();
        }
        head.push_str(&line);
        if line == "\r\n" {
            break;
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body)?;
    Ok((head, body))
}

/// A plain server that answers one request with `answer`, byte for byte.
fn serve_once(answer: impl Into<Vec<u8>>) -> (Target, JoinHandle<Seen>) {
    let answer = answer.into();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let (head, body) = read_request(&mut stream).unwrap();
        let _ = stream.write_all(&answer);
        Seen {
            head,
            body,
            client_certs: 0,
        }
    });
    (Target::at(addr, "127.0.0.1"), server)
}

/// A test CA, and certificates it signed.
struct Pki {
    ca: CertifiedIssuer<'static, KeyPair>,
}

impl Pki {
    fn new(name: &str) -> Pki {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        Pki {
            ca: CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap(),
        }
    }

    /// (certificate PEM, key PEM) for `name`.
    fn leaf(&self, name: &str, usage: ExtendedKeyUsagePurpose) -> (String, String) {
        let mut params = CertificateParams::new(vec![name.to_string()]).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = vec![usage];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.ca).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    fn client(&self, identity: bool) -> Client {
        let client_identity = identity.then(|| {
            let (cert, key) = self.leaf("kindling", ExtendedKeyUsagePurpose::ClientAuth);
            Identity {
                cert_pem: cert.into_bytes(),
                key_pem: key.into_bytes(),
            }
        });
        let tls = Tls::Roots {
            ca_pem: self.ca.pem().into_bytes(),
            client_identity,
        };
        Client::new(tls, QUICK).unwrap()
    }

    /// A TLS server for `name` that answers one request with `answer`; with `client_auth`, it
    /// wants a client certificate from this CA.
    fn serve_once(
        &self,
        name: &str,
        client_auth: bool,
        answer: &'static [u8],
    ) -> (SocketAddr, JoinHandle<Option<Seen>>) {
        let (cert, key) = self.leaf(name, ExtendedKeyUsagePurpose::ServerAuth);
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap();
        let builder = if client_auth {
            let mut roots = rustls::RootCertStore::empty();
            roots.add(self.ca.der().clone()).unwrap();
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .unwrap();
            builder.with_client_cert_verifier(verifier)
        } else {
            builder.with_no_client_auth()
        };
        let config = Arc::new(
            builder
                .with_single_cert(
                    vec![CertificateDer::from_pem_slice(cert.as_bytes()).unwrap()],
                    PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap(),
                )
                .unwrap(),
        );
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (tcp, _) = listener.accept().unwrap();
            let conn = rustls::ServerConnection::new(config).unwrap();
            let mut stream = rustls::StreamOwned::new(conn, tcp);
            let (head, body) = read_request(&mut stream).ok()?;
            let client_certs = stream.conn.peer_certificates().map_or(0, <[_]>::len);
            stream.write_all(answer).ok()?;
            stream.conn.send_close_notify();
            stream.flush().ok()?;
            Some(Seen {
                head,
                body,
                client_certs,
            })
        });
        (addr, server)
    }
}

#[test]
fn a_plain_get() {
    let (target, server) = serve_once("HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\n#!ipxe\n");
    let response = plain()
        .with_user_agent("kindling-doctor")
        .get(&target, "/boot.ipxe")
        .unwrap();
    assert_eq!(
        (response.status, response.body.as_slice()),
        (200, &b"#!ipxe\n"[..])
    );
    assert!(response.is_success());
    let head = server.join().unwrap().head.to_ascii_lowercase();
    assert!(head.starts_with("get /boot.ipxe http/1.1\r\n"), "{head}");
    for line in [
        &format!("host: 127.0.0.1:{}\r\n", target.port()),
        "user-agent: kindling-doctor\r\n",
        "connection: close\r\n",
    ] {
        assert!(head.contains(line), "{head}");
    }
}

/// etcd's gateway error, as etcd 3.4.23 sends it: chunked, with a trailer.
#[test]
fn a_chunked_answer_with_a_trailer() {
    let (target, server) = serve_once(
        "HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/json\r\n\
         Trailer: Grpc-Trailer-Content-Type\r\nTransfer-Encoding: chunked\r\n\r\n\
         15\r\n{\"error\":\"no leader\"}\r\n0\r\nGrpc-Trailer-Content-Type: application/grpc\r\n\r\n",
    );
    let response = plain()
        .post_json(&target, "/v3/cluster/member/list", b"{}")
        .unwrap();
    assert_eq!(response.status, 500);
    assert!(!response.is_success());
    assert_eq!(response.body, b"{\"error\":\"no leader\"}");
    assert_eq!(response.headers["content-type"], "application/json");
    let seen = server.join().unwrap();
    assert!(
        seen.head
            .starts_with("POST /v3/cluster/member/list HTTP/1.1\r\n")
    );
    assert!(
        seen.head
            .to_ascii_lowercase()
            .contains("content-type: application/json\r\n")
    );
    assert_eq!(seen.body, b"{}");
}

/// A body that ends when the server closes: no length, no chunks.
#[test]
fn a_body_up_to_the_close() {
    let (target, _server) = serve_once("HTTP/1.1 200 OK\r\n\r\nok");
    assert_eq!(plain().get(&target, "/").unwrap().body, b"ok");
}

#[test]
fn tls_with_the_test_ca_and_sni() {
    let pki = Pki::new("test ca");
    let (addr, server) = pki.serve_once(
        "mcs.test",
        false,
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
    );
    let response = pki
        .client(false)
        .get(&Target::at(addr, "mcs.test"), "/readyz")
        .unwrap();
    assert_eq!(
        (response.status, response.body.as_slice()),
        (200, &b"ok"[..])
    );
    let seen = server.join().unwrap().unwrap();
    assert!(
        seen.head
            .contains(&format!("host: mcs.test:{}\r\n", addr.port())),
        "{}",
        seen.head
    );

    let (addr, _server) = pki.serve_once("mcs.test", false, b"");
    pki.client(false)
        .handshake(&Target::at(addr, "mcs.test"))
        .unwrap();
}

#[test]
fn another_ca_or_name_is_a_certificate_error() {
    let pki = Pki::new("test ca");
    let stranger = Pki::new("another ca");
    let (addr, _server) = pki.serve_once("mcs.test", false, b"");
    let error = stranger
        .client(false)
        .get(&Target::at(addr, "mcs.test"), "/")
        .unwrap_err();
    assert!(
        matches!(
            error,
            HttpError::Tls {
                source: rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
                ..
            }
        ),
        "{error:?}"
    );
    assert!(error.is_certificate_error());
    assert!(
        error.to_string().starts_with(&format!("TLS with {addr}: ")),
        "{error}"
    );

    let (addr, _server) = pki.serve_once("mcs.test", false, b"");
    let error = pki
        .client(false)
        .handshake(&Target::at(addr, "api.test"))
        .unwrap_err();
    assert!(error.is_certificate_error(), "{error:?}");
}

#[test]
fn a_client_certificate_is_presented() {
    let pki = Pki::new("etcd ca");
    let (addr, server) = pki.serve_once(
        "127.0.0.1",
        true,
        b"HTTP/1.1 200 OK\r\nContent-Length: 17\r\n\r\n{\"health\":\"true\"}",
    );
    let response = pki
        .client(true)
        .get(&Target::at(addr, "127.0.0.1"), "/health")
        .unwrap();
    assert_eq!(response.body, b"{\"health\":\"true\"}");
    assert_eq!(server.join().unwrap().unwrap().client_certs, 1);

    // Without one, the server's alert is a TLS error, not a mere I/O error.
    let (addr, server) = pki.serve_once("127.0.0.1", true, b"");
    let error = pki
        .client(false)
        .get(&Target::at(addr, "127.0.0.1"), "/health")
        .unwrap_err();
    assert!(matches!(error, HttpError::Tls { .. }), "{error:?}");
    assert!(!error.is_certificate_error());
    assert!(server.join().unwrap().is_none());
}

#[test]
fn a_silent_server_costs_at_most_the_timeout() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let target = Target::at(listener.local_addr().unwrap(), "127.0.0.1");
    let timeout = Duration::from_millis(300);
    let client = plain().with_timeouts(Timeouts {
        connect: timeout,
        exchange: timeout,
    });
    let started = Instant::now();
    let error = client
        .post_json(&target, "/api/v1/events", b"{}")
        .unwrap_err();
    assert!(started.elapsed() < timeout * 4, "{:?}", started.elapsed());
    assert!(matches!(error, HttpError::Timeout { .. }), "{error:?}");
    assert_eq!(
        error.to_string(),
        format!("{} did not answer within 0.3s", target.addr.unwrap())
    );
    drop(listener);
}

#[test]
fn a_closed_port_is_a_connect_error() {
    let addr = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let error = plain()
        .get(&Target::at(addr, "127.0.0.1"), "/")
        .unwrap_err();
    match error {
        HttpError::Connect { source, .. } => {
            assert_eq!(source.kind(), io::ErrorKind::ConnectionRefused)
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn an_oversized_body_is_refused() {
    let client = plain().with_limit(16);
    let (target, _server) = serve_once(format!(
        "HTTP/1.1 200 OK\r\nContent-Length: 17\r\n\r\n{}",
        "x".repeat(17)
    ));
    let error = client.get(&target, "/").unwrap_err();
    assert!(
        matches!(error, HttpError::TooLarge { limit: 16, .. }),
        "{error:?}"
    );
    let (target, _server) = serve_once(
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n9\r\n123456789\r\n9\r\n123456789\r\n0\r\n\r\n",
    );
    let error = client.get(&target, "/").unwrap_err();
    assert!(matches!(error, HttpError::TooLarge { .. }), "{error:?}");
    let (target, _server) = serve_once(format!("HTTP/1.1 200 OK\r\n\r\n{}", "x".repeat(17)));
    assert!(matches!(
        client.get(&target, "/"),
        Err(HttpError::TooLarge { .. })
    ));
}

#[test]
fn an_answer_that_is_not_http() {
    let (target, _server) = serve_once("SSH-2.0-OpenSSH_9.6\r\n");
    let error = plain().get(&target, "/").unwrap_err();
    assert!(matches!(error, HttpError::Malformed { .. }), "{error:?}");
    assert!(error.to_string().contains("not HTTP/1.x"), "{error}");
}

#[test]
fn a_name_is_resolved_and_a_bad_path_refused() {
    let (target, _server) = serve_once("HTTP/1.1 204 No Content\r\n\r\n");
    let by_name = Target::new("localhost", target.port());
    assert_eq!(plain().get(&by_name, "/").unwrap().status, 204);
    assert!(matches!(
        plain().get(&by_name, "http://elsewhere/"),
        Err(HttpError::Path(_))
    ));
}

/// Callers inside a tokio runtime get the same blocking call, not a panic.
#[test]
fn a_call_from_inside_a_runtime() {
    let (target, _server) = serve_once("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let status = runtime.block_on(async { plain().get(&target, "/").unwrap().status });
    assert_eq!(status, 200);
    let (target, _server) = serve_once("HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\n[]");
    let response = runtime.block_on(plain().get_async(&target, "/api/v1/machines"));
    assert_eq!(response.unwrap().body, b"[]");
}

#[test]
fn authorities() {
    let t = Target::from_authority("10.0.0.1:8080", 80).unwrap();
    assert_eq!(
        (t.host(), t.port(), t.authority().as_str()),
        ("10.0.0.1", 8080, "10.0.0.1:8080")
    );
    let t = Target::from_authority("[fd00::1]:2379", 80).unwrap();
    assert_eq!(
        (t.host(), t.authority().as_str()),
        ("fd00::1", "[fd00::1]:2379")
    );
    assert_eq!(
        Target::from_authority("boot.example", 80).unwrap().port(),
        80
    );
    assert_eq!(Target::from_authority("[fd00::1]", 80).unwrap().port(), 80);
    for bad in [
        "", ":80", "h:0", "h:x", "fd00::1", "[fd00::1", "[x]:80", "u@h:80", "h/x",
    ] {
        assert!(Target::from_authority(bad, 80).is_none(), "{bad}");
    }
}

#[test]
fn tls_settings_say_what_is_wrong() {
    let roots = |ca: &[u8]| {
        Client::new(
            Tls::Roots {
                ca_pem: ca.to_vec(),
                client_identity: None,
            },
            QUICK,
        )
        .unwrap_err()
    };
    assert_eq!(roots(b"").to_string(), "no certificate in it");
    let pki = Pki::new("ca");
    let error = Client::new(
        Tls::Roots {
            ca_pem: pki.ca.pem().into_bytes(),
            client_identity: Some(Identity {
                cert_pem: pki.ca.pem().into_bytes(),
                key_pem: b"not a key".to_vec(),
            }),
        },
        QUICK,
    )
    .unwrap_err();
    assert!(matches!(error, TlsSetupError::Key(_)), "{error:?}");
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

    /// Whatever a server sends back, reading it never panics.
    #[test]
    fn any_answer_is_read_without_panicking(
        head in "HTTP/1\\.[01] [0-9]{1,4} [ -~]{0,10}\r\n(Transfer-Encoding: chunked\r\n)?(Content-Length: [0-9]{1,3}\r\n)?\r\n",
        body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200),
    ) {
        let mut answer = head.into_bytes();
        answer.extend_from_slice(&body);
        let (target, _server) = serve_once(answer);
        let _ = plain().with_timeouts(Timeouts {
            connect: Duration::from_secs(1),
            exchange: Duration::from_millis(300),
        }).get(&target, "/");
    }
}
