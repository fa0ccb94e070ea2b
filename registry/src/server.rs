//! Running a registry server: restore from storage, start the lease sweeper and the persistence
//! task, serve until shutdown, then drain and flush.

use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::RegistryConfig;
use crate::http::{AppParts, AppState, router};
use crate::metrics::Metrics;
use crate::registry::RegistryWriter;
use crate::store::{Store, StoreError};
use crate::writes::Writes;

/// Why the server stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] crate::config::RegistryConfigError),
    /// The data directory could not be used.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The TLS material cannot be used.
    #[error("TLS: {0}")]
    Tls(#[from] msakit_server_kit::TlsError),
    /// The cluster node could not start.
    #[error("cluster: {0}")]
    Cluster(#[from] crate::cluster::ClusterError),
    /// Serving failed.
    #[error("serving failed: {0}")]
    Io(#[from] std::io::Error),
}

/// Serves the registry on `listener` until `shutdown` completes; then stops accepting, ends watch
/// streams, waits up to `shutdown_grace` for requests in flight and flushes storage.
pub async fn run(
    listener: TcpListener,
    config: RegistryConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    config.validate()?;
    let tls = config.tls.as_ref().map(|tls| tls.acceptor()).transpose()?;
    let store = config.data_dir.as_deref().map(Store::open).transpose()?;
    // A cluster node's registrations live in its Raft log and snapshots, not written behind.
    let clustered = config.cluster.is_some();
    let (persist_tx, persist_rx) = match &store {
        Some(_) if !clustered => {
            let (tx, rx) = mpsc::unbounded_channel();
            (Some(tx), Some(rx))
        }
        _ => (None, None),
    };
    let writer = RegistryWriter::new(&config, persist_tx);
    let registry = Arc::clone(writer.registry());
    let token = CancellationToken::new();
    let stop_persistence = CancellationToken::new();
    let persistence = match (&store, persist_rx) {
        (Some(store), Some(rx)) => {
            let (restored, index) = store.load()?;
            tracing::info!(
                instances = restored.len(),
                index,
                "restored registrations; each has one lease to heartbeat"
            );
            writer.restore(restored, index);
            Some(tokio::spawn(
                store.clone().run(rx, stop_persistence.clone()),
            ))
        }
        _ => None,
    };
    let cluster = match (&config.cluster, &store, &config.data_dir) {
        (Some(cluster_config), Some(store), Some(data_dir)) => {
            let cluster = crate::cluster::start(
                cluster_config,
                config.tls.as_ref(),
                data_dir,
                &store.database(),
                writer.clone(),
            )
            .await?;
            tracing::info!(node = cluster_config.node_id, peers = ?cluster_config.peers, "cluster node started");
            let renewals = crate::cluster::Renewals::spawn(Arc::clone(&cluster), token.clone());
            Some((cluster, renewals))
        }
        _ => None,
    };
    let writes = Writes::new(writer, cluster);

    let sweeper = {
        let (writes, token, every) = (writes.clone(), token.clone(), config.sweep_interval);
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(every);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = ticks.tick() => {
                        if let Err(e) = writes.evict_expired().await {
                            tracing::warn!(error = %e, "expired leases not evicted yet");
                        }
                    }
                    _ = token.cancelled() => return,
                }
            }
        })
    };

    let checker = config.health_checks.enabled.then(|| {
        tokio::spawn(crate::health_check::run(
            Arc::clone(&registry),
            writes.clone(),
            token.clone(),
        ))
    });

    let metrics = Metrics::new();
    metrics.spawn_upkeep(token.clone());
    let serve_options = msakit_server_kit::ServeOptions {
        limits: config.connections,
        tls,
        grace: config.shutdown_grace,
        rejections: metrics.rejections(),
    };
    let grace = config.shutdown_grace;
    let watchers = msakit_server_kit::WatchersPerClient::new(
        config.watch.max_per_client,
        metrics.rejections(),
    );
    let cluster = writes.cluster().cloned();
    let state = AppState::new(AppParts {
        registry: Arc::clone(&registry),
        writes,
        config: Arc::new(config),
        metrics,
        watchers,
        audit: Arc::default(),
        shutdown: token.clone(),
        eureka_documents: Arc::default(),
        lookups: msakit_server_kit::KeptAnswers::new(crate::http::LOOKUPS_KEPT_FOR),
    });
    tracing::info!(addr = %listener.local_addr()?, "registry listening");
    let result = msakit_server_kit::serve_until(
        listener,
        msakit_server_kit::traced(router(state)),
        shutdown,
        token.clone(),
        serve_options,
    )
    .await;
    token.cancel();
    if let Some(cluster) = cluster {
        cluster.shutdown().await;
    }
    let _ = sweeper.await;
    if let Some(checker) = checker {
        let _ = checker.await;
    }
    // Connections still draining may hold the registry; the store stops taking changes now and
    // writes what is queued.
    drop(registry);
    stop_persistence.cancel();
    if let Some(task) = persistence {
        match tokio::time::timeout(grace, task).await {
            Ok(_) => tracing::info!("registrations flushed to storage"),
            Err(_) => tracing::error!("storage did not finish flushing within the grace period"),
        }
    }
    result.map_err(ServerError::from)
}
