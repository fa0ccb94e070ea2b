//! Real registry and config servers on loopback, which tests can stop and start again on the
//! same address.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A running server of either kind.
pub(crate) struct Server {
    pub(crate) addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl Server {
    pub(crate) fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops it gracefully and waits.
    pub(crate) async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        let _ = self.task.take().unwrap().await;
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

async fn bind(addr: Option<SocketAddr>) -> tokio::net::TcpListener {
    let addr = addr.unwrap_or_else(|| "127.0.0.1:0".parse().unwrap());
    for _ in 0..100 {
        if let Ok(listener) = tokio::net::TcpListener::bind(addr).await {
            return listener;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("cannot bind {addr}");
}

/// A registry with short leases, on `addr` (or a fresh port).
pub(crate) async fn registry(addr: Option<SocketAddr>) -> Server {
    let listener = bind(addr).await;
    let addr = listener.local_addr().unwrap();
    let mut config = msakit_registry::RegistryConfig::default();
    config.lease.min_ttl = Duration::from_millis(100);
    config.sweep_interval = Duration::from_millis(20);
    config.shutdown_grace = Duration::from_secs(1);
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let _ = msakit_registry::run(listener, config, async {
            let _ = stopped.await;
        })
        .await;
    });
    Server {
        addr,
        stop: Some(stop),
        task: Some(task),
    }
}

/// A config server on `data`.
pub(crate) async fn config_server(data: &Path) -> Server {
    let listener = bind(None).await;
    let addr = listener.local_addr().unwrap();
    let config = msakit_config_server::ConfigServerConfig {
        data_dir: data.to_owned(),
        shutdown_grace: Duration::from_secs(1),
        ..Default::default()
    };
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let _ = msakit_config_server::run(listener, config, async {
            let _ = stopped.await;
        })
        .await;
    });
    Server {
        addr,
        stop: Some(stop),
        task: Some(task),
    }
}

pub(crate) use msakit_server_kit::testing::wait_until;

/// The test binary's Prometheus recorder, installed on first use, so tests can read the
/// metrics the SDK exports (each test uses service names of its own).
pub(crate) fn metrics() -> &'static metrics_exporter_prometheus::PrometheusHandle {
    static HANDLE: std::sync::OnceLock<metrics_exporter_prometheus::PrometheusHandle> =
        std::sync::OnceLock::new();
    HANDLE.get_or_init(|| {
        metrics_exporter_prometheus::PrometheusBuilder::new()
            .install_recorder()
            .expect("the only recorder of this test binary")
    })
}
