//! `msakit-bench compare`: both sides, the same workloads, the same client concurrency, measured
//! alternately (msakit, etcd, msakit, etcd, …) with the median of the per-pair ratios reported,
//! because the machine is noisy. Writes a Markdown table to stdout and into `BENCHMARKS.md`.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use crate::load::{Measured, quantile};
use crate::workload::{Side, Sizes, with_cpu};

/// How the comparison runs.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct CompareArgs {
    /// Instances registered per round.
    #[arg(long, default_value_t = 100_000)]
    pub(crate) instances: u64,
    /// Seconds per throughput run.
    #[arg(long, default_value_t = 3)]
    pub(crate) seconds: u64,
    /// Concurrent clients.
    #[arg(long, default_value_t = 64)]
    pub(crate) concurrency: usize,
    /// Watchers in the propagation workload.
    #[arg(long, default_value_t = 1000)]
    pub(crate) watchers: usize,
    /// msakit/etcd pairs per workload (A B A B …).
    #[arg(long, default_value_t = 2)]
    pub(crate) pairs: u32,
    /// Where to write the table (a section between markers); `-` for stdout only.
    #[arg(long, default_value = "BENCHMARKS.md")]
    pub(crate) write: String,
}

/// One line of the table.
struct Row {
    workload: String,
    ours: Vec<Measured>,
    theirs: Vec<Measured>,
    /// Whether more is better (throughput) or less (latency, memory).
    higher_is_better: bool,
    /// The headline of one run: ops/s, p99 in ms, or MiB.
    headline: fn(&Measured) -> f64,
    unit: &'static str,
}

impl Row {
    fn new(
        workload: String,
        higher_is_better: bool,
        headline: fn(&Measured) -> f64,
        unit: &'static str,
    ) -> Self {
        Self {
            workload,
            ours: Vec::new(),
            theirs: Vec::new(),
            higher_is_better,
            headline,
            unit,
        }
    }

    /// A throughput row: operations per second, more is better.
    fn throughput(workload: impl Into<String>) -> Self {
        Self::new(workload.into(), true, ops, "/s")
    }

    /// Runs the `rounds`, ours then theirs in each (A B A B …), into the row.
    async fn alternate<FutA, FutB>(
        &mut self,
        rounds: std::ops::Range<u32>,
        mut ours: impl FnMut(u32) -> FutA,
        mut theirs: impl FnMut(u32) -> FutB,
    ) -> anyhow::Result<()>
    where
        FutA: std::future::Future<Output = anyhow::Result<Measured>>,
        FutB: std::future::Future<Output = anyhow::Result<Measured>>,
    {
        for round in rounds {
            self.ours.push(ours(round).await?);
            self.theirs.push(theirs(round).await?);
        }
        Ok(())
    }

    fn median_ratio(&self) -> f64 {
        let mut ratios: Vec<f64> = self
            .ours
            .iter()
            .zip(&self.theirs)
            .map(|(a, b)| (self.headline)(a) / (self.headline)(b).max(1e-9))
            .collect();
        ratios.sort_by(f64::total_cmp);
        match ratios.len() {
            0 => f64::NAN,
            n if n % 2 == 1 => ratios[n / 2],
            n => (ratios[n / 2 - 1] + ratios[n / 2]) / 2.0,
        }
    }

    fn ahead(&self) -> bool {
        let ratio = self.median_ratio();
        if self.higher_is_better {
            ratio >= 1.0
        } else {
            ratio <= 1.0
        }
    }
}

/// The median over `runs` of what `f` measures.
pub(crate) fn median(runs: &[Measured], f: impl Fn(&Measured) -> f64) -> f64 {
    let mut values: Vec<f64> = runs.iter().map(f).collect();
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}

fn ops(m: &Measured) -> f64 {
    m.per_second()
}

fn p99_ms(m: &Measured) -> f64 {
    m.quantile(0.99).as_secs_f64() * 1e3
}

fn rss(m: &Measured) -> f64 {
    // The memory row keeps RSS (MiB) in `ops`.
    m.ops as f64
}

