//! Read answers kept rendered: a read whose answer was rendered at the current index of what it
//! was read from sends those bytes again instead of building the same JSON anew. Every change
//! moves the index, so a kept answer is never older than the last change — and, for answers
//! holding a value that moves without an index (a lease's last renewal), never older than a
//! stated age either. A kept answer is keyed by everything its bytes depend on.

use std::collections::HashMap;
use std::sync::RwLock;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

/// How many answers are kept at most, and how many bytes of them (keys and bodies); past either, all are dropped
/// and kept again as asked (so a reader asking for ever new names cannot pin memory).
const MOST_KEPT: usize = 4096;
const MOST_BYTES: usize = 64 * 1024 * 1024;

/// The header naming the index an answer was read at.
const INDEX_HEADER: &str = "x-msakit-index";

/// An answer as rendered.
#[derive(Debug, Clone)]
pub struct Rendered {
    /// Its content type.
    pub content_type: &'static str,
    /// The index it names in its `x-msakit-index` header, for answers that carry one.
    pub index_header: Option<u64>,
    /// Its body.
    pub body: Bytes,
}

impl IntoResponse for Rendered {
    fn into_response(self) -> Response {
        let mut response = ([(header::CONTENT_TYPE, self.content_type)], self.body).into_response();
        if let Some(index) = self.index_header {
            response
                .headers_mut()
                .insert(INDEX_HEADER, HeaderValue::from(index));
        }
        response
    }
}

/// How long a kept answer may be sent again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeptFor {
    /// Until the index moves: the answer depends on nothing else.
    IndexUnmoved,
    /// Until the index moves or the duration has passed since it was rendered.
    IndexUnmovedAtMost(Duration),
}

/// The answers kept, each with the index it was rendered at.
#[derive(Debug)]
pub struct KeptAnswers {
    kept: RwLock<Kept>,
    kept_for: KeptFor,
}

/// The answers, and the bytes of their keys and bodies.
#[derive(Debug, Default)]
struct Kept {
    answers: HashMap<String, Answer>,
    bytes: usize,
}

#[derive(Debug)]
struct Answer {
    index: u64,
    /// When it was rendered (read only under [`KeptFor::IndexUnmovedAtMost`]).
    rendered_at: Option<Instant>,
    rendered: Rendered,
}

impl KeptAnswers {
    /// No answers yet; each to be kept for as long as `kept_for` says.
    pub fn new(kept_for: KeptFor) -> Self {
        Self {
            kept: RwLock::default(),
            kept_for,
        }
    }

    /// The answer kept for `key` if it was rendered at `index` (the index now) and, when
    /// answers have a most age, not longer ago than it.
    pub fn get(&self, key: &str, index: u64) -> Option<Rendered> {
        let kept = self.kept.read().unwrap_or_else(|e| e.into_inner());
        let answer = kept.answers.get(key).filter(|a| a.index == index)?;
        if let (KeptFor::IndexUnmovedAtMost(age), Some(at)) = (self.kept_for, answer.rendered_at)
            && at.elapsed() > age
        {
            return None;
        }
        Some(answer.rendered.clone())
    }

    /// Keeps `rendered` for `key`, rendered from the state as it was at `index` or later (read
    /// `index` before rendering: a change in between only makes the answer be rendered again).
    pub fn keep(&self, key: String, index: u64, rendered: Rendered) {
        let rendered_at = match self.kept_for {
            KeptFor::IndexUnmoved => None,
            KeptFor::IndexUnmovedAtMost(_) => Some(Instant::now()),
        };
        let mut kept = self.kept.write().unwrap_or_else(|e| e.into_inner());
        // Keys count too: a reader's filter values are in them.
        let size = key.len() + rendered.body.len();
        let full = kept.answers.len() >= MOST_KEPT && !kept.answers.contains_key(&key);
        if full || kept.bytes + size > MOST_BYTES {
            kept.answers.clear();
            kept.bytes = 0;
        }
        kept.bytes += size;
        let answer = Answer {
            index,
            rendered_at,
            rendered,
        };
        let key_len = key.len();
        if let Some(replaced) = kept.answers.insert(key, answer) {
            kept.bytes -= key_len + replaced.rendered.body.len();
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
        let answers = KeptAnswers::new(KeptFor::IndexUnmoved);
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
        let answers = KeptAnswers::new(KeptFor::IndexUnmoved);
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
        let answers = KeptAnswers::new(KeptFor::IndexUnmoved);
        let big = |byte: u8| Rendered {
            content_type: "application/json",
            index_header: None,
            body: Bytes::from(vec![byte; MOST_BYTES / 2 - 16]),
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

    #[test]
    fn an_answer_with_a_most_age_is_not_sent_again_after_it() {
        let hour = KeptAnswers::new(KeptFor::IndexUnmovedAtMost(Duration::from_secs(3600)));
        hour.keep("a".into(), 1, answer("one"));
        assert_eq!(hour.get("a", 1).unwrap().body, "one");
        assert!(hour.get("a", 2).is_none(), "the index moved on");

        let instant = KeptAnswers::new(KeptFor::IndexUnmovedAtMost(Duration::ZERO));
        instant.keep("a".into(), 1, answer("one"));
        // Until the clock has moved a millisecond past the keeping.
        let kept = Instant::now();
        while kept.elapsed() < Duration::from_millis(1) {
            std::hint::spin_loop();
        }
        assert!(instant.get("a", 1).is_none(), "older than its most age");
    }

    #[test]
    fn a_rendered_answer_names_its_content_type_and_index() {
        let mut rendered = answer("{}");
        rendered.index_header = Some(7);
        let response = rendered.into_response();
        assert_eq!(response.headers()[header::CONTENT_TYPE], "application/json");
        assert_eq!(response.headers()[INDEX_HEADER], "7");
        assert!(
            answer("{}")
                .into_response()
                .headers()
                .get(INDEX_HEADER)
                .is_none()
        );
    }
}
