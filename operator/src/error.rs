//! Reconcile errors, and their classification into a small fixed set of classes.
//!
//! The class is a metric label, so it must stay bounded; it also picks the retry delay, so a spec
//! the operator cannot use waits for the user rather than spinning in a hot loop.

use std::time::Duration;

use crate::spec_error::SpecError;

/// Why a reconcile failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A call to the Kubernetes API failed.
    #[error("{action}: {source}")]
    Kube {
        /// What the operator was doing, e.g. `apply Deployment retail/shop-serve`.
        action: String,
        /// The client error.
        #[source]
        source: kube::Error,
    },
    /// The spec passed the schema but cannot be used.
    #[error("invalid spec: {0}")]
    Spec(#[from] SpecError),
    /// The object is missing metadata the API server always sets.
    #[error("object has no {0}")]
    MissingMetadata(&'static str),
}

impl Error {
    /// Wraps a client error with what was being done.
    pub fn kube(action: impl Into<String>) -> impl FnOnce(kube::Error) -> Error {
        let action = action.into();
        move |source| Error::Kube { action, source }
    }
}

/// The bounded set of error classes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ErrorClass {
    /// Another writer changed the object first; retry soon.
    Conflict,
    /// RBAC denies the call; an admin must act.
    Forbidden,
    /// The API server rejected an object as invalid.
    Invalid,
    /// The spec cannot be used; the user must change it.
    Spec,
    /// The object or a dependency does not exist (yet).
    NotFound,
    /// Network trouble, timeouts, throttling or a 5xx.
    Transient,
}

impl ErrorClass {
    /// Every class, for metrics that pre-register their label values.
    pub const ALL: [ErrorClass; 6] = [
        ErrorClass::Conflict,
        ErrorClass::Forbidden,
        ErrorClass::Invalid,
        ErrorClass::Spec,
        ErrorClass::NotFound,
        ErrorClass::Transient,
    ];

    /// Label value.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorClass::Conflict => "conflict",
            ErrorClass::Forbidden => "forbidden",
            ErrorClass::Invalid => "invalid",
            ErrorClass::Spec => "spec",
            ErrorClass::NotFound => "not_found",
            ErrorClass::Transient => "transient",
        }
    }

    /// How long to wait before retrying. Errors a retry cannot fix wait longest; any change to the
    /// pipeline triggers a reconcile before then anyway.
    pub fn backoff(self) -> Duration {
        match self {
            ErrorClass::Conflict => Duration::from_secs(1),
            ErrorClass::Transient => Duration::from_secs(5),
            ErrorClass::NotFound => Duration::from_secs(10),
            ErrorClass::Forbidden => Duration::from_secs(60),
            ErrorClass::Invalid | ErrorClass::Spec => Duration::from_secs(300),
        }
    }
}

/// Classifies an error.
pub fn classify(error: &Error) -> ErrorClass {
    match error {
        Error::Spec(_) => ErrorClass::Spec,
        Error::MissingMetadata(_) => ErrorClass::Invalid,
        Error::Kube { source, .. } => match source {
            kube::Error::Api(status) => match status.code {
                409 => ErrorClass::Conflict,
                401 | 403 => ErrorClass::Forbidden,
                404 | 410 => ErrorClass::NotFound,
                400 | 422 => ErrorClass::Invalid,
                _ => ErrorClass::Transient,
            },
            kube::Error::SerdeError(_) | kube::Error::BuildRequest(_) => ErrorClass::Invalid,
            _ => ErrorClass::Transient,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::core::Status;

    fn api(code: u16) -> Error {
        let mut status = Status::failure("boom", "Boom");
        status.code = code;
        Error::Kube {
            action: "apply".into(),
            source: kube::Error::Api(Box::new(status)),
        }
    }

    #[test]
    fn api_status_codes_map_to_classes() {
        assert_eq!(classify(&api(409)), ErrorClass::Conflict);
        assert_eq!(classify(&api(403)), ErrorClass::Forbidden);
        assert_eq!(classify(&api(404)), ErrorClass::NotFound);
        assert_eq!(classify(&api(422)), ErrorClass::Invalid);
        assert_eq!(classify(&api(500)), ErrorClass::Transient);
        assert_eq!(classify(&api(429)), ErrorClass::Transient);
        assert_eq!(
            classify(&Error::Spec(SpecError::new("spec.x", "bad"))),
            ErrorClass::Spec
        );
    }

    #[test]
    fn unfixable_errors_back_off_longer_than_retryable_ones() {
        assert!(ErrorClass::Spec.backoff() > ErrorClass::Transient.backoff());
        assert!(ErrorClass::Transient.backoff() > ErrorClass::Conflict.backoff());
        let labels: std::collections::BTreeSet<_> =
            ErrorClass::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(labels.len(), ErrorClass::ALL.len(), "labels are distinct");
    }

    #[test]
    fn error_message_carries_the_action() {
        assert!(api(500).to_string().starts_with("apply: "));
    }
}
