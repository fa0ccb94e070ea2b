//! The error every config `validate` returns: which field is wrong and why.

use std::fmt;

/// A configuration value that is out of range or inconsistent.
///
/// The message always names the field as it is spelled in YAML, so an operator can find it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidConfig {
    field: String,
    reason: String,
}

impl InvalidConfig {
    pub(crate) fn new(field: &'static str, reason: impl Into<String>) -> Self {
        Self {
            field: field.to_owned(),
            reason: reason.into(),
        }
    }

    /// The same error for a field nested in `section` (`retry` + `max_attempts` →
    /// `retry.max_attempts`).
    pub(crate) fn within(mut self, section: &str) -> Self {
        self.field = format!("{section}.{}", self.field);
        self
    }

    /// The offending field, as spelled in the config file (e.g. `failure_rate_threshold`).
    pub fn field(&self) -> &str {
        &self.field
    }

    /// Why the value was rejected.
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

impl fmt::Display for InvalidConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid `{}`: {}", self.field, self.reason)
    }
}

impl std::error::Error for InvalidConfig {}

/// Checks that a percentage lies in `(0, 100]`.
pub(crate) fn check_percentage(field: &'static str, value: f32) -> Result<(), InvalidConfig> {
    if value.is_finite() && value > 0.0 && value <= 100.0 {
        Ok(())
    } else {
        Err(InvalidConfig::new(
            field,
            format!("must be greater than 0 and at most 100, got {value}"),
        ))
    }
}

/// Checks that a count is at least one.
pub(crate) fn check_positive(field: &'static str, value: u64) -> Result<(), InvalidConfig> {
    if value >= 1 {
        Ok(())
    } else {
        Err(InvalidConfig::new(field, "must be at least 1"))
    }
}

/// Checks that a duration is not zero.
pub(crate) fn check_nonzero(
    field: &'static str,
    value: std::time::Duration,
) -> Result<(), InvalidConfig> {
    if value.is_zero() {
        Err(InvalidConfig::new(field, "must be greater than zero"))
    } else {
        Ok(())
    }
}
