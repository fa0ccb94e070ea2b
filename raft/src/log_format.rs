//! Which log format each node reads, as the nodes tell each other, so a leader writes a newer
//! kind of entry only once every member can read it — a rolling upgrade never hands a node of
//! the previous build an entry it would refuse.
//!
//! Every answer to a Raft message carries [`LOG_FORMAT`], the newest format its node reads; the
//! leader's transport notes it per peer ([`PeerFormats`]). A peer that never said (a build from
//! before this header, or one not heard from yet) reads [`LogFormat::FIRST`] only.

use std::collections::BTreeMap;
use std::sync::Mutex;

use axum::http::{HeaderMap, HeaderValue};

use crate::NodeId;

/// The header naming the newest log format a node reads.
pub const LOG_FORMAT: &str = "x-msakit-log-format";

/// A log format: what kinds of entries a build writes and reads. Each server numbers its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct LogFormat(pub u16);

impl LogFormat {
    /// What every build reads: a node that never said reads this.
    pub const FIRST: LogFormat = LogFormat(1);

    /// The header value saying so.
    pub(crate) fn header_value(self) -> HeaderValue {
        HeaderValue::from(self.0)
    }

    /// What an answer's headers say (the first format when they say nothing readable).
    pub(crate) fn from_headers(headers: &HeaderMap) -> LogFormat {
        headers
            .get(LOG_FORMAT)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .map_or(LogFormat::FIRST, LogFormat)
    }
}

/// The newest format each peer last said it reads.
#[derive(Debug, Default)]
pub(crate) struct PeerFormats(Mutex<BTreeMap<NodeId, LogFormat>>);

impl PeerFormats {
    fn peers(&self) -> std::sync::MutexGuard<'_, BTreeMap<NodeId, LogFormat>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `peer` said it reads `format` (a peer may say less than before: it was downgraded).
    pub(crate) fn heard(&self, peer: NodeId, format: LogFormat) {
        self.peers().insert(peer, format);
    }

    /// Whether every one of `peers` said it reads `format` or newer.
    pub(crate) fn all_read(
        &self,
        peers: impl IntoIterator<Item = NodeId>,
        format: LogFormat,
    ) -> bool {
        let heard = self.peers();
        peers
            .into_iter()
            .all(|peer| heard.get(&peer).copied().unwrap_or(LogFormat::FIRST) >= format)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_reads_what_it_said_last_and_silence_means_the_first_format() {
        let formats = PeerFormats::default();
        let newer = LogFormat(2);
        assert!(formats.all_read([], newer));
        assert!(formats.all_read([2, 3], LogFormat::FIRST));
        assert!(!formats.all_read([2, 3], newer), "never heard from");
        formats.heard(2, newer);
        assert!(!formats.all_read([2, 3], newer), "3 never said");
        formats.heard(3, newer);
        assert!(formats.all_read([2, 3], newer));
        formats.heard(3, LogFormat::FIRST);
        assert!(!formats.all_read([2, 3], newer), "3 was downgraded");
    }

    #[test]
    fn headers_say_a_format_or_nothing() {
        let mut headers = HeaderMap::new();
        assert_eq!(LogFormat::from_headers(&headers), LogFormat::FIRST);
        headers.insert(LOG_FORMAT, LogFormat(7).header_value());
        assert_eq!(LogFormat::from_headers(&headers), LogFormat(7));
        headers.insert(LOG_FORMAT, HeaderValue::from_static("seven"));
        assert_eq!(LogFormat::from_headers(&headers), LogFormat::FIRST);
    }
}
