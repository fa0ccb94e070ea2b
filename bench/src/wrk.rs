//! `msakit-bench wrk`: our per-request cost measured from outside, the way a user's load
//! balancer sees it — `wrk` (Debian's) against four endpoints of the real release binaries, and
//! against a bare axum handler answering the same bytes (status, content type, body) on the same
//! route, in the same run, A B A B. The ratio is ours over bare.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use axum::Router;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{MethodFilter, on};
use tokio::process::Command;

use crate::java::{launch, ours_command};
use crate::java_load::{EUREKA_DEFAULT_LEASE, instance_json};
use crate::process::free_port;

/// Settings of a `wrk` run.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct WrkArgs {
    /// Rounds, the two sides taking turns.
    #[arg(long, default_value_t = 2)]
    rounds: usize,
    /// Each wrk run's length.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// wrk's connections.
    #[arg(long, default_value_t = 64)]
    connections: usize,
}

/// Which of our servers answers an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Which {
    Registry,
    Config,
}

/// One endpoint under test.
struct Endpoint {
    name: &'static str,
    which: Which,
    method: MethodFilter,
    method_name: &'static str,
    /// The route as axum writes it, for the bare server.
    route: &'static str,
    /// The request's path.
    path: &'static str,
}

const ENDPOINTS: [Endpoint; 4] = [
    Endpoint {
        name: "registry: Eureka heartbeat `PUT /eureka/apps/{app}/{id}`",
        which: Which::Registry,
        method: MethodFilter::PUT,
        method_name: "PUT",
        route: "/eureka/apps/{app}/{id}",
        path: "/eureka/apps/ORDERS/ORDERS-host-0:orders:8080?status=UP&lastDirtyTimestamp=1",
    },
    Endpoint {
        name: "registry: lookup of 10 instances `GET /v1/services/{service}`",
        which: Which::Registry,
        method: MethodFilter::GET,
        method_name: "GET",
        route: "/v1/services/{service}",
        path: "/v1/services/orders",
    },
    Endpoint {
        name: "config: `GET /v1/resolve/{application}/{profiles}/{label}`",
        which: Which::Config,
        method: MethodFilter::GET,
        method_name: "GET",
        route: "/v1/resolve/{application}/{profiles}/{label}",
        path: "/v1/resolve/orders/default/main",
    },
    Endpoint {
        name: "config: Spring `GET /{application}/{profile}`",
        which: Which::Config,
        method: MethodFilter::GET,
        method_name: "GET",
        route: "/{application}/{profile}",
        path: "/orders/default",
    },
];

/// A response as the bare server replays it.
#[derive(Clone)]
struct Canned {
    status: StatusCode,
    content_type: Option<HeaderValue>,
    body: axum::body::Bytes,
}

