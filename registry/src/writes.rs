//! Every change to the registry as a [`Command`], and [`Writes`], the one path they take: on a
//! single node straight into the [`Registry`], in a cluster through Raft (proposed by the
//! leader, applied by every node in the same order). Lease renewals are not commands: every node
//! renews its own leases, and followers hand renewals on to the leader in batches.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use msakit_api::registry::{Instance, InstanceStatus, LeaseGranted, RegisterInstance};
use serde::{Deserialize, Serialize};

use crate::cluster::{Cluster, ClusterError, Proposals, Renewals};
use crate::eureka::EurekaInfo;
pub(crate) use crate::format::Command;
use crate::format::FormatVersion;
use crate::registry::{EvictionCheck, Extension, RegistryError, RegistryWriter};

/// What a command did.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum Applied {
    /// A registration: the lease granted.
    Granted(LeaseGranted),
    /// The instance after the change.
    Instance(Instance),
    /// An instance left; or a Raft entry of its own (membership, a new term) was applied.
    Done,
    /// How many instances were evicted.
    Evicted(usize),
    /// The registry refused the command.
    Refused(RegistryError),
    /// The outcomes of a batch's commands, in order.
    Batch(Vec<Applied>),
}

/// Applies `command` to `registry`; `eviction` says whether an eviction looks at this node's
/// leases again (a single node) or applies the leader's decision (every node of a cluster).
pub(crate) fn apply(
    registry: &RegistryWriter,
    command: Command,
    eviction: EvictionCheck,
) -> Applied {
    let outcome = match command {
        Command::Register {
            namespace,
            service,
            id,
            request,
            eureka,
            at_ms,
            ..
        } => registry
            .register_with(
                &namespace,
                &service,
                &id,
                (*request).into(),
                eureka.map(|e| Extension::new(*e)),
                at_ms,
            )
            .map(Applied::Granted),
        Command::Deregister {
            namespace,
            service,
            id,
            ..
        } => registry
            .deregister(&namespace, &service, &id)
            .map(|()| Applied::Done),
        Command::Override {
            namespace,
            service,
            id,
            status,
            ..
        } => registry
            .set_override(&namespace, &service, &id, status.map(Into::into))
            .map(Applied::Instance),
        Command::MergeMetadata {
            namespace,
            service,
            id,
            entries,
            ..
        } => registry
            .merge_metadata(&namespace, &service, &id, entries)
            .map(Applied::Instance),
        Command::CheckVerdict {
            probed, passing, ..
        } => registry
            .set_check_passing(&probed.into(), passing)
            .map(Applied::Instance),
        Command::Evict { keys, .. } => Ok(Applied::Evicted(registry.evict(keys, eviction))),
        Command::Batch { commands, .. } => Ok(Applied::Batch(
            commands
                .into_iter()
                .map(|command| apply(registry, command, eviction))
                .collect(),
        )),
    };
    outcome.unwrap_or_else(Applied::Refused)
}

/// Why a write was not made.
#[derive(Debug, thiserror::Error)]
pub(crate) enum WriteError {
    /// The registry refused it.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// The cluster could not commit it.
    #[error(transparent)]
    Cluster(#[from] ClusterError),
}

impl From<WriteError> for msakit_server_kit::ApiError {
    fn from(e: WriteError) -> Self {
        match e {
            WriteError::Registry(e) => e.into(),
            WriteError::Cluster(e) => e.into(),
        }
    }
}

/// A node's part in its cluster: the cluster, the renewals it hands on, the commands it proposes.
#[derive(Debug, Clone)]
struct Clustered {
    cluster: Arc<Cluster>,
    renewals: Renewals,
    proposals: Arc<Proposals>,
}

/// The path every change takes; cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct Writes {
    registry: RegistryWriter,
    cluster: Option<Clustered>,
    /// The term this node last granted every instance a lease of grace in (as leader).
    grace_term: Arc<AtomicU64>,
}

fn unexpected(applied: Applied) -> WriteError {
    WriteError::Cluster(ClusterError::Fatal(format!(
        "unexpected outcome of a registry command: {applied:?}"
    )))
}

impl Writes {
    /// Writes to `registry`, through `cluster` when there is one.
    pub(crate) fn new(registry: RegistryWriter, cluster: Option<(Arc<Cluster>, Renewals)>) -> Self {
        let cluster = cluster.map(|(cluster, renewals)| Clustered {
            proposals: Arc::new(Proposals::new(Arc::clone(&cluster))),
            cluster,
            renewals,
        });
        Self {
            registry,
            cluster,
            grace_term: Arc::new(AtomicU64::new(u64::MAX)),
        }
    }

    /// The cluster, if this node is one of one.
    pub(crate) fn cluster(&self) -> Option<&Arc<Cluster>> {
        self.cluster.as_ref().map(|c| &c.cluster)
    }

    /// Whether this node makes decisions (evictions, health verdicts): a single node, or the
    /// cluster's leader.
    pub(crate) fn decides(&self) -> bool {
        self.cluster().is_none_or(|c| c.is_leader())
    }

    /// Applies `command` (a single node) or has the cluster commit it.
    pub(crate) async fn apply(&self, command: Command) -> Result<Applied, WriteError> {
        let applied = match &self.cluster {
            None => apply(&self.registry, command, EvictionCheck::RecheckLease),
            Some(clustered) => clustered.proposals.propose(command).await?,
        };
        match applied {
            Applied::Refused(e) => Err(e.into()),
            applied => Ok(applied),
        }
    }