/// Runs every workload on both sides; the Markdown report.
pub(crate) async fn compare<A: Side, B: Side>(
    ours: &A,
    theirs: &B,
    args: &CompareArgs,
) -> anyhow::Result<String> {
    let sizes = Sizes {
        instances: args.instances,
        services: (args.instances / 100).max(1),
        duration: Duration::from_secs(args.seconds),
        concurrency: args.concurrency,
        watchers: args.watchers,
        changes: 20,
    };
    let pairs = args.pairs.max(1);
    let mut rows = Vec::new();

    eprintln!(
        "1/6 registering {} instances per round, {pairs} round(s) each side",
        sizes.instances
    );
    let mut row = Row::throughput(format!(
        "register {} instances (etcd: lease grant + put)",
        sizes.instances
    ));
    // Round 0 first: memory is measured with exactly its instances registered.
    let register_ours = |round| async move {
        Ok(with_cpu(ours.registry_server(), ours.register(round, sizes)).await)
    };
    let register_theirs = |round| async move {
        Ok(with_cpu(theirs.registry_server(), theirs.register(round, sizes)).await)
    };
    row.alternate(0..1, register_ours, register_theirs).await?;
    let mut memory = Row::new(
        format!("memory with {} instances registered (RSS)", sizes.instances),
        false,
        rss,
        "MiB",
    );
    let resident = |server: &crate::process::Server| Measured {
        ops: server.rss_mib().round() as u64,
        ..Default::default()
    };
    memory.ours.push(resident(ours.registry_server()));
    memory.theirs.push(resident(theirs.registry_server()));
    row.alternate(1..pairs, register_ours, register_theirs)
        .await?;
    rows.push(row);

    eprintln!("2/6 heartbeats at saturation");
    let mut row = Row::throughput("heartbeats at saturation (etcd: lease keep-alive)");
    row.alternate(
        0..pairs,
        |_| async move { Ok(with_cpu(ours.registry_server(), ours.heartbeats(sizes)).await) },
        |_| async move { Ok(with_cpu(theirs.registry_server(), theirs.heartbeats(sizes)).await) },
    )
    .await?;
    rows.push(row);

    eprintln!("3/6 lookups of one service of 10 instances");
    ours.prepare_lookup().await?;
    theirs.prepare_lookup().await?;
    let mut row =
        Row::throughput("look up 1 service of 10 instances (etcd: serializable prefix range)");
    row.alternate(
        0..pairs,
        |_| async move { Ok(with_cpu(ours.registry_server(), ours.lookup(sizes)).await) },
        |_| async move { Ok(with_cpu(theirs.registry_server(), theirs.lookup(sizes)).await) },
    )
    .await?;
    rows.push(row);

    eprintln!(
        "4/6 propagation of one change to {} watchers",
        sizes.watchers
    );
    let delays = |delays: Vec<Duration>| Measured {
        ops: delays.len() as u64,
        latencies: delays,
        ..Default::default()
    };
    let mut row = Row::new(
        format!(
            "propagate 1 change to {} watchers, p99 (etcd: prefix watch)",
            sizes.watchers
        ),
        false,
        p99_ms,
        "ms",
    );
    row.alternate(
        0..pairs,
        |round| async move { Ok(delays(ours.propagation(round, sizes).await?)) },
        |round| async move { Ok(delays(theirs.propagation(round, sizes).await?)) },
    )
    .await?;
    rows.push(row);

    eprintln!("5/6 durable config writes and reads");
    let writes = Sizes {
        concurrency: args.concurrency.min(16),
        ..sizes
    };
    let mut row = Row::throughput(format!(
        "durable config writes, fsync'd, {} writers (etcd: put)",
        writes.concurrency
    ));
    row.alternate(
        0..pairs,
        |_| async move { Ok(with_cpu(ours.config_server(), ours.config_writes(writes)).await) },
        |_| async move { Ok(with_cpu(theirs.config_server(), theirs.config_writes(writes)).await) },
    )
    .await?;
    rows.push(row);
    let mut row = Row::throughput("config reads (etcd: serializable get)");
    row.alternate(
        0..pairs,
        |_| async move { Ok(with_cpu(ours.config_server(), ours.config_reads(sizes)).await) },
        |_| async move { Ok(with_cpu(theirs.config_server(), theirs.config_reads(sizes)).await) },
    )
    .await?;
    rows.push(row);
    eprintln!("6/6 memory");
    rows.push(memory);
    Ok(table(&rows, args, pairs))
}

