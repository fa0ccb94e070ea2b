//! Path patterns, as Spring Cloud Gateway writes them: literal segments, `*` for one segment,
//! `{name}` for one named segment, `**` for whatever follows (zero or more segments, last only).

/// One segment of a pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    /// `*` or `{name}`: exactly one non-empty segment.
    One,
    /// `**`: the rest, possibly nothing.
    Rest,
}

/// A compiled path pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PathPattern {
    segments: Vec<Segment>,
    /// Ends with `/` (so `/a/` is not `/a`).
    trailing_slash: bool,
}

/// Why a pattern was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum PatternError {
    /// It does not start with `/`.
    #[error("path pattern {0:?} must start with '/'")]
    NotAbsolute(String),
    /// `**` somewhere but last.
    #[error("path pattern {0:?}: '**' may only be the last segment")]
    RestNotLast(String),
    /// A segment mixes a wildcard with text, or a `{` without `}`.
    #[error("path pattern {0:?}: a segment is either text, '*', '**' or '{{name}}'")]
    BadSegment(String),
}

impl PathPattern {
    /// Compiles `pattern`.
    pub(crate) fn parse(pattern: &str) -> Result<Self, PatternError> {
        let Some(rest) = pattern.strip_prefix('/') else {
            return Err(PatternError::NotAbsolute(pattern.to_owned()));
        };
        let mut segments = Vec::new();
        let parts: Vec<&str> = if rest.is_empty() {
            Vec::new()
        } else {
            rest.trim_end_matches('/').split('/').collect()
        };
        for (i, part) in parts.iter().enumerate() {
            let segment = match *part {
                "**" if i + 1 == parts.len() => Segment::Rest,
                "**" => return Err(PatternError::RestNotLast(pattern.to_owned())),
                "*" => Segment::One,
                named if named.starts_with('{') && named.ends_with('}') && named.len() > 2 => {
                    Segment::One
                }
                text if text.contains(['*', '{', '}']) || text.is_empty() => {
                    return Err(PatternError::BadSegment(pattern.to_owned()));
                }
                text => Segment::Literal(text.to_owned()),
            };
            segments.push(segment);
        }
        let trailing_slash = rest.ends_with('/') && !matches!(segments.last(), Some(Segment::Rest));
        Ok(Self {
            segments,
            trailing_slash,
        })
    }

    /// Whether `path` (no query) matches.
    pub(crate) fn matches(&self, path: &str) -> bool {
        let Some(rest) = path.strip_prefix('/') else {
            return false;
        };
        let mut parts = if rest.is_empty() {
            None
        } else {
            Some(rest.split('/'))
        };
        for segment in &self.segments {
            match segment {
                Segment::Rest => return true,
                Segment::Literal(text) => match parts.as_mut().and_then(Iterator::next) {
                    Some(part) if part == text => {}
                    _ => return false,
                },
                Segment::One => match parts.as_mut().and_then(Iterator::next) {
                    Some(part) if !part.is_empty() => {}
                    // `/a/` against `/a/*` (an empty last segment) is no match.
                    _ => return false,
                },
            }
        }
        match parts.as_mut().map(|p| p.collect::<Vec<_>>()) {
            None => !self.trailing_slash,
            Some(left) if left.is_empty() => !self.trailing_slash,
            Some(left) => self.trailing_slash && left == [""],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matches(pattern: &str, path: &str) -> bool {
        PathPattern::parse(pattern).unwrap().matches(path)
    }

    #[test]
    fn literals_wildcards_and_the_rest() {
        assert!(matches("/api/orders", "/api/orders"));
        assert!(!matches("/api/orders", "/api/orders/1"));
        assert!(!matches("/api/orders", "/api/order"));
        assert!(!matches("/api/orders", "/api/orders/"));
        assert!(matches("/api/orders/", "/api/orders/"));
        assert!(matches("/api/orders/**", "/api/orders"));
        assert!(matches("/api/orders/**", "/api/orders/"));
        assert!(matches("/api/orders/**", "/api/orders/1/lines"));
        assert!(!matches("/api/orders/**", "/api/ordersx"));
        assert!(matches("/api/*/lines", "/api/7/lines"));
        assert!(!matches("/api/*/lines", "/api//lines"));
        assert!(!matches("/api/*", "/api/"));
        assert!(matches("/users/{id}", "/users/42"));
        assert!(!matches("/users/{id}", "/users/42/x"));
        assert!(matches("/**", "/"));
        assert!(matches("/**", "/anything/at/all"));
        assert!(matches("/", "/"));
        assert!(!matches("/", "/a"));
        assert!(!matches("/a", "a"));
    }

    #[test]
    fn bad_patterns_are_refused() {
        assert_eq!(
            PathPattern::parse("api"),
            Err(PatternError::NotAbsolute("api".into()))
        );
        assert!(matches!(
            PathPattern::parse("/a/**/b"),
            Err(PatternError::RestNotLast(_))
        ));
        assert!(matches!(
            PathPattern::parse("/a/x*"),
            Err(PatternError::BadSegment(_))
        ));
        assert!(matches!(
            PathPattern::parse("/a//b"),
            Err(PatternError::BadSegment(_))
        ));
        assert!(matches!(
            PathPattern::parse("/a/{"),
            Err(PatternError::BadSegment(_))
        ));
    }
}
