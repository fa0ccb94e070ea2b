//! The scripted run: start the cluster, drive traffic, play the six phases, check the ledger,
//! print the report. Each phase states what it expects and measures whether it happened.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio_util::sync::CancellationToken;

use crate::cluster::Cluster;
use crate::ha;
use crate::ledger::Ledger;
use crate::report::Report;
use crate::traffic::{self, Recorder};
use crate::view::{self, Scrape};

/// How the run goes.
#[derive(Debug, Clone)]
pub(crate) struct Options {
    /// Short phases (the tests use this).
    pub(crate) quick: bool,
    /// Leave the cluster up at the end, until Ctrl-C.
    pub(crate) keep_running: bool,
    /// Redraw a live view (otherwise plain lines).
    pub(crate) tui: bool,
    /// Three-node registry and config clusters; phase 5 kills both leaders.
    pub(crate) ha: bool,
    /// A Zipkin server every process exports its spans to; one order's trace is read back.
    pub(crate) zipkin: Option<String>,
}

/// The lease every instance asks for; heartbeats go every third of it.
const LEASE: Duration = Duration::from_secs(3);

/// The run in progress.
struct Run {
    options: Options,
    cluster: Cluster,
    http: reqwest::Client,
    /// The registry node the view reads and the config node writes go to.
    registry: String,
    config: String,
    /// Every registry and config node, comma-separated: what the services are given.
    registry_urls: String,
    config_urls: String,
    /// The clusters, with `--ha`.
    ha: Option<ha::Servers>,
    /// The gateway's admin API.
    gateway_admin: String,
    recorder: Arc<Recorder>,
    report: Report,
    phase_name: &'static str,
    last: Scrape,
    /// What happened so far, shown under the live view.
    events: Vec<String>,
    started: Instant,
}

/// Runs the demo; whether every expectation held.
pub(crate) async fn run(options: Options) -> anyhow::Result<bool> {
    let dir = tempfile::Builder::new().prefix("msakit-demo-").tempdir()?;
    let mut cluster = Cluster::new(dir.path())?;
    if let Some(zipkin) = &options.zipkin {
        cluster.set_env(&[
            ("OTEL_TRACES_EXPORTER", "zipkin".to_owned()),
            (
                "OTEL_EXPORTER_ZIPKIN_ENDPOINT",
                format!("{}/api/v2/spans", zipkin.trim_end_matches('/')),
            ),
            // Spans leave within a fifth of a second (the SDK's default waits 5 s).
            ("OTEL_BSP_SCHEDULE_DELAY", "200".to_owned()),
        ]);
    }
    let held = tokio::select! {
        result = play(options.clone(), &mut cluster) => result,
        _ = msakit_server_kit::shutdown_signal() => {
            eprintln!("interrupted: stopping every process");
            Ok(false)
        }
    };
    cluster.stop().await;
    if options.keep_running {
        // Keep the logs and databases for a look.
        let kept = dir.keep();
        println!("logs and databases kept in {}", kept.display());
    }
    held
}