/// Starts both servers, seeds them, measures every endpoint and returns the report (Markdown).
pub(crate) async fn wrk(args: &WrkArgs, dir: &Path) -> anyhow::Result<String> {
    if std::process::Command::new("wrk")
        .arg("--version")
        .output()
        .is_err()
    {
        bail!("`wrk` is not on PATH. Install it (Debian: `apt-get install -y wrk`) and run again.");
    }
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let release = root.join("target/release");
    let mut servers = Vec::new();
    for (binary, probe) in [
        ("msakit-registry", "/health"),
        ("msakit-config-server", "/health"),
    ] {
        let path = release.join(binary);
        if !path.exists() {
            bail!(
                "{} is missing: cargo build --release -p {binary}",
                path.display()
            );
        }
        let scratch = dir.join(binary);
        std::fs::create_dir_all(&scratch)?;
        let port = free_port()?;
        let (server, _) =
            launch(ours_command(&path, port, &scratch), port, probe, &scratch).await?;
        servers.push(server);
    }
    let (registry, config) = (&servers[0].url, &servers[1].url);
    seed(registry, config).await?;

    // The bare server: the same routes answering what ours answered, on a runtime like ours
    // (Tokio's multi-threaded default, one worker per core).
    let client = reqwest::Client::new();
    let mut bare = Router::new();
    for endpoint in &ENDPOINTS {
        let base = match endpoint.which {
            Which::Registry => registry,
            Which::Config => config,
        };
        let response = client
            .request(
                endpoint.method_name.parse()?,
                format!("{base}{}", endpoint.path),
            )
            .send()
            .await?;
        if !response.status().is_success() {
            bail!("{} answered {}", endpoint.path, response.status());
        }
        let canned = Canned {
            status: response.status(),
            content_type: response.headers().get(header::CONTENT_TYPE).cloned(),
            body: response.bytes().await?,
        };
        bare = bare.route(
            endpoint.route,
            on(endpoint.method, move || {
                let canned = canned.clone();
                async move {
                    let mut response = (canned.status, canned.body).into_response();
                    if let Some(content_type) = canned.content_type {
                        response
                            .headers_mut()
                            .insert(header::CONTENT_TYPE, content_type);
                    }
                    response
                }
            }),
        );
    }
    let bare_listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    bare_listener.set_nonblocking(true)?;
    let bare_url = format!("http://{}", bare_listener.local_addr()?);
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Runtime::new().expect("runtime");
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(bare_listener).expect("listener");
            let _ = axum::serve(listener, bare).await;
        });
    });

    let script = dir.join("put.lua");
    std::fs::write(&script, "wrk.method = \"PUT\"\n")?;
    let mut report = format!(
        "`wrk -t1 -c{} -d{:?}` (Debian's wrk), {} rounds A B A B after a 2 s warm-up of each; \
         ours: the release binaries, defaults; bare: axum's `serve` with the same routes \
         answering the bytes ours answered (status, content type, body), Tokio's \
         multi-threaded runtime; wrk and the server share the machine's 2 cores.\n\n\
         | endpoint | bare axum req/s | ours req/s | ours / bare |\n|---|---:|---:|---:|\n",
        args.connections, args.duration, args.rounds
    );
    for endpoint in &ENDPOINTS {
        let ours_base = match endpoint.which {
            Which::Registry => registry.clone(),
            Which::Config => config.clone(),
        };
        let targets = [ours_base, bare_url.clone()];
        for base in &targets {
            run_wrk(args, endpoint, base, &script, Duration::from_secs(2)).await?;
        }
        let (mut ours, mut theirs) = (Vec::new(), Vec::new());
        for round in 0..args.rounds {
            let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
            for side in order {
                let rate = run_wrk(args, endpoint, &targets[side], &script, args.duration).await?;
                if side == 0 {
                    ours.push(rate)
                } else {
                    theirs.push(rate)
                }
            }
        }
        let (ours, theirs) = (median(&mut ours), median(&mut theirs));
        report.push_str(&format!(
            "| {} | {theirs:.0} | {ours:.0} | {:.2}× |\n",
            endpoint.name,
            ours / theirs
        ));
    }
    Ok(report)
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Ten instances of `orders` (Eureka API) and one config document (native API).
async fn seed(registry: &str, config: &str) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    for n in 0..10 {
        let id = format!("ORDERS-host-{n}:orders:8080");
        let response = client
            .post(format!("{registry}/eureka/apps/ORDERS"))
            .header("content-type", "application/json")
            .body(instance_json("ORDERS", &id, n, EUREKA_DEFAULT_LEASE))
            .send()
            .await?;
        if !response.status().is_success() {
            bail!("registering {id}: {}", response.status());
        }
    }
    let yaml: String = (0..20)
        .map(|i| format!("orders.key-{i}: value-{i}\n"))
        .collect();
    let response = client
        .put(format!("{config}/v1/config/orders/default/main"))
        .header("content-type", "application/yaml")
        .body(yaml)
        .send()
        .await?;
    if !response.status().is_success() {
        bail!("writing the config document: {}", response.status());
    }
    Ok(())
}

/// One wrk run against `base` + the endpoint's path; requests per second.
async fn run_wrk(
    args: &WrkArgs,
    endpoint: &Endpoint,
    base: &str,
    put_script: &Path,
    duration: Duration,
) -> anyhow::Result<f64> {
    let mut command = Command::new("wrk");
    command
        .args(["-t1", &format!("-c{}", args.connections)])
        .arg(format!("-d{}s", duration.as_secs().max(1)));
    if endpoint.method_name == "PUT" {
        command.arg("-s").arg(put_script);
    }
    let output = command
        .arg(format!("{base}{}", endpoint.path))
        .output()
        .await
        .context("running wrk")?;
    let text = String::from_utf8_lossy(&output.stdout);
    if text.contains("Non-2xx") {
        bail!(
            "{base}{}: non-2xx answers under wrk:\n{text}",
            endpoint.path
        );
    }
    text.lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
        .with_context(|| format!("no Requests/sec in wrk's output:\n{text}"))
}
