//! The config server's internal formats: what its Raft log entries, its snapshots and its redb
//! records hold. They are types of the server's own, converted from and to the public API at the
//! edge (the write path, the store's reads), so the public API can change without changing what
//! a node reads back from disk or from its peers.
//!
//! Every log entry, snapshot, stored version and audit record carries a [`FormatVersion`], and
//! follows its rules: unknown fields are ignored (a newer build may add optional ones), a newer
//! version is refused by name. The JSON written is exactly what builds before versioning wrote,
//! plus the `format_version` fields they ignore, so a cluster can be upgraded one node at a time.
//! `tests/formats/{version}/` holds golden files of each version; every build must read them.

mod audit;
mod command;
mod document_format;
mod stored_version;

pub(crate) use audit::AuditRecord;
pub(crate) use command::{Command, Proposed, SnapshotRecord};
pub(crate) use stored_version::StoredVersion;

/// The version of the config server's internal formats this build writes (and the newest it
/// reads).
pub(crate) type FormatVersion = msakit_server_kit::FormatVersion<1>;

#[cfg(test)]
mod golden;
