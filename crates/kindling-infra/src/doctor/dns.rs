//! A small DNS client: one question to one server, over UDP with retries, and over TCP when the
//! answer was truncated (RFC 1035, RFC 7766).
//!
//! doctor asks exactly what the machines will ask, of the server they will ask, and needs to see
//! the rcode and the authority section (which zone answered, its SOA), which a stub resolver
//! hides. The parser treats every packet as hostile: it checks bounds, follows only backward
//! compression pointers, and returns an error for anything malformed instead of panicking.

use std::fmt;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

/// The record types doctor asks about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordType {
    A,
    Ns,
    Cname,
    Soa,
    Ptr,
    Aaaa,
}

impl RecordType {
    fn code(self) -> u16 {
        match self {
            RecordType::A => 1,
            RecordType::Ns => 2,
            RecordType::Cname => 5,
            RecordType::Soa => 6,
            RecordType::Ptr => 12,
            RecordType::Aaaa => 28,
        }
    }
}

impl fmt::Display for RecordType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RecordType::A => "A",
            RecordType::Ns => "NS",
            RecordType::Cname => "CNAME",
            RecordType::Soa => "SOA",
            RecordType::Ptr => "PTR",
            RecordType::Aaaa => "AAAA",
        })
    }
}

/// The response code of an answer (RFC 1035 §4.1.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rcode {
    NoError,
    FormErr,
    ServFail,
    NxDomain,
    NotImp,
    Refused,
    Other(u8),
}

impl Rcode {
    fn from_code(code: u8) -> Rcode {
        match code {
            0 => Rcode::NoError,
            1 => Rcode::FormErr,
            2 => Rcode::ServFail,
            3 => Rcode::NxDomain,
            4 => Rcode::NotImp,
            5 => Rcode::Refused,
            other => Rcode::Other(other),
        }
    }
}

impl fmt::Display for Rcode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rcode::NoError => f.write_str("NOERROR"),
            Rcode::FormErr => f.write_str("FORMERR"),
            Rcode::ServFail => f.write_str("SERVFAIL"),
            Rcode::NxDomain => f.write_str("NXDOMAIN"),
            Rcode::NotImp => f.write_str("NOTIMP"),
            Rcode::Refused => f.write_str("REFUSED"),
            Rcode::Other(code) => write!(f, "rcode {code}"),
        }
    }
}

/// The data of one resource record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RData {
    A(Ipv4Addr),
    Aaaa(Ipv6Addr),
    Ns(String),
    Cname(String),
    Ptr(String),
    Soa {
        /// The primary name server.
        mname: String,
        /// The zone administrator's mailbox.
        rname: String,
        serial: u32,
    },
    /// A type doctor does not read (its type code).
    Other(u16),
}

/// One resource record. Names are lower case, absolute, without the trailing dot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub name: String,
    pub ttl: u32,
    pub data: RData,
}

/// A parsed answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub rcode: Rcode,
    /// The server answered from a zone it is authoritative for.
    pub authoritative: bool,
    pub answers: Vec<Record>,
    pub authority: Vec<Record>,
}

impl Response {
    /// The IPv4 addresses in the answer section (after any CNAME the server followed).
    pub fn ipv4(&self) -> Vec<Ipv4Addr> {
        self.answers
            .iter()
            .filter_map(|r| match r.data {
                RData::A(a) => Some(a),
                _ => None,
            })
            .collect()
    }

    /// The names in PTR records of the answer section.
    pub fn ptr_names(&self) -> Vec<String> {
        self.answers
            .iter()
            .filter_map(|r| match &r.data {
                RData::Ptr(n) => Some(n.clone()),
                _ => None,
            })
            .collect()
    }

    /// The NS names in the answer section.
    pub fn ns_names(&self) -> Vec<String> {
        self.answers
            .iter()
            .filter_map(|r| match &r.data {
                RData::Ns(n) => Some(n.clone()),
                _ => None,
            })
            .collect()
    }

