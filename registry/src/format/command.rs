//! A change to the registry as its Raft log holds it: deterministic, so applied to the same state
//! it gives the same result on every node (times come with it; leases are not part of it).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::FormatVersion;
use super::records::{InstanceRecord, RegistrationRequestRecord, StatusRecord};
use crate::eureka::EurekaInfo;
use crate::registry::InstanceKey;

/// A change to the registry: one Raft log entry. Each variant carries the format version it
/// was written in (absent in entries written before versions were).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) enum Command {
    /// Register or update an instance.
    Register {
        #[serde(default)]
        format_version: FormatVersion,
        namespace: String,
        service: String,
        id: String,
        request: Box<RegistrationRequestRecord>,
        eureka: Option<Box<EurekaInfo>>,
        /// Unix milliseconds when the request came in.
        at_ms: u64,
    },
    /// Remove an instance.
    Deregister {
        #[serde(default)]
        format_version: FormatVersion,
        namespace: String,
        service: String,
        id: String,
    },
    /// Set or clear an operator's status override.
    Override {
        #[serde(default)]
        format_version: FormatVersion,
        namespace: String,
        service: String,
        id: String,
        status: Option<StatusRecord>,
    },
    /// Add or replace metadata entries.
    MergeMetadata {
        #[serde(default)]
        format_version: FormatVersion,
        namespace: String,
        service: String,
        id: String,
        entries: BTreeMap<String, String>,
    },
    /// A health check's verdict about `probed` as it was when the probe started.
    CheckVerdict {
        #[serde(default)]
        format_version: FormatVersion,
        probed: InstanceRecord,
        passing: bool,
    },
    /// Remove these instances, each while its registration has this index: their leases ran
    /// out (the leader decided).
    Evict {
        #[serde(default)]
        format_version: FormatVersion,
        keys: Vec<(InstanceKey, u64)>,
    },
    /// Commands proposed together, in one entry: applied in order, each as if it were an entry
    /// of its own. Written only once every member reads log format 2
    /// ([`LOG_FORMAT`](super::LOG_FORMAT)): a build before it refuses the variant by name.
    Batch {
        #[serde(default)]
        format_version: FormatVersion,
        commands: Vec<Command>,
    },
}