    /// Registers (or updates) an instance.
    pub(crate) async fn register(
        &self,
        namespace: &str,
        service: &str,
        id: &str,
        request: RegisterInstance,
        eureka: Option<EurekaInfo>,
    ) -> Result<LeaseGranted, WriteError> {
        // Refused before it reaches the log, when it can be told without the state; the lease
        // decided here, so every node stores the same one.
        self.registry
            .check_registration(namespace, service, id, &request)?;
        let mut request = request;
        request.lease_ttl_ms = Some(self.registry.ttl_ms_for(request.lease_ttl_ms));
        let command = Command::Register {
            format_version: FormatVersion::CURRENT,
            namespace: namespace.to_owned(),
            service: service.to_owned(),
            id: id.to_owned(),
            request: Box::new(request.into()),
            eureka: eureka.map(Box::new),
            at_ms: crate::registry::unix_ms(),
        };
        match self.apply(command).await? {
            Applied::Granted(granted) => Ok(granted),
            other => Err(unexpected(other)),
        }
    }

    /// Removes an instance.
    pub(crate) async fn deregister(
        &self,
        namespace: &str,
        service: &str,
        id: &str,
    ) -> Result<(), WriteError> {
        let command = Command::Deregister {
            format_version: FormatVersion::CURRENT,
            namespace: namespace.to_owned(),
            service: service.to_owned(),
            id: id.to_owned(),
        };
        self.apply(command).await.map(drop)
    }

    /// Sets or clears an operator's override.
    pub(crate) async fn set_override(
        &self,
        namespace: &str,
        service: &str,
        id: &str,
        status: Option<InstanceStatus>,
    ) -> Result<Instance, WriteError> {
        self.instance(Command::Override {
            format_version: FormatVersion::CURRENT,
            namespace: namespace.to_owned(),
            service: service.to_owned(),
            id: id.to_owned(),
            status: status.map(Into::into),
        })
        .await
    }

    /// Adds or replaces metadata entries.
    pub(crate) async fn merge_metadata(
        &self,
        namespace: &str,
        service: &str,
        id: &str,
        entries: BTreeMap<String, String>,
    ) -> Result<Instance, WriteError> {
        self.instance(Command::MergeMetadata {
            format_version: FormatVersion::CURRENT,
            namespace: namespace.to_owned(),
            service: service.to_owned(),
            id: id.to_owned(),
            entries,
        })
        .await
    }

    /// Records a health check's verdict.
    pub(crate) async fn check_verdict(
        &self,
        probed: &Instance,
        passing: bool,
    ) -> Result<Instance, WriteError> {
        self.instance(Command::CheckVerdict {
            format_version: FormatVersion::CURRENT,
            probed: probed.clone().into(),
            passing,
        })
        .await
    }

    async fn instance(&self, command: Command) -> Result<Instance, WriteError> {
        match self.apply(command).await? {
            Applied::Instance(instance) => Ok(instance),
            other => Err(unexpected(other)),
        }
    }

    /// Evicts the instances whose leases ran out (on a single node or the leader; elsewhere
    /// nothing). Returns how many. The first time a node does so as leader of a term, it first
    /// gives every instance one full lease of grace instead: it did not see the renewals its
    /// predecessor saw.
    pub(crate) async fn evict_expired(&self) -> Result<usize, WriteError> {
        if !self.decides() {
            return Ok(0);
        }
        if let Some(cluster) = self.cluster() {
            let term = cluster.raft().metrics().borrow().current_term;
            if self.grace_term.swap(term, Ordering::Relaxed) != term {
                self.registry.grant_grace();
                tracing::info!(
                    node = cluster.node_id(),
                    term,
                    instances = self.registry.instance_count(),
                    "this node leads now; every instance has one full lease of grace"
                );
                return Ok(0);
            }
        }
        let keys = self.registry.due_for_eviction();
        if keys.is_empty() {
            return Ok(0);
        }
        let command = Command::Evict {
            format_version: FormatVersion::CURRENT,
            keys,
        };
        match self.apply(command).await? {
            Applied::Evicted(n) => Ok(n),
            other => Err(unexpected(other)),
        }
    }

    /// Renews an instance's lease here; a follower also hands the renewal on to the leader. A
    /// follower cut off from any leader for long (longer than an election takes) refuses, so
    /// the instance turns to a node the majority hears.
    pub(crate) fn renew(
        &self,
        namespace: &str,
        service: &str,
        id: &str,
    ) -> Result<LeaseGranted, WriteError> {
        self.check_cut_off()?;
        let granted = self.registry.renew(namespace, service, id)?;
        self.hand_on(namespace, service, id);
        Ok(granted)
    }

    /// [`renew`](Self::renew) for callers that answer with a bare status.
    pub(crate) fn renew_lease(
        &self,
        namespace: &str,
        service: &str,
        id: &str,
    ) -> Result<(), WriteError> {
        self.check_cut_off()?;
        self.registry.renew_lease(namespace, service, id)?;
        self.hand_on(namespace, service, id);
        Ok(())
    }

    /// A node cut off from its cluster renews nothing.
    fn check_cut_off(&self) -> Result<(), WriteError> {
        if let Some(Clustered { cluster, .. }) = &self.cluster {
            if let Some(cut_off) = cluster.cut_off() {
                return Err(cut_off.into());
            }
        }
        Ok(())
    }

    /// On a follower, queues a renewal to hand on to the leader.
    fn hand_on(&self, namespace: &str, service: &str, id: &str) {
        if let Some(Clustered {
            cluster, renewals, ..
        }) = &self.cluster
        {
            if !cluster.is_leader() {
                renewals.push(namespace, service, id);
            }
        }
    }

    /// Renews a lease a follower handed on to this node (the leader): here only.
    pub(crate) fn renew_handed_on(
        &self,
        namespace: &str,
        service: &str,
        id: &str,
    ) -> Result<(), WriteError> {
        Ok(self.registry.renew_lease(namespace, service, id)?)
    }
}
