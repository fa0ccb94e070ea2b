//! Eureka's REST API over raw HTTP, in JSON and XML.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::{TestServer, fast_config, wait_until};

fn instance(id: &str, port: u16) -> Value {
    json!({"instance": {
        "instanceId": id, "hostName": "host-1", "app": "ORDERS", "ipAddr": "10.0.0.1",
        "status": "UP", "port": {"$": port, "@enabled": "true"}, "securePort": {"$": 443, "@enabled": false},
        "dataCenterInfo": {"@class": "com.netflix.appinfo.InstanceInfo$DefaultDataCenterInfo", "name": "MyOwn"},
        "leaseInfo": {"renewalIntervalInSecs": 5, "durationInSecs": 15},
        "metadata": {"zone": "eu-1"}, "vipAddress": "orders", "secureVipAddress": "orders-secure"
    }})
}

async fn get_json(server: &TestServer, path: &str) -> (reqwest::StatusCode, Value) {
    let response = server
        .client
        .get(server.at(path))
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// `/eureka/apps/delta` as XML, what a client that says nothing gets.
async fn xml_delta(server: &TestServer) -> String {
    let response = server
        .client
        .get(server.at("/eureka/apps/delta"))
        .send()
        .await;
    response.unwrap().text().await.unwrap()
}

/// Every instance of every `application` element of an `applications` document.
fn delta_instances(applications: &Value) -> Vec<Value> {
    applications["application"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|app| app["instance"].as_array().unwrap().clone())
        .collect()
}

async fn post(server: &TestServer, app: &str, body: &Value) -> reqwest::StatusCode {
    server
        .client
        .post(server.at(&format!("/eureka/apps/{app}")))
        .json(body)
        .send()
        .await
        .unwrap()
        .status()
}

#[tokio::test]
async fn register_fetch_heartbeat_override_and_cancel_in_json() {
    let server = TestServer::start(fast_config()).await;
    assert_eq!(
        post(&server, "ORDERS", &instance("orders-1", 8080)).await,
        204
    );
    assert_eq!(
        post(&server, "ORDERS", &instance("orders-2", 8081)).await,
        204
    );

    let (status, apps) = get_json(&server, "/eureka/apps").await;
    assert_eq!(status, 200);
    let applications = &apps["applications"];
    assert_eq!(applications["apps__hashcode"], "UP_2_");
    assert_eq!(applications["application"][0]["name"], "ORDERS");
    let first = &applications["application"][0]["instance"][0];
    assert_eq!(first["instanceId"], "orders-1");
    assert_eq!(first["ipAddr"], "10.0.0.1");
    assert_eq!(first["port"]["$"], 8080);
    assert_eq!(first["port"]["@enabled"], "true");
    assert_eq!(first["leaseInfo"]["durationInSecs"], 15);
    assert_eq!(first["dataCenterInfo"]["name"], "MyOwn");
    assert_eq!(first["metadata"]["zone"], "eu-1");

    // One registry: the native API sees the same instances.
    let native = server.get_json("/v1/services/orders").await;
    assert_eq!(native["instances"].as_array().unwrap().len(), 2);
    assert_eq!(native["instances"][0]["zone"], "eu-1");

    // Heartbeats: 200, and 404 for an unknown instance so the client registers again.
    let beat = |id: &str| {
        server
            .client
            .put(server.at(&format!(
                "/eureka/apps/ORDERS/{id}?status=UP&lastDirtyTimestamp=1"
            )))
            .send()
    };
    assert_eq!(beat("orders-1").await.unwrap().status(), 200);
    assert_eq!(beat("ghost").await.unwrap().status(), 404);

    // An operator override, visible everywhere, and in the hash code.
    let r = server
        .client
        .put(server.at("/eureka/apps/ORDERS/orders-2/status?value=OUT_OF_SERVICE"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (_, apps) = get_json(&server, "/eureka/v2/apps").await;
    assert_eq!(
        apps["applications"]["apps__hashcode"],
        "OUT_OF_SERVICE_1_UP_1_"
    );
    assert_eq!(
        server
            .get_json("/v1/services/orders/instances/orders-2")
            .await["status"],
        "OUT_OF_SERVICE"
    );
    let r = server
        .client
        .delete(server.at("/eureka/apps/ORDERS/orders-2/status"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        server
            .get_json("/v1/services/orders/instances/orders-2")
            .await["status"],
        "UP"
    );

    // Metadata updates.
    let r = server
        .client
        .put(server.at("/eureka/apps/ORDERS/orders-1/metadata?version=2.1"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (_, one) = get_json(&server, "/eureka/apps/ORDERS/orders-1").await;
    assert_eq!(one["instance"]["metadata"]["version"], "2.1");
    let (_, by_id) = get_json(&server, "/eureka/instances/orders-1").await;
    assert_eq!(by_id["instance"]["app"], "ORDERS");
    let (_, vip) = get_json(&server, "/eureka/vips/orders").await;
    assert_eq!(
        vip["applications"]["application"][0]["instance"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    let (_, svip) = get_json(&server, "/eureka/svips/orders-secure").await;
    assert_eq!(
        svip["applications"]["application"][0]["instance"]
            .as_array()
            .unwrap()
            .len(),
        2
    );

    // Cancel: 200, then 404.
    let cancel = || {
        server
            .client
            .delete(server.at("/eureka/apps/ORDERS/orders-2"))
            .send()
    };
    assert_eq!(cancel().await.unwrap().status(), 200);
    assert_eq!(cancel().await.unwrap().status(), 404);

    // The delta reports the additions and the removal, with the whole registry's hash code.
    let (_, delta) = get_json(&server, "/eureka/apps/delta").await;
    let delta = &delta["applications"];
    assert_eq!(delta["apps__hashcode"], "UP_1_");
    let actions: Vec<(String, String)> = delta_instances(delta)
        .iter()
        .map(|i| {
            (
                i["instanceId"].as_str().unwrap().to_owned(),
                i["actionType"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        actions,
        [
            ("orders-1".into(), "ADDED".into()),
            ("orders-2".into(), "DELETED".into())
        ]
    );
    server.stop().await;
}

#[tokio::test]
async fn xml_by_default_and_xml_registration() {
    let server = TestServer::start(fast_config()).await;
    let xml = r#"<instance>
        <hostName>db-host</hostName><app>INVENTORY</app><ipAddr>10.0.0.9</ipAddr><status>UP</status>
        <port enabled="true">5432</port><securePort enabled="false">443</securePort>
        <dataCenterInfo class="com.netflix.appinfo.InstanceInfo$DefaultDataCenterInfo"><name>MyOwn</name></dataCenterInfo>
        <leaseInfo><durationInSecs>20</durationInSecs></leaseInfo>
        <metadata><team>data &amp; storage</team></metadata>
        <vipAddress>inventory</vipAddress>
    </instance>"#;
    let r = server
        .client
        .post(server.at("/eureka/apps/INVENTORY"))
        .header("content-type", "application/xml")
        .body(xml)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let native = server
        .get_json("/v1/services/inventory/instances/db-host")
        .await;
    assert_eq!(native["port"], 5432, "instanceId falls back to hostName");
    assert_eq!(native["lease_ttl_ms"], 20_000);
    assert_eq!(native["metadata"]["team"], "data & storage");

    // No Accept header: XML, as Eureka answers.
    let r = server
        .client
        .get(server.at("/eureka/apps"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["content-type"], "application/xml");
    let body = r.text().await.unwrap();
    for expected in [
        "<applications>",
        "<apps__hashcode>UP_1_</apps__hashcode>",
        "<name>INVENTORY</name>",
        r#"<port enabled="true">5432</port>"#,
        "<team>data &amp; storage</team>",
        r#"<dataCenterInfo class="com.netflix.appinfo.InstanceInfo$DefaultDataCenterInfo">"#,
    ] {
        assert!(body.contains(expected), "missing {expected} in {body}");
    }
    // Every read endpoint answers XML too.
    for (path, root) in [
        ("/eureka/apps/INVENTORY", "<application>"),
        ("/eureka/apps/INVENTORY/db-host", "<instance>"),
        ("/eureka/instances/db-host", "<instance>"),
        ("/eureka/vips/inventory", "<applications>"),
        ("/eureka/svips/inventory", "<applications>"),
        ("/eureka/apps/delta", "<applications>"),
        ("/eureka/v2/apps/", "<applications>"),
    ] {
        let r = server
            .client
            .get(server.at(path))
            .header("accept", "application/xml")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{path}");
        assert_eq!(r.headers()["content-type"], "application/xml", "{path}");
        let body = r.text().await.unwrap();
        assert!(
            body.contains(root) && body.contains("<hostName>db-host</hostName>"),
            "{path}: {body}"
        );
    }
    let delta = xml_delta(&server).await;
    assert!(delta.contains("<actionType>ADDED</actionType>"), "{delta}");
    let missing = server
        .client
        .get(server.at("/eureka/apps/INVENTORY/nobody"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    let gzip = server
        .client
        .get(server.at("/eureka/apps"))
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(gzip.headers()["content-encoding"], "gzip");
    server.stop().await;
}

#[tokio::test]
async fn natively_registered_instances_are_eureka_applications() {
    let server = TestServer::start(fast_config()).await;
    server.up("payments", "pay-1", 9000, 15_000).await;
    let (status, app) = get_json(&server, "/eureka/apps/PAYMENTS").await;
    assert_eq!(status, 200);
    let instance = &app["application"]["instance"][0];
    assert_eq!(instance["app"], "PAYMENTS");
    assert_eq!(instance["hostName"], "127.0.0.1");
    assert_eq!(instance["vipAddress"], "payments");
    assert_eq!(instance["leaseInfo"]["durationInSecs"], 15);
    let (status, _) = get_json(&server, "/eureka/apps/NOBODY").await;
    assert_eq!(status, 404);
    server.stop().await;
}

#[tokio::test]
async fn lease_duration_is_honoured_without_doubling() {
    let server = TestServer::start(fast_config()).await;
    let mut body = instance("short-1", 8080);
    body["instance"]["leaseInfo"]["durationInSecs"] = json!(2);
    let registered = Instant::now();
    assert_eq!(post(&server, "ORDERS", &body).await, 204);
    wait_until(Duration::from_secs(5), || async {
        server.instance_ids("orders").await.is_empty()
    })
    .await;
    let elapsed = registered.elapsed();
    // Eureka would keep it for twice the lease (and then up to its 60 s eviction timer).
    assert!(
        elapsed >= Duration::from_secs(2) && elapsed < Duration::from_millis(3500),
        "{elapsed:?}"
    );
    server.stop().await;
}

#[tokio::test]
async fn bad_registrations_get_400() {
    let server = TestServer::start(fast_config()).await;
    for field in ["hostName", "ipAddr", "app", "dataCenterInfo"] {
        let mut body = instance("x", 1);
        body["instance"].as_object_mut().unwrap().remove(field);
        assert_eq!(post(&server, "ORDERS", &body).await, 400, "without {field}");
    }
    assert_eq!(
        post(&server, "PAYMENTS", &instance("x", 1)).await,
        400,
        "app differs from the path"
    );
    let broken = server
        .client
        .post(server.at("/eureka/apps/ORDERS"))
        .header("content-type", "application/json")
        .body("{")
        .send()
        .await
        .unwrap();
    assert_eq!(broken.status(), 400);
    let broken = server
        .client
        .post(server.at("/eureka/apps/ORDERS"))
        .header("content-type", "application/xml")
        .body("<instance>")
        .send()
        .await
        .unwrap();
    assert_eq!(broken.status(), 400);
    let body: Value = broken.json().await.unwrap();
    assert_eq!(body["error"]["code"], "malformed_xml");
    server.stop().await;
}

/// Regression (issue 18): the delta described a removed instance by a stub (host name = id,
/// port 0), and clients that match deletions by host name and port never dropped it. A
/// cancelled or evicted instance is now described as it was; removals come in `application`
/// elements of their own, so a client that adds a new application's element whole (Eureka's
/// Java client does) never adds a removed instance with it.
#[tokio::test]
async fn the_delta_describes_a_removed_instance_as_it_was() {
    let server = TestServer::start(fast_config()).await;
    assert_eq!(
        post(&server, "ORDERS", &instance("orders-1", 8080)).await,
        204
    );
    let mut cancelled = instance("orders-2", 8081);
    cancelled["instance"]["hostName"] = json!("host-2");
    cancelled["instance"]["ipAddr"] = json!("10.0.0.2");
    cancelled["instance"]["metadata"] = json!({"zone": "eu-2", "team": "shop"});
    assert_eq!(post(&server, "ORDERS", &cancelled).await, 204);
    let mut evicted = instance("orders-3", 8082);
    evicted["instance"]["hostName"] = json!("host-3");
    evicted["instance"]["leaseInfo"]["durationInSecs"] = json!(1);
    assert_eq!(post(&server, "ORDERS", &evicted).await, 204);
    let cancel = server
        .client
        .delete(server.at("/eureka/apps/ORDERS/orders-2"))
        .send()
        .await
        .unwrap();
    assert_eq!(cancel.status(), 200);
    wait_until(Duration::from_secs(10), || async {
        !server
            .instance_ids("orders")
            .await
            .contains(&"orders-3".to_owned())
    })
    .await;

    let (_, delta) = get_json(&server, "/eureka/apps/delta").await;
    let delta = &delta["applications"];
    for app in delta["application"].as_array().unwrap() {
        let actions: Vec<&str> = app["instance"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["actionType"].as_str().unwrap())
            .collect();
        assert!(
            actions.iter().all(|a| *a == "DELETED") || !actions.contains(&"DELETED"),
            "removals share an element with live instances: {app}"
        );
    }
    let by_id = |id: &str| {
        delta_instances(delta)
            .into_iter()
            .find(|i| i["instanceId"] == id)
            .unwrap_or_else(|| panic!("{id} missing from {delta}"))
    };
    let gone = by_id("orders-2");
    assert_eq!(gone["actionType"], "DELETED");
    assert_eq!(gone["hostName"], "host-2");
    assert_eq!(gone["ipAddr"], "10.0.0.2");
    assert_eq!(gone["port"]["$"], 8081);
    assert_eq!(gone["vipAddress"], "orders");
    assert_eq!(gone["secureVipAddress"], "orders-secure");
    assert_eq!(gone["metadata"]["team"], "shop");
    let expired = by_id("orders-3");
    assert_eq!(expired["actionType"], "DELETED");
    assert_eq!(expired["hostName"], "host-3");
    assert_eq!(expired["port"]["$"], 8082);
    assert_eq!(by_id("orders-1")["actionType"], "ADDED");
    assert_eq!(delta["apps__hashcode"], "UP_1_");

    // The same in XML.
    let xml = xml_delta(&server).await;
    assert!(xml.contains("<hostName>host-2</hostName>"), "{xml}");
    assert!(xml.contains(r#"<port enabled="true">8081</port>"#), "{xml}");
    server.stop().await;
}

/// Regression (issue 18): the delta's hash code was read apart from its entries, so a write
/// in between sent Eureka's Java client to a full fetch. A client that applies every delta as
/// the Java client does (ADDED and MODIFIED replace by id, DELETED removes by id) and
/// recomputes the hash (instances per status, sorted by status) agrees with every delta while
/// instances register, change status and leave all the time.
#[tokio::test]
async fn a_client_applying_deltas_agrees_with_every_hash_code_under_churn() {
    let server = TestServer::start(fast_config()).await;
    for n in 0..4 {
        assert_eq!(
            post(&server, "ORDERS", &instance(&format!("base-{n}"), 8000 + n)).await,
            204
        );
    }
    let (_, full) = get_json(&server, "/eureka/apps").await;
    let mut cache: std::collections::BTreeMap<(String, String), String> =
        delta_instances(&full["applications"])
            .iter()
            .map(|i| {
                (
                    (
                        i["app"].as_str().unwrap().to_owned(),
                        i["instanceId"].as_str().unwrap().to_owned(),
                    ),
                    i["status"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
    let churn = {
        let client = server.client.clone();
        let base = server.url.clone();
        tokio::spawn(async move {
            for round in 0..150u16 {
                let id = format!("churn-{}", round % 5);
                let mut body = instance(&id, 9000 + round % 5);
                body["instance"]["app"] = json!("PAYMENTS");
                let _ = client
                    .post(format!("{base}/eureka/apps/PAYMENTS"))
                    .json(&body)
                    .send()
                    .await;
                let target = format!("{base}/eureka/apps/ORDERS/base-{}", round % 4);
                let value = if round % 2 == 0 {
                    "OUT_OF_SERVICE"
                } else {
                    "UP"
                };
                let _ = client
                    .put(format!("{target}/status?value={value}"))
                    .send()
                    .await;
                let gone = format!("{base}/eureka/apps/PAYMENTS/churn-{}", (round + 2) % 5);
                let _ = client.delete(gone).send().await;
            }
        })
    };
    let mut deltas = 0;
    while !churn.is_finished() || deltas < 5 {
        let (_, delta) = get_json(&server, "/eureka/apps/delta").await;
        let delta = &delta["applications"];
        for i in delta_instances(delta) {
            let key = (
                i["app"].as_str().unwrap().to_owned(),
                i["instanceId"].as_str().unwrap().to_owned(),
            );
            if i["actionType"] == "DELETED" {
                cache.remove(&key);
            } else {
                cache.insert(key, i["status"].as_str().unwrap().to_owned());
            }
        }
        let mut counts: std::collections::BTreeMap<&str, usize> = std::collections::BTreeMap::new();
        for status in cache.values() {
            *counts.entry(status).or_default() += 1;
        }
        let recomputed: String = counts.iter().map(|(s, n)| format!("{s}_{n}_")).collect();
        assert_eq!(
            delta["apps__hashcode"],
            recomputed.as_str(),
            "delta {deltas}: {delta}"
        );
        deltas += 1;
    }
    churn.await.unwrap();
    server.stop().await;
}

/// Regression (issue 18): a heartbeat always renewed, so a client whose registration changed
/// (STARTING → UP) and never arrived stayed as it was. As in Eureka, a `lastDirtyTimestamp`
/// newer than the registration's is a 404, and the client registers again.
#[tokio::test]
async fn a_heartbeat_newer_than_the_registration_asks_for_it_again() {
    let server = TestServer::start(fast_config()).await;
    let mut body = instance("orders-1", 8080);
    body["instance"]["lastDirtyTimestamp"] = json!("1000");
    assert_eq!(post(&server, "ORDERS", &body).await, 204);
    let beat = |dirty: &'static str| {
        let url = server.at(&format!(
            "/eureka/apps/ORDERS/orders-1?status=UP&lastDirtyTimestamp={dirty}"
        ));
        let client = server.client.clone();
        async move { client.put(url).send().await.unwrap().status() }
    };
    assert_eq!(beat("1000").await, 200);
    assert_eq!(
        beat("999").await,
        200,
        "older: the registration is newer, fine"
    );
    assert_eq!(beat("not-a-number").await, 200, "unreadable: ignored");
    assert_eq!(beat("1001").await, 404, "newer: register again");
    body["instance"]["lastDirtyTimestamp"] = json!(1001);
    assert_eq!(post(&server, "ORDERS", &body).await, 204);
    assert_eq!(beat("1001").await, 200);
    server.stop().await;
}

/// Spring Cloud LoadBalancer reads an instance's zone from its metadata; a natively registered
/// instance's zone shows there too.
#[tokio::test]
async fn a_native_instances_zone_is_in_its_eureka_metadata() {
    let server = TestServer::start(fast_config()).await;
    let response = server
        .register(
            "payments",
            "pay-1",
            json!({"host": "127.0.0.1", "port": 9000, "zone": "eu-1"}),
        )
        .await;
    assert_eq!(response.status(), 200);
    let (_, app) = get_json(&server, "/eureka/apps/PAYMENTS").await;
    assert_eq!(
        app["application"]["instance"][0]["metadata"]["zone"],
        "eu-1"
    );
    server.stop().await;
}
