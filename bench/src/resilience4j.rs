//! Part of `msakit-bench java`: Resilience4j 2.4.0 under JMH (`bench/java/resilience4j`) against
//! `msakit-resilience` under criterion (`resilience/benches/resilience.rs`), on the same shapes —
//! a breaker in CLOSED with every call succeeding and with 1 in 16 failing, a full five-part
//! chain with every call succeeding, 1 and 2 threads — each framework's overhead taken against
//! its own bare call of the same work, measured in the same run.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};
use serde_json::Value;

/// One shape, as each side names it.
struct Shape {
    what: &'static str,
    threads: u32,
    /// JMH method and parameters; the baseline is the same class's `bareCall` with the same
    /// `failing`.
    jmh: (&'static str, &'static [(&'static str, &'static str)]),
    jmh_baseline: (&'static str, &'static [(&'static str, &'static str)]),
    /// Criterion group and function, and the group's baseline function.
    criterion: (&'static str, &'static str),
    criterion_baseline: &'static str,
}

const OK: &[(&str, &str)] = &[("failing", "false")];
const FAILING: &[(&str, &str)] = &[("failing", "true")];
const REMOVE_ON_CANCEL: &[(&str, &str)] = &[("removeOnCancel", "true")];
const NONE: &[(&str, &str)] = &[];

const BREAKER_BARE: &str = "bare call (baseline)";
const POLICY_BARE: &str = "bare async call (baseline)";
const POLICY: &str = "5 layers: retry, breaker, rate limiter, timeout, bulkhead";

const ONE_OK: &str = "breaker closed, 1 thread, all calls succeeding";
const ONE_FAILING: &str = "breaker closed, 1 thread, 1 in 16 calls failing";
const TWO_OK: &str = "breaker closed, 2 threads contending, all calls succeeding";
const TWO_FAILING: &str = "breaker closed, 2 threads contending, 1 in 16 calls failing";

/// How a breaker is called: admit and record by hand, or around a function.
#[derive(Clone, Copy)]
enum Style {
    LowLevel,
    Decorated,
}
use Style::{Decorated, LowLevel};

const SHAPES: [Shape; 12] = [
    breaker(
        "breaker admit + record, all succeed",
        1,
        OK,
        ONE_OK,
        LowLevel,
    ),
    breaker(
        "breaker admit + record, 1 in 16 fail",
        1,
        FAILING,
        ONE_FAILING,
        LowLevel,
    ),
    breaker(
        "breaker admit + record, all succeed",
        2,
        OK,
        TWO_OK,
        LowLevel,
    ),
    breaker(
        "breaker admit + record, 1 in 16 fail",
        2,
        FAILING,
        TWO_FAILING,
        LowLevel,
    ),
    breaker(
        "breaker-decorated call, all succeed",
        1,
        OK,
        ONE_OK,
        Decorated,
    ),
    breaker(
        "breaker-decorated call, 1 in 16 fail",
        1,
        FAILING,
        ONE_FAILING,
        Decorated,
    ),
    breaker(
        "breaker-decorated call, all succeed",
        2,
        OK,
        TWO_OK,
        Decorated,
    ),
    breaker(
        "breaker-decorated call, 1 in 16 fail",
        2,
        FAILING,
        TWO_FAILING,
        Decorated,
    ),
    chain(
        "five-part chain (async, TimeLimiter)",
        1,
        "asyncChain_t1",
        REMOVE_ON_CANCEL,
    ),
    chain(
        "five-part chain (async, TimeLimiter)",
        2,
        "asyncChain_t2",
        REMOVE_ON_CANCEL,
    ),
    chain(
        "four-part chain (sync, no TimeLimiter)",
        1,
        "syncChain_t1",
        NONE,
    ),
    chain(
        "four-part chain (sync, no TimeLimiter)",
        2,
        "syncChain_t2",
        NONE,
    ),
];

const fn bare(threads: u32) -> &'static str {
    if threads == 1 {
        "bareCall_t1"
    } else {
        "bareCall_t2"
    }
}

/// A breaker shape called in `style` on both sides.
const fn breaker(
    what: &'static str,
    threads: u32,
    failing: &'static [(&'static str, &'static str)],
    group: &'static str,
    style: Style,
) -> Shape {
    let (method, ours) = match (style, threads) {
        (Style::LowLevel, 1) => ("cbLowLevel_t1", "msakit try_acquire+record"),
        (Style::LowLevel, _) => ("cbLowLevel_t2", "msakit try_acquire+record"),
        (Style::Decorated, 1) => ("cbDecorated_t1", "msakit call (async)"),
        (Style::Decorated, _) => ("cbDecorated_t2", "msakit call (async)"),
    };
    Shape {
        what,
        threads,
        jmh: (method, failing),
        jmh_baseline: (bare(threads), failing),
        criterion: (group, ours),
        criterion_baseline: BREAKER_BARE,
    }
}

