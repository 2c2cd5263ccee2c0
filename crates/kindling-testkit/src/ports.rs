//! Ports for test daemons.

use std::net::{TcpListener, UdpSocket};
use std::sync::atomic::{AtomicU32, Ordering};

/// The lowest port handed out: above the well-known and most registered services.
const FIRST: u32 = 10_000;

/// A TCP and UDP port on 127.0.0.1 that nothing holds now, never handed out before by this
/// process, and below the kernel's ephemeral range (`net.ipv4.ip_local_port_range`), where no
/// outgoing connection gets its source port. Processes start at different offsets (by pid), so
/// two test binaries running at once rarely meet; when they do, the daemon's readiness check
/// finds it.
pub fn port() -> u16 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let end = ephemeral_start().max(FIRST + 1_000);
    let span = end - FIRST;
    let offset = std::process::id().wrapping_mul(7_919) % span;
    for _ in 0..span {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = (FIRST + (offset + n) % span) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok()
            && UdpSocket::bind(("127.0.0.1", port)).is_ok()
        {
            return port;
        }
    }
    panic!("no free port in {FIRST}..{end}");
}

/// The first port of the ephemeral range; Linux's default when it cannot be read.
fn ephemeral_start() -> u32 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(32_768)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_not_handed_out_twice_and_stay_below_the_ephemeral_range() {
        let ports: Vec<u16> = (0..200).map(|_| port()).collect();
        let mut unique = ports.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), ports.len());
        assert!(
            ports
                .iter()
                .all(|&p| u32::from(p) >= FIRST && u32::from(p) < ephemeral_start())
        );
    }

    #[test]
    fn a_held_port_is_skipped() {
        let next = port() + 1;
        let _held = TcpListener::bind(("127.0.0.1", next));
        // Whatever comes next, it is not a port something holds.
        let p = port();
        assert!(TcpListener::bind(("127.0.0.1", p)).is_ok());
    }
}
