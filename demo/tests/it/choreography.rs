//! The choreographed saga passes its fault phases: on the direct transport always, on Kafka
//! when `MSAKIT_KAFKA` names a broker (and stops it for 10 s when `MSAKIT_KAFKA_DIR` is the
//! directory `events/kafka/start` ran it in, as `.ci/run` does).

use std::time::Duration;

use crate::support::{demo, one_at_a_time, read_until};

fn passes(args: &[&str], phases: &[&str]) {
    let _one = one_at_a_time();
    let mut child = demo(args);
    let lines = read_until(&mut child, "RESULT:", Duration::from_secs(300));
    let status = child.wait().unwrap();
    let output = lines.join("\n");
    assert!(output.contains("RESULT: PASS"), "{output}");
    assert!(status.success(), "exit status {status}: {output}");
    for phase in phases {
        assert!(
            output.contains(&format!("| {phase} |")),
            "no report line for {phase}: {output}"
        );
    }
    for invariant in [
        "every order ends COMPLETED or CANCELLED",
        "no event lost",
        "no effect applied twice",
        "each order's events applied in the order published",
        "no dead letters, nothing left in an outbox",
    ] {
        assert!(
            output.contains(invariant),
            "no check of {invariant}: {output}"
        );
    }
    assert!(!output.contains("| FAIL |"), "{output}");
}

#[test]
fn the_choreographed_saga_on_the_direct_transport_survives_sigkills() {
    passes(
        &["--choreography", "--quick"],
        &[
            "1 steady",
            "2 relay killed",
            "3 consumer killed",
            "invariants",
        ],
    );
}

#[test]
fn the_choreographed_saga_on_kafka_survives_sigkills_and_the_broker_stopping() {
    let Some(kafka) = std::env::var("MSAKIT_KAFKA").ok().filter(|k| !k.is_empty()) else {
        eprintln!("skipped: no Kafka broker (set MSAKIT_KAFKA=host:port; .ci/run starts one)");
        return;
    };
    let mut args = vec!["--choreography", "--quick", "--kafka", &kafka];
    let mut phases = vec![
        "1 steady",
        "2 relay killed",
        "3 consumer killed",
        "invariants",
    ];
    let dir = std::env::var("MSAKIT_KAFKA_DIR").unwrap_or_default();
    if !dir.is_empty() {
        args.extend(["--kafka-dir", &dir]);
        phases.push("4 broker down");
    }
    passes(&args, &phases);
}
