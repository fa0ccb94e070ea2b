//! [`WritePath`]: where the store sends every change to be committed. The store does not know
//! which path it is (the [`Committer`](super::Committer) here, or a cluster's log): the server
//! gives it one, built once, so no write can go around it.

use std::future::Future;
use std::pin::Pin;

use super::{Applied, ConfigStoreError};
use crate::format::Command;

/// A change on its way to be committed.
pub(crate) type Committing<'a> =
    Pin<Box<dyn Future<Output = Result<Applied, ConfigStoreError>> + Send + 'a>>;

/// Commits commands, in the order given, and says what each did.
pub(crate) trait WritePath: Send + Sync + 'static {
    /// Commits `command`; once this returns, its effect is visible in the store.
    fn commit(&self, command: Command) -> Committing<'_>;
}
