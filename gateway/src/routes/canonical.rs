//! One canonical form of a request's path, matched and sent on alike: percent-encoded
//! unreserved characters decoded (`%6f` is `o`), hex digits of what stays encoded upper-cased,
//! and anything a target could read differently from the gateway refused — `.` and `..`
//! segments (also encoded), encoded `/` and `\`, backslashes, NUL. Without this, `/public/%2e%2e/admin`
//! would take the public route and reach the admin path behind it.

use std::borrow::Cow;

/// Why a path was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum PathError {
    /// A `.` or `..` segment.
    #[error("the path has a '.' or '..' segment")]
    DotSegment,
    /// An encoded `/` or `\`, a backslash, a NUL, or a broken escape.
    #[error("the path has an encoded separator, a backslash, a NUL or a broken escape")]
    Ambiguous,
}

/// The canonical form of `path` (no query).
pub(crate) fn canonical_path(path: &str) -> Result<Cow<'_, str>, PathError> {
    let bytes = path.as_bytes();
    let simple = !bytes.iter().any(|&b| b == b'%' || b == b'\\' || b == 0);
    let result: Cow<'_, str> = if simple {
        Cow::Borrowed(path)
    } else {
        let mut out = String::with_capacity(path.len());
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'%' => {
                    let hex = bytes.get(i + 1..i + 3).ok_or(PathError::Ambiguous)?;
                    let value = std::str::from_utf8(hex)
                        .ok()
                        .and_then(|h| u8::from_str_radix(h, 16).ok())
                        .ok_or(PathError::Ambiguous)?;
                    match value {
                        b'/' | b'\\' | 0 => return Err(PathError::Ambiguous),
                        v if v.is_ascii_alphanumeric() || b"-._~".contains(&v) => {
                            out.push(char::from(v));
                        }
                        v => {
                            out.push('%');
                            out.push_str(&format!("{v:02X}"));
                        }
                    }
                    i += 3;
                }
                b'\\' | 0 => return Err(PathError::Ambiguous),
                _ => {
                    // Copy the run up to the next escape (UTF-8 kept whole).
                    let end = bytes[i..]
                        .iter()
                        .position(|&b| b == b'%' || b == b'\\' || b == 0)
                        .map_or(bytes.len(), |n| i + n);
                    out.push_str(&path[i..end]);
                    i = end;
                }
            }
        }
        Cow::Owned(out)
    };
    if result
        .split('/')
        .any(|segment| segment == "." || segment == "..")
    {
        return Err(PathError::DotSegment);
    }
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unreserved_escapes_are_decoded_and_tricks_refused() {
        assert_eq!(canonical_path("/api/orders/1").unwrap(), "/api/orders/1");
        assert!(matches!(
            canonical_path("/api/orders/1").unwrap(),
            Cow::Borrowed(_)
        ));
        assert_eq!(canonical_path("/api/%6frders").unwrap(), "/api/orders");
        assert_eq!(canonical_path("/a%20b/%c3%a9").unwrap(), "/a%20b/%C3%A9");
        assert_eq!(canonical_path("/é/x").unwrap(), "/é/x");
        for bad in [
            "/public/../admin",
            "/public/%2e%2e/admin",
            "/public/%2E./admin",
            "/public/./x",
            "/..",
            "/a%2fb",
            "/a%5Cb",
            "/a\\b",
            "/a%00",
            "/a%",
            "/a%zz",
        ] {
            assert!(canonical_path(bad).is_err(), "{bad}");
        }
        assert_eq!(canonical_path("/a/..b/c.").unwrap(), "/a/..b/c.");
    }
}
