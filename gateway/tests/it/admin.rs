//! The admin API: routes with counters (never API keys), tokens, health, metrics, OpenAPI.

use serde_json::Value;

use crate::support::{Gateway, config_with, routes, upstream};

#[tokio::test]
async fn the_admin_api_shows_routes_and_counters_behind_its_token() {
    let (target, _) = upstream("t").await;
    let mut config = config_with(routes(&format!(
        r#"
routes:
  - {{ id: keyed, uri: "http://{target}", auth: {{ api_key: true }} }}
api_keys: [{{ client: web, key: "very-secret-key-123" }}]
"#
    )));
    config.admin.tokens = vec!["admin-token".into()];
    let gateway = Gateway::start(config).await;
    assert_eq!(gateway.get("/x").await.status(), 401);
    let ok = gateway
        .client
        .get(gateway.at("/x"))
        .header("x-api-key", "very-secret-key-123")
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let admin = |path: &str| gateway.client.get(format!("{}{path}", gateway.admin));
    assert_eq!(admin("/admin/routes").send().await.unwrap().status(), 401);
    let listing = admin("/admin/routes")
        .bearer_auth("admin-token")
        .send()
        .await
        .unwrap();
    assert_eq!(listing.status(), 200);
    let text = listing.text().await.unwrap();
    assert!(
        !text.contains("very-secret-key-123"),
        "API keys are never shown"
    );
    let listing: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(listing["api_key_clients"][0], "web");
    let counters = &listing["routes"][0]["counters"];
    assert_eq!(counters["requests"], 2);
    assert_eq!(counters["unauthorized"], 1);
    assert_eq!(counters["responses"]["2xx"], 1);
    assert_eq!(counters["responses"]["4xx"], 1);
    let one = admin("/admin/routes/keyed")
        .bearer_auth("admin-token")
        .send()
        .await
        .unwrap();
    assert_eq!(one.json::<Value>().await.unwrap()["id"], "keyed");
    let none = admin("/admin/routes/nope")
        .bearer_auth("admin-token")
        .send()
        .await
        .unwrap();
    assert_eq!(none.status(), 404);
    assert_eq!(
        none.json::<Value>().await.unwrap()["error"]["code"],
        "not_found"
    );
    let metrics = admin("/metrics")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(r#"gateway_route_requests_total{route="keyed"} 2"#),
        "{metrics}"
    );
    assert!(
        metrics.contains("gateway_route_duration_seconds"),
        "{metrics}"
    );
    let health: Value = admin("/health").send().await.unwrap().json().await.unwrap();
    assert_eq!(health["status"], "UP");
    let openapi: Value = admin("/openapi.json")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(openapi["paths"]["/admin/routes"].is_object());
    gateway.stop().await;
}
