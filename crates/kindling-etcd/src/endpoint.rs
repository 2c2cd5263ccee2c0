//! etcd member URLs: `http(s)://host:port`, nothing more.

use crate::EtcdError;

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

    /// Where kindling-http connects: the host (SNI and `Host:`) and port.
    pub(crate) fn target(&self) -> kindling_http::Target {
        kindling_http::Target::new(&self.host, self.port)
    }
}

#[cfg(test)]
mod tests {
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
}
