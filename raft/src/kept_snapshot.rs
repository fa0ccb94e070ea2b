//! The last snapshot a node kept — its metadata and its bytes — in a table of its own.
//!
//! redb copies a B-tree page whole whenever a row on it changes, and a snapshot is megabytes: in
//! the same table as the small rows Raft rewrites on every write (the vote, the commit index,
//! the applied log id), it was copied and hashed again by every write, which took cluster writes
//! from thousands per second to dozens once the first snapshot was kept. Here it is written only
//! when a snapshot is kept, and a file written by an earlier build is moved over on open.

use openraft::{BasicNode, SnapshotMeta};
use redb::{ReadTransaction, ReadableTable, TableDefinition, TableError, WriteTransaction};

use crate::NodeId;

/// `meta` → the snapshot's metadata (JSON), `data` → its bytes.
const KEPT: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("raft_snapshot");

/// Where an earlier build kept the snapshot, among other rows.
const EARLIER_META: &str = "snapshot_meta";
const EARLIER_DATA: &str = "snapshot_data";

/// A snapshot as kept: its metadata and its bytes.
pub type StoredSnapshot = (SnapshotMeta<NodeId, BasicNode>, Vec<u8>);

/// Why the kept snapshot could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum KeptSnapshotError {
    /// The database failed.
    #[error("the kept snapshot: {0}")]
    Database(#[from] redb::Error),
    /// Its metadata cannot be read (damaged, or written by a newer build).
    #[error("the kept snapshot's metadata cannot be read: {0}")]
    Unreadable(#[from] serde_json::Error),
}

fn db<E: Into<redb::Error>>(e: E) -> KeptSnapshotError {
    KeptSnapshotError::Database(e.into())
}

/// Keeps `meta` and `data` as the snapshot, inside `write` — unless the one kept already reaches
/// as far: a snapshot built while a newer one was installed must not replace it (the log before
/// the newer one may be gone). Whether it was kept.
pub fn keep_snapshot(
    write: &WriteTransaction,
    meta: &SnapshotMeta<NodeId, BasicNode>,
    data: &[u8],
) -> Result<bool, KeptSnapshotError> {
    let mut table = write.open_table(KEPT).map_err(db)?;
    let kept: Option<SnapshotMeta<NodeId, BasicNode>> = match table.get("meta").map_err(db)? {
        Some(kept) => Some(serde_json::from_slice(kept.value())?),
        None => None,
    };
    if kept.is_some_and(|kept| kept.last_log_id >= meta.last_log_id) {
        return Ok(false);
    }
    table
        .insert("meta", serde_json::to_vec(meta)?.as_slice())
        .map_err(db)?;
    table.insert("data", data).map_err(db)?;
    Ok(true)
}

/// The snapshot kept last, if any.
pub fn kept_snapshot(read: &ReadTransaction) -> Result<Option<StoredSnapshot>, KeptSnapshotError> {
    let table = match read.open_table(KEPT) {
        Ok(table) => table,
        Err(TableError::TableDoesNotExist(_)) => return Ok(None),
        Err(e) => return Err(db(e)),
    };
    let Some(meta) = table.get("meta").map_err(db)? else {
        return Ok(None);
    };
    let meta = serde_json::from_slice(meta.value())?;
    let data = table
        .get("data")
        .map_err(db)?
        .map(|d| d.value().to_vec())
        .unwrap_or_default();
    Ok(Some((meta, data)))
}

/// Creates the table, and moves a snapshot an earlier build kept among the rows of `earlier`
/// (as `snapshot_meta` and `snapshot_data`) into it, inside `write`.
pub fn move_earlier_snapshot(
    write: &WriteTransaction,
    earlier: TableDefinition<'_, &str, &[u8]>,
) -> Result<(), KeptSnapshotError> {
    let mut kept = write.open_table(KEPT).map_err(db)?;
    let mut earlier = write.open_table(earlier).map_err(db)?;
    let meta = earlier
        .remove(EARLIER_META)
        .map_err(db)?
        .map(|meta| meta.value().to_vec());
    let data = earlier
        .remove(EARLIER_DATA)
        .map_err(db)?
        .map(|data| data.value().to_vec());
    if let Some(meta) = meta {
        kept.insert("meta", meta.as_slice()).map_err(db)?;
        kept.insert("data", data.unwrap_or_default().as_slice())
            .map_err(db)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use openraft::{CommittedLeaderId, LogId, StoredMembership};
    use redb::ReadableDatabase;

    use super::*;

    const EARLIER: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("earlier");

    fn meta(index: u64) -> SnapshotMeta<NodeId, BasicNode> {
        SnapshotMeta {
            last_log_id: Some(LogId::new(CommittedLeaderId::new(1, 1), index)),
            last_membership: StoredMembership::default(),
            snapshot_id: format!("1-{index}"),
        }
    }

    fn database() -> (tempfile::TempDir, redb::Database) {
        let dir = tempfile::tempdir().unwrap();
        let db = redb::Database::create(dir.path().join("db.redb")).unwrap();
        (dir, db)
    }

    fn kept(db: &redb::Database) -> Option<StoredSnapshot> {
        kept_snapshot(&db.begin_read().unwrap()).unwrap()
    }

    #[test]
    fn an_older_snapshot_never_replaces_a_newer_one() {
        let (_dir, db) = database();
        assert!(kept(&db).is_none());
        for (index, data, replaces) in [(10, b"ten", true), (5, b"fiv", false), (20, b"twe", true)]
        {
            let write = db.begin_write().unwrap();
            assert_eq!(keep_snapshot(&write, &meta(index), data).unwrap(), replaces);
            write.commit().unwrap();
        }
        let (kept_meta, data) = kept(&db).unwrap();
        assert_eq!(kept_meta.last_log_id.unwrap().index, 20);
        assert_eq!(data, b"twe");
    }

    #[test]
    fn a_snapshot_kept_by_an_earlier_build_is_moved_out_of_the_busy_rows() {
        let (_dir, db) = database();
        let write = db.begin_write().unwrap();
        {
            let mut earlier = write.open_table(EARLIER).unwrap();
            earlier.insert("vote", b"{}".as_slice()).unwrap();
            let meta = serde_json::to_vec(&meta(7)).unwrap();
            earlier.insert(EARLIER_META, meta.as_slice()).unwrap();
            earlier.insert(EARLIER_DATA, b"seven".as_slice()).unwrap();
        }
        write.commit().unwrap();

        let write = db.begin_write().unwrap();
        move_earlier_snapshot(&write, EARLIER).unwrap();
        write.commit().unwrap();

        let (kept_meta, data) = kept(&db).unwrap();
        assert_eq!(kept_meta.last_log_id.unwrap().index, 7);
        assert_eq!(data, b"seven");
        let read = db.begin_read().unwrap();
        let earlier = read.open_table(EARLIER).unwrap();
        assert!(earlier.get(EARLIER_DATA).unwrap().is_none());
        assert!(earlier.get(EARLIER_META).unwrap().is_none());
        assert!(earlier.get("vote").unwrap().is_some(), "other rows stay");
    }
}