    /// The SOA that answers for this name: from the answer section at a zone's apex, otherwise
    /// from the authority section (a negative answer names its zone there). Gives the zone's
    /// name and the SOA's primary name server.
    pub fn zone_soa(&self) -> Option<(String, String)> {
        self.answers
            .iter()
            .chain(&self.authority)
            .find_map(|r| match &r.data {
                RData::Soa { mname, .. } => Some((r.name.clone(), mname.clone())),
                _ => None,
            })
    }
}

/// Why a question got no answer.
#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    #[error("'{0}' is not a valid DNS name")]
    BadName(String),
    #[error("no answer from {server} within {timeout:?} ({tries} tries over UDP)")]
    Timeout {
        server: SocketAddr,
        timeout: Duration,
        tries: u32,
    },
    #[error("asking {server}: {source}")]
    Io {
        server: SocketAddr,
        source: std::io::Error,
    },
    #[error("the answer from {server} is malformed: {reason}")]
    Malformed {
        server: SocketAddr,
        reason: Malformed,
    },
}

/// What is wrong with a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Malformed {
    #[error("it ends early")]
    Truncated,
    #[error("a name is too long or has a bad label")]
    BadName,
    #[error("a compression pointer loops or points forward")]
    BadPointer,
    #[error("it is not a response")]
    NotAResponse,
    #[error("it answers another question")]
    WrongQuestion,
    #[error("a record's data does not fit its type")]
    BadRecord,
}

/// How long to wait and how often to ask again.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// Per UDP try, and for the whole TCP exchange.
    pub per_try: Duration,
    /// UDP tries before giving up.
    pub tries: u32,
}

impl Default for Timeouts {
    fn default() -> Timeouts {
        Timeouts {
            per_try: Duration::from_millis(1500),
            tries: 2,
        }
    }
}

/// Asks `server` one question with recursion desired, as a stub resolver on a machine would.
pub fn query(
    server: SocketAddr,
    name: &str,
    qtype: RecordType,
    timeouts: Timeouts,
) -> Result<Response, DnsError> {
    let id = random_u16();
    let packet = build_query(id, name, qtype)?;
    let io = |source| DnsError::Io { server, source };
    let bind: SocketAddr = if server.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = UdpSocket::bind(bind).map_err(io)?;
    socket.connect(server).map_err(io)?;
    let mut buf = [0u8; 4096];
    for _ in 0..timeouts.tries.max(1) {
        socket.send(&packet).map_err(io)?;
        let deadline = Instant::now() + timeouts.per_try;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            if left.is_zero() {
                break;
            }
            socket.set_read_timeout(Some(left)).map_err(io)?;
            let len = match socket.recv(&mut buf) {
                Ok(len) => len,
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    break;
                }
                // Nothing listens on the port: ICMP port unreachable. Asking again won't help.
                Err(e) => return Err(io(e)),
            };
            // A stray or late datagram (another ID) is not our answer: keep waiting for ours.
            let Some(header) = buf.get(..len).and_then(|b| b.get(..4)) else {
                continue;
            };
            if u16::from_be_bytes([header[0], header[1]]) != id {
                continue;
            }
            let truncated = header[2] & 0x02 != 0;
            if truncated {
                return query_tcp(server, &packet, name, qtype, timeouts.per_try);
            }
            return parse_response(&buf[..len], id, name, qtype)
                .map_err(|reason| DnsError::Malformed { server, reason });
        }
    }
    Err(DnsError::Timeout {
        server,
        timeout: timeouts.per_try,
        tries: timeouts.tries.max(1),
    })
}

