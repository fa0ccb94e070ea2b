//! Every build reads the formats earlier builds wrote: the golden files in `tests/formats/`
//! (written by the build before format versions, `1/`) are read, applied, and written back
//! unchanged but for the version stamp.

use msakit_server_kit::testing::{golden_file, stamped};
use serde_json::{Value, json};

use super::{SnapshotRecord, StoredInstanceRecord};
use crate::cluster::TypeConfig;
use crate::registry::{Dumped, EvictionCheck, RegistryWriter};
use crate::writes::{self, Applied};

type Entry = openraft::Entry<TypeConfig>;

fn golden(version: u16, name: &str) -> Value {
    golden_file(env!("CARGO_MANIFEST_DIR"), version, name)
}

/// The pointer to a log entry's command body (`/payload/Normal/{Variant}`).
fn command_body(entry: &Value) -> String {
    let variant = entry["payload"]["Normal"]
        .as_object()
        .and_then(|o| o.keys().next())
        .expect("a command");
    format!("/payload/Normal/{variant}")
}

const LOG_ENTRIES: [&str; 7] = [
    "log-register-eureka.json",
    "log-register-native.json",
    "log-merge-metadata.json",
    "log-override.json",
    "log-check-verdict.json",
    "log-deregister.json",
    "log-evict.json",
];

#[test]
fn log_entries_of_every_command_read_and_write_back_the_same_json() {
    for name in LOG_ENTRIES {
        let text = golden(1, name);
        let entry: Entry =
            serde_json::from_value(text.clone()).unwrap_or_else(|e| panic!("{name}: {e}"));
        let written = serde_json::to_value(&entry).unwrap();
        // What builds before versioning read: the same JSON, and a field they ignore.
        assert_eq!(
            written,
            stamped(text.clone(), &[&command_body(&text)]),
            "{name}"
        );
    }
}

#[test]
fn applying_the_golden_log_gives_the_golden_snapshot_and_stored_record() {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let registry = RegistryWriter::new(&crate::config::RegistryConfig::default(), Some(tx));
    for name in &LOG_ENTRIES[..5] {
        let entry: Entry = serde_json::from_value(golden(1, name)).unwrap();
        let openraft::EntryPayload::Normal(command) = entry.payload else {
            panic!("{name}: not a command");
        };
        let applied = writes::apply(&registry, command, EvictionCheck::LeaderDecided);
        assert!(
            !matches!(applied, Applied::Refused(_)),
            "{name}: {applied:?}"
        );
    }
    let snapshot = golden(1, "snapshot.json");
    let record: SnapshotRecord = serde_json::from_value(snapshot.clone()).unwrap();
    let from_golden = Dumped::from(record);
    // In the order of the registry's maps, which is not fixed: compared sorted.
    let sorted = |mut dumped: Dumped| {
        dumped.instances.sort_by(|a, b| a.id.cmp(&b.id));
        dumped.services.sort();
        dumped
    };
    let golden_state = sorted(Dumped::from(
        serde_json::from_value::<SnapshotRecord>(snapshot.clone()).unwrap(),
    ));
    assert_eq!(
        sorted(registry.dump()),
        golden_state,
        "the log applied today gives the state it gave then"
    );

    let instances = snapshot["instances"].as_array().unwrap().len();
    let mut pointers = vec![String::new()];
    pointers.extend((0..instances).map(|i| format!("/instances/{i}")));
    let pointers: Vec<&str> = pointers.iter().map(String::as_str).collect();
    let written = serde_json::to_value(SnapshotRecord::from(from_golden)).unwrap();
    assert_eq!(written, stamped(snapshot, &pointers));

    let mut last_put = None;
    while let Ok(op) = rx.try_recv() {
        if let crate::registry::PersistOp::Put(key, stored, _) = op {
            if key.starts_with("public/payments/") {
                last_put = Some(stored);
            }
        }
    }
    let stored_golden = golden(1, "stored-instance.json");
    let record: StoredInstanceRecord = serde_json::from_value(stored_golden.clone()).unwrap();
    assert_eq!(*last_put.expect("stored"), record.clone().into());
    let written = serde_json::to_value(record).unwrap();
    assert_eq!(written, stamped(stored_golden, &[""]));
}

