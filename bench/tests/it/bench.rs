//! Small runs of `scale` and `compare`, checking the tables they print.

use std::process::Command;

fn bench(args: &[&str]) -> (bool, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_msakit-bench"))
        .args(args)
        .output()
        .expect("msakit-bench runs");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn a_small_scale_run_reports_every_measure() {
    let (ok, stdout, stderr) = bench(&[
        "scale",
        "--instances",
        "3000",
        "--interval-seconds",
        "1",
        "--seconds",
        "3",
        "--watchers",
        "20",
    ]);
    assert!(ok, "{stdout}\n{stderr}");
    for line in [
        "| registration of 3000 instances",
        "| RSS idle",
        "| full fetch, one service",
        "| full fetch, whole registry",
        "| heartbeats: target 3000/s",
        "| registry CPU during heartbeats",
        "| propagation to 20 watchers",
    ] {
        assert!(stdout.contains(line), "no {line:?} in\n{stdout}");
    }
    assert!(stdout.contains(", 0 failed"), "{stdout}");
}

fn etcd_on_path() -> bool {
    Command::new("etcd")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn compare_runs_against_etcd_or_says_what_is_missing() {
    let (ok, stdout, stderr) = bench(&[
        "compare",
        "--instances",
        "2000",
        "--seconds",
        "1",
        "--concurrency",
        "16",
        "--watchers",
        "50",
        "--pairs",
        "1",
        "--write",
        "-",
    ]);
    if !etcd_on_path() {
        assert!(
            !ok && stderr.contains("apt-get install -y etcd-server"),
            "{stderr}"
        );
    } else if cfg!(feature = "etcd") {
        assert!(ok, "{stdout}\n{stderr}");
        for workload in [
            "| register 2000 instances",
            "| heartbeats at saturation",
            "| look up 1 service",
            "| propagate 1 change to 50 watchers",
            "| durable config writes",
            "| config reads",
            "| memory with 2000 instances",
        ] {
            assert!(stdout.contains(workload), "no {workload:?} in\n{stdout}");
        }
        assert!(
            stdout.contains("Failed requests across all runs: 0."),
            "{stdout}"
        );
    } else {
        assert!(!ok && stderr.contains("--features etcd"), "{stderr}");
    }
}

#[test]
fn a_short_soak_reports_no_failures_and_both_servers() {
    let (ok, stdout, stderr) = bench(&[
        "soak",
        "--seconds",
        "6",
        "--instances",
        "200",
        "--watchers",
        "5",
    ]);
    assert!(ok, "{stdout}\n{stderr}");
    for line in [
        "| heartbeats |",
        "| lookups |",
        "| registrations and deregistrations |",
        "| config writes (fsync'd) |",
        "| config reads |",
        "| registry |",
        "| config server |",
    ] {
        let row = stdout
            .lines()
            .find(|l| l.starts_with(line))
            .unwrap_or_else(|| panic!("no {line:?} in\n{stdout}"));
        if !line.ends_with("server |") && line != "| registry |" {
            let failed: u64 = row.split('|').nth(3).unwrap().trim().parse().unwrap();
            assert_eq!(failed, 0, "{row}");
        }
    }
    assert!(stdout.contains("0 streams ended early"), "{stdout}");
}

#[test]
fn a_short_cluster_run_measures_one_node_and_three() {
    let (ok, stdout, stderr) = bench(&[
        "cluster",
        "--seconds",
        "1",
        "--writers",
        "4",
        "--rounds",
        "1",
        "--write",
        "-",
    ]);
    assert!(ok, "{stdout}\n{stderr}");
    let mut setups = vec!["| 1 node |", "| 3 nodes (Raft) |"];
    if cfg!(feature = "etcd") {
        setups.push("| etcd, 3 members |");
    }
    for setup in setups {
        let row = stdout
            .lines()
            .find(|l| l.starts_with(setup))
            .unwrap_or_else(|| panic!("no {setup:?} in\n{stdout}"));
        let rate = row.split('|').nth(2).unwrap().trim();
        assert!(
            rate.parse::<f64>().is_ok_and(|r| r > 0.0),
            "{setup}: no writes got through, or some failed: {row}"
        );
    }
    // The registry's table: registrations and heartbeats on one node and on three.
    for setup in ["| 1 node |", "| 3 nodes (Raft; heartbeats to a follower) |"] {
        let row = stdout
            .lines()
            .rfind(|l| l.starts_with(setup))
            .unwrap_or_else(|| panic!("no registry row {setup:?} in\n{stdout}"));
        for column in [2, 5] {
            let rate = row.split('|').nth(column).unwrap().trim();
            assert!(
                rate.parse::<f64>().is_ok_and(|r| r > 0.0),
                "{setup}: nothing got through, or some failed: {row}"
            );
        }
    }
}
