//! `msakit-bench gateway`: one backend, one route, one load generator, and in the same run a
//! direct call, `msakit-gateway` (routing `lb://backend` through msakit-registry), nginx
//! (Debian's, a static upstream with keep-alive: the reverse-proxy ceiling) and Spring Cloud
//! Gateway (WebFlux, from `bench/java/gateway`, routing `lb://backend` through msakit-registry's
//! Eureka API). Targets take turns, A B C D then D C B A, each measured for the same time with
//! the same closed-loop concurrency: throughput, p50/p99, the latency each adds over the direct
//! call measured next to it, and each proxy's resident memory after its runs.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::process::Command;

use crate::java::java_version;
use crate::load::{Measured, closed_loop};
use crate::process::{self, Server, free_port};

/// Settings of a `gateway` run.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct GatewayArgs {
    /// Rounds; each round measures every target once, the order reversed every other round.
    #[arg(long, default_value_t = 2)]
    rounds: usize,
    /// Measured time per target per round (after a one-second warm-up).
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Requests in flight at once (closed loop) for throughput; latency is measured again with
    /// one in flight.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Warm-up per target per round (connections, caches, the JIT); Spring Cloud Gateway also
    /// gets 20 s of load before the first round.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    warmup: Duration,
    /// Spring Cloud Gateway's maximum heap.
    #[arg(long, default_value = "512m")]
    xmx: String,
    /// Leave Spring Cloud Gateway out (no Maven build).
    #[arg(long)]
    no_spring: bool,
}

/// The body every request gets back.
const BODY: &str = "hello, world";

/// A target of the load.
struct Target {
    name: &'static str,
    url: String,
    /// The proxy's process(es), for memory; none for the direct call.
    process: Option<Proxy>,
}

/// A proxy's processes: one, or nginx's master and its workers.
enum Proxy {
    One(Server),
    Nginx {
        master: u32,
        _child: tokio::process::Child,
    },
}

impl Proxy {
    /// CPU time (user + system) of the proxy's processes so far.
    fn cpu(&self) -> Duration {
        match self {
            Proxy::One(server) => server.cpu(),
            Proxy::Nginx { master, .. } => {
                let mut pids = vec![*master];
                pids.extend(children_of(*master));
                pids.iter().map(|p| process::cpu_of(*p)).sum()
            }
        }
    }

    fn rss_mib(&self) -> f64 {
        match self {
            Proxy::One(server) => server.rss_mib(),
            Proxy::Nginx { master, .. } => {
                let mut pids = vec![*master];
                pids.extend(children_of(*master));
                pids.iter().map(|p| process::rss_mib_of(*p)).sum()
            }
        }
    }
}

fn children_of(parent: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|stat| {
                    let (_, rest) = stat.rsplit_once(')')?;
                    rest.split_whitespace().nth(1)?.parse::<u32>().ok()
                })
                == Some(parent)
        })
        .collect()
}

