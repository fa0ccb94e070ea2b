//! The live view: once a second, what the registry lists and what every instance's `/metrics`
//! says, per service — instances, call rate, success, p50/p99, breakers, retries, ejections —
//! redrawn in the terminal, or printed as plain lines with `--no-tui`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

/// One Prometheus sample: name, labels, value.
#[derive(Debug, Clone)]
pub(crate) struct Metric {
    pub(crate) name: String,
    pub(crate) labels: BTreeMap<String, String>,
    pub(crate) value: f64,
}

/// Parses Prometheus text exposition (enough of it for our own exporters).
pub(crate) fn parse(text: &str) -> Vec<Metric> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let value: f64 = value.parse().ok()?;
            let (name, labels) = match series.split_once('{') {
                Some((name, rest)) => (name, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            let labels = labels
                .split(',')
                .filter_map(|pair| {
                    let (k, v) = pair.split_once('=')?;
                    Some((k.trim().to_owned(), v.trim_matches('"').to_owned()))
                })
                .collect();
            Some(Metric {
                name: name.to_owned(),
                labels,
                value,
            })
        })
        .collect()
}

/// Sums `name{service=…}` over `metrics`, per service, where `filter` holds.
pub(crate) fn sum_by_service(
    metrics: &[Metric],
    name: &str,
    filter: impl Fn(&Metric) -> bool,
) -> BTreeMap<String, f64> {
    let mut sums = BTreeMap::new();
    for m in metrics.iter().filter(|m| m.name == name && filter(m)) {
        if let Some(service) = m.labels.get("service") {
            *sums.entry(service.clone()).or_insert(0.0) += m.value;
        }
    }
    sums
}

/// Everything scraped at one moment.
#[derive(Debug, Default, Clone)]
pub(crate) struct Scrape {
    /// Every instance's metrics, concatenated.
    pub(crate) metrics: Vec<Metric>,
    /// UP instances per service, as the registry lists them (`None`: the registry is down).
    pub(crate) registered: Option<BTreeMap<String, u64>>,
}

impl Scrape {
    /// Per calling instance, whether its breaker for `service` is open.
    pub(crate) fn open_breakers(&self, service: &str) -> usize {
        self.metrics
            .iter()
            .filter(|m| {
                m.name == "msakit_circuit_breaker_state"
                    && m.labels.get("service").map(String::as_str) == Some(service)
                    && m.labels.get("state").map(String::as_str) == Some("open")
                    && m.value == 1.0
            })
            .count()
    }

    /// Per calling instance, whether its breaker for `service` is closed.
    pub(crate) fn closed_breakers(&self, service: &str) -> usize {
        self.metrics
            .iter()
            .filter(|m| {
                m.name == "msakit_circuit_breaker_state"
                    && m.labels.get("service").map(String::as_str) == Some(service)
                    && m.labels.get("state").map(String::as_str) == Some("closed")
                    && m.value == 1.0
            })
            .count()
    }
}

/// Scrapes the registry and the given `/metrics` URLs.
pub(crate) async fn scrape(http: &reqwest::Client, registry: &str, targets: &[String]) -> Scrape {
    let mut scrape = Scrape::default();
    for target in targets {
        if let Ok(response) = http.get(target).send().await
            && let Ok(text) = response.text().await
        {
            scrape.metrics.extend(parse(&text));
        }
    }
    if let Ok(response) = http.get(format!("{registry}/v1/services")).send().await
        && let Ok(list) = response.json::<msakit_api::registry::ServiceList>().await
    {
        scrape.registered = Some(
            list.services
                .into_iter()
                .map(|s| {
                    let up = s
                        .by_status
                        .get(&msakit_api::registry::InstanceStatus::Up)
                        .copied();
                    (s.name, up.unwrap_or(0))
                })
                .collect(),
        );
    }
    scrape
}

