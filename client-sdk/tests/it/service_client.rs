//! `ServiceClient` against real backends registered in a real registry.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use msakit::{CallErrorKind, Client, DEADLINE_HEADER, ServiceClient, ServiceClientOptions};

use crate::support::registry;

const HEALTHY: u8 = 0;
const FAILING: u8 = 1;
const SLOW: u8 = 2;
const HANGING: u8 = 3;

/// A backend whose behaviour the test sets, counting its requests.
struct Backend {
    id: String,
    hits: Arc<AtomicU64>,
}

async fn backend(registry_url: &str, service: &str, id: &str, mode: u8) -> Backend {
    let (mode, hits) = (Arc::new(AtomicU8::new(mode)), Arc::new(AtomicU64::new(0)));
    let (m, h) = (mode, Arc::clone(&hits));
    let app = axum::Router::new().fallback(move |headers: HeaderMap| {
        let (m, h) = (Arc::clone(&m), Arc::clone(&h));
        async move {
            h.fetch_add(1, Ordering::SeqCst);
            let trace = headers
                .get("traceparent")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("none")
                .to_owned();
            let deadline = headers
                .get(DEADLINE_HEADER)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("none")
                .to_owned();
            let deadline = format!("{deadline}|{trace}");
            match m.load(Ordering::SeqCst) {
                FAILING => (StatusCode::SERVICE_UNAVAILABLE, deadline),
                SLOW => {
                    tokio::time::sleep(Duration::from_millis(60)).await;
                    (StatusCode::OK, deadline)
                }
                HANGING => {
                    tokio::time::sleep(Duration::from_secs(60)).await;
                    (StatusCode::OK, deadline)
                }
                _ => (StatusCode::OK, deadline),
            }
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let response = reqwest::Client::new()
        .put(format!(
            "{registry_url}/v1/services/{service}/instances/{id}"
        ))
        .json(&serde_json::json!({"host": "127.0.0.1", "port": port}))
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success());
    Backend {
        id: id.to_owned(),
        hits,
    }
}

fn client(registry_url: &str, options: ServiceClientOptions) -> ServiceClient {
    Client::builder()
        .registry_url(registry_url)
        .build()
        .unwrap()
        .service_client(options)
        .unwrap()
}

#[tokio::test]
async fn p2c_moves_load_away_from_a_slow_instance() {
    let server = registry(None).await;
    let url = server.url();
    let fast_a = backend(&url, "catalog", "a", HEALTHY).await;
    let fast_b = backend(&url, "catalog", "b", HEALTHY).await;
    let slow = backend(&url, "catalog", "c", SLOW).await;
    let client = client(&url, ServiceClientOptions::default());
    for _ in 0..150 {
        let response = client.get("catalog", "/items").send().await.unwrap();
        assert_eq!(response.status(), 200);
    }
    let (a, b, c) = (
        fast_a.hits.load(Ordering::SeqCst),
        fast_b.hits.load(Ordering::SeqCst),
        slow.hits.load(Ordering::SeqCst),
    );
    assert!(
        c < 15,
        "the slow instance got {c} of 150 ({} {a}, {} {b})",
        fast_a.id,
        fast_b.id
    );
    // What P2C promises the fast ones is not an even split (with peak EWMA the slightly faster
    // of two equal instances may win every pairing of the two): each wins at least whenever it
    // is paired with the slow one, a third of the calls on average (50 of 150, 5.8 either side);
    // 25 is more than four of those below.
    assert!(
        a >= 25 && b >= 25,
        "each fast instance wins its pairings with the slow one: {a} / {b}"
    );
}

#[tokio::test]
async fn a_failing_instance_is_retried_around_and_ejected() {
    let server = registry(None).await;
    let url = server.url();
    let good_a = backend(&url, "stock", "a", HEALTHY).await;
    let good_b = backend(&url, "stock", "b", HEALTHY).await;
    let bad = backend(&url, "stock", "c", FAILING).await;
    let client = client(&url, ServiceClientOptions::default());
    for _ in 0..100 {
        let response = client.get("stock", "/level").send().await.unwrap();
        assert_eq!(
            response.status(),
            200,
            "a retry on another instance succeeds"
        );
    }
    let failures = bad.hits.load(Ordering::SeqCst);
    assert!(
        failures <= 8,
        "ejected after 5 failures in a row, got {failures} requests"
    );
    assert!(good_a.hits.load(Ordering::SeqCst) + good_b.hits.load(Ordering::SeqCst) >= 100);
    let _ = (&good_a.id, &good_b.id, &bad.id);
}

#[tokio::test]
async fn a_hanging_instance_is_timed_out_and_retried_around() {
    let server = registry(None).await;
    let url = server.url();
    let stuck = backend(&url, "quotes", "stuck", HANGING).await;
    let options = ServiceClientOptions::default()
        .attempt_timeout(Duration::from_millis(150))
        .deadline(Duration::from_secs(2));
    let client = client(&url, options);

    // Alone, it exhausts the attempts, each cut at the attempt timeout, and the error says so.
    let started = std::time::Instant::now();
    let error = client.get("quotes", "/q").send().await.unwrap_err();
    assert_eq!(error.instance.as_deref(), Some("stuck"));
    assert!(
        error.to_string().contains("timed out after 150ms"),
        "{error}"
    );
    assert!(error.attempts >= 2, "{error}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    let hits = stuck.hits.load(Ordering::SeqCst);
    assert_eq!(hits, u64::from(error.attempts));

    // With a healthy instance beside it, every call succeeds: a timed-out attempt is retried
    // on the other one.
    let fine = backend(&url, "quotes", "fine", HEALTHY).await;
    crate::support::wait_until(Duration::from_secs(5), || async {
        client
            .get("quotes", "/q")
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
    })
    .await;
    for _ in 0..6 {
        let response = client.get("quotes", "/q").send().await.unwrap();
        assert_eq!(response.status(), 200);
    }
    assert!(fine.hits.load(Ordering::SeqCst) >= 6);
}

#[tokio::test]
async fn the_breaker_opens_when_everything_fails_and_errors_say_why() {
    let metrics = crate::support::metrics();
    let server = registry(None).await;
    let url = server.url();
    let only = backend(&url, "ledger", "a", FAILING).await;
    let mut options = ServiceClientOptions::default();
    options.breaker.sliding_window_size = 5;
    options.breaker.minimum_number_of_calls = 5;
    options.max_attempts = 1;
    let client = client(&url, options);
    let mut kinds = Vec::new();
    for _ in 0..8 {
        match client.post("ledger", "/entries").send().await {
            Ok(response) => kinds.push(format!("status {}", response.status().as_u16())),
            Err(e) => {
                assert_eq!(e.service, "ledger");
                kinds.push(match e.kind {
                    CallErrorKind::BreakerOpen(_) => "open".to_owned(),
                    other => other.to_string(),
                });
            }
        }
    }
    assert_eq!(&kinds[..5], ["status 503"; 5]);
    assert_eq!(&kinds[5..], ["open"; 3]);
    assert_eq!(
        only.hits.load(Ordering::SeqCst),
        5,
        "an open breaker sends nothing"
    );
    let exported = metrics.render();
    assert!(
        exported.contains(r#"msakit_circuit_breaker_state{service="ledger",state="open"} 1"#)
            && exported
                .contains(r#"msakit_circuit_breaker_state{service="ledger",state="closed"} 0"#)
            && exported.contains(r#"msakit_calls_total{service="ledger",outcome="failure"} 5"#),
        "{exported}"
    );
}

/// The registry at `registry_url`, answering through a proxy that first waits `delay`.
async fn slow_registry(registry_url: String, delay: Duration) -> String {
    let forward = reqwest::Client::new();
    let app = axum::Router::new().fallback(move |uri: axum::http::Uri| {
        let (forward, registry_url) = (forward.clone(), registry_url.clone());
        async move {
            tokio::time::sleep(delay).await;
            let answer = forward
                .get(format!("{registry_url}{uri}"))
                .send()
                .await
                .unwrap();
            let mut headers = HeaderMap::new();
            for name in ["content-type", "x-msakit-index"] {
                if let Some(value) = answer.headers().get(name) {
                    headers.insert(name, value.clone());
                }
            }
            let status = StatusCode::from_u16(answer.status().as_u16()).unwrap();
            (status, headers, answer.bytes().await.unwrap())
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

/// A service's first call asks the registry; the time that takes comes off the deadline the
/// callee is told.
#[tokio::test]
async fn the_first_call_passes_on_the_deadline_left_after_asking_the_registry() {
    let server = registry(None).await;
    let url = server.url();
    let _backend = backend(&url, "pricing", "a", HEALTHY).await;
    let slow = slow_registry(url, Duration::from_millis(400)).await;
    let options = ServiceClientOptions::default().deadline(Duration::from_millis(1500));
    let first = client(&slow, options)
        .get("pricing", "/quote")
        .send()
        .await
        .unwrap();
    let body = first.text().await.unwrap();
    let remaining: u64 = body.split_once('|').unwrap().0.parse().unwrap();
    assert!(
        remaining <= 1100,
        "{remaining} ms left after a 400 ms lookup"
    );
}

#[tokio::test]
async fn the_deadline_travels_downstream_and_calls_survive_the_registry() {
    let server = registry(None).await;
    let url = server.url();
    let _backend = backend(&url, "pricing", "a", HEALTHY).await;
    let options = ServiceClientOptions::default().deadline(Duration::from_millis(1500));
    let client = client(&url, options);
    let first = client.get("pricing", "/quote").send().await.unwrap();
    let body = first.text().await.unwrap();
    let (remaining, trace) = body.split_once('|').unwrap();
    let remaining: u64 = remaining.parse().unwrap();
    assert!(remaining > 1000 && remaining <= 1500, "{remaining}");
    // A W3C traceparent goes with every call, continuing the caller's trace when given.
    assert!(trace.starts_with("00-") && trace.len() == 55, "{trace}");
    let incoming = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let continued = client
        .get("pricing", "/quote")
        .traceparent(incoming)
        .send()
        .await
        .unwrap();
    let body = continued.text().await.unwrap();
    assert!(
        body.contains("-4bf92f3577b34da6a3ce929d0e0e4736-"),
        "{body}"
    );
    assert!(
        !body.contains("00f067aa0ba902b7"),
        "a new span id per attempt: {body}"
    );
    server.stop().await;
    for _ in 0..5 {
        let response = client.get("pricing", "/quote").send().await.unwrap();
        assert_eq!(response.status(), 200, "served from the discovery cache");
    }
    let error = client.get("unknown", "/x").send().await.unwrap_err();
    assert!(matches!(error.kind, CallErrorKind::Discovery(_)), "{error}");
    assert!(
        error.to_string().contains("call to unknown failed")
            && error.to_string().contains("no registry answered"),
        "{error}"
    );
}

#[tokio::test]
async fn round_robin_takes_turns() {
    let server = registry(None).await;
    let url = server.url();
    let backends = [
        backend(&url, "search", "a", HEALTHY).await,
        backend(&url, "search", "b", HEALTHY).await,
        backend(&url, "search", "c", HEALTHY).await,
    ];
    let options = ServiceClientOptions::default().balancer(msakit::Balancer::RoundRobin);
    let client = client(&url, options);
    for _ in 0..99 {
        client.get("search", "/q").send().await.unwrap();
    }
    for backend in &backends {
        assert_eq!(backend.hits.load(Ordering::SeqCst), 33, "{}", backend.id);
    }
}

#[tokio::test]
async fn fallbacks_answer_when_calls_fail_and_the_client_is_a_tower_service() {
    use tower::{Service, ServiceExt};

    let server = registry(None).await;
    let url = server.url();
    let _down = backend(&url, "reviews", "a", FAILING).await;
    let options = ServiceClientOptions::default().max_attempts(1);
    let mut client = client(&url, options);

    // A per-call fallback.
    let answered = client
        .get("reviews", "/top")
        .fallback(|error| {
            assert!(matches!(error.kind, CallErrorKind::Status(_)));
            Some(reqwest::Response::from(axum::http::Response::new(
                "cached reviews",
            )))
        })
        .send()
        .await
        .unwrap();
    assert_eq!(answered.text().await.unwrap(), "cached reviews");

    // A per-service fallback, also through the tower face.
    client.set_fallback(
        "reviews",
        std::sync::Arc::new(|_: &msakit::CallError| {
            Some(reqwest::Response::from(axum::http::Response::new("[]")))
        }),
    );
    let call = msakit::ServiceCall {
        service: "reviews".into(),
        method: reqwest::Method::GET,
        path: "/top".into(),
        headers: Vec::new(),
        body: None,
    };
    // The client serves two request types; which one this is, is said once.
    let ready = ServiceExt::<msakit::ServiceCall>::ready(&mut client);
    let response = ready.await.unwrap().call(call).await.unwrap();
    assert_eq!(response.text().await.unwrap(), "[]");
}

#[tokio::test]
async fn tower_balance_follows_discovery_as_instances_come_and_go() {
    use tower::{Service, ServiceExt};
    let server = registry(None).await;
    let url = server.url();
    let a = backend(&url, "inventory", "a", HEALTHY).await;
    let b = backend(&url, "inventory", "b", HEALTHY).await;
    let sdk = Client::builder().registry_url(url.clone()).build().unwrap();
    let discovery = sdk.discovery().unwrap();
    let http = sdk.http().clone();
    let changes = msakit::discover(&discovery, "inventory", move |instance| {
        let (http, base) = (
            http.clone(),
            format!("http://{}:{}", instance.host, instance.port),
        );
        tower::load::PendingRequests::new(
            tower::service_fn(move |path: &'static str| {
                let request = http.get(format!("{base}{path}"));
                async move { request.send().await.map(|r| r.status()) }
            }),
            tower::load::CompleteOnResponse::default(),
        )
    });
    let mut balance = tower::balance::p2c::Balance::new(changes);
    for _ in 0..40 {
        let status = balance.ready().await.unwrap().call("/x").await.unwrap();
        assert_eq!(status, StatusCode::OK);
    }
    let (hits_a, hits_b) = (a.hits.load(Ordering::SeqCst), b.hits.load(Ordering::SeqCst));
    assert_eq!(hits_a + hits_b, 40);
    assert!(hits_a > 0 && hits_b > 0, "both used: {hits_a}/{hits_b}");

    // `a` leaves the registry: the balancer is told and stops sending it anything.
    let gone = reqwest::Client::new()
        .delete(format!("{url}/v1/services/inventory/instances/a"))
        .send()
        .await
        .unwrap();
    assert!(gone.status().is_success());
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        balance.ready().await.unwrap();
        if balance.len() == 1 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "removal not seen");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let before = a.hits.load(Ordering::SeqCst);
    for _ in 0..20 {
        balance.ready().await.unwrap().call("/x").await.unwrap();
    }
    assert_eq!(
        a.hits.load(Ordering::SeqCst),
        before,
        "nothing sent to a removed instance"
    );
}

/// An instance registered where nothing listens.
async fn closed_instance(registry_url: &str, service: &str) {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let response = reqwest::Client::new()
        .put(format!(
            "{registry_url}/v1/services/{service}/instances/gone"
        ))
        .json(&serde_json::json!({"host": "127.0.0.1", "port": port}))
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success());
}

#[tokio::test]
async fn errors_keep_their_cause_a_connect_failure_its_reqwest_error_a_timeout_says_so() {
    let server = registry(None).await;
    let url = server.url();
    closed_instance(&url, "refusing").await;
    let refused = client(&url, ServiceClientOptions::default().max_attempts(1));
    let error = refused.get("refusing", "/x").send().await.unwrap_err();
    assert!(matches!(error.kind, CallErrorKind::Transport(_)), "{error}");
    assert!(error.is_connect() && !error.is_timeout(), "{error}");
    let source = std::error::Error::source(&error).expect("the transport's error");
    let transport = source
        .downcast_ref::<reqwest::Error>()
        .expect("a reqwest::Error");
    assert!(transport.is_connect());

    let _stuck = backend(&url, "stuck", "s", HANGING).await;
    let timing_out = client(
        &url,
        ServiceClientOptions::default()
            .max_attempts(1)
            .attempt_timeout(Duration::from_millis(100)),
    );
    let error = timing_out.get("stuck", "/x").send().await.unwrap_err();
    assert!(
        matches!(error.kind, CallErrorKind::AttemptTimeout(_)),
        "{error}"
    );
    assert!(error.is_timeout() && !error.is_connect(), "{error}");
    assert!(
        error.to_string().contains("attempt timed out after 100ms"),
        "{error}"
    );
}

#[tokio::test]
async fn a_request_that_cannot_be_made_fails_before_anything_is_sent() {
    let server = registry(None).await;
    let url = server.url();
    let target = backend(&url, "orders", "o", HEALTHY).await;
    let client = client(&url, ServiceClientOptions::default());
    // A map whose keys are not strings has no JSON form: no request without its body.
    let unserialisable: std::collections::HashMap<(u8, u8), u8> = [((1, 2), 3)].into();
    let error = client
        .post("orders", "/orders")
        .json(&unserialisable)
        .send()
        .await
        .unwrap_err();
    assert!(
        matches!(error.kind, CallErrorKind::InvalidBody(_)),
        "{error}"
    );
    assert_eq!(error.attempts, 0);
    assert!(
        std::error::Error::source(&error)
            .and_then(|s| s.downcast_ref::<serde_json::Error>())
            .is_some()
    );
    let error = client
        .get("orders", "/orders")
        .header("bad header", "x")
        .send()
        .await
        .unwrap_err();
    assert!(
        matches!(error.kind, CallErrorKind::InvalidHeader(_)),
        "{error}"
    );
    assert_eq!(target.hits.load(Ordering::SeqCst), 0, "nothing was sent");
}

#[tokio::test]
async fn an_http_request_naming_the_service_as_its_host_goes_through_the_tower_face() {
    use tower::ServiceExt;
    let server = registry(None).await;
    let url = server.url();
    // A backend that echoes what it was sent.
    let app = axum::Router::new().fallback(
        |method: axum::http::Method, uri: axum::http::Uri, headers: HeaderMap, body: String| async move {
            let tenant = headers
                .get("x-tenant")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("none")
                .to_owned();
            let traced = headers
                .get("traceparent")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|t| t.contains("4bf92f3577b34da6a3ce929d0e0e4736"));
            (StatusCode::CREATED, format!("{method} {uri} {tenant} {traced} {body}"))
        },
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let registered = reqwest::Client::new()
        .put(format!("{url}/v1/services/ledger/instances/l1"))
        .json(&serde_json::json!({"host": "127.0.0.1", "port": port}))
        .send()
        .await
        .unwrap();
    assert!(registered.status().is_success());
    let client = client(&url, ServiceClientOptions::default());

    let request = http::Request::builder()
        .method("POST")
        .uri("http://ledger/entries?batch=7")
        .header("x-tenant", "acme")
        .header(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        )
        .body(String::from("{\"amount\":5}"))
        .unwrap();
    let response = client.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), 201);
    let body = http_body_util::BodyExt::collect(response.into_body())
        .await
        .unwrap()
        .to_bytes();
    assert_eq!(
        String::from_utf8(body.to_vec()).unwrap(),
        "POST /entries?batch=7 acme true {\"amount\":5}"
    );

    // A URI without a host names no service.
    let nowhere = http::Request::builder()
        .uri("/entries")
        .body(String::new())
        .unwrap();
    let error = client.oneshot(nowhere).await.unwrap_err();
    assert!(matches!(error.kind, CallErrorKind::NoService), "{error}");
}

/// Finished spans, kept for the test.
#[derive(Debug, Clone, Default)]
struct Kept(Arc<std::sync::Mutex<Vec<opentelemetry_sdk::trace::SpanData>>>);

impl opentelemetry_sdk::trace::SpanExporter for Kept {
    async fn export(
        &self,
        batch: Vec<opentelemetry_sdk::trace::SpanData>,
    ) -> opentelemetry_sdk::error::OTelSdkResult {
        self.0.lock().unwrap().extend(batch);
        Ok(())
    }
}

#[tokio::test]
async fn with_traces_on_an_attempt_is_a_client_span_whose_ids_are_sent_on() {
    use opentelemetry::trace::{SpanKind, TracerProvider as _};
    use tracing::instrument::WithSubscriber;
    use tracing_subscriber::Layer;
    use tracing_subscriber::layer::SubscriberExt;
    let registry = registry(None).await;
    let _backend = backend(&registry.url(), "traced", "t1", HEALTHY).await;
    let kept = Kept::default();
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
        .with_simple_exporter(kept.clone())
        .build();
    let traces = tracing_opentelemetry::layer()
        .with_tracer(provider.tracer("test"))
        .with_filter(
            tracing_subscriber::filter::Targets::new()
                .with_target("msakit::trace", tracing::Level::DEBUG),
        );
    let dispatch = tracing::Dispatch::new(tracing_subscriber::registry().with(traces));
    let client = Client::builder()
        .registry_url(registry.url())
        .build()
        .unwrap()
        .service_client(ServiceClientOptions::default())
        .unwrap();
    // A caller continuing an incoming trace, with no span of its own.
    let incoming = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let response = client
        .get("traced", "/x")
        .traceparent(incoming)
        .send()
        .with_subscriber(dispatch)
        .await
        .unwrap();
    let answer = response.text().await.unwrap();
    let sent: Vec<&str> = answer.split('|').nth(1).unwrap().split('-').collect();
    assert_eq!(
        sent[1], "4bf92f3577b34da6a3ce929d0e0e4736",
        "the trace goes on"
    );
    let spans = kept.0.lock().unwrap().clone();
    let call = spans
        .iter()
        .find(|s| s.span_kind == SpanKind::Client && s.name == "traced")
        .unwrap_or_else(|| panic!("no client span for the call: {spans:?}"));
    assert_eq!(
        call.span_context.span_id().to_string(),
        sent[2],
        "the attempt's span is what is sent"
    );
    assert_eq!(
        call.parent_span_id.to_string(),
        "00f067aa0ba902b7",
        "the caller's span is its parent"
    );
    let attribute = |key: &str| {
        call.attributes
            .iter()
            .find(|kv| kv.key.as_str() == key)
            .map(|kv| kv.value.to_string())
    };
    assert_eq!(attribute("msakit.attempt").as_deref(), Some("1"));
    assert_eq!(attribute("msakit.instance").as_deref(), Some("t1"));
    assert_eq!(attribute("msakit.outcome").as_deref(), Some("success"));
    assert_eq!(
        attribute("http.response.status_code").as_deref(),
        Some("200")
    );
    assert!(
        spans.iter().any(|s| s.name == "registry lookup"),
        "the first call's registry lookup shows up"
    );
}
