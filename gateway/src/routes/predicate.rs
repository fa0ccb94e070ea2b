//! A route's compiled predicates: path patterns, hosts, methods, header expressions.

use axum::http::{HeaderMap, Method, header};
use regex::Regex;

use super::RouteError;
use super::pattern::PathPattern;
use super::spec::PredicatesSpec;

/// What a request must look like to take a route.
#[derive(Debug, Clone)]
pub(crate) struct Predicates {
    paths: Vec<PathPattern>,
    hosts: Vec<HostPattern>,
    methods: Vec<Method>,
    headers: Vec<(header::HeaderName, Regex)>,
}

/// `api.example.com`, or `*.example.com` (one or more labels in front).
#[derive(Debug, Clone)]
enum HostPattern {
    Exact(String),
    Suffix(String),
}

impl Predicates {
    pub(crate) fn compile(route: &str, spec: &PredicatesSpec) -> Result<Self, RouteError> {
        let paths = spec
            .path
            .iter()
            .map(|p| PathPattern::parse(p))
            .collect::<Result<_, _>>()
            .map_err(|e| RouteError::invalid(route, e))?;
        let hosts = spec
            .host
            .iter()
            .map(|h| {
                let h = h.to_ascii_lowercase();
                match h.strip_prefix("*.") {
                    Some(suffix) if !suffix.is_empty() => {
                        Ok(HostPattern::Suffix(format!(".{suffix}")))
                    }
                    _ if h.is_empty() || h.contains('*') => Err(RouteError::invalid(
                        route,
                        format!("bad host pattern {h:?}"),
                    )),
                    _ => Ok(HostPattern::Exact(h)),
                }
            })
            .collect::<Result<_, _>>()?;
        let methods = spec
            .methods
            .iter()
            .map(|m| {
                Method::from_bytes(m.to_ascii_uppercase().as_bytes())
                    .map_err(|_| RouteError::invalid(route, format!("bad method {m:?}")))
            })
            .collect::<Result<_, _>>()?;
        let headers = spec
            .headers
            .iter()
            .map(|(name, expression)| {
                let name = header::HeaderName::from_bytes(name.as_bytes())
                    .map_err(|_| RouteError::invalid(route, format!("bad header name {name:?}")))?;
                let regex = Regex::new(&format!("^(?:{expression})$"))
                    .map_err(|e| RouteError::invalid(route, e))?;
                Ok((name, regex))
            })
            .collect::<Result<_, RouteError>>()?;
        Ok(Self {
            paths,
            hosts,
            methods,
            headers,
        })
    }

    /// The methods named, for CORS's default.
    pub(crate) fn methods(&self) -> &[Method] {
        &self.methods
    }

    /// Whether a request with this method, path, and headers matches.
    pub(crate) fn matches(
        &self,
        method: &Method,
        path: &str,
        headers: &HeaderMap,
        host: Option<&str>,
    ) -> bool {
        (self.methods.is_empty() || self.methods.contains(method))
            && (self.paths.is_empty() || self.paths.iter().any(|p| p.matches(path)))
            && (self.hosts.is_empty() || host.is_some_and(|host| self.host_matches(host)))
            && self.headers.iter().all(|(name, regex)| {
                headers
                    .get_all(name)
                    .iter()
                    .any(|v| v.to_str().is_ok_and(|v| regex.is_match(v)))
            })
    }

    fn host_matches(&self, host: &str) -> bool {
        // The port is not part of the name; IPv6 literals keep their brackets.
        let name = match host.rsplit_once(':') {
            Some((name, port))
                if port.bytes().all(|b| b.is_ascii_digit()) && !name.ends_with(':') =>
            {
                name
            }
            _ => host,
        }
        .to_ascii_lowercase();
        self.hosts.iter().any(|pattern| match pattern {
            HostPattern::Exact(exact) => *exact == name,
            HostPattern::Suffix(suffix) => {
                name.len() > suffix.len() && name.ends_with(suffix.as_str())
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn predicates(spec: PredicatesSpec) -> Predicates {
        Predicates::compile("r", &spec).unwrap()
    }

    #[test]
    fn every_predicate_given_must_match() {
        let p = predicates(PredicatesSpec {
            path: vec!["/a/**".into()],
            host: vec!["api.example.com".into(), "*.example.org".into()],
            methods: vec!["get".into()],
            headers: BTreeMap::from([("x-tenant".into(), "acme|globex".into())]),
        });
        let mut headers = HeaderMap::new();
        headers.insert("x-tenant", "acme".parse().unwrap());
        let ok = |m: &Method, path, headers: &HeaderMap, host| p.matches(m, path, headers, host);
        assert!(ok(
            &Method::GET,
            "/a/1",
            &headers,
            Some("api.example.com:8080")
        ));
        assert!(ok(&Method::GET, "/a/1", &headers, Some("x.y.EXAMPLE.org")));
        assert!(!ok(&Method::GET, "/a/1", &headers, Some("example.org")));
        assert!(!ok(&Method::GET, "/a/1", &headers, None));
        assert!(!ok(
            &Method::POST,
            "/a/1",
            &headers,
            Some("api.example.com")
        ));
        assert!(!ok(&Method::GET, "/b", &headers, Some("api.example.com")));
        headers.insert("x-tenant", "acmex".parse().unwrap());
        assert!(!ok(&Method::GET, "/a/1", &headers, Some("api.example.com")));
        assert!(!ok(
            &Method::GET,
            "/a/1",
            &HeaderMap::new(),
            Some("api.example.com")
        ));
    }

    #[test]
    fn no_predicates_match_everything_and_bad_ones_are_refused() {
        let p = predicates(PredicatesSpec::default());
        assert!(p.matches(&Method::DELETE, "/x", &HeaderMap::new(), None));
        for spec in [
            PredicatesSpec {
                path: vec!["x".into()],
                ..Default::default()
            },
            PredicatesSpec {
                host: vec!["a.*.com".into()],
                ..Default::default()
            },
            PredicatesSpec {
                methods: vec!["GE T".into()],
                ..Default::default()
            },
            PredicatesSpec {
                headers: BTreeMap::from([("x".into(), "(".into())]),
                ..Default::default()
            },
            PredicatesSpec {
                headers: BTreeMap::from([("bad name".into(), "x".into())]),
                ..Default::default()
            },
        ] {
            assert!(Predicates::compile("r", &spec).is_err(), "{spec:?}");
        }
    }
}