fn table(rows: &[Row], args: &CompareArgs, pairs: u32) -> String {
    let mut out = String::new();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let _ = writeln!(
        out,
        "Command: `cargo run --release -p msakit-bench --features etcd -- compare --instances {} --seconds {} --concurrency {} --watchers {} --pairs {pairs}`. \
         Machine: {cores} cores, Linux {}. Servers and load generator on the same machine, loopback; \
         each side measured {pairs} time(s), alternately; the ratio is the median of the per-pair ratios. \
         CPU is the server process's user + system time during the runs (median run).\n",
        args.instances,
        args.seconds,
        args.concurrency,
        args.watchers,
        kernel.trim()
    );
    let _ = writeln!(
        out,
        "| workload | msakit | etcd | msakit p50 / p99 | etcd p50 / p99 | CPU s msakit / etcd | ratio msakit / etcd | |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|---|");
    for row in rows {
        let value = |runs: &[Measured]| {
            let v = median(runs, row.headline);
            if row.unit == "/s" {
                format!("{v:.0}/s")
            } else {
                format!("{v:.1} {}", row.unit)
            }
        };
        let latency = |runs: &[Measured]| {
            if row.unit == "MiB" {
                return "–".to_owned();
            }
            let all: Vec<Duration> = {
                let mut all: Vec<Duration> = runs
                    .iter()
                    .flat_map(|m| m.latencies.iter().copied())
                    .collect();
                all.sort();
                all
            };
            format!(
                "{:.2} / {:.2} ms",
                quantile(&all, 0.5).as_secs_f64() * 1e3,
                quantile(&all, 0.99).as_secs_f64() * 1e3
            )
        };
        let cpu = |runs: &[Measured]| median(runs, |m| m.cpu.as_secs_f64());
        let cpu_text = if row.unit == "/s" {
            format!("{:.2} / {:.2}", cpu(&row.ours), cpu(&row.theirs))
        } else {
            "–".to_owned()
        };
        let ratio = row.median_ratio();
        let verdict = match (row.ahead(), row.higher_is_better) {
            (true, _) => "**ahead**",
            (false, true) => "behind (higher is better)",
            (false, false) => "behind (lower is better)",
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {ratio:.2}× | {verdict} |",
            row.workload,
            value(&row.ours),
            value(&row.theirs),
            latency(&row.ours),
            latency(&row.theirs),
            cpu_text
        );
    }
    let errors: u64 = rows
        .iter()
        .flat_map(|r| r.ours.iter().chain(&r.theirs))
        .map(|m| m.errors)
        .sum();
    let _ = writeln!(out, "\nFailed requests across all runs: {errors}.");
    out
}

/// Replaces the section between the compare markers in `path` (appending it if absent).
pub(crate) fn write_section(path: &PathBuf, table: &str) -> anyhow::Result<()> {
    replace_section(path, "compare", "Side by side with etcd", table)
}

/// Replaces the text between `<!-- msakit-bench {name}: begin/end -->` in `path`, or appends it
/// under a `## {heading}` when the markers are absent.
pub(crate) fn replace_section(
    path: &PathBuf,
    name: &str,
    heading: &str,
    table: &str,
) -> anyhow::Result<()> {
    let begin = format!("<!-- msakit-bench {name}: begin -->");
    let end = format!("<!-- msakit-bench {name}: end -->");
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let section = format!("{begin}\n{table}{end}");
    let updated = match (text.find(&begin), text.find(&end)) {
        (Some(b), Some(e)) if e > b => {
            format!("{}{section}{}", &text[..b], &text[e + end.len()..])
        }
        _ => format!("{text}\n## {heading}\n\n{section}\n"),
    };
    std::fs::write(path, updated)?;
    Ok(())
}
