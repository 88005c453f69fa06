//! Address sets: `trusted_proxies` and `allow_ips` are parsed once into CIDR lists, and
//! IPv4-mapped IPv6 peers (`::ffff:10.0.0.1`, what a dual-stack socket reports) are
//! matched as the IPv4 address they carry.

use ipnet::IpNet;
use std::net::IpAddr;

/// A set of networks, matched by linear scan (lists are short; a few dozen at most).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IpSet(Vec<IpNet>);

impl IpSet {
    pub fn new(nets: Vec<IpNet>) -> Self {
        IpSet(nets)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.0.iter().any(|net| net.contains(&ip))
    }

    pub fn nets(&self) -> &[IpNet] {
        &self.0
    }
}

/// An IPv4-mapped IPv6 address as IPv4; anything else unchanged.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

/// Parses `10.0.0.0/8`, `2001:db8::/32`, or a bare address (a /32 or /128).
pub fn parse_net(s: &str) -> Result<IpNet, String> {
    let s = s.trim();
    if let Ok(net) = s.parse::<IpNet>() {
        if net.addr() != net.network() {
            return Err(format!(
                "{s:?} has host bits set; did you mean {}/{}?",
                net.network(),
                net.prefix_len()
            ));
        }
        return Ok(net);
    }
    s.parse::<IpAddr>()
        .map(|ip| IpNet::from(canonical(ip)))
        .map_err(|_| format!("{s:?} is not an IP address or CIDR network"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_networks_and_mapped_addresses() {
        let set = IpSet::new(vec![
            parse_net("10.0.0.0/8").unwrap(),
            parse_net("2001:db8::1").unwrap(),
        ]);
        assert!(set.contains("10.1.2.3".parse().unwrap()));
        assert!(set.contains("::ffff:10.1.2.3".parse().unwrap()));
        assert!(!set.contains("11.0.0.1".parse().unwrap()));
        assert!(set.contains("2001:db8::1".parse().unwrap()));
        assert!(!set.contains("2001:db8::2".parse().unwrap()));
    }

    #[test]
    fn parse_errors_are_specific() {
        assert!(parse_net("10.0.0.1/8")
            .unwrap_err()
            .contains("did you mean 10.0.0.0/8"));
        assert!(parse_net("nope").unwrap_err().contains("not an IP address"));
        assert!(parse_net("10.0.0.0/33").is_err());
        assert_eq!(
            parse_net("::ffff:1.2.3.4").unwrap(),
            parse_net("1.2.3.4/32").unwrap()
        );
    }
}
