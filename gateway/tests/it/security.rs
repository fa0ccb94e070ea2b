//! API keys, JWTs checked against a JWKS served here (RS256, ES256, EdDSA; rotation; expiry,
//! issuer, audience), claims passed on as headers, and CORS.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use tokio::sync::Mutex;

use crate::support::{Gateway, config_with, routes, upstream};

const API_KEY: &str = "k-0123456789abcdef";

#[tokio::test]
async fn api_keys_name_their_client_and_nobody_else_gets_in() {
    let (target, _) = upstream("t").await;
    let set = routes(&format!(
        r#"
routes:
  - {{ id: open, uri: "http://{target}", predicates: {{ path: [/open/**] }} }}
  - {{ id: keyed, uri: "http://{target}", predicates: {{ path: [/keyed/**] }}, auth: {{ api_key: true }} }}
api_keys:
  - {{ client: mobile, key: "{API_KEY}" }}
"#
    ));
    let gateway = Gateway::start(config_with(set)).await;
    assert_eq!(gateway.get("/open/x").await.status(), 200);
    let missing = gateway.get("/keyed/x").await;
    assert_eq!(missing.status(), 401);
    assert!(missing.headers().contains_key("www-authenticate"));
    let body: Value = missing.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unauthorized");
    let wrong = gateway
        .client
        .get(gateway.at("/keyed/x"))
        .header("x-api-key", "k-not-the-right-one")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    assert_eq!(
        wrong.json::<Value>().await.unwrap()["error"]["code"],
        "invalid_api_key"
    );
    for request in [
        gateway
            .client
            .get(gateway.at("/keyed/x"))
            .header("x-api-key", API_KEY),
        gateway
            .client
            .get(gateway.at("/keyed/x"))
            .bearer_auth(API_KEY),
    ] {
        // A client cannot name itself.
        let response = request.header("x-client-id", "admin").send().await.unwrap();
        assert_eq!(response.status(), 200);
        let seen: Value = response.json().await.unwrap();
        assert_eq!(seen["headers"]["x-client-id"], "mobile");
    }
    gateway.stop().await;
}

/// A signing key and its public JWK.
struct Signer {
    kid: String,
    algorithm: Algorithm,
    key: EncodingKey,
    jwk: Value,
}

fn rsa_signer(kid: &str) -> Signer {
    let pem = include_bytes!("fixtures/rsa-test-key.pem");
    let mut jwk: Value =
        serde_json::from_str(include_str!("fixtures/rsa-test-key.jwk.json")).unwrap();
    jwk["kid"] = json!(kid);
    jwk["alg"] = json!("RS256");
    jwk["use"] = json!("sig");
    Signer {
        kid: kid.into(),
        algorithm: Algorithm::RS256,
        key: EncodingKey::from_rsa_pem(pem).unwrap(),
        jwk,
    }
}

fn ec_signer(kid: &str) -> Signer {
    let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let raw = pair.public_key_raw();
    Signer {
        kid: kid.into(),
        algorithm: Algorithm::ES256,
        key: EncodingKey::from_ec_pem(pair.serialize_pem().as_bytes()).unwrap(),
        jwk: json!({"kty": "EC", "crv": "P-256", "kid": kid,
            "x": URL_SAFE_NO_PAD.encode(&raw[1..33]), "y": URL_SAFE_NO_PAD.encode(&raw[33..65])}),
    }
}

fn ed_signer(kid: &str) -> Signer {
    let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    Signer {
        kid: kid.into(),
        algorithm: Algorithm::EdDSA,
        key: EncodingKey::from_ed_pem(pair.serialize_pem().as_bytes()).unwrap(),
        jwk: json!({"kty": "OKP", "crv": "Ed25519", "kid": kid,
            "x": URL_SAFE_NO_PAD.encode(pair.public_key_raw())}),
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn token(signer: &Signer, claims: Value) -> String {
    let mut header = Header::new(signer.algorithm);
    header.kid = Some(signer.kid.clone());
    jsonwebtoken::encode(&header, &claims, &signer.key).unwrap()
}

fn claims(subject: &str) -> Value {
    json!({"iss": "https://issuer.test", "aud": "shop", "sub": subject,
        "exp": now() + 600, "roles": ["buyer", "admin"]})
}

/// The JWKS server's keys and fetch count.
type JwksState = (Arc<Mutex<Vec<Value>>>, Arc<AtomicUsize>);

/// A JWKS server whose keys the test can change; counts fetches.
struct Jwks {
    url: String,
    keys: Arc<Mutex<Vec<Value>>>,
    fetches: Arc<AtomicUsize>,
}

async fn jwks_server(keys: Vec<Value>) -> Jwks {
    let keys = Arc::new(Mutex::new(keys));
    let fetches = Arc::new(AtomicUsize::new(0));
    let app = Router::new()
        .route(
            "/jwks",
            get(|State((keys, fetches)): State<JwksState>| async move {
                fetches.fetch_add(1, Ordering::SeqCst);
                axum::Json(json!({"keys": *keys.lock().await}))
            }),
        )
        .with_state((Arc::clone(&keys), Arc::clone(&fetches)));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/jwks", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    Jwks { url, keys, fetches }
}

#[tokio::test]
async fn jwts_are_checked_against_the_providers_keys_and_claims_passed_on() {
    let (target, _) = upstream("t").await;
    let (rsa, ec, ed) = (rsa_signer("rsa-1"), ec_signer("ec-1"), ed_signer("ed-1"));
    // A second EC key published without an id, as some providers do during a rotation.
    let mut unnamed = ec_signer("");
    unnamed.jwk.as_object_mut().unwrap().remove("kid");
    let jwks = jwks_server(vec![rsa.jwk.clone(), ec.jwk.clone(), unnamed.jwk.clone()]).await;
    let set = routes(&format!(
        r#"
routes:
  - id: secure
    uri: "http://{target}"
    auth:
      jwt: {{ provider: main, claims_to_headers: {{ sub: x-user, roles: x-roles }} }}
jwt_providers:
  main: {{ jwks_url: "{url}", issuer: "https://issuer.test", audiences: [shop], leeway: 0s }}
"#,
        url = jwks.url
    ));
    let gateway = Gateway::start(config_with(set)).await;
    let call = |token: String| {
        gateway
            .client
            .get(gateway.at("/secure"))
            .bearer_auth(token)
            .header("x-user", "spoofed")
            .send()
    };
    for signer in [&rsa, &ec] {
        let response = call(token(signer, claims("alice"))).await.unwrap();
        assert_eq!(response.status(), 200, "{:?}", signer.algorithm);
        let seen: Value = response.json().await.unwrap();
        assert_eq!(seen["headers"]["x-user"], "alice");
        assert_eq!(seen["headers"]["x-roles"], "buyer,admin");
    }
    assert_eq!(
        jwks.fetches.load(Ordering::SeqCst),
        1,
        "the keys are cached"
    );
    // Refused: expired, another issuer, another audience, tampered, no token, HS256.
    let mut expired = claims("bob");
    expired["exp"] = json!(now() - 60);
    let mut issuer = claims("bob");
    issuer["iss"] = json!("https://evil.test");
    let mut audience = claims("bob");
    audience["aud"] = json!("other");
    let good = token(&rsa, claims("bob"));
    let (head, rest) = good.split_once('.').unwrap();
    let (_, signature) = rest.split_once('.').unwrap();
    let forged_payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims("mallory")).unwrap());
    let tampered = format!("{head}.{forged_payload}.{signature}");
    let hmac = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims("bob"),
        &EncodingKey::from_secret(b"guess").unwrap(),
    )
    .unwrap();
    for (what, bad) in [
        ("expired", token(&rsa, expired)),
        ("issuer", token(&rsa, issuer)),
        ("audience", token(&ec, audience)),
        ("tampered", tampered),
        ("hmac", hmac),
        ("garbage", "not.a.jwt".to_owned()),
    ] {
        let response = call(bad).await.unwrap();
        assert_eq!(response.status(), 401, "{what}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], "invalid_token", "{what}");
    }
    // A rotated-in key is fetched when a token names it.
    let unknown = call(token(&ed, claims("carol"))).await.unwrap();
    assert_eq!(unknown.status(), 401, "a key the JWKS does not have");
    jwks.keys.lock().await.push(ed.jwk.clone());
    let fetches = jwks.fetches.load(Ordering::SeqCst);
    // Fetches for unknown keys are at least 10 s apart: wait for the next one.
    crate::support::wait_until(std::time::Duration::from_secs(30), || async {
        call(token(&ed, claims("carol"))).await.unwrap().status() == 200
    })
    .await;
    assert!(jwks.fetches.load(Ordering::SeqCst) > fetches);
    gateway.stop().await;
}

#[tokio::test]
async fn cors_preflights_are_answered_here_and_responses_carry_the_origin() {
    let (target, state) = upstream("t").await;
    let set = routes(&format!(
        r#"
routes:
  - id: web
    uri: "http://{target}"
    predicates: {{ methods: [GET, PUT] }}
    cors:
      allowed_origins: ["https://shop.example.com"]
      allowed_headers: [content-type, x-api-key]
      exposed_headers: [x-request-id]
      allow_credentials: true
      max_age: 10m
"#
    ));
    let gateway = Gateway::start(config_with(set)).await;
    let preflight = gateway
        .client
        .request(reqwest::Method::OPTIONS, gateway.at("/items"))
        .header("origin", "https://shop.example.com")
        .header("access-control-request-method", "PUT")
        .header("access-control-request-headers", "content-type")
        .send()
        .await
        .unwrap();
    assert!(preflight.status().is_success());
    let headers = preflight.headers();
    assert_eq!(
        headers["access-control-allow-origin"],
        "https://shop.example.com"
    );
    assert_eq!(headers["access-control-allow-credentials"], "true");
    assert_eq!(headers["access-control-max-age"], "600");
    assert!(
        headers["access-control-allow-methods"]
            .to_str()
            .unwrap()
            .contains("PUT")
    );
    assert_eq!(
        state.hits.load(Ordering::SeqCst),
        0,
        "a preflight is not sent on"
    );
    let actual = gateway
        .client
        .get(gateway.at("/items"))
        .header("origin", "https://shop.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(actual.status(), 200);
    assert_eq!(
        actual.headers()["access-control-allow-origin"],
        "https://shop.example.com"
    );
    assert_eq!(
        actual.headers()["access-control-expose-headers"],
        "x-request-id"
    );
    let other = gateway
        .client
        .get(gateway.at("/items"))
        .header("origin", "https://evil.example.com")
        .send()
        .await
        .unwrap();
    assert!(!other.headers().contains_key("access-control-allow-origin"));
    gateway.stop().await;
}
