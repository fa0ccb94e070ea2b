//! Running a config server: open the store, serve until shutdown, then drain.

use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::{ConfigServerConfig, ServerConfigError};
use crate::config_store::{Committer, ConfigStore};
use crate::http::{AppParts, AppState, router};
use crate::metrics::Metrics;
use crate::native_dir::NativeDir;
use crate::secrets::Cipher;
use crate::storage::{Storage, StorageError};
use crate::writes::Writes;

/// Why the server stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ServerConfigError),
    /// The secrets key is malformed.
    #[error("the secrets key must be base64 of 32 bytes")]
    BadKey,
    /// The data directory could not be used.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The cluster node could not start.
    #[error("cluster: {0}")]
    Cluster(String),
    /// The TLS material cannot be used.
    #[error("TLS: {0}")]
    Tls(#[from] msakit_server_kit::TlsError),
    /// Serving failed.
    #[error("serving failed: {0}")]
    Io(#[from] std::io::Error),
}

/// Serves on `listener` until `shutdown` completes; then stops accepting, ends watch streams
/// and waits up to `shutdown_grace` for requests in flight. Every acknowledged write is already
/// durable, so nothing needs flushing.
pub async fn run(
    listener: TcpListener,
    config: ConfigServerConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    config.validate()?;
    let tls = config.tls.as_ref().map(|tls| tls.acceptor()).transpose()?;
    let cipher = config
        .secrets_key()?
        .map(|key| Cipher::from_base64(&key).map_err(|_| ServerError::BadKey))
        .transpose()?;
    let store = Storage::open(&config.data_dir)?;
    let store_for_cluster = store.clone();
    let metrics = Metrics::new();
    let upkeep = CancellationToken::new();
    metrics.spawn_upkeep(upkeep.clone());
    let committer = Committer::open(
        store,
        config.max_documents_per_application,
        metrics.rejections(),
    )?;
    let cluster = match &config.cluster {
        Some(cluster_config) => {
            let cluster = crate::cluster::start(
                cluster_config,
                config.tls.as_ref(),
                &config.data_dir,
                &store_for_cluster,
                committer.clone(),
            )
            .await
            .map_err(|e| ServerError::Cluster(e.to_string()))?;
            tracing::info!(node = cluster_config.node_id, peers = ?cluster_config.peers, "cluster node started");
            Some(cluster)
        }
        None => None,
    };
    let writes = Writes::new(committer.clone(), cluster);
    let configs = Arc::new(ConfigStore::new(
        &committer,
        Arc::new(writes.clone()),
        cipher,
        config.max_document_bytes,
    ));
    tracing::info!(
        documents = configs.document_count(),
        index = configs.index(),
        "config store opened"
    );

    let token = CancellationToken::new();
    let native = match &config.native_dir {
        Some(dir) => {
            let native = Arc::new(NativeDir::new(dir.clone()));
            native.sync(&configs).await;
            tracing::info!(dir = %dir.display(), errors = native.errors().len(), "native directory loaded");
            tokio::spawn(Arc::clone(&native).watch(Arc::clone(&configs), token.clone()));
            Some(native)
        }
        None => None,
    };
    let serve_options = msakit_server_kit::ServeOptions {
        limits: config.connections,
        tls,
        grace: config.shutdown_grace,
        rejections: metrics.rejections(),
    };
    let watchers = msakit_server_kit::WatchersPerClient::new(
        config.watch.max_per_client,
        metrics.rejections(),
    );
    let state = AppState::new(AppParts {
        native,
        configs,
        writes: writes.clone(),
        config: Arc::new(config),
        metrics,
        watchers,
        shutdown: token.clone(),
        answers: msakit_server_kit::KeptAnswers::new(msakit_server_kit::KeptFor::IndexUnmoved),
    });
    tracing::info!(addr = %listener.local_addr()?, "config server listening");
    msakit_server_kit::serve_until(
        listener,
        msakit_server_kit::traced(router(state)),
        shutdown,
        token,
        serve_options,
    )
    .await?;
    if let Some(cluster) = writes.cluster() {
        cluster.shutdown().await;
    }
    upkeep.cancel();
    tracing::info!("config server stopped");
    Ok(())
}
