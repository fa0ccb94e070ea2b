//! The registry's internal formats: what its Raft log entries, its snapshots and its redb
//! records hold. They are types of the registry's own, converted from and to the domain and the
//! public API at the edge (the write path, the store, the state machine), so the public API can
//! change without changing what a node reads back from disk or from its peers.
//!
//! Every log entry, snapshot and stored registration carries a [`FormatVersion`], and follows
//! its rules: unknown fields are ignored (a newer build may add optional ones), a newer version
//! is refused by name. The JSON written is exactly what builds before versioning wrote, plus the
//! `format_version` fields they ignore, so a cluster can be upgraded one node at a time.
//! `tests/formats/{version}/` holds golden files of each version; every build must read them.

mod command;
mod records;
mod stored;

pub(crate) use command::Command;
pub(crate) use stored::{SnapshotRecord, StoredInstanceRecord};

/// The version of the registry's internal formats this build writes (and the newest it reads).
pub(crate) type FormatVersion = msakit_server_kit::FormatVersion<1>;

/// The newest kind of Raft log this build reads, as it tells its peers: 2 — entries may carry a
/// [`Command::Batch`]. A leader writes batches only once every member says it reads them.
pub(crate) const LOG_FORMAT: msakit_raft::LogFormat = msakit_raft::LogFormat(2);

#[cfg(test)]
mod golden;
