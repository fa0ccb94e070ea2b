//! The headers a call carries: its deadline, and its W3C trace context.

use std::time::Duration;

use reqwest::header::{HeaderName, HeaderValue};

/// The request header carrying how many milliseconds the caller still waits, so the callee can
/// give up when the caller already has.
pub const DEADLINE_HEADER: &str = "x-msakit-deadline-ms";

/// [`DEADLINE_HEADER`] as a header name, built at compile time rather than parsed per call.
pub(super) const DEADLINE: HeaderName = HeaderName::from_static(DEADLINE_HEADER);

/// The W3C trace context header.
pub(super) const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");

/// The deadline header's value: the milliseconds left.
pub(super) fn deadline_value(remaining: Duration) -> HeaderValue {
    HeaderValue::from(u64::try_from(remaining.as_millis()).unwrap_or(u64::MAX))
}

/// A W3C `traceparent` value: version 00, the trace, this attempt's span, and whether the
/// trace is sampled (the caller's decision, kept).
pub(super) fn traceparent(
    trace_id: u128,
    span_id: u64,
    flags: opentelemetry::trace::TraceFlags,
) -> HeaderValue {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut value = *b"00-00000000000000000000000000000000-0000000000000000-01";
    // Two digits per byte, most significant first.
    let digits = |slots: &mut [u8], bytes: &[u8]| {
        for (pair, byte) in slots.chunks_exact_mut(2).zip(bytes) {
            pair[0] = HEX[usize::from(byte >> 4)];
            pair[1] = HEX[usize::from(byte & 0xf)];
        }
    };
    digits(&mut value[3..35], &trace_id.to_be_bytes());
    digits(&mut value[36..52], &span_id.to_be_bytes());
    digits(&mut value[53..55], &[flags.to_u8()]);
    HeaderValue::from_bytes(&value).expect("hex digits and dashes are a valid header value")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_is_w3c_shaped() {
        let sampled = opentelemetry::trace::TraceFlags::SAMPLED;
        let value = traceparent(
            0x0af7651916cd43dd8448eb211c80319c,
            0xb7ad6b7169203331,
            sampled,
        );
        assert_eq!(
            value.to_str().unwrap(),
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
        );
        let unsampled = traceparent(1, 2, opentelemetry::trace::TraceFlags::default());
        assert!(unsampled.to_str().unwrap().ends_with("-00"));
    }
}
