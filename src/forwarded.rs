//! Who the client is: the connection's peer, or, behind proxies we trust, the first hop of
//! `X-Forwarded-For` that is not one of them. No pingora types here.
//!
//! A client can write any `X-Forwarded-For` it likes. Only a peer listed in `trusted_proxies` is
//! believed; from anyone else the header is replaced, so the upstream (and our logs and limits)
//! never see an address the client chose.

use ipnet::IpNet;
use std::net::{IpAddr, SocketAddr};

/// `10.0.0.0/8`, `fd00::/8`, or a bare address (a network of one).
pub fn parse_network(text: &str) -> Result<IpNet, String> {
    let text = text.trim();
    text.parse::<IpNet>()
        .or_else(|_| text.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| format!("{text:?} is neither a CIDR network nor an IP address"))
}

/// The peers whose forwarding headers are believed.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    /// From validated config entries (see [`parse_network`]).
    pub fn new<'a>(entries: impl IntoIterator<Item = &'a String>) -> TrustedProxies {
        TrustedProxies(
            entries
                .into_iter()
                .filter_map(|e| parse_network(e).ok())
                .collect(),
        )
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical_ip(ip);
        self.0.iter().any(|net| net.contains(&ip))
    }
}

/// An address as text, as the standard library writes it, but IPv4 (nearly every peer) digit by
/// digit: `to_string` goes through the formatting machinery at ten times the cost, and this runs
/// on every request (the forwarding headers, the access log).
pub struct AddressText {
    text: [u8; 45],
    len: usize,
}

impl AddressText {
    pub fn new(ip: IpAddr) -> AddressText {
        let mut text = [0u8; 45];
        let len = match ip {
            IpAddr::V4(v4) => {
                let mut len = 0;
                for (i, octet) in v4.octets().into_iter().enumerate() {
                    if i > 0 {
                        text[len] = b'.';
                        len += 1;
                    }
                    let digits = [octet / 100, octet / 10 % 10, octet % 10];
                    let skip = match octet {
                        100.. => 0,
                        10.. => 1,
                        _ => 2,
                    };
                    for digit in &digits[skip..] {
                        text[len] = b'0' + digit;
                        len += 1;
                    }
                }
                len
            }
            IpAddr::V6(v6) => {
                use std::io::Write as _;
                let mut rest = &mut text[..];
                // 45 bytes hold the longest form (`ffff:…:255.255.255.255`).
                let _ = write!(rest, "{v6}");
                45 - rest.len()
            }
        };
        AddressText { text, len }
    }

    pub fn as_str(&self) -> &str {
        // Digits, dots, hex digits and colons only.
        std::str::from_utf8(&self.text[..self.len]).unwrap_or_default()
    }
}

/// An IPv4 peer on an IPv6 socket (`::ffff:10.0.0.1`) is the IPv4 address.
pub fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// One `X-Forwarded-For` entry: an address, maybe with a port (`1.2.3.4:80`, `[::1]:80`).
fn parse_hop(entry: &str) -> Option<IpAddr> {
    let entry = entry.trim();
    entry
        .parse::<IpAddr>()
        .ok()
        .or_else(|| entry.parse::<SocketAddr>().ok().map(|s| s.ip()))
        .map(canonical_ip)
}

/// The client's address. `forwarded_for` holds the `X-Forwarded-For` values in arrival order.
/// From a trusted peer, the hops are walked from the right (the nearest) and the first one that is
/// not a trusted proxy is the client; an unreadable hop stops the walk at the last readable one.
pub fn client_address<'a>(
    peer: IpAddr,
    forwarded_for: impl DoubleEndedIterator<Item = &'a str>,
    trusted: &TrustedProxies,
) -> IpAddr {
    let mut client = canonical_ip(peer);
    if !trusted.contains(client) {
        return client;
    }
    for entry in forwarded_for.rev().flat_map(|v| v.rsplit(',')) {
        let Some(hop) = parse_hop(entry) else { break };
        client = hop;
        if !trusted.contains(hop) {
            break;
        }
    }
    client
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_written_as_the_standard_library_writes_them() {
        for octet in 0..=255u8 {
            for ip in [
                std::net::Ipv4Addr::new(octet, 0, 9, 255),
                std::net::Ipv4Addr::new(10, octet, 100, 99),
            ] {
                assert_eq!(AddressText::new(ip.into()).as_str(), ip.to_string());
            }
        }
        for text in [
            "2001:db8::1",
            "::",
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            "::ffff:255.255.255.255",
        ] {
            let ip: IpAddr = text.parse().unwrap();
            assert_eq!(AddressText::new(ip).as_str(), text);
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn untrusted_peers_are_the_client_whatever_they_claim() {
        let trusted = TrustedProxies::new(&["10.0.0.0/8".to_string()]);
        let claims = ["1.2.3.4"];
        assert_eq!(
            client_address(ip("192.0.2.7"), claims.into_iter(), &trusted),
            ip("192.0.2.7")
        );
        let none = TrustedProxies::default();
        assert_eq!(
            client_address(ip("10.1.1.1"), claims.into_iter(), &none),
            ip("10.1.1.1")
        );
    }

    #[test]
    fn behind_trusted_proxies_the_first_untrusted_hop_is_the_client() {
        let trusted = TrustedProxies::new(&["10.0.0.0/8".to_string(), "::1".to_string()]);
        let cases: [(&[&str], &str); 6] = [
            (&["203.0.113.9, 10.0.0.2"], "203.0.113.9"),
            (&["6.6.6.6, 203.0.113.9", "10.0.0.3"], "203.0.113.9"),
            (&["10.0.0.9"], "10.0.0.9"),
            (&[], "10.0.0.1"),
            (&["junk, 203.0.113.9:4711"], "203.0.113.9"),
            (&["203.0.113.9, junk, 10.0.0.2"], "10.0.0.2"),
        ];
        for (xff, want) in cases {
            assert_eq!(
                client_address(ip("10.0.0.1"), xff.iter().copied(), &trusted),
                ip(want),
                "{xff:?}"
            );
        }
        assert_eq!(
            client_address(
                ip("::ffff:10.0.0.1"),
                ["198.51.100.1"].into_iter(),
                &trusted
            ),
            ip("198.51.100.1"),
            "a v4-mapped peer is its v4 address"
        );
    }

    #[test]
    fn networks_parse_as_cidr_or_address() {
        assert!(parse_network("10.0.0.0/8").is_ok());
        assert!(parse_network("::1").is_ok());
        assert!(parse_network("10.0.0.0/33").is_err());
        assert!(parse_network("localhost").is_err());
    }
}
