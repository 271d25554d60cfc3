//! A spec that passed the API server's schema but that the operator still cannot use.

/// Names the field and says what is wrong, so the Ready condition can tell the user exactly.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {why}")]
pub struct SpecError {
    /// Dotted path of the field, e.g. `spec.ingest.batch.linger`.
    pub field: String,
    /// What is wrong with it.
    pub why: String,
}

impl SpecError {
    /// A new error for `field`.
    pub fn new(field: impl Into<String>, why: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            why: why.into(),
        }
    }
}

/// Parses a spec duration, naming the field when it does not parse.
pub fn duration(field: &str, value: &str) -> Result<std::time::Duration, SpecError> {
    tailwarden_crds::duration::parse(value).map_err(|e| SpecError::new(field, e.to_string()))
}
