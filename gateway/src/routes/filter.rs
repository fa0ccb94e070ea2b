//! A route's compiled filters: the path the target sees, headers added and removed both ways,
//! and the body limit.

use std::borrow::Cow;

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use regex::Regex;

use super::RouteError;
use super::spec::FiltersSpec;

/// What changes on the way through a route.
#[derive(Debug, Clone)]
pub(crate) struct Filters {
    strip_prefix: usize,
    rewrite: Option<(Regex, String)>,
    pub(crate) request_headers: HeaderEdits,
    pub(crate) response_headers: HeaderEdits,
    /// Largest request body.
    pub(crate) max_body_bytes: u64,
}

/// Headers removed, then set.
#[derive(Debug, Clone, Default)]
pub(crate) struct HeaderEdits {
    remove: Vec<HeaderName>,
    set: Vec<(HeaderName, HeaderValue)>,
}

impl HeaderEdits {
    fn compile(
        route: &str,
        set: &std::collections::BTreeMap<String, String>,
        remove: &[String],
    ) -> Result<Self, RouteError> {
        let name = |n: &str| {
            HeaderName::from_bytes(n.as_bytes())
                .map_err(|_| RouteError::invalid(route, format!("bad header name {n:?}")))
        };
        Ok(Self {
            remove: remove.iter().map(|n| name(n)).collect::<Result<_, _>>()?,
            set: set
                .iter()
                .map(|(n, v)| {
                    let value = HeaderValue::from_str(v).map_err(|_| {
                        RouteError::invalid(route, format!("bad value of header {n:?}"))
                    })?;
                    Ok((name(n)?, value))
                })
                .collect::<Result<_, RouteError>>()?,
        })
    }

    /// Applies the edits to `headers`.
    pub(crate) fn apply(&self, headers: &mut HeaderMap) {
        for name in &self.remove {
            headers.remove(name);
        }
        for (name, value) in &self.set {
            headers.insert(name.clone(), value.clone());
        }
    }
}

impl Filters {
    pub(crate) fn compile(
        route: &str,
        spec: &FiltersSpec,
        default_max_body: u64,
    ) -> Result<Self, RouteError> {
        let rewrite = spec
            .rewrite_path
            .as_ref()
            .map(|r| {
                let regex = Regex::new(&r.pattern).map_err(|e| RouteError::invalid(route, e))?;
                Ok::<_, RouteError>((regex, r.replacement.clone()))
            })
            .transpose()?;
        Ok(Self {
            strip_prefix: spec.strip_prefix,
            rewrite,
            request_headers: HeaderEdits::compile(
                route,
                &spec.add_request_headers,
                &spec.remove_request_headers,
            )?,
            response_headers: HeaderEdits::compile(
                route,
                &spec.add_response_headers,
                &spec.remove_response_headers,
            )?,
            max_body_bytes: spec.max_body_bytes.unwrap_or(default_max_body),
        })
    }

    /// The leading segments `strip_prefix` drops from `path` (for `X-Forwarded-Prefix`).
    pub(crate) fn stripped_prefix<'p>(&self, path: &'p str) -> Option<&'p str> {
        if self.strip_prefix == 0 {
            return None;
        }
        let mut end = 0;
        for _ in 0..self.strip_prefix {
            let rest = &path[end..];
            let next = rest.strip_prefix('/')?;
            end += 1 + next.find('/').unwrap_or(next.len());
        }
        Some(&path[..end])
    }

    /// The path the target sees: `strip_prefix` segments dropped, then rewritten. Always starts
    /// with `/`.
    pub(crate) fn path<'p>(&self, path: &'p str) -> Cow<'p, str> {
        let mut path: Cow<'p, str> = Cow::Borrowed(path);
        if self.strip_prefix > 0 {
            let rest = path
                .trim_start_matches('/')
                .splitn(self.strip_prefix + 1, '/')
                .nth(self.strip_prefix)
                .unwrap_or("");
            path = Cow::Owned(format!("/{rest}"));
        }
        if let Some((regex, replacement)) = &self.rewrite {
            let rewritten = regex.replace(&path, replacement.as_str()).into_owned();
            path = Cow::Owned(if rewritten.starts_with('/') {
                rewritten
            } else {
                format!("/{rewritten}")
            });
        }
        path
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::super::spec::RewriteSpec;
    use super::*;

    fn filters(spec: FiltersSpec) -> Filters {
        Filters::compile("r", &spec, 1024).unwrap()
    }

    #[test]
    fn strip_then_rewrite() {
        let f = filters(FiltersSpec {
            strip_prefix: 1,
            ..Default::default()
        });
        assert_eq!(f.path("/api/orders/1"), "/orders/1");
        assert_eq!(f.path("/api"), "/");
        assert_eq!(f.path("/"), "/");
        let f = filters(FiltersSpec {
            strip_prefix: 2,
            ..Default::default()
        });
        assert_eq!(f.path("/a/b/c/d"), "/c/d");
        assert_eq!(f.stripped_prefix("/a/b/c/d"), Some("/a/b"));
        assert_eq!(f.stripped_prefix("/a"), None);
        let f = filters(FiltersSpec {
            strip_prefix: 1,
            rewrite_path: Some(RewriteSpec {
                pattern: "^/v1/(?<rest>.*)$".into(),
                replacement: "/internal/${rest}".into(),
            }),
            ..Default::default()
        });
        assert_eq!(f.path("/api/v1/x/y"), "/internal/x/y");
        assert_eq!(f.path("/api/v2/x"), "/v2/x");
        assert_eq!(filters(FiltersSpec::default()).path("/same"), "/same");
    }

    #[test]
    fn header_edits_remove_then_set() {
        let f = filters(FiltersSpec {
            add_request_headers: BTreeMap::from([("x-from".into(), "gateway".into())]),
            remove_request_headers: vec!["cookie".into(), "x-from".into()],
            ..Default::default()
        });
        let mut headers = HeaderMap::new();
        headers.insert("cookie", "a=b".parse().unwrap());
        headers.insert("x-from", "client".parse().unwrap());
        f.request_headers.apply(&mut headers);
        assert_eq!(headers.len(), 1);
        assert_eq!(headers["x-from"], "gateway");
        assert!(
            Filters::compile(
                "r",
                &FiltersSpec {
                    add_request_headers: BTreeMap::from([("x".into(), "a\nb".into())]),
                    ..Default::default()
                },
                1
            )
            .is_err()
        );
        assert_eq!(filters(FiltersSpec::default()).max_body_bytes, 1024);
    }
}