/// Adds a field this build does not know to every object under `value` but free-form maps, as
/// a newer build adding optional fields would.
fn with_unknown_fields(value: &mut Value) {
    msakit_raft::testing::add_unknown_fields(value, FREE_FORM);
}

/// The maps whose keys are data, not fields.
const FREE_FORM: &[&str] = &["metadata", "entries"];

#[test]
fn fields_a_newer_build_adds_are_ignored_everywhere() {
    for name in LOG_ENTRIES {
        let text = golden(1, name);
        let mut newer = text.clone();
        with_unknown_fields(newer.pointer_mut(&command_body(&text)).unwrap());
        let entry: Entry = serde_json::from_value(newer).unwrap_or_else(|e| panic!("{name}: {e}"));
        let plain: Entry = serde_json::from_value(text).unwrap();
        assert_eq!(entry.payload, plain.payload, "{name}");
    }
    for name in ["snapshot.json", "stored-instance.json"] {
        let mut newer = golden(1, name);
        with_unknown_fields(&mut newer);
        if name == "snapshot.json" {
            serde_json::from_value::<SnapshotRecord>(newer)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
        } else {
            serde_json::from_value::<StoredInstanceRecord>(newer)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
        }
    }
}

#[test]
fn a_newer_format_version_is_refused_by_name() {
    let mut entry = golden(1, "log-deregister.json");
    let body = command_body(&entry);
    entry.pointer_mut(&body).unwrap()["format_version"] = json!(2);
    let error = serde_json::from_value::<Entry>(entry)
        .unwrap_err()
        .to_string();
    assert!(error.contains("format version 2 cannot be read"), "{error}");

    let mut stored = golden(1, "stored-instance.json");
    stored["format_version"] = json!(2);
    let error = serde_json::from_value::<StoredInstanceRecord>(stored)
        .unwrap_err()
        .to_string();
    assert!(error.contains("format version 2 cannot be read"), "{error}");

    let mut snapshot = golden(1, "snapshot.json");
    snapshot["format_version"] = json!(2);
    assert!(serde_json::from_value::<SnapshotRecord>(snapshot).is_err());
}

#[test]
fn a_batch_of_the_golden_commands_gives_what_they_gave_one_entry_each() {
    let commands: Vec<super::Command> = LOG_ENTRIES[..5]
        .iter()
        .map(|name| {
            let entry: Entry = serde_json::from_value(golden(1, name)).unwrap();
            match entry.payload {
                openraft::EntryPayload::Normal(command) => command,
                _ => panic!("{name}: not a command"),
            }
        })
        .collect();
    let config = crate::config::RegistryConfig::default();
    let one_by_one = RegistryWriter::new(&config, None);
    // An outcome as every node gives it: without the lease's local renewal time.
    let replicated = |applied: &Applied| {
        let mut value = serde_json::to_value(applied).unwrap();
        for lease in ["/Granted/instance", "/Instance"] {
            if let Some(Value::Object(instance)) = value.pointer_mut(lease) {
                instance.remove("last_renewed_at_ms");
            }
        }
        value
    };
    let expected: Vec<Value> = commands
        .iter()
        .map(|c| {
            replicated(&writes::apply(
                &one_by_one,
                c.clone(),
                EvictionCheck::LeaderDecided,
            ))
        })
        .collect();

    // Through the log's JSON, as a follower reads it.
    let batch = super::Command::Batch {
        format_version: super::FormatVersion::CURRENT,
        commands,
    };
    let batch: super::Command =
        serde_json::from_slice(&serde_json::to_vec(&batch).unwrap()).unwrap();
    let batched = RegistryWriter::new(&config, None);
    let Applied::Batch(outcomes) = writes::apply(&batched, batch, EvictionCheck::LeaderDecided)
    else {
        panic!("a batch answers a batch");
    };
    let outcomes: Vec<Value> = outcomes.iter().map(replicated).collect();
    assert_eq!(outcomes, expected, "each command's own outcome, in order");
    // In the order of the registry's maps, which is not fixed: compared sorted.
    let sorted = |mut dumped: Dumped| {
        dumped.instances.sort_by(|a, b| a.id.cmp(&b.id));
        dumped.services.sort();
        dumped
    };
    assert_eq!(
        sorted(batched.dump()),
        sorted(one_by_one.dump()),
        "the same state, index included"
    );
}
