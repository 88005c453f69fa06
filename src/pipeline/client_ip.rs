//! Stage: the client's IP. It is the TCP peer, unless the peer is a trusted proxy: then
//! it is the right-most address in X-Forwarded-For that is not itself a trusted proxy
//! (everything to its left was written by parties we cannot vouch for).

use crate::net::{canonical, IpSet};
use std::net::{IpAddr, SocketAddr};

/// The client's address. `xff` are the request's X-Forwarded-For values in order.
pub fn client_ip<'a>(
    peer: IpAddr,
    xff: impl DoubleEndedIterator<Item = &'a [u8]>,
    trusted: &IpSet,
) -> IpAddr {
    let peer = canonical(peer);
    if trusted.is_empty() || !trusted.contains(peer) {
        return peer;
    }
    let mut nearest = peer;
    for value in xff.rev() {
        let Ok(text) = crate::fields::Value::from(value).to_str() else {
            return nearest;
        };
        for hop in text.rsplit(',') {
            let hop = hop.trim();
            if hop.is_empty() {
                continue;
            }
            match parse_hop(hop) {
                Some(ip) if trusted.contains(ip) => nearest = ip,
                Some(ip) => return ip,
                // Garbage left of a trusted hop: the last address we can vouch for is
                // the nearest trusted one.
                None => return nearest,
            }
        }
    }
    // Every hop was a trusted proxy: the left-most is as close to the client as we get.
    nearest
}

/// One X-Forwarded-For entry: `1.2.3.4`, `1.2.3.4:5678`, `2001:db8::1` or `[2001:db8::1]:443`.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    if let Ok(ip) = hop.parse::<IpAddr>() {
        return Some(canonical(ip));
    }
    hop.parse::<SocketAddr>().ok().map(|s| canonical(s.ip()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::parse_net;

    fn run(peer: &str, xff: &[&str], trusted: &[&str]) -> String {
        let trusted = IpSet::new(trusted.iter().map(|t| parse_net(t).unwrap()).collect());
        let values = xff.iter().map(|v| v.as_bytes());
        client_ip(peer.parse().unwrap(), values, &trusted).to_string()
    }

    #[test]
    fn untrusted_peer_is_the_client_whatever_it_claims() {
        assert_eq!(
            run("198.51.100.7", &["1.1.1.1"], &["10.0.0.0/8"]),
            "198.51.100.7"
        );
        assert_eq!(run("198.51.100.7", &["1.1.1.1"], &[]), "198.51.100.7");
    }

    #[test]
    fn trusted_peer_right_most_untrusted_hop() {
        let t = &["10.0.0.0/8"];
        assert_eq!(run("10.0.0.1", &["6.6.6.6, 203.0.113.5"], t), "203.0.113.5");
        assert_eq!(
            run("10.0.0.1", &["6.6.6.6, 203.0.113.5, 10.0.0.2"], t),
            "203.0.113.5"
        );
        // Several header lines are one list, in order.
        assert_eq!(
            run("10.0.0.1", &["6.6.6.6", "203.0.113.5"], t),
            "203.0.113.5"
        );
        assert_eq!(
            run("10.0.0.1", &["203.0.113.5", "10.9.9.9"], t),
            "203.0.113.5"
        );
    }

    #[test]
    fn trusted_peer_without_header_or_all_trusted() {
        let t = &["10.0.0.0/8"];
        assert_eq!(run("10.0.0.1", &[], t), "10.0.0.1");
        assert_eq!(run("10.0.0.1", &["10.0.0.3, 10.0.0.2"], t), "10.0.0.3");
    }

    #[test]
    fn ports_brackets_and_mapped_addresses() {
        let t = &["10.0.0.0/8"];
        assert_eq!(run("10.0.0.1", &["203.0.113.5:4711"], t), "203.0.113.5");
        assert_eq!(run("10.0.0.1", &["[2001:db8::5]:443"], t), "2001:db8::5");
        assert_eq!(run("::ffff:10.0.0.1", &["203.0.113.5"], t), "203.0.113.5");
        assert_eq!(run("::ffff:198.51.100.7", &[], t), "198.51.100.7");
    }

    #[test]
    fn garbage_stops_at_the_nearest_trusted_hop() {
        let t = &["10.0.0.0/8"];
        assert_eq!(run("10.0.0.1", &["unknown, 10.0.0.2"], t), "10.0.0.2");
        assert_eq!(run("10.0.0.1", &["nonsense"], t), "10.0.0.1");
        assert_eq!(run("10.0.0.1", &["1.2.3.4,,"], t), "1.2.3.4");
    }
}
