//! JWT checks against a provider's JWKS: the keys are fetched, cached, refreshed on a timer and
//! at once (at most every 10 s) when a token names a key not yet known; the signature
//! (RS256/384/512, PS256/384/512, ES256/384, EdDSA — never `none` or a shared secret), the
//! issuer, the audience, `exp` and `nbf` are checked.

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};

use crate::routes::spec::JwtProviderSpec;

/// Fetches are at least this far apart (a flood of forged key ids must not become a flood of
/// JWKS requests; a provider that is down is asked again this often).
const REFETCH_GAP: Duration = Duration::from_secs(10);
/// The JWKS document's largest size.
const MAX_JWKS_BYTES: usize = 1024 * 1024;

/// Why a token was refused. Said to the client in general terms only.
#[derive(Debug, thiserror::Error)]
pub enum JwtError {
    /// Not a JWT, or a header that cannot be read.
    #[error("malformed token: {0}")]
    Malformed(#[source] jsonwebtoken::errors::Error),
    /// `none`, an HMAC algorithm, or one the key cannot verify.
    #[error("algorithm {0:?} is not accepted")]
    Algorithm(Algorithm),
    /// No key of the provider's has this id (after a refetch).
    #[error("no key {0:?} in the provider's JWKS")]
    UnknownKey(Option<String>),
    /// The signature or a claim is wrong (expired, other issuer, other audience, …).
    #[error("{0}")]
    Invalid(#[source] jsonwebtoken::errors::Error),
    /// The keys could not be fetched, and none are cached.
    #[error("the provider's keys are unavailable: {0}")]
    KeysUnavailable(String),
}

/// One provider's keys and rules.
pub(crate) struct JwtProvider {
    spec: JwtProviderSpec,
    http: reqwest::Client,
    keys: RwLock<Arc<Keys>>,
    /// One fetch at a time.
    fetching: Arc<tokio::sync::Mutex<()>>,
    /// When a fetch was last tried.
    last_attempt: std::sync::Mutex<Option<Instant>>,
}

#[derive(Default)]
struct Keys {
    keys: Vec<(Option<String>, DecodingKey)>,
    fetched: Option<Instant>,
}

impl std::fmt::Debug for JwtProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtProvider")
            .field("jwks_url", &self.spec.jwks_url)
            .field("issuer", &self.spec.issuer)
            .finish_non_exhaustive()
    }
}

impl JwtProvider {
    pub(crate) fn new(spec: JwtProviderSpec, http: reqwest::Client) -> Self {
        Self {
            spec,
            http,
            keys: RwLock::default(),
            fetching: Arc::new(tokio::sync::Mutex::new(())),
            last_attempt: std::sync::Mutex::new(None),
        }
    }

    /// What this provider was built from (a reload keeps it, and its keys, when unchanged).
    pub(crate) fn spec(&self) -> &JwtProviderSpec {
        &self.spec
    }

    /// The token's claims, if it is valid. Stale keys are refreshed in the background while
    /// the cached ones keep serving; a request waits for a fetch only when no cached key fits.
    pub(crate) async fn verify(
        self: &Arc<Self>,
        token: &str,
    ) -> Result<Map<String, Value>, JwtError> {
        let header = jsonwebtoken::decode_header(token).map_err(JwtError::Malformed)?;
        if matches!(
            header.alg,
            Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512
        ) {
            return Err(JwtError::Algorithm(header.alg));
        }
        let kid = header.kid.as_deref();
        let mut candidates = self.candidates(kid, header.alg);
        if candidates.is_empty() {
            if let Err(e) = self.refetch().await {
                tracing::warn!(jwks = %self.spec.jwks_url, error = %e, "JWKS fetch failed");
                if self.current().fetched.is_none() {
                    return Err(JwtError::KeysUnavailable(e));
                }
            }
            if self.current().fetched.is_none() {
                return Err(JwtError::KeysUnavailable("no keys fetched yet".into()));
            }
            candidates = self.candidates(kid, header.alg);
            if candidates.is_empty() {
                return Err(JwtError::UnknownKey(header.kid.clone()));
            }
        } else if self.stale() {
            self.refresh_in_background();
        }
        let mut validation = Validation::new(header.alg);
        validation.set_issuer(&[&self.spec.issuer]);
        if self.spec.audiences.is_empty() {
            validation.validate_aud = false;
        } else {
            validation.set_audience(&self.spec.audiences);
        }
        validation.set_required_spec_claims(&["exp", "iss"]);
        validation.validate_nbf = true;
        validation.leeway = self.spec.leeway.as_secs();
        // Without a key id (or with keys that have none) every key that fits is tried, so a
        // rotation that publishes two keys does not refuse half the tokens.
        let mut last = None;
        for key in &candidates {
            match jsonwebtoken::decode::<Map<String, Value>>(token, key, &validation) {
                Ok(data) => return Ok(data.claims),
                Err(e) => last = Some(e),
            }
        }
        Err(match last {
            Some(e) if matches!(e.kind(), jsonwebtoken::errors::ErrorKind::InvalidAlgorithm) => {
                JwtError::Algorithm(header.alg)
            }
            Some(e) => JwtError::Invalid(e),
            None => JwtError::UnknownKey(header.kid.clone()),
        })
    }

