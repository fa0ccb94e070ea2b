//! The version stamped on a server's internal records (Raft log entries, snapshots, stored
//! records), so a build refuses, by name, what a newer build wrote in a format it cannot read.
//!
//! The rules every server's internal formats follow:
//! - A record without a version was written before versions were written: it is version 1.
//! - Readers ignore fields they do not know, so adding an optional field never changes the
//!   version, and a newer leader's entries still apply on an older follower during a rolling
//!   upgrade.
//! - The version changes only when old readers could not read a record correctly. A reader
//!   refuses a version above the newest it reads with [`FormatVersion`]'s error, instead of
//!   guessing; a build that writes a new version therefore has to keep writing the old one until
//!   every node reads the new one.

use serde::{Deserialize, Deserializer, Serialize};

/// The format version of a record; `NEWEST` is the newest this build reads (and writes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct FormatVersion<const NEWEST: u16>(u16);

impl<const NEWEST: u16> FormatVersion<NEWEST> {
    /// The version this build writes.
    pub const CURRENT: Self = Self(NEWEST);

    /// The version number.
    pub fn number(self) -> u16 {
        self.0
    }
}

impl<const NEWEST: u16> Default for FormatVersion<NEWEST> {
    /// A record without a version: written before versions were, so version 1.
    fn default() -> Self {
        Self(1)
    }
}

impl<'de, const NEWEST: u16> Deserialize<'de> for FormatVersion<NEWEST> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let number = u16::deserialize(deserializer)?;
        if (1..=NEWEST).contains(&number) {
            Ok(Self(number))
        } else {
            Err(serde::de::Error::custom(format!(
                "format version {number} cannot be read by this build, which reads versions 1 \
                 to {NEWEST}: it was written by a newer build; upgrade this node"
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    struct Record {
        #[serde(default)]
        format_version: FormatVersion<2>,
    }

    #[test]
    fn absent_is_version_1_and_known_versions_read() {
        let read = |json: &str| serde_json::from_str::<Record>(json).map(|r| r.format_version);
        assert_eq!(read("{}").unwrap().number(), 1);
        assert_eq!(read(r#"{"format_version":2}"#).unwrap().number(), 2);
        assert_eq!(FormatVersion::<2>::CURRENT.number(), 2);
    }

    #[test]
    fn a_newer_or_invalid_version_is_refused_by_name() {
        let error = serde_json::from_str::<Record>(r#"{"format_version":3}"#).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("format version 3 cannot be read by this build"),
            "{error}"
        );
        assert!(serde_json::from_str::<Record>(r#"{"format_version":0}"#).is_err());
    }
}
