//! Where route sets come from: the gateway's own file (fixed), a routes file polled every
//! second (an editor's rename-and-replace is seen like an in-place write; a change is taken
//! once two looks agree, so within about two seconds), or a config-server
//! document followed live through the SDK. Each new set is offered to the live table, which
//! keeps the routes in force when it is refused.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use msakit::ConfigClientOptions;
use tokio_util::sync::CancellationToken;

use crate::config::RoutesFromConfig;
use crate::live::LiveRoutes;
use crate::routes::spec::RouteSet;

/// How often a routes file is looked at.
const FILE_POLL: Duration = Duration::from_secs(1);

/// Why the first route set could not be had.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The routes file cannot be read or parsed.
    #[error("routes file {path}: {reason}")]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The config server could not be asked (and no copy was kept).
    #[error("routes from the config server: {0}")]
    Config(#[from] msakit::ConfigClientError),
}

/// Reads and parses a routes file.
pub(crate) fn read_file(path: &Path) -> Result<(Vec<u8>, RouteSet), SourceError> {
    let error = |reason: String| SourceError::File {
        path: path.to_owned(),
        reason,
    };
    let bytes = std::fs::read(path).map_err(|e| error(e.to_string()))?;
    let set = serde_yaml_ng::from_slice(&bytes).map_err(|e| error(e.to_string()))?;
    Ok((bytes, set))
}

/// Follows `path` until `stop`, offering each changed, readable set.
pub(crate) fn watch_file(
    path: PathBuf,
    mut last: Vec<u8>,
    live: Arc<LiveRoutes>,
    stop: CancellationToken,
) {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(FILE_POLL);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut pending: Option<Vec<u8>> = None;
        loop {
            tokio::select! {
                _ = ticks.tick() => {}
                _ = stop.cancelled() => return,
            }
            let Ok(bytes) = tokio::fs::read(&path).await else {
                // Between an editor's delete and rename, say: the next look will tell.
                continue;
            };
            if bytes == last {
                pending = None;
                continue;
            }
            // A change counts once two looks a second apart agree: a file caught half-written
            // (still valid YAML, cut before `auth:`, say) is never put in force.
            if pending.as_ref() != Some(&bytes) {
                pending = Some(bytes);
                continue;
            }
            pending = None;
            last.clone_from(&bytes);
            match serde_yaml_ng::from_slice::<RouteSet>(&bytes) {
                Ok(set) => {
                    let _ = live.offer(&set);
                }
                Err(e) => live.unreadable(&format!("{}: {e}", path.display())),
            }
        }
    });
}

/// The config-server document's first set, and a task offering each change until `stop`.
pub(crate) async fn follow_config(
    sdk: &msakit::Client,
    from: &RoutesFromConfig,
    cache_dir: Option<&Path>,
) -> Result<msakit::ConfigClient<RouteSet>, SourceError> {
    let profiles: Vec<&str> = from.profiles.iter().map(String::as_str).collect();
    let mut options = ConfigClientOptions::new(&from.application, &profiles);
    if let Some(label) = &from.label {
        options = options.label(label.clone());
    }
    if let Some(dir) = cache_dir {
        options = options.cache_file(dir.join(format!("routes-{}.json", from.application)));
    }
    Ok(sdk.config::<RouteSet>(options).await?)
}

/// Offers every change of `config` to `live` until `stop`.
pub(crate) fn watch_config(
    config: msakit::ConfigClient<RouteSet>,
    live: Arc<LiveRoutes>,
    stop: CancellationToken,
) {
    let mut changes = config.subscribe();
    tokio::spawn(async move {
        let mut rejected = config.rejected_changes();
        let mut ticks = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                changed = changes.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    let set = changes.borrow_and_update().clone();
                    let _ = live.offer(&set);
                }
                _ = ticks.tick() => {
                    // A document that did not fit the route set's shape is refused by the SDK.
                    let now = config.rejected_changes();
                    if now != rejected {
                        rejected = now;
                        live.unreadable("a config-server change does not fit the route set's shape (unknown or mistyped fields)");
                    }
                }
                _ = stop.cancelled() => return,
            }
        }
    });
}

/// The source's name in the admin API.
pub(crate) fn describe(from: &RoutesFromConfig) -> String {
    format!(
        "config:{}/{}/{}",
        from.application,
        from.profiles.join(","),
        from.label.as_deref().unwrap_or("(default)")
    )
}
