//! The resolved view of (applications, profiles, label): which documents make it up, in the order
//! Spring Boot gives them precedence, and their merged properties.

use std::collections::BTreeMap;

use msakit_api::config::{Resolved, Source};
use serde_json::Value;

use super::ConfigStore;
use crate::document::{DEFAULT_PROFILE, DocKey, SHARED};
use crate::secrets::PREFIX;

/// One document of a view: where it came from, and its flattened properties.
pub(crate) type SourceView = (Source, BTreeMap<String, Value>);

impl ConfigStore {
    /// The documents that make up (applications, profiles, label), highest precedence first, in
    /// the order Spring Boot loads them for Spring's own server: every profile's documents above
    /// the plain ones, the last profile first, and within each the applications (the last
    /// named first, as Spring's `spring.cloud.config.name: a,b` has it) above the shared
    /// `application` — app+prod, application+prod, app+dev, application+dev, app, application.
    pub(crate) fn sources(applications: &[&str], profiles: &[String], label: &str) -> Vec<DocKey> {
        let mut names: Vec<&str> = Vec::with_capacity(applications.len() + 1);
        for name in applications.iter().rev().copied().chain([SHARED]) {
            if !names.contains(&name) {
                names.push(name);
            }
        }
        profiles
            .iter()
            .rev()
            .map(String::as_str)
            .filter(|profile| *profile != DEFAULT_PROFILE)
            .chain([DEFAULT_PROFILE])
            .flat_map(|profile| {
                names.iter().map(move |app| DocKey {
                    application: (*app).to_owned(),
                    profile: profile.to_owned(),
                    label: label.to_owned(),
                })
            })
            .collect()
    }

    /// The documents of (application, profiles, label) that exist, highest precedence first,
    /// each flattened, with the change index of the view. `{cipher}` values are decrypted (every
    /// caller is an authorised reader); one that cannot be is reported as Spring does:
    /// `invalid.<key>` = `<n/a>`.
    pub(crate) fn sources_view(
        &self,
        applications: &[&str],
        profiles: &[String],
        label: &str,
    ) -> (u64, Vec<SourceView>) {
        let keys = Self::sources(applications, profiles, label);
        let state = self.read();
        let mut index = 0;
        let mut found = Vec::new();
        for key in &keys {
            let Some(head) = state.heads.get(key) else {
                continue;
            };
            index = index.max(head.stored.index);
            let Some(flat) = &head.flat else { continue };
            let source = Source {
                application: key.application.clone(),
                profile: key.profile.clone(),
                version: head.stored.version,
            };
            found.push((source, flat.clone()));
        }
        drop(state);
        for (_, flat) in &mut found {
            self.open_secrets(flat);
        }
        (index, found)
    }

    pub(super) fn open_secrets(&self, flat: &mut BTreeMap<String, Value>) {
        let sealed: Vec<String> = flat
            .iter()
            .filter(|(_, v)| v.as_str().is_some_and(|s| s.starts_with(PREFIX)))
            .map(|(k, _)| k.clone())
            .collect();
        for name in sealed {
            let text = flat[&name].as_str().unwrap_or_default()[PREFIX.len()..].to_owned();
            match self.cipher.as_ref().map(|c| c.decrypt(&text)) {
                Some(Ok(plain)) => {
                    flat.insert(name, Value::String(plain));
                }
                _ => {
                    flat.remove(&name);
                    flat.insert(format!("invalid.{name}"), Value::String("<n/a>".into()));
                }
            }
        }
    }

    /// Whether any live document carries `label`: what a Spring client asking for a label that
    /// is nowhere is told with a 404, as Spring's git backend tells of a missing branch.
    pub(crate) fn has_label(&self, label: &str) -> bool {
        self.read()
            .heads
            .iter()
            .any(|(key, head)| key.label == label && !head.stored.deleted)
    }

    /// The change index of the view of (application, profiles, label), without building it:
    /// what a blocking query compares on every wake-up.
    pub(crate) fn view_index(&self, application: &str, profiles: &[String], label: &str) -> u64 {
        let keys = Self::sources(&[application], profiles, label);
        let state = self.read();
        keys.iter()
            .filter_map(|key| state.heads.get(key).map(|head| head.stored.index))
            .max()
            .unwrap_or(0)
    }

    /// The merged view of [`sources_view`](Self::sources_view).
    pub(crate) fn resolve(&self, application: &str, profiles: &[String], label: &str) -> Resolved {
        let (index, found) = self.sources_view(&[application], profiles, label);
        let mut properties = BTreeMap::new();
        for (_, flat) in found.iter().rev() {
            properties.extend(flat.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        Resolved {
            application: application.to_owned(),
            profiles: profiles.to_vec(),
            label: label.to_owned(),
            index,
            properties,
            sources: found.into_iter().map(|(source, _)| source).collect(),
        }
    }
}
