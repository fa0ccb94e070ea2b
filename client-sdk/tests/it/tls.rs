//! TLS end to end: a registry, a config server and a backend serving HTTPS with certificates
//! from a private CA and requiring client certificates; the SDK registers, discovers, reads live
//! config and calls the backend over it, and clients without the right material are refused.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use msakit::{
    Client, ConfigClient, ConfigClientOptions, RegistrationOptions, ServiceClientOptions,
    TlsOptions,
};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use tokio_util::sync::CancellationToken;

use crate::support::wait_until;

/// A private CA that signed a server certificate (localhost, 127.0.0.1) and a client
/// certificate, each written as PEM into a temporary directory.
struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    fn new() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(DnType::CommonName, "msakit test CA");
        let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
        std::fs::write(dir.path().join("ca.pem"), ca.pem()).unwrap();
        for (name, names) in [
            (
                "server",
                vec!["localhost".to_owned(), "127.0.0.1".to_owned()],
            ),
            ("client", vec!["orders.client".to_owned()]),
        ] {
            let key = KeyPair::generate().unwrap();
            let certificate = CertificateParams::new(names)
                .unwrap()
                .signed_by(&key, &ca)
                .unwrap();
            std::fs::write(dir.path().join(format!("{name}.pem")), certificate.pem()).unwrap();
            std::fs::write(dir.path().join(format!("{name}.key")), key.serialize_pem()).unwrap();
        }
        Pki { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn server(&self) -> msakit_server_kit::TlsConfig {
        msakit_server_kit::TlsConfig {
            cert: self.path("server.pem"),
            key: self.path("server.key"),
            client_ca: Some(self.path("ca.pem")),
        }
    }

    /// What the SDK needs: trust the CA, present the client certificate.
    fn client(&self) -> TlsOptions {
        TlsOptions::default()
            .trust_ca_file(&self.path("ca.pem"))
            .unwrap()
            .client_certificate(&self.path("client.pem"), &self.path("client.key"))
            .unwrap()
    }

    fn reqwest(&self) -> reqwest::Client {
        let mut pem = std::fs::read(self.path("client.pem")).unwrap();
        pem.extend(std::fs::read(self.path("client.key")).unwrap());
        reqwest::Client::builder()
            .add_root_certificate(ca(&self.path("ca.pem")))
            .identity(reqwest::Identity::from_pem(&pem).unwrap())
            .build()
            .unwrap()
    }
}

fn ca(path: &Path) -> reqwest::Certificate {
    reqwest::Certificate::from_pem(&std::fs::read(path).unwrap()).unwrap()
}

/// Starts a server with `start` on a fresh loopback port; its `https://` URL and a stop switch.
async fn serve<F, Fut>(start: F) -> (String, CancellationToken)
where
    F: FnOnce(tokio::net::TcpListener, CancellationToken) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "https://localhost:{}",
        listener.local_addr().unwrap().port()
    );
    let stop = CancellationToken::new();
    tokio::spawn(start(listener, stop.clone()));
    (url, stop)
}

#[derive(Debug, serde::Deserialize)]
struct Settings {
    greeting: String,
}

