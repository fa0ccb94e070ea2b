//! Every build reads the formats earlier builds wrote: the golden files in `tests/formats/`
//! (written by the build before format versions, `1/`) are read, applied, and written back
//! unchanged but for the version stamp.

use msakit_raft::testing::add_unknown_fields;
use msakit_server_kit::testing::{golden_file, stamped};
use serde_json::{Value, json};

use super::{SnapshotRecord, StoredVersion};
use crate::cluster::TypeConfig;
use crate::config_store::{Committer, ConfigStore};
use crate::document::DocKey;
use crate::storage::{Storage, StorageError};
use crate::writes::Writes;

type Entry = openraft::Entry<TypeConfig>;

/// A single node's config store over `store`.
fn config_store(store: Storage) -> Result<ConfigStore, StorageError> {
    let committer = Committer::open(store, 100, Default::default())?;
    let writes = std::sync::Arc::new(Writes::new(committer.clone(), None));
    Ok(ConfigStore::new(&committer, writes, None, 1 << 20))
}

fn golden(version: u16, name: &str) -> Value {
    golden_file(env!("CARGO_MANIFEST_DIR"), version, name)
}

/// Where a log entry's records are: each proposed version's stored version; a schema's or
/// file's command and its audit entry.
fn records_of(entry: &Value) -> Vec<String> {
    let command = entry["payload"]["Normal"].as_object().expect("a command");
    let (variant, body) = command.iter().next().unwrap();
    let at = format!("/payload/Normal/{variant}");
    match body {
        Value::Array(proposed) => (0..proposed.len())
            .map(|i| format!("{at}/{i}/stored"))
            .collect(),
        _ => vec![at.clone(), format!("{at}/audit")],
    }
}

const LOG_ENTRIES: [&str; 6] = [
    "log-versions.json",
    "log-rollback.json",
    "log-delete.json",
    "log-schema.json",
    "log-file.json",
    "log-file-delete.json",
];

#[test]
fn log_entries_of_every_command_read_and_write_back_the_same_json() {
    for name in LOG_ENTRIES {
        let text = golden(1, name);
        let entry: Entry =
            serde_json::from_value(text.clone()).unwrap_or_else(|e| panic!("{name}: {e}"));
        let written = serde_json::to_value(&entry).unwrap();
        // What builds before versioning read: the same JSON, and fields they ignore.
        assert_eq!(written, stamped(text.clone(), &records_of(&text)), "{name}");
    }
}

/// Every row of a snapshot's dump, each stored record parsed, without its version stamp.
fn rows_unstamped(dump: &Value) -> Value {
    let mut dump = dump.clone();
    for table in ["versions", "audit"] {
        for row in dump[table].as_array_mut().unwrap() {
            let mut record: Value = serde_json::from_str(row[1].as_str().unwrap()).unwrap();
            record.as_object_mut().unwrap().remove("format_version");
            row[1] = record;
        }
    }
    dump
}

#[test]
fn applying_the_golden_log_gives_the_golden_snapshot_and_stored_version() {
    let dir = tempfile::tempdir().unwrap();
    let store = Storage::open(dir.path()).unwrap();
    let committer = Committer::open(store.clone(), 100, Default::default()).unwrap();
    for name in ["log-schema.json", "log-versions.json", "log-file.json"] {
        let entry: Entry = serde_json::from_value(golden(1, name)).unwrap();
        let openraft::EntryPayload::Normal(command) = entry.payload else {
            panic!("{name}: not a command");
        };
        committer.apply(command, None).unwrap();
    }
    let snapshot = golden(1, "snapshot.json");
    let (dump, _) = store.dump(&[]).unwrap();
    assert_eq!(
        rows_unstamped(&serde_json::to_value(&dump).unwrap()),
        rows_unstamped(&snapshot["dump"]),
        "the log applied today gives the state it gave then"
    );

    let stored_golden = golden(1, "stored-version.json");
    let key = DocKey::new("orders", "prod", "main").unwrap();
    let head = store.version(&key.storage_key(), 2).unwrap().unwrap();
    let record: StoredVersion = serde_json::from_value(stored_golden.clone()).unwrap();
    assert_eq!(head, record);
    let written = serde_json::to_value(&record).unwrap();
    assert_eq!(written, stamped(stored_golden, &[String::new()]));

    // The golden snapshot installs as it is, and the server serves what it holds.
    let record: SnapshotRecord = serde_json::from_value(snapshot).unwrap();
    let other = tempfile::tempdir().unwrap();
    let restored = Storage::open(other.path()).unwrap();
    restored.restore(&record.dump, &[], None).unwrap();
    let service = config_store(restored).unwrap();
    let served = service.get(&key).unwrap();
    assert_eq!(
        (served.version, served.content.as_str()),
        (2, "pool:\n  size: 16\n")
    );
}

#[test]
fn fields_a_newer_build_adds_are_ignored_everywhere() {
    for name in LOG_ENTRIES {
        let text = golden(1, name);
        let mut newer = text.clone();
        let command = newer
            .pointer_mut("/payload/Normal")
            .and_then(Value::as_object_mut)
            .and_then(|o| o.values_mut().next())
            .unwrap();
        add_unknown_fields(command, &[]);
        let newer: Entry = serde_json::from_value(newer).unwrap_or_else(|e| panic!("{name}: {e}"));
        let plain: Entry = serde_json::from_value(text).unwrap();
        assert_eq!(newer.payload, plain.payload, "{name}");
    }
    let mut stored = golden(1, "stored-version.json");
    add_unknown_fields(&mut stored, &[]);
    serde_json::from_value::<StoredVersion>(stored).unwrap();
    let mut snapshot = golden(1, "snapshot.json");
    snapshot["added_by_a_newer_build"] = json!(true);
    serde_json::from_value::<SnapshotRecord>(snapshot).unwrap();
}

#[test]
fn a_newer_format_version_is_refused_by_name_also_when_stored() {
    let mut entry = golden(1, "log-schema.json");
    entry["payload"]["Normal"]["Schema"]["format_version"] = json!(2);
    let error = serde_json::from_value::<Entry>(entry)
        .unwrap_err()
        .to_string();
    assert!(error.contains("format version 2 cannot be read"), "{error}");

    // A store holding a version a newer build wrote: the server refuses to start, by name,
    // instead of serving without the document.
    let mut snapshot = golden(1, "snapshot.json");
    let row = &mut snapshot["dump"]["versions"][1][1];
    let mut newer: Value = serde_json::from_str(row.as_str().unwrap()).unwrap();
    newer["format_version"] = json!(2);
    *row = json!(newer.to_string());
    let record: SnapshotRecord = serde_json::from_value(snapshot).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = Storage::open(dir.path()).unwrap();
    store.restore(&record.dump, &[], None).unwrap();
    let Err(error) = config_store(store) else {
        panic!("a version of a newer format was not refused");
    };
    let error = error.to_string();
    assert!(error.contains("format version 2 cannot be read"), "{error}");
    assert!(error.contains("orders/prod/main"), "{error}");
}
