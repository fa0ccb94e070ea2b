//! The pause after a failure, growing with the failures in a row: 100 ms, 200 ms, … up to 2 s,
//! cut short by a stop.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// Waits after the `failures`th failure in a row; true when `stop` came first.
pub(crate) async fn after_failure(failures: u32, stop: &CancellationToken) -> bool {
    let pause = Duration::from_millis(50u64 << failures.min(6)).min(Duration::from_secs(2));
    tokio::select! {
        () = stop.cancelled() => true,
        () = tokio::time::sleep(pause) => false,
    }
}