/// Per target: every round's measurement.
type Results = Vec<(&'static str, Vec<Measured>)>;

/// Under load (throughput) and with one request in flight (latency).
type Passes = (Results, Results);

/// Runs the comparison and returns the report (Markdown).
pub(crate) async fn gateway(args: &GatewayArgs, dir: &Path) -> anyhow::Result<String> {
    let backend = start_backend()?;
    let registry = process::start_ours("registry", &dir.join("registry"), &[]).await?;
    let http = reqwest::Client::new();
    let answered = http
        .put(format!("{}/v1/services/backend/instances/b1", registry.url))
        .json(&serde_json::json!({"host": "127.0.0.1", "port": backend, "lease_ttl_ms": 300_000}))
        .send()
        .await?;
    if !answered.status().is_success() {
        bail!("registering the backend: {}", answered.status());
    }
    let mut targets = vec![Target {
        name: "direct",
        url: format!("http://127.0.0.1:{backend}"),
        process: None,
    }];
    let ours = start_gateway_binary(&dir.join("gateway"), &registry.url)?;
    targets.push(Target {
        name: "msakit-gateway",
        url: ours.url.clone(),
        process: Some(Proxy::One(ours)),
    });
    match start_nginx(&dir.join("nginx"), backend).await {
        Ok((url, proxy)) => targets.push(Target {
            name: "nginx",
            url,
            process: Some(proxy),
        }),
        Err(e) => eprintln!("nginx left out: {e:#}"),
    }
    if !args.no_spring {
        let (url, server) = start_spring(&dir.join("spring"), &registry.url, &args.xmx).await?;
        targets.push(Target {
            name: "Spring Cloud Gateway",
            url,
            process: Some(Proxy::One(server)),
        });
    }
    for target in &targets {
        wait_for_answer(&http, &target.url)
            .await
            .with_context(|| format!("{} does not answer", target.name))?;
    }
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency * 2)
        .build()?;
    // The JVM's JIT compiles the hot path under load: give it that before anything counts.
    for target in targets.iter().filter(|t| t.name == "Spring Cloud Gateway") {
        let url = Arc::new(format!("{}/hello", target.url));
        run(&client, &url, args.concurrency, Duration::from_secs(20)).await;
    }
    let mut loaded: Results = targets.iter().map(|t| (t.name, Vec::new())).collect();
    let mut unloaded: Results = targets.iter().map(|t| (t.name, Vec::new())).collect();
    for round in 0..args.rounds {
        let mut order: Vec<usize> = (0..targets.len()).collect();
        if round % 2 == 1 {
            order.reverse();
        }
        for index in order {
            let target = &targets[index];
            eprintln!("round {round}: {}", target.name);
            let url = Arc::new(format!("{}/hello", target.url));
            run(&client, &url, args.concurrency, args.warmup).await;
            let cpu_before = target.process.as_ref().map(Proxy::cpu);
            let mut measured = run(&client, &url, args.concurrency, args.duration).await;
            // The proxy's own CPU during the run (the `cpu` field: the server's).
            if let (Some(before), Some(proxy)) = (cpu_before, &target.process) {
                measured.cpu = proxy.cpu().saturating_sub(before);
            }
            loaded[index].1.push(measured);
            unloaded[index]
                .1
                .push(run(&client, &url, 1, args.duration).await);
        }
    }
    let results = (loaded, unloaded);
    Ok(report(args, &targets, &results))
}

async fn run(
    client: &reqwest::Client,
    url: &Arc<String>,
    concurrency: usize,
    duration: Duration,
) -> Measured {
    let (client, url) = (client.clone(), Arc::clone(url));
    closed_loop(concurrency, duration, u64::MAX, move |_, _| {
        let (client, url) = (client.clone(), Arc::clone(&url));
        async move {
            match client.get(url.as_str()).send().await {
                Ok(response) if response.status().is_success() => {
                    response.bytes().await.is_ok_and(|b| b.len() == BODY.len())
                }
                _ => false,
            }
        }
    })
    .await
}

