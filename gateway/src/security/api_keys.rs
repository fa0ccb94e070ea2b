//! The route set's API keys, each naming its client.

use std::collections::HashMap;

use crate::routes::spec::ApiKeySpec;

/// Keys → clients. Looked up by the key's text (a hash map with random SipHash keys: its
/// timing says nothing usable about how close a guess is).
#[derive(Debug, Default)]
pub(crate) struct ApiKeys {
    clients: HashMap<String, String>,
}

impl ApiKeys {
    /// The keys of `specs`; a key given twice is refused (it would name two clients).
    pub(crate) fn new(specs: &[ApiKeySpec]) -> Result<Self, String> {
        let mut clients = HashMap::with_capacity(specs.len());
        for spec in specs {
            if spec.key.len() < 16 {
                return Err(format!(
                    "the API key of client {:?} is shorter than 16 characters",
                    spec.client
                ));
            }
            if clients
                .insert(spec.key.clone(), spec.client.clone())
                .is_some()
            {
                return Err(format!(
                    "an API key is given twice (client {:?})",
                    spec.client
                ));
            }
        }
        Ok(Self { clients })
    }

    /// The client whose key this is.
    pub(crate) fn client(&self, key: &str) -> Option<&str> {
        self.clients.get(key).map(String::as_str)
    }
}