async fn play(options: Options, cluster: &mut Cluster) -> anyhow::Result<bool> {
    let dir = cluster.dir().to_owned();
    let path = |name: &str| dir.join(name).display().to_string();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()?;
    let (registry_port, servers) = if options.ha {
        say("starting three registry nodes and three config-server nodes (Raft)");
        let servers = ha::Servers::start(cluster, &http, &path).await?;
        (0, Some(servers))
    } else {
        say("starting the registry and the config server");
        let port = cluster.start("registry", &["registry".into()]).await?;
        (port, None)
    };
    let (registry, config, registry_urls, config_urls) = match &servers {
        Some(servers) => (
            servers.registry[0].url.clone(),
            servers.config[0].url.clone(),
            servers.registry_urls(),
            servers.config_urls(),
        ),
        None => {
            let config_port = cluster
                .start(
                    "config-server",
                    &[
                        "config-server".into(),
                        "--data-dir".into(),
                        path("config-data"),
                    ],
                )
                .await?;
            let registry = format!("http://127.0.0.1:{registry_port}");
            let config = format!("http://127.0.0.1:{config_port}");
            (registry.clone(), config.clone(), registry, config)
        }
    };
    for (application, document) in [
        ("gateway", GATEWAY_DOC.to_owned()),
        ("order", ORDER_DOC.to_owned()),
        ("payment", faults_doc(0.0, 0)),
        ("delivery", faults_doc(0.0, 0)),
    ] {
        put_config(&http, &config, application, &document).await?;
    }
    let mut run = Run {
        options,
        cluster: Cluster::new(&dir)?,
        http,
        registry: registry.clone(),
        config: config.clone(),
        registry_urls,
        config_urls,
        ha: servers,
        gateway_admin: String::new(),
        recorder: Arc::new(Recorder::default()),
        report: Report::default(),
        phase_name: "starting",
        last: Scrape::default(),
        events: Vec::new(),
        started: Instant::now(),
    };
    // The run's cluster handle is the caller's: swap it in for the run, back out at the end.
    std::mem::swap(&mut run.cluster, cluster);
    let result = run.play(registry_port, &path).await;
    std::mem::swap(&mut run.cluster, cluster);
    let held = result?;
    if run.options.keep_running {
        println!("\nthe cluster is still up; Ctrl-C stops it");
        println!("  registry dashboard  {registry}/");
        println!("  config server       {config}/v1/resolve/payment/demo/main");
        if let Some(port) = cluster.port("gateway-1") {
            println!(
                "  gateway             http://127.0.0.1:{port}/api/orders  (x-api-key: {})",
                traffic::API_KEY
            );
        }
        println!("  logs                {}", dir.display());
        println!(
            "PIDS {}",
            cluster
                .pids()
                .iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(" ")
        );
        std::future::pending::<()>().await;
    }
    Ok(held)
}