fn report(args: &GatewayArgs, targets: &[Target], results: &Passes) -> String {
    let median = |values: &mut Vec<f64>| {
        values.sort_by(f64::total_cmp);
        values.get(values.len() / 2).copied().unwrap_or(0.0)
    };
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    let (loaded, unloaded) = results;
    // Added latency against the direct call measured next to it, in the same round.
    let added = |runs: &[Measured], direct: &[Measured], p: f64| {
        median(
            &mut runs
                .iter()
                .zip(direct)
                .map(|(m, d)| us(m.quantile(p)) - us(d.quantile(p)))
                .collect(),
        )
    };
    let mut table = format!(
        "{} rounds, the targets in turn (reversed every other round), each {:?} under load ({} \
         requests in flight, closed loop) and {:?} with one in flight, after a {:?} warm-up \
         (Spring Cloud Gateway also 20 s of load first, for its JIT); reqwest with keep-alive; \
         `GET /hello` → 12 bytes from one axum backend; the load, the backend and the proxies \
         share this VM's 2 cores. Spring Cloud Gateway: `java -Xmx{}` ({}), stock settings.\n\n\
         | target | requests/s ({} in flight) | proxy CPU per request | p50 / p99 loaded | p50 / p99, 1 in flight | added p50 / p99, 1 in flight | errors | RSS after |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|\n",
        args.rounds,
        args.duration,
        args.concurrency,
        args.duration,
        args.warmup,
        args.xmx,
        java_version(),
        args.concurrency,
    );
    let mut summary = Vec::new();
    for (((name, load_runs), (_, quiet_runs)), target) in loaded.iter().zip(unloaded).zip(targets) {
        let rate = median(&mut load_runs.iter().map(Measured::per_second).collect());
        let q = |runs: &[Measured], p: f64| {
            median(&mut runs.iter().map(|m| us(m.quantile(p))).collect())
        };
        let errors: u64 = load_runs.iter().chain(quiet_runs).map(|m| m.errors).sum();
        let proxied = target.process.is_some();
        let (added50, added99) = (
            added(quiet_runs, &unloaded[0].1, 0.5),
            added(quiet_runs, &unloaded[0].1, 0.99),
        );
        let rss = target.process.as_ref().map_or(0.0, Proxy::rss_mib);
        let cpu_per_request = median(
            &mut load_runs
                .iter()
                .map(|m| us(m.cpu) / m.ops.max(1) as f64)
                .collect(),
        );
        table.push_str(&format!(
            "| {name} | {rate:.0} | {} | {:.0} / {:.0} µs | {:.0} / {:.0} µs | {} | {errors} | {} |\n",
            if proxied { format!("{cpu_per_request:.1} µs") } else { "—".into() },
            q(load_runs, 0.5),
            q(load_runs, 0.99),
            q(quiet_runs, 0.5),
            q(quiet_runs, 0.99),
            if proxied {
                format!("{added50:+.0} / {added99:+.0} µs")
            } else {
                "—".into()
            },
            if proxied {
                format!("{rss:.0} MiB")
            } else {
                "—".into()
            },
        ));
        summary.push((*name, rate, added50, rss, cpu_per_request));
    }
    let find = |name: &str| summary.iter().find(|s| s.0 == name).copied();
    table.push('\n');
    if let Some((_, ours_rate, ours_added, ours_rss, ours_cpu)) = find("msakit-gateway") {
        if let Some((_, rate, _, _, cpu)) = find("nginx") {
            table.push_str(&format!(
                "- msakit-gateway's throughput: {:.2}× nginx's (goal ≥ 0.7×); CPU per request {:.2}× nginx's.\n",
                ours_rate / rate,
                ours_cpu / cpu,
            ));
        }
        if let Some((_, rate, _, rss, cpu)) = find("Spring Cloud Gateway") {
            table.push_str(&format!(
                "- msakit-gateway's throughput: {:.1}× Spring Cloud Gateway's (goal ≥ 5×); CPU per request 1/{:.1} of its; RSS {:.3}× (1/{:.0}; goal ≤ 1/10).\n",
                ours_rate / rate,
                cpu / ours_cpu,
                ours_rss / rss,
                rss / ours_rss,
            ));
        }
        table.push_str(&format!(
            "- msakit-gateway's added p50 with one request in flight: {ours_added:.0} µs (goal ≤ 100 µs).\n"
        ));
    }
    table
}

/// The backend: one axum handler on a thread and runtime of its own; its port.
fn start_backend() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    listener.set_nonblocking(true)?;
    let port = listener.local_addr()?.port();
    std::thread::Builder::new()
        .name("backend".into())
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime");
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("a listener");
                let app = axum::Router::new().fallback(|| async { BODY });
                let _ = axum::serve(listener, app).await;
            });
        })?;
    Ok(port)
}