    fn current(&self) -> Arc<Keys> {
        Arc::clone(&self.keys.read().unwrap_or_else(|e| e.into_inner()))
    }

    fn stale(&self) -> bool {
        self.current()
            .fetched
            .is_none_or(|at| at.elapsed() >= self.spec.refresh)
    }

    /// The keys that may have signed a token with this id and algorithm: those with the id,
    /// and those without one whose family fits (all that fit, without an id).
    fn candidates(&self, kid: Option<&str>, alg: Algorithm) -> Vec<DecodingKey> {
        let keys = self.current();
        keys.keys
            .iter()
            .filter(|(id, key)| match (kid, id.as_deref()) {
                (Some(kid), Some(id)) => id == kid,
                _ => key.family() == alg.family(),
            })
            .map(|(_, key)| key.clone())
            .collect()
    }

    /// Refreshes the keys on a task of its own, unless a fetch is under way.
    fn refresh_in_background(self: &Arc<Self>) {
        let Ok(guard) = Arc::clone(&self.fetching).try_lock_owned() else {
            return;
        };
        let provider = Arc::clone(self);
        tokio::spawn(async move {
            if let Err(e) = provider.fetch_throttled().await {
                tracing::warn!(jwks = %provider.spec.jwks_url, error = %e, "JWKS refresh failed; the cached keys stay in use");
            }
            drop(guard);
        });
    }

    /// Fetches the JWKS (one fetch at a time), unless an attempt was made within
    /// [`REFETCH_GAP`] (1 s while no keys are known).
    async fn refetch(&self) -> Result<(), String> {
        let _one = self.fetching.lock().await;
        self.fetch_throttled().await
    }

    /// [`refetch`](Self::refetch)'s work, the fetch lock held.
    async fn fetch_throttled(&self) -> Result<(), String> {
        let gap = if self.current().fetched.is_none() {
            Duration::from_secs(1)
        } else {
            REFETCH_GAP
        };
        {
            let mut last = self.last_attempt.lock().unwrap_or_else(|e| e.into_inner());
            if last.is_some_and(|at| at.elapsed() < gap) {
                return Ok(());
            }
            *last = Some(Instant::now());
        }
        let keys = self.fetch().await?;
        tracing::info!(jwks = %self.spec.jwks_url, keys = keys.len(), "JWKS fetched");
        *self.keys.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(Keys {
            keys,
            fetched: Some(Instant::now()),
        });
        Ok(())
    }

    async fn fetch(&self) -> Result<Vec<(Option<String>, DecodingKey)>, String> {
        let response = self
            .http
            .get(&self.spec.jwks_url)
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if !response.status().is_success() {
            return Err(format!("status {}", response.status()));
        }
        if response
            .content_length()
            .is_some_and(|n| n > MAX_JWKS_BYTES as u64)
        {
            return Err("JWKS document too large".into());
        }
        let bytes = response.bytes().await.map_err(|e| e.to_string())?;
        if bytes.len() > MAX_JWKS_BYTES {
            return Err("JWKS document too large".into());
        }
        let set: JwkSet = serde_json::from_slice(&bytes).map_err(|e| e.to_string())?;
        let keys: Vec<_> = set
            .keys
            .iter()
            .filter_map(|jwk| {
                // Shared secrets never verify anything here.
                let key = DecodingKey::from_jwk(jwk).ok()?;
                (key.family() != jsonwebtoken::AlgorithmFamily::Hmac)
                    .then(|| (jwk.common.key_id.clone(), key))
            })
            .collect();
        if keys.is_empty() {
            return Err("the JWKS holds no usable key".into());
        }
        Ok(keys)
    }
}