impl Run {
    async fn play(
        &mut self,
        registry_port: u16,
        path: &dyn Fn(&str) -> String,
    ) -> anyhow::Result<bool> {
        let phase_time = if self.options.quick {
            Duration::from_secs(4)
        } else {
            Duration::from_secs(8)
        };
        let outage = if self.options.quick {
            Duration::from_secs(4)
        } else {
            Duration::from_secs(10)
        };
        self.say("starting payment ×2, delivery ×1, order ×2 and the gateway");
        for (name, kind) in [
            ("payment-1", "payment"),
            ("payment-2", "payment"),
            ("delivery-1", "delivery"),
            ("order-1", "order"),
            ("order-2", "order"),
        ] {
            self.start_service(name, kind, path).await?;
        }
        self.start_gateway(path).await?;
        self.wait_registered(
            &[("order", 2), ("payment", 2), ("delivery", 1)],
            Duration::from_secs(15),
        )
        .await
        .context("instances did not all register")?;
        let gateway = format!(
            "http://127.0.0.1:{}",
            self.cluster.port("gateway-1").context("gateway")?
        );
        self.check_gateway(&gateway).await;
        let stop = CancellationToken::new();
        let driver = tokio::spawn(traffic::drive(
            gateway.clone(),
            40,
            Arc::clone(&self.recorder),
            stop.clone(),
        ));

        // 1. Steady state.
        self.enter(1, "steady state");
        self.watch(phase_time, |_, _| false).await;
        let samples = self.recorder.phase(1);
        if let Some(zipkin) = self.options.zipkin.clone() {
            self.check_trace(&gateway, &zipkin).await;
        }
        self.report.expect(
            "1 steady",
            "≥ 99% of orders answered 2xx",
            format!(
                "{:.1}% of {} ({} completed)",
                traffic::ok_share(&samples) * 100.0,
                samples.len(),
                count_state(&samples, "COMPLETED")
            ),
            traffic::ok_share(&samples) >= 0.99,
        );

        // 2. SIGKILL one payment instance.
        self.enter(2, "payment-1 killed with SIGKILL");
        self.cluster.kill("payment-1").await?;
        let killed = Instant::now();
        let evicted = self
            .watch(phase_time, |scrape, _| {
                scrape
                    .registered
                    .as_ref()
                    .and_then(|r| r.get("payment").copied())
                    == Some(1)
            })
            .await;
        let samples = self.recorder.phase(2);
        self.report.expect(
            "2 kill payment-1",
            format!("evicted within lease + 1 s ({} s)", LEASE.as_secs() + 1),
            evicted.map_or("not evicted".to_owned(), |t| {
                format!("evicted after {:.1} s", (t - killed).as_secs_f64())
            }),
            evicted.is_some_and(|t| t - killed <= LEASE + Duration::from_secs(1)),
        );
        self.report.expect(
            "2 kill payment-1",
            "≥ 97% of orders answered 2xx (retried on payment-2)",
            format!(
                "{:.1}% of {}",
                traffic::ok_share(&samples) * 100.0,
                samples.len()
            ),
            traffic::ok_share(&samples) >= 0.97,
        );
        self.say("a replacement, payment-3, is started");
        self.start_service("payment-3", "payment", path).await?;

        // 3. Payment turns slow and failing, by config.
        self.enter(3, "config: payment slow (400 ms) and failing (50%)");
        put_config(&self.http, &self.config, "payment", &faults_doc(0.5, 400)).await?;
        let changed = Instant::now();
        let opened = self
            .watch(phase_time, |scrape, _| scrape.open_breakers("payment") > 0)
            .await;
        let samples = self.recorder.phase(3);
        let unanswered = samples
            .iter()
            .filter(|s| s.status == 0 || s.status >= 500 && s.status != 503)
            .count();
        self.report.expect(
            "3 payment sick",
            "order's breaker for payment opens",
            opened.map_or("never opened".to_owned(), |t| {
                format!("open {:.1} s after the change", (t - changed).as_secs_f64())
            }),
            opened.is_some(),
        );
        self.report.expect(
            "3 payment sick",
            "no pile-up: p99 ≤ 1.5 s, every request answered",
            format!(
                "p99 {:.0} ms, {} unanswered or timed out",
                traffic::quantile(&samples, 0.99).as_secs_f64() * 1e3,
                unanswered
            ),
            traffic::quantile(&samples, 0.99) <= Duration::from_millis(1500) && unanswered == 0,
        );
        self.report.expect(
            "3 payment sick",
            "orders accepted with \"payment pending\" or rejected fast",
            format!(
                "{} accepted pending, {} completed, {} rejected 503",
                count_state(&samples, "PAYMENT_PENDING"),
                count_state(&samples, "COMPLETED"),
                samples.iter().filter(|s| s.status == 503).count()
            ),
            count_state(&samples, "PAYMENT_PENDING") > 0,
        );

        // An order instance dies mid-saga: charges in flight, orders waiting for payment.
        self.cluster.kill("order-1").await?;
        let orphaned = Ledger::in_flight_of(self.cluster.dir(), "order-1")?;
        self.say(&format!(
            "order-1 killed with SIGKILL holding {} unfinished sagas; restarted",
            orphaned.len()
        ));
        self.start_service("order-1", "order", path).await?;

        // 4. Payment healed, by config.
        self.enter(4, "config: payment healed");
        put_config(&self.http, &self.config, "payment", &faults_doc(0.0, 0)).await?;
        let healed = Instant::now();
        let closed = self
            .watch(phase_time + Duration::from_secs(4), |scrape, _| {
                scrape.open_breakers("payment") == 0 && scrape.closed_breakers("payment") >= 2
            })
            .await;
        self.report.expect(
            "4 payment healed",
            "breakers half-open and close by themselves",
            closed.map_or("still open".to_owned(), |t| {
                format!(
                    "all closed {:.1} s after the heal",
                    (t - healed).as_secs_f64()
                )
            }),
            closed.is_some(),
        );
        // The gateway's routes change live too: a longer attempt timeout, pushed now.
        let version = self.gateway_routes_version().await;
        put_config(
            &self.http,
            &self.config,
            "gateway",
            &GATEWAY_DOC.replace("2500ms", "2600ms"),
        )
        .await?;
        let pushed = Instant::now();
        let mut reloaded = None;
        while reloaded.is_none() && pushed.elapsed() < Duration::from_secs(3) {
            if self.gateway_routes_version().await > version {
                reloaded = Some(pushed.elapsed());
            } else {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        self.report.expect(
            "4 gateway config",
            "the gateway swaps in changed routes live",
            reloaded.map_or("no reload seen".to_owned(), |after| {
                format!(
                    "route set version {version} → {} within {} ms",
                    version + 1,
                    after.as_millis().max(1)
                )
            }),
            reloaded.is_some(),
        );

        // 5. The registry goes away for a while — or, with --ha, both clusters lose their leader.
        match self.ha.clone() {
            Some(servers) => self.kill_the_leaders(&servers, outage).await?,
            None => self.registry_outage(registry_port, outage).await?,
        }

        // 6. Delivery fails: sagas compensate.
        self.enter(6, "config: delivery failing (100%)");
        put_config(&self.http, &self.config, "delivery", &faults_doc(1.0, 0)).await?;
        self.watch(phase_time, |_, _| false).await;
        let samples = self.recorder.phase(6);
        let ledger = Ledger::read(self.cluster.dir())?;
        self.report.expect(
            "6 delivery fails",
            "sagas compensate: orders CANCELLED, payments refunded",
            format!(
                "{} orders cancelled in the phase, {} refunds in payment's database",
                count_state(&samples, "CANCELLED"),
                ledger.refunds.len()
            ),
            count_state(&samples, "CANCELLED") > 0 && !ledger.refunds.is_empty(),
        );
        put_config(&self.http, &self.config, "delivery", &faults_doc(0.0, 0)).await?;

        // Drain: stop the traffic, let the reconcilers finish, check the ledger.
        self.enter(7, "draining");
        stop.cancel();
        driver.await?;
        let drained = self
            .watch(Duration::from_secs(30), |_, dir| {
                Ledger::read(dir).is_ok_and(|l| l.open_orders() == 0)
            })
            .await;
        if drained.is_none() {
            self.say("some orders still open after 30 s");
        }
        let accepted: HashSet<String> = self
            .recorder
            .samples
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|s| (200..300).contains(&s.status))
            .map(|s| s.order_id.clone())
            .collect();
        let ledger = Ledger::read(self.cluster.dir())?;
        let unfinished = orphaned
            .iter()
            .filter(|id| {
                ledger.orders.get(*id).is_none_or(|(state, _)| {
                    !crate::services::order::FINAL_STATES.contains(&state.as_str())
                })
            })
            .count();
        self.report.expect(
            "3 kill order-1",
            "sagas of an order instance killed mid-way all end final after its restart",
            format!(
                "{} of {} orphaned sagas final",
                orphaned.len() - unfinished,
                orphaned.len()
            ),
            !orphaned.is_empty() && unfinished == 0,
        );
        for (expected, measured, held) in ledger.check(&accepted) {
            self.report.expect("invariants", expected, measured, held);
        }
        Ok(self.report.print())
    }

    /// Phase 5: the registry is killed, and restarted empty after `outage`.
    async fn registry_outage(
        &mut self,
        registry_port: u16,
        outage: Duration,
    ) -> anyhow::Result<()> {
        self.enter(5, "registry stopped");
        self.cluster.kill("registry").await?;
        self.watch(outage, |_, _| false).await;
        let samples = self.recorder.phase(5);
        self.report.expect(
            "5 registry down",
            "≥ 97% of orders answered 2xx from the SDK caches",
            format!(
                "{:.1}% of {} during {} s without a registry",
                traffic::ok_share(&samples) * 100.0,
                samples.len(),
                outage.as_secs()
            ),
            traffic::ok_share(&samples) >= 0.97,
        );
        self.say("registry restarted (empty: no data dir)");
        self.cluster
            .start(
                "registry",
                &[
                    "registry".into(),
                    "--port".into(),
                    registry_port.to_string(),
                ],
            )
            .await?;
        let restarted = Instant::now();
        let back = self
            .wait_registered(
                &[("order", 2), ("payment", 2), ("delivery", 1)],
                Duration::from_secs(10),
            )
            .await;
        let heartbeat = LEASE / 3;
        self.report.expect(
            "5 registry back",
            format!(
                "every instance registered again within one heartbeat ({} ms) + 1 s slack",
                heartbeat.as_millis()
            ),
            back.as_ref()
                .map_or("not all back in 10 s".to_owned(), |_| {
                    format!("all back after {:.2} s", restarted.elapsed().as_secs_f64())
                }),
            back.is_ok() && restarted.elapsed() <= heartbeat + Duration::from_secs(1),
        );
        Ok(())
    }

    /// Phase 5 with `--ha`: SIGKILL the registry leader and the config leader at once; traffic
    /// goes on, both clusters elect new leaders, no instance is evicted, and the killed nodes
    /// come back and catch up.
    async fn kill_the_leaders(
        &mut self,
        servers: &ha::Servers,
        outage: Duration,
    ) -> anyhow::Result<()> {
        self.enter(5, "registry and config leaders killed");
        let within = Duration::from_secs(10);
        let registry_leader = ha::leader(&self.http, &servers.registry, within)
            .await
            .context("no registry leader")?;
        let config_leader = ha::leader(&self.http, &servers.config, within)
            .await
            .context("no config leader")?;
        let killed = [
            servers.registry[registry_leader].clone(),
            servers.config[config_leader].clone(),
        ];
        for node in &killed {
            self.cluster.kill(&node.name).await?;
        }
        let at = Instant::now();
        self.say(&format!(
            "SIGKILL {} and {} (the leaders)",
            killed[0].name, killed[1].name
        ));
        // The view and the scenario's config writes go to survivors from now on.
        let survivors = |nodes: &[ha::Node], dead: usize| -> Vec<ha::Node> {
            (0..nodes.len())
                .filter(|i| *i != dead)
                .map(|i| nodes[i].clone())
                .collect()
        };
        let registry_survivors = survivors(&servers.registry, registry_leader);
        let config_survivors = survivors(&servers.config, config_leader);
        self.registry = registry_survivors[0].url.clone();
        self.config = config_survivors[0].url.clone();
        let (new_registry, new_config) = tokio::join!(
            ha::leader(&self.http, &registry_survivors, Duration::from_secs(20)),
            ha::leader(&self.http, &config_survivors, Duration::from_secs(20)),
        );
        let elected = at.elapsed();
        self.say(&format!(
            "new leaders elected after {:.1} s",
            elected.as_secs_f64()
        ));
        self.watch(outage.saturating_sub(elected), |_, _| false)
            .await;
        let samples = self.recorder.phase(5);
        self.report.expect(
            "5 kill leaders",
            "≥ 97% of orders answered 2xx while both leaders are killed",
            format!(
                "{:.1}% of {}",
                traffic::ok_share(&samples) * 100.0,
                samples.len()
            ),
            traffic::ok_share(&samples) >= 0.97,
        );
        let kept = self
            .wait_registered(
                &[("order", 2), ("payment", 2), ("delivery", 1)],
                Duration::from_secs(1),
            )
            .await;
        self.report.expect(
            "5 new leaders",
            "both clusters elect a new leader within 10 s; no live instance evicted",
            format!(
                "{} in {:.1} s; {}",
                match (new_registry, new_config) {
                    (Some(_), Some(_)) => "both elected",
                    _ => "not both elected",
                },
                elected.as_secs_f64(),
                if kept.is_ok() {
                    "all 5 instances still registered"
                } else {
                    "instances missing"
                }
            ),
            new_registry.is_some() && new_config.is_some() && elected <= within && kept.is_ok(),
        );
        let mut caught_up = Vec::new();
        for (node, others) in [
            (&killed[0], &registry_survivors),
            (&killed[1], &config_survivors),
        ] {
            caught_up.push(
                ha::rejoin(
                    &mut self.cluster,
                    &self.http,
                    node,
                    others,
                    Duration::from_secs(20),
                )
                .await,
            );
        }
        self.report.expect(
            "5 nodes rejoin",
            "the killed nodes restart and catch up with their cluster within 20 s",
            caught_up
                .iter()
                .zip(&killed)
                .map(|(r, n)| match r {
                    Ok(took) => format!("{} in {:.1} s", n.name, took.as_secs_f64()),
                    Err(e) => format!("{e}"),
                })
                .collect::<Vec<_>>()
                .join(", "),
            caught_up.iter().all(Result::is_ok),
        );
        Ok(())
    }

    async fn start_service(
        &mut self,
        name: &str,
        kind: &str,
        path: &dyn Fn(&str) -> String,
    ) -> anyhow::Result<()> {
        let args: Vec<String> = [
            "service",
            kind,
            "--instance",
            name,
            "--registry",
            &self.registry_urls,
            "--config",
            &self.config_urls,
            "--db",
            &path(&format!("{kind}.db")),
            "--lease",
            &format!("{}s", LEASE.as_secs()),
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        self.cluster.start(name, &args).await?;
        Ok(())
    }

    /// Sends one order with a trace of its own and reads the trace back from Zipkin.
    async fn check_trace(&mut self, gateway: &str, zipkin: &str) {
        let (traceparent, trace, root) = crate::trace_check::new_traceparent();
        let answer = self
            .http
            .post(format!("{gateway}/api/orders"))
            .header("x-api-key", traffic::API_KEY)
            .header("idempotency-key", format!("traced-{trace}"))
            .header("traceparent", &traceparent)
            .json(&serde_json::json!({"amount": 4200}))
            .send()
            .await
            .map(|r| r.status().as_u16())
            .unwrap_or(0);
        let summary = crate::trace_check::read_back(
            &self.http,
            zipkin,
            &trace,
            &root,
            Duration::from_secs(15),
        )
        .await;
        let view = format!("{}/zipkin/traces/{trace}", zipkin.trim_end_matches('/'));
        self.say(&format!("one order's trace: {view}"));
        let measured = match &summary {
            Some(s) => format!(
                "order answered {answer}; {} spans from {} ({}), {} unlinked; {view}",
                s.spans,
                s.services.iter().cloned().collect::<Vec<_>>().join(", "),
                s.hops
                    .iter()
                    .map(|(a, b)| format!("{a} → {b}"))
                    .collect::<Vec<_>>()
                    .join(", "),
                s.unlinked
            ),
            None => format!("order answered {answer}; Zipkin has no trace {trace}"),
        };
        self.report.expect(
            "1 trace",
            "one order's trace read back from Zipkin: gateway → order → payment and delivery, each a child of its caller",
            measured,
            summary.is_some_and(|s| s.linked()),
        );
    }

    /// Starts the gateway, its admin API on a port chosen here.
    async fn start_gateway(&mut self, path: &dyn Fn(&str) -> String) -> anyhow::Result<()> {
        let admin_port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        self.gateway_admin = format!("http://127.0.0.1:{admin_port}");
        let args: Vec<String> = [
            "gateway",
            "--admin-port",
            &admin_port.to_string(),
            "--registry",
            &self.registry_urls,
            "--config",
            &self.config_urls,
            "--data-dir",
            &path("gateway-data"),
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        self.cluster.start("gateway-1", &args).await?;
        Ok(())
    }

    /// The version of the gateway's route set in force (0 when it does not answer).
    async fn gateway_routes_version(&self) -> u64 {
        let answer = self
            .http
            .get(format!("{}/admin/routes", self.gateway_admin))
            .send()
            .await;
        match answer {
            Ok(response) => response
                .json::<serde_json::Value>()
                .await
                .ok()
                .and_then(|v| v["version"].as_u64())
                .unwrap_or(0),
            Err(_) => 0,
        }
    }

    /// The gateway's front door: no key → 401; a burst over one client's quota → 429s.
    async fn check_gateway(&mut self, gateway: &str) {
        let url = format!("{gateway}/api/orders/none");
        let anonymous = self
            .http
            .get(&url)
            .send()
            .await
            .map(|r| r.status().as_u16())
            .unwrap_or(0);
        self.report.expect(
            "0 gateway",
            "a request without an API key is refused with 401",
            format!("answered {anonymous}"),
            anonymous == 401,
        );
        // 700 requests at once from one client whose quota is 100/s: unless they take over 6 s
        // (not even on a loaded machine), most are refused.
        let burst = (0..700).map(|_| {
            let request = self.http.get(&url).header("x-api-key", "demo-key-two-0002");
            async move {
                request
                    .send()
                    .await
                    .map(|r| r.status().as_u16())
                    .unwrap_or(0)
            }
        });
        let statuses = futures_util::future::join_all(burst).await;
        let limited = statuses.iter().filter(|s| **s == 429).count();
        let served = statuses.iter().filter(|s| **s == 404).count();
        self.report.expect(
            "0 gateway",
            "one client over its rate (100/s) gets 429s, the rest is routed",
            format!("{limited} × 429, {served} × 404 from order"),
            limited > 0 && served > 0 && limited + served == statuses.len(),
        );
    }

    /// Waits until the registry lists at least these UP instances.
    async fn wait_registered(&self, want: &[(&str, u64)], within: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            let scrape = view::scrape(&self.http, &self.registry, &[]).await;
            if let Some(registered) = scrape.registered
                && want
                    .iter()
                    .all(|(s, n)| registered.get(*s).copied().unwrap_or(0) >= *n)
            {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bail!("not registered within {within:?}")
    }

    /// Notes an event: printed at once in plain mode, listed under the view otherwise.
    fn say(&mut self, line: &str) {
        say(line);
        self.events.push(format!(
            "{:>5.1}s  {line}",
            self.started.elapsed().as_secs_f64()
        ));
    }

    fn enter(&mut self, phase: usize, name: &'static str) {
        self.recorder.phase.store(phase, Ordering::Relaxed);
        self.phase_name = name;
        self.say(&format!("phase {phase}: {name}"));
    }

    /// Shows the view for `duration`; the first moment `until` held, if it did.
    async fn watch(
        &mut self,
        duration: Duration,
        until: impl Fn(&Scrape, &std::path::Path) -> bool,
    ) -> Option<Instant> {
        let started = Instant::now();
        let mut seen = None;
        let mut last_frame = Instant::now();
        let every = Duration::from_millis(250);
        while started.elapsed() < duration {
            let targets: Vec<String> = self
                .cluster
                .names()
                .iter()
                .filter(|n| {
                    !n.starts_with("registry")
                        && !n.starts_with("config")
                        && !n.starts_with("gateway")
                })
                .filter_map(|n| self.cluster.port(n))
                .map(|p| format!("http://127.0.0.1:{p}/metrics"))
                .chain(
                    (!self.gateway_admin.is_empty())
                        .then(|| format!("{}/metrics", self.gateway_admin)),
                )
                .collect();
            let scrape = view::scrape(&self.http, &self.registry, &targets).await;
            if seen.is_none() && until(&scrape, self.cluster.dir()) {
                seen = Some(Instant::now());
            }
            if last_frame.elapsed() >= Duration::from_secs(1) {
                let gateway = self.recorder.since(last_frame);
                let frame = view::render(
                    self.phase_name,
                    &self.last,
                    &scrape,
                    last_frame.elapsed(),
                    &gateway,
                );
                if self.options.tui {
                    let recent = self.events.len().saturating_sub(12);
                    print!(
                        "\x1b[2J\x1b[H{frame}\n{}\n",
                        self.events[recent..].join("\n")
                    );
                } else {
                    // Plain lines: the table's rows, without the phase heading.
                    for line in frame.lines().skip(1) {
                        println!("  {line}");
                    }
                }
                self.last = scrape;
                last_frame = Instant::now();
            }
            if seen.is_some() && self.phase_name == "draining" {
                break;
            }
            tokio::time::sleep(every).await;
        }
        seen
    }
}

fn count_state(samples: &[traffic::Sample], state: &str) -> usize {
    samples.iter().filter(|s| s.state == state).count()
}

fn say(line: &str) {
    println!("» {line}");
}

pub(crate) async fn put_config(
    http: &reqwest::Client,
    config: &str,
    application: &str,
    document: &str,
) -> anyhow::Result<()> {
    let response = http
        .put(format!("{config}/v1/config/{application}/demo/main"))
        .header("content-type", "application/yaml")
        .header("x-msakit-message", "msakit-demo scenario")
        .body(document.to_owned())
        .send()
        .await?;
    if !response.status().is_success() {
        bail!(
            "config write for {application} answered {}: {}",
            response.status(),
            response.text().await.unwrap_or_default()
        );
    }
    Ok(())
}

fn faults_doc(error_rate: f64, latency_ms: u64) -> String {
    format!("faults:\n  error_rate: {error_rate}\n  latency_ms: {latency_ms}\n  hang: false\n")
}

/// The gateway's routes (msakit-gateway's route set), followed live from the config server.
const GATEWAY_DOC: &str = "
routes:
  - id: orders
    uri: lb://order
    predicates:
      path: [/api/orders, /api/orders/**]
    filters:
      strip_prefix: 1
    auth:
      api_key: true
    rate_limit:
      requests: 100
      period: 1s
    call:
      timeout: 2500ms
      deadline: 3s
      max_attempts: 2
      idempotency_header: idempotency-key
      breaker:
        sliding_window_size: 50
        minimum_number_of_calls: 50
api_keys:
  - client: demo-1
    key: demo-key-one-0001
  - client: demo-2
    key: demo-key-two-0002
";

const ORDER_DOC: &str = "
calls:
  attempt_timeout_ms: 300
  deadline_ms: 1000
  max_attempts: 3
  eject_after_failures: 2
  breaker:
    sliding_window_size: 10
    minimum_number_of_calls: 10
    failure_rate_threshold: 50
    wait_duration_in_open_state: 2s
    permitted_number_of_calls_in_half_open_state: 3
    automatic_transition_from_open_to_half_open_enabled: true
";