async fn wait_for_answer(http: &reqwest::Client, base: &str) -> anyhow::Result<()> {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(120) {
        if http
            .get(format!("{base}/hello"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    bail!("no 200 from {base}/hello in 120 s")
}

/// nginx as a reverse proxy to the backend: as many workers as cores, keep-alive to the
/// backend, no access log.
async fn start_nginx(dir: &Path, backend: u16) -> anyhow::Result<(String, Proxy)> {
    let binary = ["/usr/sbin/nginx", "/usr/bin/nginx"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .context("nginx is not installed (Debian: apt-get install -y nginx)")?;
    std::fs::create_dir_all(dir.join("logs"))?;
    let port = free_port()?;
    let conf = dir.join("nginx.conf");
    std::fs::write(
        &conf,
        format!(
            "worker_processes auto;\n\
             error_log {dir}/logs/error.log warn;\n\
             pid {dir}/nginx.pid;\n\
             events {{ worker_connections 4096; }}\n\
             http {{\n\
               access_log off;\n\
               client_body_temp_path {dir}/body; proxy_temp_path {dir}/proxy;\n\
               fastcgi_temp_path {dir}/fastcgi; uwsgi_temp_path {dir}/uwsgi; scgi_temp_path {dir}/scgi;\n\
               upstream backend {{ server 127.0.0.1:{backend}; keepalive 128; }}\n\
               server {{\n\
                 listen 127.0.0.1:{port};\n\
                 location / {{ proxy_pass http://backend; proxy_http_version 1.1; proxy_set_header Connection \"\"; }}\n\
               }}\n\
             }}\n",
            dir = dir.display()
        ),
    )?;
    let child = Command::new(binary)
        .arg("-p")
        .arg(dir)
        .arg("-c")
        .arg(&conf)
        .args(["-g", "daemon off;"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("logs/stderr.log"))?)
        .kill_on_drop(true)
        .spawn()
        .context("starting nginx")?;
    let master = child.id().context("pid")?;
    Ok((
        format!("http://127.0.0.1:{port}"),
        Proxy::Nginx {
            master,
            _child: child,
        },
    ))
}

/// Spring Cloud Gateway from `bench/java/gateway` (built with Maven here), its Eureka client
/// pointed at msakit-registry.
async fn start_spring(dir: &Path, registry: &str, xmx: &str) -> anyhow::Result<(String, Server)> {
    let apps = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../bench/java");
    crate::java::mvn_package(&apps, &["-pl", "gateway", "-am"])?;
    std::fs::create_dir_all(dir)?;
    let port = free_port()?;
    let log = std::fs::File::create(dir.join("server.log"))?;
    let child = Command::new("java")
        .arg(format!("-Xmx{xmx}"))
        .arg("-jar")
        .arg(apps.join("gateway/target/gateway.jar"))
        .arg(format!("--server.port={port}"))
        .arg("--server.address=127.0.0.1")
        .arg(format!(
            "--eureka.client.service-url.defaultZone={}/eureka/",
            registry.trim_end_matches('/')
        ))
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .context("starting Spring Cloud Gateway")?;
    let pid = child.id().context("pid")?;
    let url = format!("http://127.0.0.1:{port}");
    Ok((url.clone(), Server::new(child, pid, url, dir)))
}

/// The release `msakit-gateway` binary (as users run it), one route: `/**` → `lb://backend`.
fn start_gateway_binary(dir: &Path, registry: &str) -> anyhow::Result<Server> {
    let binary = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/release/msakit-gateway");
    if !binary.exists() {
        bail!(
            "{} is missing: cargo build --release -p msakit-gateway",
            binary.display()
        );
    }
    std::fs::create_dir_all(dir)?;
    let (port, admin) = (free_port()?, free_port()?);
    let config = dir.join("gateway.yaml");
    std::fs::write(
        &config,
        format!(
            "listen: 127.0.0.1:{port}\nadmin_listen: 127.0.0.1:{admin}\nregistry: [{registry}]\n\
             routes:\n  routes:\n    - id: backend\n      uri: lb://backend\n      \
             call: {{ timeout: 5s, deadline: 10s }}\n"
        ),
    )?;
    let log = std::fs::File::create(dir.join("gateway.log"))?;
    let child = Command::new(&binary)
        .arg("--config")
        .arg(&config)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .context("starting msakit-gateway")?;
    let pid = child.id().context("pid")?;
    let url = format!("http://127.0.0.1:{port}");
    Ok(Server::new(child, pid, url, dir))
}
