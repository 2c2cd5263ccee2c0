//! Which process holds a socket: the kernel's socket tables (`/proc/<pid>/net/{tcp,udp}{,6}`) give each
//! bound socket's inode, and `/proc/<pid>/fd` links to the inodes a process holds.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// A transport protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proto {
    /// A listening TCP socket.
    Tcp,
    /// A bound UDP socket.
    Udp,
}

/// Whether process `pid` holds a socket listening (TCP) or bound (UDP) on `addr`, or on the
/// wildcard address of its family and `addr`'s port.
pub fn listens(pid: u32, addr: SocketAddr, proto: Proto) -> bool {
    let held = socket_inodes(pid);
    if held.is_empty() {
        return false;
    }
    let (tables, state) = match proto {
        // TCP_LISTEN; a bound, unconnected UDP socket is TCP_CLOSE.
        Proto::Tcp => (["tcp", "tcp6"], "0A"),
        Proto::Udp => (["udp", "udp6"], "07"),
    };
    tables.iter().any(|table| {
        // The tables of the process's own network namespace, which may not be the test's.
        let text = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")).unwrap_or_default();
        text.lines().skip(1).any(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            f.len() > 9
                && f[3] == state
                && parse_local(f[1]).is_some_and(|local| matches(local, addr))
                && f[9].parse::<u64>().is_ok_and(|inode| held.contains(&inode))
        })
    })
}

fn matches(local: SocketAddr, want: SocketAddr) -> bool {
    local.port() == want.port()
        && (local.ip() == want.ip()
            || local.ip().is_unspecified()
            || local.ip() == IpAddr::V6(want_mapped(want.ip())))
}

/// An IPv4 address as the IPv4-mapped IPv6 address a dual-stack socket shows.
fn want_mapped(ip: IpAddr) -> Ipv6Addr {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    }
}

/// `0100007F:3039` (IPv4) or 32 hex digits and a port (IPv6): each 32-bit word is printed in
/// the machine's byte order.
fn parse_local(field: &str) -> Option<SocketAddr> {
    let (ip, port) = field.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let word = |hex: &str| u32::from_str_radix(hex, 16).ok().map(u32::to_ne_bytes);
    let ip = match ip.len() {
        8 => IpAddr::V4(Ipv4Addr::from(word(ip)?)),
        32 => {
            let mut bytes = [0u8; 16];
            for i in 0..4 {
                bytes[i * 4..i * 4 + 4].copy_from_slice(&word(&ip[i * 8..i * 8 + 8])?);
            }
            IpAddr::V6(Ipv6Addr::from(bytes))
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

/// The socket inodes process `pid` has open.
fn socket_inodes(pid: u32) -> HashSet<u64> {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return HashSet::new();
    };
    fds.filter_map(|fd| {
        let target = std::fs::read_link(fd.ok()?.path()).ok()?;
        let target = target.to_str()?;
        target
            .strip_prefix("socket:[")?
            .strip_suffix(']')?
            .parse()
            .ok()
    })
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{TcpListener, UdpSocket};

    #[test]
    fn this_process_holds_the_sockets_it_bound_and_no_others() {
        let me = std::process::id();
        let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        let (t, u) = (tcp.local_addr().unwrap(), udp.local_addr().unwrap());
        assert!(listens(me, t, Proto::Tcp));
        assert!(listens(me, u, Proto::Udp));
        assert!(!listens(me, t, Proto::Udp) || t.port() == u.port());
        // Another address with the same port is not this socket.
        assert!(!listens(
            me,
            SocketAddr::from(([127, 0, 0, 2], t.port())),
            Proto::Tcp
        ));
        // pid 1 holds none of them.
        assert!(!listens(1, t, Proto::Tcp));
        drop(tcp);
        assert!(!listens(me, t, Proto::Tcp));
    }

    #[test]
    fn a_wildcard_socket_listens_on_every_address() {
        let tcp = TcpListener::bind("0.0.0.0:0").unwrap();
        let port = tcp.local_addr().unwrap().port();
        assert!(listens(
            std::process::id(),
            SocketAddr::from(([127, 0, 0, 9], port)),
            Proto::Tcp
        ));
    }

    #[test]
    fn kernel_addresses_parse() {
        assert_eq!(
            parse_local("0100007F:3039"),
            Some(SocketAddr::from(([127, 0, 0, 1], 12345)))
        );
        assert_eq!(
            parse_local("00000000000000000000000001000000:0050").map(|a| a.ip()),
            Some("::1".parse().unwrap())
        );
        assert_eq!(parse_local("garbage"), None);
    }
}
