//! The workloads both sides run, each at its best: our native HTTP APIs on one side, etcd's gRPC
//! API (through `etcd-client`) on the other.

use std::future::Future;
use std::time::Duration;

use crate::load::Measured;
use crate::process::Server;

/// How big each workload is.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sizes {
    /// Instances registered per round.
    pub(crate) instances: u64,
    /// Services they spread over.
    pub(crate) services: u64,
    /// Time for each throughput run.
    pub(crate) duration: Duration,
    /// Clients at once.
    pub(crate) concurrency: usize,
    /// Watchers of the propagation workload.
    pub(crate) watchers: usize,
    /// Changes the propagation workload times.
    pub(crate) changes: usize,
}

/// One side of the comparison.
pub(crate) trait Side {
    /// The server process behind registry workloads.
    fn registry_server(&self) -> &Server;
    /// The server process behind config workloads.
    fn config_server(&self) -> &Server;
    /// Registers `sizes.instances` new instances (ids prefixed by `round`), each with a lease.
    fn register(&self, round: u32, sizes: Sizes) -> impl Future<Output = Measured> + Send;
    /// Renews leases of round-0 instances as fast as they answer.
    fn heartbeats(&self, sizes: Sizes) -> impl Future<Output = Measured> + Send;
    /// Prepares the lookup workload: one service of 10 instances.
    fn prepare_lookup(&self) -> impl Future<Output = anyhow::Result<()>> + Send;
    /// Looks that service up.
    fn lookup(&self, sizes: Sizes) -> impl Future<Output = Measured> + Send;
    /// Times `sizes.changes` changes, each to `sizes.watchers` watchers; every delay.
    fn propagation(
        &self,
        round: u32,
        sizes: Sizes,
    ) -> impl Future<Output = anyhow::Result<Vec<Duration>>> + Send;
    /// Durable config writes.
    fn config_writes(&self, sizes: Sizes) -> impl Future<Output = Measured> + Send;
    /// Config reads.
    fn config_reads(&self, sizes: Sizes) -> impl Future<Output = Measured> + Send;
}

/// Runs `run` and adds `server`'s CPU time during it.
pub(crate) async fn with_cpu(server: &Server, run: impl Future<Output = Measured>) -> Measured {
    let before = server.cpu();
    let mut measured = run.await;
    measured.cpu = server.cpu().saturating_sub(before);
    measured
}
