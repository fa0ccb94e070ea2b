//! Read answers kept rendered until the store changes: a read whose answer was rendered at the
//! store's current index sends those bytes again instead of building the same JSON anew. Any
//! change anywhere moves the index, so an answer is never older than the last change; a kept
//! answer is keyed by everything its bytes depend on (which document set, which form).

use std::collections::HashMap;
use std::sync::RwLock;

use axum::body::Bytes;

/// How many answers are kept at most, and how many bytes of them; past either, all are dropped
/// and kept again as asked (so a reader asking for ever new profile names cannot pin memory).
const MOST_KEPT: usize = 4096;
const MOST_BYTES: usize = 64 * 1024 * 1024;

/// An answer as rendered.
#[derive(Debug, Clone)]
pub(crate) struct Rendered {
    /// Its content type.
    pub(crate) content_type: &'static str,
    /// The index it names in its `x-msakit-index` header, for answers that carry one.
    pub(crate) index_header: Option<u64>,
    /// Its body.
    pub(crate) body: Bytes,
}

/// The answers kept, each with the store index it was rendered at.
#[derive(Debug, Default)]
pub(crate) struct RenderedAnswers {
    kept: RwLock<Kept>,
}

/// The answers, and the bytes of their bodies.
#[derive(Debug, Default)]
struct Kept {
    answers: HashMap<String, (u64, Rendered)>,
    bytes: usize,
}

impl RenderedAnswers {
    /// The answer kept for `key` if it was rendered at `index` (the store's index now).
    pub(crate) fn get(&self, key: &str, index: u64) -> Option<Rendered> {
        let kept = self.kept.read().unwrap_or_else(|e| e.into_inner());
        match kept.answers.get(key) {
            Some((at, rendered)) if *at == index => Some(rendered.clone()),
            _ => None,
        }
    }

    /// Keeps `rendered` for `key`, rendered from the store as it was at `index` or later (read
    /// `index` before rendering: a change in between only makes the answer be rendered again).
    pub(crate) fn keep(&self, key: String, index: u64, rendered: Rendered) {
        let mut kept = self.kept.write().unwrap_or_else(|e| e.into_inner());
        let full = kept.answers.len() >= MOST_KEPT && !kept.answers.contains_key(&key);
        if full || kept.bytes + rendered.body.len() > MOST_BYTES {
            kept.answers.clear();
            kept.bytes = 0;
        }
        kept.bytes += rendered.body.len();
        if let Some((_, replaced)) = kept.answers.insert(key, (index, rendered)) {
            kept.bytes -= replaced.body.len();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(body: &'static str) -> Rendered {
        Rendered {
            content_type: "application/json",
            index_header: None,
            body: Bytes::from_static(body.as_bytes()),
        }
    }

    #[test]
    fn an_answer_is_sent_again_only_at_the_index_it_was_rendered_at() {
        let answers = RenderedAnswers::default();
        assert!(answers.get("a", 1).is_none());
        answers.keep("a".into(), 1, answer("one"));
        assert_eq!(answers.get("a", 1).unwrap().body, "one");
        assert!(answers.get("a", 2).is_none(), "the store moved on");
        assert!(answers.get("b", 1).is_none());
        answers.keep("a".into(), 2, answer("two"));
        assert_eq!(answers.get("a", 2).unwrap().body, "two");
    }

    #[test]
    fn past_the_most_kept_all_are_dropped() {
        let answers = RenderedAnswers::default();
        for i in 0..MOST_KEPT {
            answers.keep(i.to_string(), 1, answer("x"));
        }
        answers.keep("0".into(), 1, answer("again"));
        assert!(
            answers.get("1", 1).is_some(),
            "replacing one keeps the rest"
        );
        answers.keep("new".into(), 1, answer("new"));
        assert!(answers.get("1", 1).is_none());
        assert_eq!(answers.get("new", 1).unwrap().body, "new");
    }

    #[test]
    fn past_the_most_bytes_all_are_dropped() {
        let answers = RenderedAnswers::default();
        let big = |byte: u8| Rendered {
            content_type: "application/json",
            index_header: None,
            body: Bytes::from(vec![byte; MOST_BYTES / 2]),
        };
        answers.keep("a".into(), 1, big(b'a'));
        answers.keep("a".into(), 1, big(b'a'));
        answers.keep("b".into(), 1, big(b'b'));
        assert!(
            answers.get("a", 1).is_some(),
            "a replaced answer counts once"
        );
        answers.keep("c".into(), 1, big(b'c'));
        assert!(answers.get("a", 1).is_none());
        assert!(answers.get("c", 1).is_some());
    }
}
