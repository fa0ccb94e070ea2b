//! W3C trace context carried in every envelope, so that a trace spans the hop from the
//! publisher's transaction to each consumer's handler.

use std::fmt;

/// A trace and the span within it: what a W3C `traceparent` header says.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct TraceContext {
    trace_id: u128,
    span_id: u64,
}

impl TraceContext {
    /// A new trace, with its first span.
    pub fn new_root() -> Self {
        Self {
            trace_id: fastrand::u128(1..),
            span_id: fastrand::u64(1..),
        }
    }

    /// A `traceparent` value (`00-<trace>-<span>-<flags>`), if well formed.
    pub fn parse(traceparent: &str) -> Option<Self> {
        let mut parts = traceparent.trim().split('-');
        let (version, trace, span, flags) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        if version.len() != 2 || trace.len() != 32 || span.len() != 16 || flags.len() != 2 {
            return None;
        }
        let trace_id = u128::from_str_radix(trace, 16).ok()?;
        let span_id = u64::from_str_radix(span, 16).ok()?;
        (trace_id != 0 && span_id != 0).then_some(Self { trace_id, span_id })
    }

    /// The same trace, a new span under this one.
    pub fn child(self) -> Self {
        Self {
            trace_id: self.trace_id,
            span_id: fastrand::u64(1..),
        }
    }

    /// The trace's id.
    pub fn trace_id(self) -> u128 {
        self.trace_id
    }

    /// The `traceparent` header value (sampled).
    pub fn to_traceparent(self) -> String {
        format!("00-{:032x}-{:016x}-01", self.trace_id, self.span_id)
    }
}

impl fmt::Debug for TraceContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_traceparent())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_round_trips_and_children_keep_the_trace() {
        let root =
            TraceContext::parse("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01").unwrap();
        assert_eq!(
            root.to_traceparent(),
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
        );
        let child = root.child();
        assert_eq!(child.trace_id(), root.trace_id());
        assert_ne!(child, root);
    }

    #[test]
    fn malformed_traceparents_are_refused() {
        for bad in [
            "",
            "00-abc-def-01",
            "00-00000000000000000000000000000000-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-zzzzzzzzzzzzzzzz-01",
        ] {
            assert!(TraceContext::parse(bad).is_none(), "{bad}");
        }
    }
}
