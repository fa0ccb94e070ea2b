//! The whole-registry documents of Eureka's API (`/apps` and `/apps/delta`, JSON and XML) kept
//! as rendered bytes until the registry changes or a second passes, whichever first.
//!
//! Every Eureka client fetches one of them on a timer, so under many clients the same document
//! is asked for many times between two changes; rendering 20,000 instances takes about 100 ms.
//! Keyed by the registry's index, a change (a registration, a cancel, a status, an expiry) is in
//! the next answer at once — unlike Eureka's own read-only cache, which serves a copy up to 30 s
//! old. Only heartbeats move nothing the index sees; the lease renewal times they set are at most
//! a second older in a kept document than when it was rendered. The second counts from the end
//! of rendering: a registry whose document takes longer than that (200,000 instances: 1.5 s)
//! would otherwise render it anew for every client. One render at a time per document: callers asking while it
//! renders wait for it and share it, rather than rendering it again each.

use std::time::Duration;

use axum::body::Bytes;
use tokio::time::Instant;

/// How long a rendered document may serve while the registry's index stands still.
const MAX_AGE: Duration = Duration::from_secs(1);

/// Which document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Document {
    Full,
    Delta,
}

/// Which encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Encoding {
    Json,
    Xml,
}

/// A rendered document and what it was rendered at.
#[derive(Debug)]
struct Rendered {
    index: u64,
    /// When rendering finished.
    at: Instant,
    body: Bytes,
}

/// The kept documents, one slot per document and encoding.
#[derive(Debug, Default)]
pub(crate) struct RenderedDocuments {
    slots: [tokio::sync::Mutex<Option<Rendered>>; 4],
}

impl RenderedDocuments {
    /// The document as of registry index `index`: the kept one if it was rendered at that index
    /// and finished less than a second ago, else `render`'s (run on a blocking thread), kept for the next.
    pub(crate) async fn get(
        &self,
        document: Document,
        encoding: Encoding,
        index: u64,
        render: impl FnOnce() -> Vec<u8> + Send + 'static,
    ) -> Bytes {
        let slot = match (document, encoding) {
            (Document::Full, Encoding::Json) => &self.slots[0],
            (Document::Full, Encoding::Xml) => &self.slots[1],
            (Document::Delta, Encoding::Json) => &self.slots[2],
            (Document::Delta, Encoding::Xml) => &self.slots[3],
        };
        let mut kept = slot.lock().await;
        if let Some(rendered) = kept.as_ref()
            && rendered.index == index
            && rendered.at.elapsed() < MAX_AGE
        {
            return rendered.body.clone();
        }
        let body = Bytes::from(
            tokio::task::spawn_blocking(render)
                .await
                .unwrap_or_default(),
        );
        *kept = Some(Rendered {
            index,
            at: Instant::now(),
            body: body.clone(),
        });
        body
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    fn counting(
        renders: &Arc<AtomicU32>,
        text: &'static str,
    ) -> impl FnOnce() -> Vec<u8> + Send + 'static {
        let renders = Arc::clone(renders);
        move || {
            renders.fetch_add(1, Ordering::SeqCst);
            text.as_bytes().to_vec()
        }
    }

    #[tokio::test]
    async fn kept_while_the_index_stands_and_rendered_again_when_it_moves() {
        let documents = RenderedDocuments::default();
        let renders = Arc::new(AtomicU32::new(0));
        let first = documents
            .get(Document::Full, Encoding::Json, 7, counting(&renders, "a"))
            .await;
        let again = documents
            .get(Document::Full, Encoding::Json, 7, counting(&renders, "b"))
            .await;
        assert_eq!((&first[..], &again[..]), (&b"a"[..], &b"a"[..]));
        assert_eq!(renders.load(Ordering::SeqCst), 1);
        // Another encoding or document is another slot.
        let xml = documents
            .get(Document::Full, Encoding::Xml, 7, counting(&renders, "x"))
            .await;
        let delta = documents
            .get(Document::Delta, Encoding::Json, 7, counting(&renders, "d"))
            .await;
        assert_eq!((&xml[..], &delta[..]), (&b"x"[..], &b"d"[..]));
        // A change: rendered again at once.
        let moved = documents
            .get(Document::Full, Encoding::Json, 8, counting(&renders, "c"))
            .await;
        assert_eq!(&moved[..], b"c");
        assert_eq!(renders.load(Ordering::SeqCst), 4);
    }

    #[tokio::test(start_paused = true)]
    async fn rendered_again_after_a_second_even_at_the_same_index() {
        let documents = RenderedDocuments::default();
        let renders = Arc::new(AtomicU32::new(0));
        documents
            .get(Document::Delta, Encoding::Xml, 3, counting(&renders, "a"))
            .await;
        tokio::time::advance(MAX_AGE - Duration::from_millis(1)).await;
        let kept = documents
            .get(Document::Delta, Encoding::Xml, 3, counting(&renders, "-"))
            .await;
        assert_eq!(&kept[..], b"a");
        tokio::time::advance(Duration::from_millis(1)).await;
        let later = documents
            .get(Document::Delta, Encoding::Xml, 3, counting(&renders, "b"))
            .await;
        assert_eq!(&later[..], b"b");
        assert_eq!(renders.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_document_slower_to_render_than_a_second_is_still_kept_for_one() {
        let documents = Arc::new(RenderedDocuments::default());
        let renders = Arc::new(AtomicU32::new(0));
        let (finish, finished) = std::sync::mpsc::channel::<()>();
        let slow = {
            let renders = Arc::clone(&renders);
            move || {
                renders.fetch_add(1, Ordering::SeqCst);
                let _ = finished.recv();
                b"big".to_vec()
            }
        };
        let rendering = tokio::spawn({
            let documents = Arc::clone(&documents);
            async move { documents.get(Document::Full, Encoding::Json, 5, slow).await }
        });
        // Rendering has begun, and takes longer than the document may be kept.
        while renders.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
        tokio::time::advance(MAX_AGE * 2).await;
        finish.send(()).unwrap();
        assert_eq!(&rendering.await.unwrap()[..], b"big");
        let kept = documents
            .get(Document::Full, Encoding::Json, 5, counting(&renders, "-"))
            .await;
        assert_eq!(&kept[..], b"big");
        assert_eq!(renders.load(Ordering::SeqCst), 1);
    }
}