fn query_tcp(
    server: SocketAddr,
    packet: &[u8],
    name: &str,
    qtype: RecordType,
    timeout: Duration,
) -> Result<Response, DnsError> {
    let io = |source| DnsError::Io { server, source };
    let id = u16::from_be_bytes([packet[0], packet[1]]);
    let mut stream = TcpStream::connect_timeout(&server, timeout).map_err(io)?;
    stream.set_read_timeout(Some(timeout)).map_err(io)?;
    stream.set_write_timeout(Some(timeout)).map_err(io)?;
    let len = u16::try_from(packet.len()).expect("a query is far below 64 KiB");
    let mut framed = len.to_be_bytes().to_vec();
    framed.extend_from_slice(packet);
    stream.write_all(&framed).map_err(io)?;
    let mut len = [0u8; 2];
    stream.read_exact(&mut len).map_err(io)?;
    let mut answer = vec![0u8; usize::from(u16::from_be_bytes(len))];
    stream.read_exact(&mut answer).map_err(io)?;
    parse_response(&answer, id, name, qtype)
        .map_err(|reason| DnsError::Malformed { server, reason })
}

/// A random 16-bit value for query IDs and random labels; std's hasher keys are random per
/// process, which is all a query ID needs (we also check the question).
pub fn random_u16() -> u16 {
    random_u64() as u16
}

/// A random 64-bit value (see [`random_u16`]).
pub fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.finish()
}

/// The wire form of a query for `name`/`qtype` with recursion desired.
pub fn build_query(id: u16, name: &str, qtype: RecordType) -> Result<Vec<u8>, DnsError> {
    let mut p = Vec::with_capacity(512);
    p.extend_from_slice(&id.to_be_bytes());
    p.extend_from_slice(&[0x01, 0x00]); // RD
    p.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]); // one question
    encode_name(name, &mut p).ok_or_else(|| DnsError::BadName(name.to_string()))?;
    p.extend_from_slice(&qtype.code().to_be_bytes());
    p.extend_from_slice(&1u16.to_be_bytes()); // IN
    Ok(p)
}

fn encode_name(name: &str, out: &mut Vec<u8>) -> Option<()> {
    let name = name.strip_suffix('.').unwrap_or(name);
    let start = out.len();
    if !name.is_empty() {
        for label in name.split('.') {
            let len = u8::try_from(label.len())
                .ok()
                .filter(|l| (1..=63).contains(l))?;
            out.push(len);
            out.extend_from_slice(label.as_bytes());
        }
    }
    out.push(0);
    (out.len() - start <= 255).then_some(())
}

/// Reads a response to the query `id` for `name`/`qtype`.
pub fn parse_response(
    packet: &[u8],
    id: u16,
    name: &str,
    qtype: RecordType,
) -> Result<Response, Malformed> {
    let mut r = Reader { packet, pos: 0 };
    let header_id = r.u16()?;
    let flags = r.u16()?;
    let (qd, an, ns, _ar) = (r.u16()?, r.u16()?, r.u16()?, r.u16()?);
    if flags & 0x8000 == 0 || header_id != id {
        return Err(Malformed::NotAResponse);
    }
    if qd != 1 {
        return Err(Malformed::WrongQuestion);
    }
    let qname = r.name()?;
    let (qt, qclass) = (r.u16()?, r.u16()?);
    let wanted = name.strip_suffix('.').unwrap_or(name);
    if !qname.eq_ignore_ascii_case(wanted) || qt != qtype.code() || qclass != 1 {
        return Err(Malformed::WrongQuestion);
    }
    let mut answers = Vec::new();
    for _ in 0..an {
        answers.push(r.record()?);
    }
    let mut authority = Vec::new();
    for _ in 0..ns {
        authority.push(r.record()?);
    }
    Ok(Response {
        rcode: Rcode::from_code((flags & 0x000f) as u8),
        authoritative: flags & 0x0400 != 0,
        answers,
        authority,
    })
}

