//! The manual freeze and the freeze override: annotations that a person sets, each with a reason,
//! an expiry and who set it, read as a pure function of the annotations and the time.
//!
//! An annotation without a valid expiry, with a past one, or without its actor has no effect, and
//! the status says which. Who set it comes from the `-by` annotation, which the chart's
//! ValidatingAdmissionPolicy requires to equal the requesting user.

use std::collections::BTreeMap;

use jiff::{SignedDuration, Timestamp};
use tailwarden_crds::{MARK_MAX_DAYS_AHEAD, MarkState, MarkStatus};

/// One of the two freeze annotations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mark {
    /// `tailwarden.io/rollout-freeze`: freezes rollouts by hand, whatever the budget says.
    Freeze,
    /// `tailwarden.io/rollout-freeze-override`: lets rollouts through the error budget's freeze.
    Override,
}

impl Mark {
    /// The annotation whose value is the reason.
    pub fn annotation(self) -> &'static str {
        match self {
            Mark::Freeze => "tailwarden.io/rollout-freeze",
            Mark::Override => "tailwarden.io/rollout-freeze-override",
        }
    }

    /// The annotation holding the expiry, RFC 3339.
    pub fn until_annotation(self) -> &'static str {
        match self {
            Mark::Freeze => "tailwarden.io/rollout-freeze-until",
            Mark::Override => "tailwarden.io/rollout-freeze-override-until",
        }
    }

    /// The annotation naming who set it.
    pub fn by_annotation(self) -> &'static str {
        match self {
            Mark::Freeze => "tailwarden.io/rollout-freeze-by",
            Mark::Override => "tailwarden.io/rollout-freeze-override-by",
        }
    }

    /// Reads the annotation; None when it is not set.
    pub fn read(
        self,
        annotations: Option<&BTreeMap<String, String>>,
        now: Timestamp,
    ) -> Option<MarkStatus> {
        let annotations = annotations?;
        let reason = annotations.get(self.annotation())?.clone();
        let by = annotations
            .get(self.by_annotation())
            .filter(|by| !by.trim().is_empty())
            .cloned();
        let until = annotations.get(self.until_annotation()).cloned();
        let state = match until.as_deref().map(str::parse::<Timestamp>) {
            None => MarkState::NoExpiry,
            Some(Err(_)) => MarkState::InvalidExpiry,
            Some(Ok(t)) if t <= now => MarkState::Expired,
            Some(Ok(t)) if t > now + SignedDuration::from_hours(24 * MARK_MAX_DAYS_AHEAD) => {
                MarkState::ExpiryTooFar
            }
            Some(Ok(_)) if by.is_none() => MarkState::NoActor,
            Some(Ok(_)) => MarkState::Active,
        };
        Some(MarkStatus {
            state,
            reason,
            by,
            until,
        })
    }
}

/// When an active annotation expires, so the reconcile can come back then.
pub fn expiry(mark: Option<&MarkStatus>) -> Option<Timestamp> {
    mark.filter(|m| m.state == MarkState::Active)?
        .until
        .as_deref()?
        .parse()
        .ok()
}

/// The annotation in words, for conditions and decisions: who, until when, why.
pub fn describe(mark: &MarkStatus) -> String {
    let by = mark.by.as_deref().unwrap_or("unknown");
    let until = mark.until.as_deref().unwrap_or("no expiry");
    let mut text = format!("set by {by} until {until}: {}", mark.reason);
    if let Some(why) = mark.state.why_not() {
        text.push_str(&format!(" (no effect: {why})"));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> Timestamp {
        "2026-12-02T12:00:00Z".parse().unwrap()
    }

    fn read(mark: Mark, pairs: &[(&str, &str)]) -> Option<MarkStatus> {
        let annotations: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        mark.read(Some(&annotations), now())
    }

    fn state(mark: Mark, until: Option<&str>, by: Option<&str>) -> MarkState {
        let mut pairs = vec![(mark.annotation(), "CVE fix")];
        if let Some(until) = until {
            pairs.push((mark.until_annotation(), until));
        }
        if let Some(by) = by {
            pairs.push((mark.by_annotation(), by));
        }
        read(mark, &pairs).unwrap().state
    }

    #[test]
    fn an_annotation_with_future_expiry_and_actor_is_in_effect() {
        for mark in [Mark::Freeze, Mark::Override] {
            let m = read(
                mark,
                &[
                    (mark.annotation(), "CVE fix"),
                    (mark.until_annotation(), "2026-12-02T14:00:00Z"),
                    (mark.by_annotation(), "alice"),
                ],
            )
            .unwrap();
            assert_eq!(m.state, MarkState::Active);
            assert_eq!(m.by.as_deref(), Some("alice"));
            assert_eq!(
                expiry(Some(&m)),
                Some("2026-12-02T14:00:00Z".parse().unwrap())
            );
            assert_eq!(
                describe(&m),
                "set by alice until 2026-12-02T14:00:00Z: CVE fix"
            );
        }
    }

    #[test]
    fn without_a_valid_future_expiry_or_an_actor_it_has_no_effect() {
        let m = Mark::Override;
        assert_eq!(state(m, None, Some("alice")), MarkState::NoExpiry);
        assert_eq!(
            state(m, Some("tomorrow"), Some("alice")),
            MarkState::InvalidExpiry
        );
        assert_eq!(
            state(m, Some("2026-12-02T11:59:59Z"), Some("alice")),
            MarkState::Expired
        );
        assert_eq!(
            state(m, Some("2026-12-02T12:00:00Z"), Some("alice")),
            MarkState::Expired,
            "expires at its instant"
        );
        assert_eq!(
            state(m, Some("2026-12-10T12:00:00Z"), Some("alice")),
            MarkState::ExpiryTooFar
        );
        assert_eq!(
            state(m, Some("2026-12-09T12:00:00Z"), Some("alice")),
            MarkState::Active,
            "exactly the maximum is allowed"
        );
        assert_eq!(
            state(m, Some("2026-12-02T13:00:00Z"), None),
            MarkState::NoActor
        );
        assert_eq!(
            state(m, Some("2026-12-02T13:00:00Z"), Some(" ")),
            MarkState::NoActor
        );
        let expired = read(
            m,
            &[
                (m.annotation(), "x"),
                (m.until_annotation(), "2026-12-01T00:00:00Z"),
                (m.by_annotation(), "bob"),
            ],
        )
        .unwrap();
        assert_eq!(expiry(Some(&expired)), None);
        assert!(describe(&expired).ends_with("(no effect: its expiry has passed)"));
    }

    #[test]
    fn an_unset_annotation_reads_as_none_and_the_two_do_not_mix() {
        assert_eq!(read(Mark::Freeze, &[]), None);
        assert_eq!(Mark::Freeze.read(None, now()), None);
        let only_override = [
            (Mark::Override.annotation(), "fix"),
            (Mark::Override.until_annotation(), "2026-12-02T13:00:00Z"),
            (Mark::Override.by_annotation(), "alice"),
        ];
        assert_eq!(read(Mark::Freeze, &only_override), None);
        assert!(read(Mark::Override, &only_override).is_some());
    }
}
