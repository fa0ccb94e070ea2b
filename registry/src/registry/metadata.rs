//! An instance's metadata as the registry keeps it: its entries in one sorted slice. A
//! `BTreeMap` allocates a whole B-tree leaf (about 540 bytes) however few entries it holds, and
//! most instances carry one or two (Eureka's `zone`, a version), so 20,000 instances kept their
//! metadata in about 11 MB of leaves; the slice is one allocation of the entries' size.

use std::collections::BTreeMap;

/// Metadata entries, sorted by key, each key once.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Metadata(Box<[(String, String)]>);

impl Metadata {
    /// The entries as a map (what the API and the stored formats carry).
    pub(crate) fn to_map(&self) -> BTreeMap<String, String> {
        self.0.iter().cloned().collect()
    }

    /// These entries with `entries` laid over them.
    pub(crate) fn merged(&self, entries: BTreeMap<String, String>) -> Self {
        let mut map = self.to_map();
        map.extend(entries);
        map.into()
    }

    /// How many entries, and how many bytes their keys and values take.
    pub(crate) fn size(&self) -> (usize, usize) {
        let bytes = self.0.iter().map(|(k, v)| k.len() + v.len()).sum();
        (self.0.len(), bytes)
    }
}

impl From<BTreeMap<String, String>> for Metadata {
    fn from(map: BTreeMap<String, String>) -> Self {
        // A map iterates in key order: the slice is sorted.
        Self(map.into_iter().collect())
    }
}

impl From<Metadata> for BTreeMap<String, String> {
    fn from(metadata: Metadata) -> Self {
        metadata.0.into_vec().into_iter().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(entries: &[(&str, &str)]) -> BTreeMap<String, String> {
        entries
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn kept_as_given_and_given_back_the_same() {
        let given = map(&[("zone", "eu-1"), ("version", "1.2")]);
        let metadata = Metadata::from(given.clone());
        assert_eq!(metadata.to_map(), given);
        assert_eq!(BTreeMap::from(metadata.clone()), given);
        assert_eq!(metadata.size(), (2, 4 + 4 + 7 + 3));
        assert_eq!(Metadata::from(BTreeMap::new()), Metadata::default());
    }

    #[test]
    fn a_merge_lays_new_entries_over_the_old_ones() {
        let metadata = Metadata::from(map(&[("zone", "eu-1"), ("version", "1.2")]));
        let merged = metadata.merged(map(&[("version", "1.3"), ("canary", "yes")]));
        assert_eq!(
            merged.to_map(),
            map(&[("canary", "yes"), ("version", "1.3"), ("zone", "eu-1")])
        );
        assert_eq!(
            merged,
            Metadata::from(merged.to_map()),
            "sorted, as from a map"
        );
        assert_ne!(merged, metadata);
    }
}
