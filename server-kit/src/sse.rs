//! Server-Sent-Events streams as both servers send them: first frames, then each frame a
//! server's live source gives, a keep-alive comment when idle, and an end at shutdown.

use std::convert::Infallible;
use std::future::Future;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use futures_util::stream::{self, StreamExt};
use tokio_util::sync::CancellationToken;

/// A comment line that keeps idle connections open through proxies.
pub const KEEP_ALIVE: &[u8] = b": keep-alive\n\n";

/// One event: its `id`, its `event` name and its `data` (JSON on one line).
pub fn sse_frame(id: u64, event: &str, json: &str) -> Bytes {
    Bytes::from(format!("id: {id}\nevent: {event}\ndata: {json}\n\n"))
}

/// The live part of a stream, which a server brings.
pub trait LiveFrames: Send + 'static {
    /// The next frame to send; `None` ends the stream. Raced against keep-alives and shutdown,
    /// so it must be cancel-safe (lose nothing when dropped before it completes).
    fn next_frame(&mut self) -> impl Future<Output = Option<Bytes>> + Send;
}

/// A `text/event-stream` response: the `first` frames, then `live`'s, with [`KEEP_ALIVE`] every
/// `keep_alive` of the stream's life; it ends when `shutdown` fires or `live` ends. `guard` (a
/// watcher slot, a gauge) is dropped exactly when the stream is.
pub fn event_stream<L: LiveFrames>(
    first: Vec<Bytes>,
    live: L,
    keep_alive: Duration,
    shutdown: CancellationToken,
    guard: impl Send + 'static,
) -> Response {
    let mut ticks = tokio::time::interval(keep_alive);
    ticks.reset();
    let live = Live {
        live,
        ticks,
        shutdown,
        _guard: guard,
    };
    let frames = stream::iter(first.into_iter().map(Ok::<_, Infallible>))
        .chain(stream::unfold(live, Live::next));
    (
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        Body::from_stream(frames),
    )
        .into_response()
}

struct Live<L, G> {
    live: L,
    ticks: tokio::time::Interval,
    shutdown: CancellationToken,
    _guard: G,
}

impl<L: LiveFrames, G> Live<L, G> {
    async fn next(mut self) -> Option<(Result<Bytes, Infallible>, Self)> {
        let frame = tokio::select! {
            biased;
            _ = self.shutdown.cancelled() => None,
            frame = self.live.next_frame() => frame,
            _ = self.ticks.tick() => Some(Bytes::from_static(KEEP_ALIVE)),
        };
        frame.map(|frame| (Ok(frame), self))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Counted(tokio::sync::mpsc::Receiver<u64>);

    impl LiveFrames for Counted {
        async fn next_frame(&mut self) -> Option<Bytes> {
            let n = self.0.recv().await?;
            Some(sse_frame(n, "n", &n.to_string()))
        }
    }

    #[tokio::test(start_paused = true)]
    async fn first_frames_then_live_ones_keep_alives_when_idle_and_an_end_at_shutdown() {
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let stop = CancellationToken::new();
        let guard = std::sync::Arc::new(());
        let response = event_stream(
            vec![sse_frame(0, "first", "{}")],
            Counted(rx),
            Duration::from_secs(10),
            stop.clone(),
            std::sync::Arc::clone(&guard),
        );
        assert_eq!(
            response.headers()[header::CONTENT_TYPE],
            "text/event-stream"
        );
        let mut body = response.into_body().into_data_stream();
        async fn next(body: &mut axum::body::BodyDataStream) -> Option<String> {
            let bytes = body.next().await?.unwrap();
            Some(String::from_utf8(bytes.to_vec()).unwrap())
        }
        assert_eq!(
            next(&mut body).await.unwrap(),
            "id: 0\nevent: first\ndata: {}\n\n"
        );
        tx.send(1).await.unwrap();
        assert_eq!(
            next(&mut body).await.unwrap(),
            "id: 1\nevent: n\ndata: 1\n\n"
        );
        assert_eq!(next(&mut body).await.unwrap(), ": keep-alive\n\n");
        stop.cancel();
        assert_eq!(next(&mut body).await, None);
        drop(body);
        assert_eq!(
            std::sync::Arc::strong_count(&guard),
            1,
            "the guard went with the stream"
        );
    }
}
