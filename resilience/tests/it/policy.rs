//! A whole policy from YAML, directly and as one tower layer, in front of a real HTTP server.

use msakit_resilience::{
    BoxError, CallNotPermitted, CircuitState, Elapsed, Error, Policy, PolicyConfig,
};
use tower::{Service, ServiceBuilder, ServiceExt};

use crate::support::{Dependency, Health};

const YAML: &str = "
retry:
  max_attempts: 3
  backoff: { type: constant, delay: 10ms }
circuit_breaker:
  sliding_window_size: 6
  minimum_number_of_calls: 6
  wait_duration_in_open_state: 60s
rate_limiter:
  limit_for_period: 1000
  limit_refresh_period: 1s
  max_wait: 0s
timeout:
  timeout: 100ms
bulkhead:
  max_concurrent_calls: 8
";

fn policy() -> Policy {
    let config: PolicyConfig = serde_yaml_ng::from_str(YAML).unwrap();
    Policy::from_config("orders", &config).unwrap()
}

#[test]
fn a_bad_field_is_named_with_its_section() {
    let config: PolicyConfig =
        serde_yaml_ng::from_str("circuit_breaker: { failure_rate_threshold: 150 }").unwrap();
    let err = Policy::from_config("x", &config).unwrap_err();
    assert_eq!(err.field(), "circuit_breaker.failure_rate_threshold");
    assert!(serde_yaml_ng::from_str::<PolicyConfig>("retry: { max_attempt: 3 }").is_err());
}

#[tokio::test]
async fn timeouts_trip_the_breaker_and_retries_stop_at_it() {
    let dependency = Dependency::start().await;
    let client = reqwest::Client::new();
    let policy = policy();
    dependency.set(Health::Slow);
    // Two calls of three timed-out attempts each fill the window of six with failures.
    for _ in 0..2 {
        let result = policy.call(|| client.get(&dependency.url).send()).await;
        assert!(
            matches!(result, Err(Error::Timeout(Elapsed { .. }))),
            "{result:?}"
        );
    }
    let breaker = policy.circuit_breaker().unwrap();
    assert_eq!(breaker.state(), CircuitState::Open);
    assert_eq!(dependency.requests(), 6);
    // An open breaker is not retried: one rejection, no request.
    let result = policy.call(|| client.get(&dependency.url).send()).await;
    assert!(
        matches!(result, Err(Error::CallNotPermitted(_))),
        "{result:?}"
    );
    assert_eq!(dependency.requests(), 6);
    assert_eq!(policy.timeout().unwrap().metrics().timed_out_calls, 6);
    assert_eq!(policy.retry().unwrap().metrics().retries, 4);
}

#[tokio::test]
async fn the_same_policy_as_one_tower_layer() {
    let dependency = Dependency::start().await;
    let client = reqwest::Client::new();
    let policy = policy();
    let url = dependency.url.clone();
    let mut service = ServiceBuilder::new()
        .layer(policy.layer())
        .service_fn(move |()| {
            let request = client.get(&url).send();
            async move {
                let response = request.await?;
                if response.status().is_server_error() {
                    return Err::<_, BoxError>(format!("status {}", response.status()).into());
                }
                Ok(response.status().as_u16())
            }
        });

    assert_eq!(service.ready().await.unwrap().call(()).await.unwrap(), 200);

    dependency.set(Health::Failing);
    let before = dependency.requests();
    let err = service.ready().await.unwrap().call(()).await.unwrap_err();
    assert!(err.to_string().contains("503"), "{err}");
    // The window of six now holds the first success and three failures; the next call's second
    // attempt fills it and trips the breaker, which rejects its third attempt.
    let err = service.ready().await.unwrap().call(()).await.unwrap_err();
    assert!(err.is::<CallNotPermitted>(), "{err}");
    assert_eq!(dependency.requests() - before, 5);
    assert_eq!(
        policy.circuit_breaker().unwrap().state(),
        CircuitState::Open
    );
    let err = service.ready().await.unwrap().call(()).await.unwrap_err();
    let rejection = err
        .downcast_ref::<CallNotPermitted>()
        .expect("a breaker rejection");
    assert_eq!(rejection.name(), "orders");
    assert_eq!(dependency.requests() - before, 5);

    dependency.set(Health::Slow);
    policy.circuit_breaker().unwrap().reset();
    let err = service.ready().await.unwrap().call(()).await.unwrap_err();
    assert!(err.is::<Elapsed>(), "{err}");
}