/// The p-quantile of a Prometheus histogram's growth between two scrapes (upper bucket bound).
fn histogram_quantile(before: &[Metric], after: &[Metric], service: &str, p: f64) -> Option<f64> {
    let buckets = |metrics: &[Metric]| {
        let mut b: BTreeMap<String, f64> = BTreeMap::new();
        for m in metrics.iter().filter(|m| {
            m.name == "msakit_call_duration_seconds_bucket"
                && m.labels.get("service").map(String::as_str) == Some(service)
        }) {
            *b.entry(m.labels.get("le").cloned().unwrap_or_default())
                .or_insert(0.0) += m.value;
        }
        b
    };
    let (before, after) = (buckets(before), buckets(after));
    let mut growth: Vec<(f64, f64)> = after
        .iter()
        .map(|(le, count)| {
            let bound = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().unwrap_or(f64::INFINITY)
            };
            (bound, count - before.get(le).copied().unwrap_or(0.0))
        })
        .collect();
    growth.sort_by(|a, b| a.0.total_cmp(&b.0));
    let total = growth.last()?.1;
    if total <= 0.0 {
        return None;
    }
    growth
        .iter()
        .find(|(_, c)| *c >= p * total)
        .map(|(b, _)| *b)
}

/// One frame of the view: `phase` heading, then a row per service.
pub(crate) fn render(
    phase: &str,
    before: &Scrape,
    after: &Scrape,
    every: Duration,
    gateway: &[crate::traffic::Sample],
) -> String {
    let calls = |s: &Scrape, outcome: &'static str| {
        sum_by_service(&s.metrics, "msakit_calls_total", move |m| {
            m.labels.get("outcome").map(String::as_str) == Some(outcome)
        })
    };
    let (ok0, ok1) = (calls(before, "success"), calls(after, "success"));
    let (bad0, bad1) = (calls(before, "failure"), calls(after, "failure"));
    let retries = |s: &Scrape| sum_by_service(&s.metrics, "msakit_retries_total", |_| true);
    let (r0, r1) = (retries(before), retries(after));
    let ejections: f64 = after
        .metrics
        .iter()
        .filter(|m| m.name == "msakit_ejections_total")
        .map(|m| m.value)
        .sum();
    let mut out = String::new();
    let _ = writeln!(out, "── phase: {phase}");
    let _ = writeln!(
        out,
        "{:<10} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "service", "instances", "calls/s", "success", "p50", "p99", "breakers", "retries/s"
    );
    let secs = every.as_secs_f64();
    let gateway_ok = crate::traffic::ok_share(gateway) * 100.0;
    let _ = writeln!(
        out,
        "{:<10} {:>9} {:>9.0} {:>8.1}% {:>7.0}ms {:>7.0}ms {:>9} {:>9}",
        "gateway",
        "1",
        gateway.len() as f64 / secs,
        gateway_ok,
        crate::traffic::quantile(gateway, 0.5).as_secs_f64() * 1e3,
        crate::traffic::quantile(gateway, 0.99).as_secs_f64() * 1e3,
        "-",
        "-"
    );
    for service in ["order", "payment", "delivery"] {
        let delta = |a: &BTreeMap<String, f64>, b: &BTreeMap<String, f64>| {
            b.get(service).copied().unwrap_or(0.0) - a.get(service).copied().unwrap_or(0.0)
        };
        let (ok, bad) = (delta(&ok0, &ok1), delta(&bad0, &bad1));
        let total = ok + bad;
        let instances = after
            .registered
            .as_ref()
            .map_or("registry?".to_owned(), |r| {
                r.get(service).copied().unwrap_or(0).to_string()
            });
        let ms = |q| {
            histogram_quantile(&before.metrics, &after.metrics, service, q).map_or(
                "-".to_owned(),
                |s| {
                    if s.is_finite() {
                        format!("≤{:.0}ms", s * 1e3)
                    } else {
                        ">1s".to_owned()
                    }
                },
            )
        };
        let open = after.open_breakers(service);
        let _ = writeln!(
            out,
            "{:<10} {:>9} {:>9.0} {:>8.1}% {:>9} {:>9} {:>9} {:>9.1}",
            service,
            instances,
            total / secs,
            if total > 0.0 {
                ok / total * 100.0
            } else {
                100.0
            },
            ms(0.5),
            ms(0.99),
            if open > 0 {
                format!("{open} open")
            } else {
                "closed".to_owned()
            },
            delta(&r0, &r1) / secs,
        );
    }
    let _ = writeln!(out, "ejections so far: {ejections:.0}");
    out
}