const fn chain(
    what: &'static str,
    threads: u32,
    method: &'static str,
    params: &'static [(&'static str, &'static str)],
) -> Shape {
    let group = if threads == 1 {
        "policy, 1 thread"
    } else {
        "policy, 2 threads contending"
    };
    Shape {
        what,
        threads,
        jmh: (method, params),
        jmh_baseline: (bare(threads), OK),
        criterion: (group, POLICY),
        criterion_baseline: POLICY_BARE,
    }
}

/// Builds and runs the JMH benchmarks, runs the criterion bench, and returns the report.
pub(crate) fn resilience4j(root: &Path, scratch: &Path) -> anyhow::Result<String> {
    let project = root.join("bench/java/resilience4j");
    run(
        Command::new("mvn")
            .args(["-B", "-q", "-DskipTests", "package"])
            .current_dir(&project),
        "mvn package (bench/java/resilience4j)",
    )?;
    let results = scratch.join("jmh.json");
    run(
        Command::new("java")
            .arg("-jar")
            .arg(project.join("target/benchmarks.jar"))
            .args([
                "-f", "1", "-wi", "3", "-w", "1s", "-i", "5", "-r", "1s", "-prof", "gc",
            ])
            .args(["-rf", "json", "-rff"])
            .arg(&results),
        "JMH",
    )?;
    let jmh: Vec<Value> = serde_json::from_slice(&std::fs::read(&results)?)?;
    run(
        Command::new("cargo")
            .args(["bench", "-p", "msakit-resilience", "--bench", "resilience"])
            .current_dir(root),
        "cargo bench -p msakit-resilience",
    )?;
    let criterion = root.join("target/criterion");

    let mut report = format!(
        "Resilience4j 2.4.0 under JMH 1.37 (`-f 1 -wi 3 -w 1s -i 5 -r 1s -prof gc`, {}, defaults: \
         count window 100, Retry 3 attempts, Bulkhead 25 semaphore slots, RateLimiter 10⁹ per \
         1 s with no wait, TimeLimiter 1 s on a 1-thread scheduler with removeOnCancel, the \
         setting in its favour) against msakit-resilience under criterion (the same defaults; \
         the policy's retry also keeps a budget). Overhead = the shape minus the same framework's \
         bare call of the same work, per call and thread; allocations per call from JMH's \
         `gc.alloc.rate.norm`, ours asserted zero by `resilience/tests/it/allocations.rs`.\n\n\
         | shape | threads | Resilience4j ns/call | its overhead | bytes allocated | msakit ns/call | our overhead | ratio |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|\n",
        crate::java::java_version()
    );
    for shape in &SHAPES {
        let theirs = jmh_score(&jmh, shape.jmh.0, shape.jmh.1)?;
        let their_bare = jmh_score(&jmh, shape.jmh_baseline.0, shape.jmh_baseline.1)?;
        let ours = criterion_ns(&criterion, shape.criterion.0, shape.criterion.1)?;
        let our_bare = criterion_ns(&criterion, shape.criterion.0, shape.criterion_baseline)?;
        let (their_overhead, our_overhead) = (theirs.0 - their_bare.0, (ours - our_bare).max(0.0));
        report.push_str(&format!(
            "| {} | {} | {:.1} | {:.1} | {:.0} B | {:.1} | {:.1} | 1/{:.0} |\n",
            shape.what,
            shape.threads,
            theirs.0,
            their_overhead,
            theirs.1,
            ours,
            our_overhead,
            their_overhead / our_overhead.max(0.1),
        ));
    }
    Ok(report)
}

fn run(command: &mut Command, what: &str) -> anyhow::Result<()> {
    // Tools' output goes with the bench's progress, not into the report.
    let status = command
        .stdout(std::io::stderr())
        .status()
        .with_context(|| format!("running {what}"))?;
    if !status.success() {
        bail!("{what} failed");
    }
    Ok(())
}

/// A JMH result's score (ns/op) and bytes allocated per op.
fn jmh_score(
    results: &[Value],
    method: &str,
    params: &[(&str, &str)],
) -> anyhow::Result<(f64, f64)> {
    let found = results.iter().find(|r| {
        r["benchmark"]
            .as_str()
            .is_some_and(|b| b.ends_with(&format!(".{method}")))
            && params
                .iter()
                .all(|(k, v)| r["params"][*k].as_str() == Some(*v))
    });
    let r = found.with_context(|| format!("JMH result {method} {params:?} missing"))?;
    let score = r["primaryMetric"]["score"].as_f64().context("score")?;
    let allocated = r["secondaryMetrics"]["gc.alloc.rate.norm"]["score"]
        .as_f64()
        .unwrap_or(0.0);
    Ok((score, allocated))
}

/// A criterion result's mean, in ns. Criterion writes `/` and `:` in names as `_`.
fn criterion_ns(dir: &Path, group: &str, function: &str) -> anyhow::Result<f64> {
    let clean = |s: &str| s.replace(['/', ':'], "_");
    let path: PathBuf = dir
        .join(clean(group))
        .join(clean(function))
        .join("new/estimates.json");
    let estimates: Value = serde_json::from_slice(
        &std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?,
    )?;
    estimates["mean"]["point_estimate"]
        .as_f64()
        .context("mean in estimates.json")
}
