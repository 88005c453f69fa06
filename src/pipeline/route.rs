//! Stage: route match. Routes are indexed by exact path at load time; a route with a
//! `host` wins over one without for the same path.

use super::Reject;
use std::collections::HashMap;

/// Path → indexes of the routes serving it, host-specific routes first.
#[derive(Debug, Default)]
pub struct RouteTable {
    by_path: HashMap<String, Vec<(Option<String>, usize)>>,
}

impl RouteTable {
    /// Builds the table from `(path, host)` pairs in route order.
    pub fn new<'a>(routes: impl IntoIterator<Item = (&'a str, Option<&'a str>)>) -> Self {
        let mut by_path: HashMap<String, Vec<(Option<String>, usize)>> = HashMap::new();
        for (i, (path, host)) in routes.into_iter().enumerate() {
            by_path
                .entry(path.to_string())
                .or_default()
                .push((host.map(str::to_string), i));
        }
        for entries in by_path.values_mut() {
            entries.sort_by_key(|(host, i)| (host.is_none(), *i));
        }
        RouteTable { by_path }
    }

    /// The index of the route for `path`, given the request's host (with or without port).
    pub fn select(&self, path: &str, host: Option<&str>) -> Result<usize, Reject> {
        let entries = self.by_path.get(path).ok_or(Reject::UnknownRoute)?;
        let host = host.map(strip_port);
        entries
            .iter()
            .find(|(want, _)| match (want, host) {
                (None, _) => true,
                (Some(w), Some(h)) => w.eq_ignore_ascii_case(h),
                (Some(_), None) => false,
            })
            .map(|(_, i)| *i)
            .ok_or(Reject::UnknownRoute)
    }
}

fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        // [v6]:port
        return host.split_once(']').map(|(h, _)| &h[1..]).unwrap_or(host);
    }
    match host.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_paths_and_hosts() {
        let t = RouteTable::new([
            ("/hooks/expel", None),
            ("/hooks/gh", Some("a.example.com")),
            ("/hooks/gh", None),
        ]);
        assert_eq!(t.select("/hooks/expel", None), Ok(0));
        assert_eq!(t.select("/hooks/expel", Some("x:8080")), Ok(0));
        assert_eq!(t.select("/hooks/expel/", None), Err(Reject::UnknownRoute));
        assert_eq!(t.select("/hooks", None), Err(Reject::UnknownRoute));
        assert_eq!(t.select("/hooks/gh", Some("A.example.com:443")), Ok(1));
        assert_eq!(t.select("/hooks/gh", Some("b.example.com")), Ok(2));
        assert_eq!(t.select("/hooks/gh", None), Ok(2));
    }

    #[test]
    fn host_only_route_needs_its_host() {
        let t = RouteTable::new([("/h", Some("a.example.com"))]);
        assert_eq!(
            t.select("/h", Some("b.example.com")),
            Err(Reject::UnknownRoute)
        );
        assert_eq!(t.select("/h", None), Err(Reject::UnknownRoute));
    }

    #[test]
    fn ports_are_stripped() {
        assert_eq!(strip_port("a.example.com:8443"), "a.example.com");
        assert_eq!(strip_port("[::1]:8443"), "::1");
        assert_eq!(strip_port("a.example.com"), "a.example.com");
    }
}