struct Reader<'a> {
    packet: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn bytes(&mut self, n: usize) -> Result<&'a [u8], Malformed> {
        let end = self.pos.checked_add(n).ok_or(Malformed::Truncated)?;
        let slice = self.packet.get(self.pos..end).ok_or(Malformed::Truncated)?;
        self.pos = end;
        Ok(slice)
    }

    fn u16(&mut self) -> Result<u16, Malformed> {
        let b = self.bytes(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Result<u32, Malformed> {
        let b = self.bytes(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// A possibly compressed name at the current position; the position moves past it.
    fn name(&mut self) -> Result<String, Malformed> {
        let (name, end) = read_name(self.packet, self.pos)?;
        self.pos = end;
        Ok(name)
    }

    fn record(&mut self) -> Result<Record, Malformed> {
        let name = self.name()?;
        let rtype = self.u16()?;
        let _class = self.u16()?;
        let ttl = self.u32()?;
        let len = usize::from(self.u16()?);
        let start = self.pos;
        let rdata = self.bytes(len)?;
        let end = self.pos;
        // Names inside the data may point anywhere before them in the packet, so they are read
        // from the whole packet, and must end exactly where the data ends.
        let name_in_data = |at: usize| -> Result<(String, usize), Malformed> {
            let (n, after) = read_name(&self.packet[..end], at)?;
            Ok((n, after))
        };
        let data = match rtype {
            1 => RData::A(Ipv4Addr::from(
                <[u8; 4]>::try_from(rdata).map_err(|_| Malformed::BadRecord)?,
            )),
            28 => RData::Aaaa(Ipv6Addr::from(
                <[u8; 16]>::try_from(rdata).map_err(|_| Malformed::BadRecord)?,
            )),
            2 | 5 | 12 => {
                let (n, after) = name_in_data(start)?;
                if after != end {
                    return Err(Malformed::BadRecord);
                }
                match rtype {
                    2 => RData::Ns(n),
                    5 => RData::Cname(n),
                    _ => RData::Ptr(n),
                }
            }
            6 => {
                let (mname, after) = name_in_data(start)?;
                let (rname, after) = name_in_data(after)?;
                let fixed = self
                    .packet
                    .get(after..end)
                    .filter(|f| f.len() == 20)
                    .ok_or(Malformed::BadRecord)?;
                RData::Soa {
                    mname,
                    rname,
                    serial: u32::from_be_bytes([fixed[0], fixed[1], fixed[2], fixed[3]]),
                }
            }
            other => RData::Other(other),
        };
        Ok(Record { name, ttl, data })
    }
}

/// Reads the name at `pos`: (the name, the position after it where it sits). Pointers must point
/// strictly backwards, which also rules out loops.
fn read_name(packet: &[u8], pos: usize) -> Result<(String, usize), Malformed> {
    let mut name = String::new();
    let mut at = pos;
    let mut end = None;
    let mut wire_len = 0usize;
    loop {
        let len = *packet.get(at).ok_or(Malformed::Truncated)?;
        match len & 0xc0 {
            0x00 => {
                if len == 0 {
                    return Ok((name, end.unwrap_or(at + 1)));
                }
                let label = packet
                    .get(at + 1..at + 1 + usize::from(len))
                    .ok_or(Malformed::Truncated)?;
                wire_len += 1 + label.len();
                if wire_len > 254 {
                    return Err(Malformed::BadName);
                }
                if !name.is_empty() {
                    name.push('.');
                }
                for &b in label {
                    // Printable ASCII except the separator; anything else is escaped as \DDD, as
                    // dig shows it.
                    if b.is_ascii_graphic() && b != b'.' && b != b'\\' {
                        name.push(char::from(b.to_ascii_lowercase()));
                    } else {
                        name.push_str(&format!("\\{b:03}"));
                    }
                }
                at += 1 + usize::from(len);
            }
            0xc0 => {
                let low = *packet.get(at + 1).ok_or(Malformed::Truncated)?;
                let target = usize::from(u16::from_be_bytes([len & 0x3f, low]));
                if target >= at {
                    return Err(Malformed::BadPointer);
                }
                end.get_or_insert(at + 2);
                at = target;
            }
            _ => return Err(Malformed::BadName),
        }
    }
}

/// The reverse-lookup name of an address: `4.3.2.1.in-addr.arpa` or the nibble form for IPv6.
pub fn reverse_name(ip: std::net::IpAddr) -> String {
    match ip {
        std::net::IpAddr::V4(v4) => {
            let o = v4.octets();
            format!("{}.{}.{}.{}.in-addr.arpa", o[3], o[2], o[1], o[0])
        }
        std::net::IpAddr::V6(v6) => {
            let mut s = String::new();
            for byte in v6.octets().iter().rev() {
                s.push_str(&format!("{:x}.{:x}.", byte & 0xf, byte >> 4));
            }
            s.push_str("ip6.arpa");
            s
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// A response to `query` with the given answer records (already in wire form).
    fn response(query: &[u8], flags: u16, an: u16, ns: u16, records: &[u8]) -> Vec<u8> {
        let mut p = query.to_vec();
        p[2..4].copy_from_slice(&flags.to_be_bytes());
        p[6..8].copy_from_slice(&an.to_be_bytes());
        p[8..10].copy_from_slice(&ns.to_be_bytes());
        p.extend_from_slice(records);
        p
    }

    #[test]
    fn a_query_is_what_dig_sends() {
        let q = build_query(0x1234, "api.demo.example.", RecordType::A).unwrap();
        let mut want = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        want.extend_from_slice(b"\x03api\x04demo\x07example\x00\x00\x01\x00\x01");
        assert_eq!(q, want);
    }

    #[test]
    fn names_that_cannot_be_sent_are_refused() {
        assert!(build_query(1, "a..b", RecordType::A).is_err());
        assert!(build_query(1, &"x".repeat(64), RecordType::A).is_err());
        let long = vec!["abcdefghi"; 30].join(".");
        assert!(build_query(1, &long, RecordType::A).is_err());
    }

    #[test]
    fn compressed_answers_are_read() {
        let q = build_query(7, "api.demo.example", RecordType::A).unwrap();
        // Answer: pointer to the question name (offset 12), A 10.0.0.1; then a CNAME whose
        // target is "x" + pointer to "demo.example" (offset 16).
        let mut rec = vec![0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 10, 0, 0, 1];
        rec.extend_from_slice(&[0xc0, 12, 0, 5, 0, 1, 0, 0, 0, 60, 0, 4, 1, b'x', 0xc0, 16]);
        let p = response(&q, 0x8580, 2, 0, &rec);
        let r = parse_response(&p, 7, "api.demo.example", RecordType::A).unwrap();
        assert_eq!(r.rcode, Rcode::NoError);
        assert!(r.authoritative);
        assert_eq!(r.ipv4(), [Ipv4Addr::new(10, 0, 0, 1)]);
        assert_eq!(r.answers[1].data, RData::Cname("x.demo.example".into()));
        assert_eq!(r.answers[0].name, "api.demo.example");
    }

    #[test]
    fn another_question_or_id_is_not_our_answer() {
        let q = build_query(7, "api.demo.example", RecordType::A).unwrap();
        let p = response(&q, 0x8180, 0, 0, &[]);
        assert_eq!(
            parse_response(&p, 8, "api.demo.example", RecordType::A),
            Err(Malformed::NotAResponse)
        );
        assert_eq!(
            parse_response(&p, 7, "api-int.demo.example", RecordType::A),
            Err(Malformed::WrongQuestion)
        );
        assert_eq!(
            parse_response(&p, 7, "api.demo.example", RecordType::Ptr),
            Err(Malformed::WrongQuestion)
        );
        assert_eq!(
            parse_response(&q, 7, "api.demo.example", RecordType::A),
            Err(Malformed::NotAResponse),
            "a query echoed back is not a response"
        );
    }

    #[test]
    fn pointer_loops_and_forward_pointers_are_refused() {
        let q = build_query(7, "a", RecordType::A).unwrap();
        // A record whose owner name points at itself.
        let at = q.len() as u8;
        let p = response(
            &q,
            0x8180,
            1,
            0,
            &[0xc0, at, 0, 1, 0, 1, 0, 0, 0, 1, 0, 4, 1, 2, 3, 4],
        );
        assert_eq!(
            parse_response(&p, 7, "a", RecordType::A),
            Err(Malformed::BadPointer)
        );
    }

    #[test]
    fn soa_in_authority_names_the_zone() {
        let q = build_query(9, "nope.demo.example", RecordType::A).unwrap();
        // Owner: pointer to "demo.example" (offset 17), SOA ns1.<demo.example> hostmaster.<...>
        let mut rdata = vec![3, b'n', b's', b'1', 0xc0, 17, 10];
        rdata.extend_from_slice(b"hostmaster");
        rdata.extend_from_slice(&[0xc0, 17]);
        rdata.extend_from_slice(&[0, 0, 0, 42]);
        rdata.extend_from_slice(&[0; 16]);
        let mut rec = vec![0xc0, 17, 0, 6, 0, 1, 0, 0, 0, 60, 0, rdata.len() as u8];
        rec.extend_from_slice(&rdata);
        let p = response(&q, 0x8583, 0, 1, &rec);
        let r = parse_response(&p, 9, "nope.demo.example", RecordType::A).unwrap();
        assert_eq!(r.rcode, Rcode::NxDomain);
        assert_eq!(
            r.zone_soa(),
            Some(("demo.example".into(), "ns1.demo.example".into()))
        );
    }

    #[test]
    fn reverse_names() {
        assert_eq!(
            reverse_name("192.168.126.10".parse().unwrap()),
            "10.126.168.192.in-addr.arpa"
        );
        assert!(
            reverse_name("2001:db8::1".parse().unwrap())
                .starts_with("1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6")
        );
    }

    /// A well-formed answer with a CNAME, A and SOA, to garble.
    fn sample() -> Vec<u8> {
        let q = build_query(7, "api.demo.example", RecordType::A).unwrap();
        let mut rec = vec![0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 10, 0, 0, 1];
        rec.extend_from_slice(&[0xc0, 12, 0, 5, 0, 1, 0, 0, 0, 60, 0, 4, 1, b'x', 0xc0, 16]);
        let mut rdata = vec![3, b'n', b's', b'1', 0xc0, 16, 1, b'h', 0xc0, 16];
        rdata.extend_from_slice(&[0; 20]);
        rec.extend_from_slice(&[0xc0, 16, 0, 6, 0, 1, 0, 0, 0, 60, 0, rdata.len() as u8]);
        rec.extend_from_slice(&rdata);
        response(&q, 0x8580, 2, 1, &rec)
    }

    #[test]
    fn the_sample_parses_whole() {
        let r = parse_response(&sample(), 7, "api.demo.example", RecordType::A).unwrap();
        assert_eq!(r.answers.len(), 2);
        assert_eq!(
            r.zone_soa(),
            Some(("demo.example".into(), "ns1.demo.example".into()))
        );
    }

    #[test]
    fn every_truncation_of_an_answer_is_an_error_not_a_panic() {
        let p = sample();
        for len in 0..p.len() {
            assert!(
                parse_response(&p[..len], 7, "api.demo.example", RecordType::A).is_err(),
                "a packet cut at {len} bytes parsed"
            );
        }
    }

    proptest! {
        #[test]
        fn garbled_packets_never_panic(
            flips in proptest::collection::vec((0usize..200, any::<u8>()), 0..8),
            cut in 0usize..200,
        ) {
            let mut p = sample();
            for (at, byte) in flips {
                if let Some(b) = p.get_mut(at) {
                    *b = byte;
                }
            }
            p.truncate(cut.max(12));
            let _ = parse_response(&p, 7, "api.demo.example", RecordType::A);
        }

        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let id = bytes.get(..2).map_or(0, |b| u16::from_be_bytes([b[0], b[1]]));
            let _ = parse_response(&bytes, id, "api.demo.example", RecordType::A);
        }
    }
}

/// The client against the real BIND `named` on a loopback port: answers, negative answers with
/// their SOA, and an answer too big for UDP that comes back over TCP.
#[cfg(test)]
mod named_tests {
    use std::net::Ipv4Addr;
    use std::time::{Duration, Instant};

    use kindling_testkit::Named;

    use super::*;

    /// `named` with a small test zone (and 60 A records for one name, more than fits in 512
    /// bytes of UDP without EDNS) and a reverse zone.
    fn start_named() -> (Named, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let mut zone = String::from(
            "$TTL 60\n@ IN SOA ns1 hostmaster 1 60 60 60 60\n  IN NS ns1\nns1 IN A 192.0.2.1\napi IN A 192.0.2.10\nalias IN CNAME api\nv6 IN AAAA 2001:db8::1\n",
        );
        for i in 1..=60 {
            zone.push_str(&format!("big IN A 198.51.100.{i}\n"));
        }
        std::fs::write(dir.path().join("zone"), zone).unwrap();
        std::fs::write(
            dir.path().join("rev"),
            "$TTL 60\n@ IN SOA ns1.t.example. h.t.example. 1 60 60 60 60\n  IN NS ns1.t.example.\n10 IN PTR api.t.example.\n",
        )
        .unwrap();
        let named = Named::start(
            dir.path(),
            "zone \"t.example\" { type primary; file \"zone\"; };\nzone \"2.0.192.in-addr.arpa\" { type primary; file \"rev\"; };",
        );
        (named, dir)
    }

    #[test]
    fn answers_from_the_real_named() {
        let (named, _zones) = start_named();
        let t = Timeouts::default();
        let q = |name: &str, qtype| {
            query(named.addr(), name, qtype, t).unwrap_or_else(|e| panic!("{e}\n{}", named.log()))
        };

        let r = q("api.t.example", RecordType::A);
        assert_eq!((r.rcode, r.authoritative), (Rcode::NoError, true));
        assert_eq!(r.ipv4(), [Ipv4Addr::new(192, 0, 2, 10)]);

        let r = q("ALIAS.t.example.", RecordType::A);
        assert_eq!(r.answers[0].data, RData::Cname("api.t.example".into()));
        assert_eq!(r.ipv4(), [Ipv4Addr::new(192, 0, 2, 10)]);

        let r = q("v6.t.example", RecordType::Aaaa);
        assert_eq!(
            r.answers[0].data,
            RData::Aaaa("2001:db8::1".parse().unwrap())
        );

        let r = q("nope.t.example", RecordType::A);
        assert_eq!(r.rcode, Rcode::NxDomain);
        assert_eq!(
            r.zone_soa(),
            Some(("t.example".into(), "ns1.t.example".into()))
        );

        let r = q("t.example", RecordType::Ns);
        assert_eq!(r.ns_names(), ["ns1.t.example"]);

        let r = q("10.2.0.192.in-addr.arpa", RecordType::Ptr);
        assert_eq!(r.ptr_names(), ["api.t.example"]);

        let r = q("other.example", RecordType::A);
        assert_eq!(r.rcode, Rcode::Refused);

        // Truncated over UDP, whole over TCP.
        let r = q("big.t.example", RecordType::A);
        assert_eq!(r.ipv4().len(), 60);
    }

    #[test]
    fn a_closed_port_fails_fast_and_a_silent_one_times_out() {
        let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let t = Timeouts {
            per_try: Duration::from_millis(200),
            tries: 2,
        };
        let started = Instant::now();
        let e = query(silent.local_addr().unwrap(), "a.example", RecordType::A, t).unwrap_err();
        assert!(matches!(e, DnsError::Timeout { tries: 2, .. }), "{e}");
        assert!(started.elapsed() < Duration::from_secs(2));
        drop(silent);
    }
}