#[tokio::test]
async fn the_sdk_works_end_to_end_over_tls_with_client_certificates() {
    let pki = Pki::new();
    let data = tempfile::tempdir().unwrap();

    let registry_config = msakit_registry::RegistryConfig {
        tls: Some(pki.server()),
        shutdown_grace: Duration::from_secs(1),
        ..Default::default()
    };
    let (registry, stop_registry) = serve(|listener, stop| async move {
        msakit_registry::run(listener, registry_config, stop.cancelled_owned())
            .await
            .unwrap();
    })
    .await;
    let config_server_config = msakit_config_server::ConfigServerConfig {
        tls: Some(pki.server()),
        data_dir: data.path().to_owned(),
        shutdown_grace: Duration::from_secs(1),
        ..Default::default()
    };
    let (config_server, stop_config) = serve(|listener, stop| async move {
        msakit_config_server::run(listener, config_server_config, stop.cancelled_owned())
            .await
            .unwrap();
    })
    .await;

    // A backend speaking HTTPS through the same serving code as the servers.
    let backend_tls = pki.server().acceptor().unwrap();
    let (backend, stop_backend) = serve(|listener, stop| async move {
        let app =
            axum::Router::new().route("/hello", axum::routing::get(|| async { "hello over TLS" }));
        let options = msakit_server_kit::ServeOptions {
            limits: Default::default(),
            tls: Some(backend_tls),
            grace: Duration::from_secs(1),
            rejections: Arc::default(),
        };
        msakit_server_kit::serve_until(
            listener,
            app,
            stop.clone().cancelled_owned(),
            stop,
            options,
        )
        .await
        .unwrap();
    })
    .await;
    let backend_port: u16 = backend.rsplit(':').next().unwrap().parse().unwrap();

    // Clients without the CA, or without a client certificate, or speaking plain HTTP: refused.
    let http = pki.reqwest();
    let health = format!("{registry}/health");
    assert!(
        reqwest::get(&health).await.is_err(),
        "an unknown CA is not trusted"
    );
    let anonymous = reqwest::Client::builder()
        .add_root_certificate(ca(&pki.path("ca.pem")))
        .build()
        .unwrap();
    assert!(
        anonymous.get(&health).send().await.is_err(),
        "no client certificate, no connection"
    );
    assert!(
        reqwest::get(health.replace("https://", "http://"))
            .await
            .is_err()
            || !reqwest::get(health.replace("https://", "http://"))
                .await
                .unwrap()
                .status()
                .is_success(),
        "plain HTTP gets nothing"
    );
    assert!(
        http.get(&health)
            .send()
            .await
            .unwrap()
            .status()
            .is_success()
    );

    // Config written over TLS, read by the typed client over TLS, and pushed live.
    let put = |greeting: &'static str| {
        let (http, url) = (
            http.clone(),
            format!("{config_server}/v1/config/greeter/default/main"),
        );
        async move {
            let response = http
                .put(url)
                .header("content-type", "application/yaml")
                .body(format!("greeting: {greeting}\n"))
                .send()
                .await
                .unwrap();
            assert!(response.status().is_success(), "{}", response.status());
        }
    };
    put("hello").await;
    // One client for everything, trusting the private CA and presenting its certificate.
    let sdk = Client::builder()
        .registry_url(registry.clone())
        .config_url(config_server.clone())
        .tls(pki.client())
        .build()
        .unwrap();
    let options = ConfigClientOptions::new("greeter", &["default"]);
    let config: ConfigClient<Settings> = sdk.config(options).await.unwrap();
    assert_eq!(config.current().greeting, "hello");
    put("bonjour").await;
    wait_until(Duration::from_secs(10), || {
        let config = &config;
        async move { config.current().greeting == "bonjour" }
    })
    .await;

    // The backend registers over TLS as an https instance, is discovered and called over TLS.
    let registration = RegistrationOptions::new("greeter", "g1", "localhost", backend_port)
        .scheme(msakit_api::registry::Scheme::Https);
    let registration = sdk.registration(registration).unwrap();
    tokio::time::timeout(Duration::from_secs(10), registration.registered())
        .await
        .expect("registered over TLS");
    let discovery = sdk.discovery().unwrap();
    assert_eq!(discovery.instances("greeter").await.unwrap().len(), 1);
    let client = sdk.service_client(ServiceClientOptions::default()).unwrap();
    let response = client.get("greeter", "/hello").send().await.unwrap();
    assert_eq!(response.text().await.unwrap(), "hello over TLS");

    registration.shutdown().await;
    for stop in [stop_backend, stop_registry, stop_config] {
        stop.cancel();
    }
}
