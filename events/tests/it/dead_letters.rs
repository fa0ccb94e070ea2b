//! The consumer's route and the operator's routes over HTTP: a batch delivered twice has one
//! effect; transient failures are retried; a poison event becomes a dead letter without holding
//! up the events behind it, and is listed and replayed; bad input gets the error shape.

use msakit_events::{Envelope, Events};
use serde_json::{Value, json};

use crate::support::{
    Instance, Record, applied, client, database, direct_events, quick_retries, registry,
};

fn envelope(id: &str, key: &str, n: i64, poison: bool) -> Envelope {
    Envelope {
        id: id.to_owned(),
        topic: "orders".to_owned(),
        key: key.to_owned(),
        event_type: "Placed".to_owned(),
        schema_version: 1,
        source: "order".to_owned(),
        occurred_at_ms: 1,
        traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".to_owned(),
        payload: json!({"order": key, "n": n, "poison": poison}),
    }
}

async fn deliver(http: &reqwest::Client, instance: &Instance, events: &[Envelope]) -> Value {
    let response = http
        .post(format!("{}/msakit/events/orders/payment", instance.url))
        .json(&json!({ "events": events }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

async fn dead_letters(http: &reqwest::Client, instance: &Instance) -> Vec<Value> {
    http.get(format!(
        "{}/msakit/dead-letters?group=payment",
        instance.url
    ))
    .send()
    .await
    .unwrap()
    .json()
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redelivery_retries_dead_letters_and_replay_over_http() {
    let registry = registry().await;
    let dir = tempfile::tempdir().unwrap();
    let client = client(&registry);
    let db = database(dir.path(), "payment.db").await;
    let events: Events = direct_events(&client, &db, "payment", "p-1", quick_retries(4)).await;
    let handler = Record::new("payment");
    handler
        .transient_failures
        .lock()
        .unwrap()
        .insert("flaky".into(), 2);
    events
        .subscribe("payment", "orders", handler.clone())
        .await
        .unwrap();
    let instance = Instance::serve(&client, "payment", "p-1", &events).await;
    let http = reqwest::Client::new();

    // The same event twice in a batch, then the batch again: one effect each.
    let batch = [
        envelope("a", "k1", 0, false),
        envelope("b", "k1", 1, false),
        envelope("a", "k1", 0, false),
    ];
    assert_eq!(
        deliver(&http, &instance, &batch).await,
        json!({"acknowledged": 3})
    );
    assert_eq!(
        deliver(&http, &instance, &batch).await,
        json!({"acknowledged": 3})
    );
    let ids: Vec<String> = applied(&db, "payment")
        .await
        .into_iter()
        .map(|(id, _, _)| id)
        .collect();
    assert_eq!(ids, ["a", "b"]);

    // A transient failure twice, then applied on the third attempt; a poison event dead-lettered
    // at once; the event behind it applied.
    let batch = [
        envelope("flaky", "k2", 0, false),
        envelope("poison", "k3", 0, true),
        envelope("after", "k3", 1, false),
    ];
    assert_eq!(
        deliver(&http, &instance, &batch).await,
        json!({"acknowledged": 3})
    );
    let attempt: i64 = sqlx::query_scalar("SELECT attempt FROM applied WHERE event_id = 'flaky'")
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(attempt, 3);
    let ids: Vec<String> = applied(&db, "payment")
        .await
        .into_iter()
        .map(|(id, _, _)| id)
        .collect();
    assert_eq!(
        ids,
        ["a", "b", "flaky", "after"],
        "the poison event's effects are rolled back"
    );

    let letters = dead_letters(&http, &instance).await;
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0]["envelope"]["id"], "poison");
    assert_eq!(letters[0]["error"], "poison");
    assert_eq!(
        letters[0]["attempts"], 1,
        "a permanent failure is not retried"
    );

    // Redelivered, a dead letter is not applied behind the operator's back.
    assert_eq!(
        deliver(&http, &instance, &batch[1..2]).await,
        json!({"acknowledged": 1})
    );
    assert_eq!(applied(&db, "payment").await.len(), 4);

    // Replay while still broken: 409, still a dead letter, one more attempt counted.
    let replay = format!("{}/msakit/dead-letters/payment/poison/replay", instance.url);
    let refused = http.post(&replay).send().await.unwrap();
    assert_eq!(refused.status(), 409);
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "replay_failed");
    assert_eq!(dead_letters(&http, &instance).await[0]["attempts"], 2);

    // Cured: the replay applies it once and the dead letter is gone.
    handler
        .cured
        .store(true, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(http.post(&replay).send().await.unwrap().status(), 204);
    let ids: Vec<String> = applied(&db, "payment")
        .await
        .into_iter()
        .map(|(id, _, _)| id)
        .collect();
    assert_eq!(ids, ["a", "b", "flaky", "after", "poison"]);
    assert!(dead_letters(&http, &instance).await.is_empty());
    let again = http.post(&replay).send().await.unwrap();
    assert_eq!(again.status(), 404);
    assert_eq!(
        again.json::<Value>().await.unwrap()["error"]["code"],
        "not_found"
    );

    // Events spend their attempts on transient failures too, then are dead letters.
    handler
        .transient_failures
        .lock()
        .unwrap()
        .insert("stuck".into(), 100);
    assert_eq!(
        deliver(&http, &instance, &[envelope("stuck", "k4", 0, false)]).await,
        json!({"acknowledged": 1})
    );
    let letters = dead_letters(&http, &instance).await;
    assert_eq!(letters[0]["envelope"]["id"], "stuck");
    assert_eq!(letters[0]["attempts"], 4);

    // A newer schema than this build reads is refused by name, not misread.
    let mut newer = envelope("newer", "k5", 0, false);
    newer.schema_version = 9;
    deliver(&http, &instance, &[newer]).await;
    let letters = events.dead_letters(Some("payment")).await.unwrap();
    let newer = letters.iter().find(|l| l.envelope.id == "newer").unwrap();
    assert!(newer.error.contains("schema version 9"), "{}", newer.error);

    // Bad input: the msakit error shape and a 4xx.
    let bad = http
        .post(format!("{}/msakit/events/orders/payment", instance.url))
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    assert_eq!(
        bad.json::<Value>().await.unwrap()["error"]["code"],
        "invalid_events"
    );
    let unknown = http
        .post(format!("{}/msakit/events/orders/nobody", instance.url))
        .json(&json!({"events": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
    assert_eq!(
        unknown.json::<Value>().await.unwrap()["error"]["code"],
        "not_subscribed"
    );
    let mut stray = envelope("stray", "k6", 0, false);
    stray.topic = "payments".to_owned();
    let refused = http
        .post(format!("{}/msakit/events/orders/payment", instance.url))
        .json(&json!({"events": [stray]}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        refused.status(),
        400,
        "an event of another topic is refused"
    );
    let bad_query = http
        .get(format!("{}/msakit/dead-letters?limit=lots", instance.url))
        .send()
        .await
        .unwrap();
    assert_eq!(bad_query.status(), 400);

    instance.stop().await;
    events.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_inbox_forgets_applied_events_after_its_retention_but_keeps_dead_letters() {
    let registry = registry().await;
    let dir = tempfile::tempdir().unwrap();
    let client = client(&registry);
    let db = database(dir.path(), "payment.db").await;
    let events = msakit_events::Events::builder(db.clone(), "payment")
        .instance("p-1")
        .transport(msakit_events::Transport::direct(&client))
        .retry(quick_retries(1))
        .inbox_retention(std::time::Duration::from_millis(300))
        .start()
        .await
        .unwrap();
    events
        .subscribe("payment", "orders", Record::new("payment"))
        .await
        .unwrap();
    let instance = Instance::serve(&client, "payment", "p-1", &events).await;
    let http = reqwest::Client::new();
    let batch = [
        envelope("kept-a while", "k1", 0, false),
        envelope("dead", "k2", 0, true),
    ];
    assert_eq!(
        deliver(&http, &instance, &batch).await,
        json!({"acknowledged": 2})
    );
    msakit_server_kit::testing::wait_until(std::time::Duration::from_secs(30), || async {
        let remembered: Vec<String> = sqlx::query_scalar("SELECT event_id FROM msakit_inbox")
            .fetch_all(&db)
            .await
            .unwrap();
        remembered == ["dead"]
    })
    .await;
    assert_eq!(events.dead_letters(None).await.unwrap().len(), 1);
    instance.stop().await;
    events.shutdown().await;
}
