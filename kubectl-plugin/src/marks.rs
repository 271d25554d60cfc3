//! `freeze`, `override` and `unfreeze`: the accountable annotations the operator reads (their names
//! and meaning live in `tailwarden_operator::freeze_annotations`), the expiry `--for` asks for, and
//! the sentence that says what will happen before it happens.

use std::collections::BTreeMap;

use jiff::{SignedDuration, Timestamp};
use serde_json::{Map, Value, json};
use tailwarden_crds::{MARK_MAX_DAYS_AHEAD, MarkState, MarkStatus, RetailPipeline};
use tailwarden_operator::freeze_annotations::{Mark, describe};

use crate::error::Error;

/// Both annotations, each with its `-until` and `-by`.
const MARKS: [Mark; 2] = [Mark::Freeze, Mark::Override];

/// The expiry `--for value` asks for, from `now` in whole seconds: a positive duration such as
/// `30m`, `2h` or `1d`, at most [`MARK_MAX_DAYS_AHEAD`] days, beyond which the operator would
/// ignore the annotation.
pub fn expiry(now: Timestamp, value: &str) -> Result<Timestamp, Error> {
    let refuse = |why: String| Error::For {
        value: value.to_owned(),
        why,
    };
    let duration = tailwarden_crds::duration::parse(value)
        .map_err(|e| refuse(format!("{}; use e.g. 30m, 2h or 1d", e.why)))?;
    let seconds = duration.as_secs();
    if seconds == 0 {
        return Err(refuse("must be at least 1s".into()));
    }
    let max = SignedDuration::from_hours(24 * MARK_MAX_DAYS_AHEAD);
    let duration = SignedDuration::from_secs(i64::try_from(seconds).unwrap_or(i64::MAX));
    if duration > max {
        return Err(refuse(format!(
            "is more than {MARK_MAX_DAYS_AHEAD} days: the operator ignores a freeze annotation \
             that expires later"
        )));
    }
    let now = Timestamp::from_second(now.as_second()).unwrap_or(now);
    Ok(now + duration)
}

/// The `--reason`, trimmed: it must say something, as it is what the decision history shows.
pub fn reason(text: &str) -> Result<&str, Error> {
    match text.trim() {
        "" => Err(Error::EmptyReason),
        reason => Ok(reason),
    }
}

/// What a command changes.
#[derive(Debug, Clone, PartialEq)]
pub enum Change<'a> {
    /// Sets one annotation with its expiry and who set it.
    Set {
        mark: Mark,
        reason: &'a str,
        until: Timestamp,
        /// The requesting user, as the chart's admission policy requires.
        by: &'a str,
    },
    /// Removes the manual freeze and the override, each with its `-until` and `-by`.
    Clear,
}

/// The freeze annotations as they are now, and the budget's freeze as of the last evaluation.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Current {
    pub manual: Option<MarkStatus>,
    pub freeze_override: Option<MarkStatus>,
    pub budget_frozen: bool,
}

impl Current {
    /// Read from the pipeline's annotations (not its status, which may lag behind them).
    pub fn of(pipeline: &RetailPipeline, now: Timestamp) -> Self {
        let annotations: Option<&BTreeMap<String, String>> = pipeline.metadata.annotations.as_ref();
        Current {
            manual: Mark::Freeze.read(annotations, now),
            freeze_override: Mark::Override.read(annotations, now),
            budget_frozen: pipeline
                .status
                .as_ref()
                .is_some_and(|s| s.rollout.budget_frozen),
        }
    }
}

impl Change<'_> {
    /// The JSON merge patch of the pipeline: a null removes an annotation.
    pub fn patch(&self) -> Value {
        let annotations: Map<String, Value> = match self {
            Change::Set {
                mark,
                reason,
                until,
                by,
            } => [
                (mark.annotation(), reason.to_string()),
                (mark.until_annotation(), until.to_string()),
                (mark.by_annotation(), by.to_string()),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), Value::String(v)))
            .collect(),
            Change::Clear => MARKS
                .iter()
                .flat_map(|m| [m.annotation(), m.until_annotation(), m.by_annotation()])
                .map(|k| (k.to_owned(), Value::Null))
                .collect(),
        };
        json!({"metadata": {"annotations": annotations}})
    }

    /// What will happen to `target` (`namespace/name`), given what holds it now.
    pub fn describe(&self, target: &str, current: &Current) -> String {
        let budget_stays = if current.budget_frozen {
            " Budget freeze stays in force."
        } else {
            ""
        };
        let mut text = String::new();
        match self {
            Change::Set {
                mark: Mark::Freeze,
                reason,
                until,
                by,
            } => {
                text.push_str(&format!(
                    "Freezing rollouts of {target} until {until} as {by}: {reason}."
                ));
                if let Some(m) = &current.manual {
                    text.push_str(&format!(
                        " It replaces the manual freeze ({}).",
                        describe(m)
                    ));
                }
                if MarkStatus::active(current.freeze_override.as_ref()) {
                    text.push_str(" The freeze override in effect does not lift it.");
                }
                text.push_str(budget_stays);
            }
            Change::Set {
                mark: Mark::Override,
                reason,
                until,
                by,
            } => {
                text.push_str(&format!(
                    "Letting rollouts of {target} through the error budget's freeze until {until} \
                     as {by}: {reason}."
                ));
                if let Some(m) = &current.freeze_override {
                    text.push_str(&format!(
                        " It replaces the freeze override ({}).",
                        describe(m)
                    ));
                }
                if let Some(m) = current
                    .manual
                    .as_ref()
                    .filter(|m| m.state == MarkState::Active)
                {
                    text.push_str(&format!(
                        " The manual freeze ({}) still holds rollouts: an override does not lift it.",
                        describe(m)
                    ));
                }
                if !current.budget_frozen {
                    text.push_str(" The error budget does not freeze rollouts now.");
                }
            }
            Change::Clear => {
                let set: Vec<String> = [
                    ("the manual freeze", &current.manual),
                    ("the freeze override", &current.freeze_override),
                ]
                .into_iter()
                .filter_map(|(name, m)| Some(format!("{name} ({})", describe(m.as_ref()?))))
                .collect();
                if set.is_empty() {
                    text.push_str(&format!(
                        "Unfreezing {target}: it has no manual freeze or freeze override."
                    ));
                } else {
                    text.push_str(&format!(
                        "Unfreezing {target}: removing {}.",
                        set.join(" and ")
                    ));
                }
                text.push_str(budget_stays);
            }
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> Timestamp {
        "2026-12-02T16:00:00.123456Z".parse().unwrap()
    }

    fn set(mark: Mark) -> Change<'static> {
        Change::Set {
            mark,
            reason: "peak sale",
            until: "2026-12-02T18:00:00Z".parse().unwrap(),
            by: "alice",
        }
    }

    fn mark(state: MarkState, by: &str) -> Option<MarkStatus> {
        Some(MarkStatus {
            state,
            reason: "earlier".into(),
            by: Some(by.into()),
            until: Some("2026-12-02T17:00:00Z".into()),
        })
    }

    #[test]
    fn for_takes_durations_up_to_seven_days_in_whole_seconds() {
        let at = |v: &str| expiry(now(), v).map(|t| t.to_string());
        assert_eq!(at("2h").unwrap(), "2026-12-02T18:00:00Z");
        assert_eq!(at("30m").unwrap(), "2026-12-02T16:30:00Z");
        assert_eq!(at("1d").unwrap(), "2026-12-03T16:00:00Z");
        assert_eq!(at("1h30m").unwrap(), "2026-12-02T17:30:00Z");
        assert_eq!(at("7d").unwrap(), "2026-12-09T16:00:00Z", "the maximum");
        assert_eq!(at("1w").unwrap(), "2026-12-09T16:00:00Z");
    }

    #[test]
    fn for_refuses_what_the_operator_would_ignore_naming_the_flag() {
        let refused = |v: &str| expiry(now(), v).unwrap_err().to_string();
        assert_eq!(
            refused("8d"),
            "--for 8d: is more than 7 days: the operator ignores a freeze annotation that expires \
             later"
        );
        assert_eq!(refused("7d1s").split(':').next(), Some("--for 7d1s"));
        assert_eq!(refused("0s"), "--for 0s: must be at least 1s");
        assert_eq!(refused("500ms"), "--for 500ms: must be at least 1s");
        assert_eq!(
            refused("2 hours"),
            "--for 2 hours: expected a unit: ms, s, m, h, d or w; use e.g. 30m, 2h or 1d"
        );
        assert!(refused("").starts_with("--for : empty"));
    }

    #[test]
    fn a_reason_must_say_something() {
        assert_eq!(reason("  peak sale ").unwrap(), "peak sale");
        assert_eq!(
            reason(" \t").unwrap_err().to_string(),
            "--reason is empty: say why, it is recorded with the annotation"
        );
    }

    #[test]
    fn set_patches_the_annotation_with_its_expiry_and_actor() {
        assert_eq!(
            set(Mark::Freeze).patch(),
            json!({"metadata": {"annotations": {
                "tailwarden.io/rollout-freeze": "peak sale",
                "tailwarden.io/rollout-freeze-until": "2026-12-02T18:00:00Z",
                "tailwarden.io/rollout-freeze-by": "alice",
            }}})
        );
        assert_eq!(
            set(Mark::Override).patch(),
            json!({"metadata": {"annotations": {
                "tailwarden.io/rollout-freeze-override": "peak sale",
                "tailwarden.io/rollout-freeze-override-until": "2026-12-02T18:00:00Z",
                "tailwarden.io/rollout-freeze-override-by": "alice",
            }}})
        );
    }

    #[test]
    fn clear_removes_all_six_annotations() {
        assert_eq!(
            Change::Clear.patch(),
            json!({"metadata": {"annotations": {
                "tailwarden.io/rollout-freeze": null,
                "tailwarden.io/rollout-freeze-until": null,
                "tailwarden.io/rollout-freeze-by": null,
                "tailwarden.io/rollout-freeze-override": null,
                "tailwarden.io/rollout-freeze-override-until": null,
                "tailwarden.io/rollout-freeze-override-by": null,
            }}})
        );
    }

    #[test]
    fn describes_what_happens_and_what_keeps_holding() {
        use MarkState::{Active, Expired};
        let budget = Current {
            budget_frozen: true,
            ..Default::default()
        };
        assert_eq!(
            set(Mark::Freeze).describe("shop/web", &budget),
            "Freezing rollouts of shop/web until 2026-12-02T18:00:00Z as alice: peak sale. \
             Budget freeze stays in force."
        );
        let replaced = Current {
            manual: mark(Expired, "bob"),
            freeze_override: mark(Active, "carol"),
            budget_frozen: false,
        };
        assert_eq!(
            set(Mark::Freeze).describe("shop/web", &replaced),
            "Freezing rollouts of shop/web until 2026-12-02T18:00:00Z as alice: peak sale. It \
             replaces the manual freeze (set by bob until 2026-12-02T17:00:00Z: earlier (no \
             effect: its expiry has passed)). The freeze override in effect does not lift it."
        );
        assert_eq!(
            set(Mark::Override).describe("shop/web", &budget),
            "Letting rollouts of shop/web through the error budget's freeze until \
             2026-12-02T18:00:00Z as alice: peak sale."
        );
        let manual = Current {
            manual: mark(Active, "bob"),
            ..Default::default()
        };
        assert_eq!(
            set(Mark::Override).describe("shop/web", &manual),
            "Letting rollouts of shop/web through the error budget's freeze until \
             2026-12-02T18:00:00Z as alice: peak sale. The manual freeze (set by bob until \
             2026-12-02T17:00:00Z: earlier) still holds rollouts: an override does not lift it. \
             The error budget does not freeze rollouts now."
        );
        assert_eq!(
            Change::Clear.describe("shop/web", &Current::default()),
            "Unfreezing shop/web: it has no manual freeze or freeze override."
        );
        let both = Current {
            manual: mark(Active, "bob"),
            freeze_override: mark(Active, "carol"),
            budget_frozen: true,
        };
        assert_eq!(
            Change::Clear.describe("shop/web", &both),
            "Unfreezing shop/web: removing the manual freeze (set by bob until \
             2026-12-02T17:00:00Z: earlier) and the freeze override (set by carol until \
             2026-12-02T17:00:00Z: earlier). Budget freeze stays in force."
        );
    }

    #[test]
    fn current_reads_the_annotations_and_the_budgets_freeze() {
        let mut p: RetailPipeline = serde_json::from_value(json!({
            "apiVersion": "tailwarden.io/v1alpha1", "kind": "RetailPipeline",
            "metadata": {"name": "web", "annotations": {
                "tailwarden.io/rollout-freeze": "sale",
                "tailwarden.io/rollout-freeze-until": "2026-12-02T17:00:00Z",
                "tailwarden.io/rollout-freeze-by": "bob",
            }},
            "spec": {"dataplane": {"image": "example.com/dataplane", "version": "1.0.0"}},
            "status": {"rollout": {"budgetFrozen": true}},
        }))
        .unwrap();
        let current = Current::of(&p, now());
        assert_eq!(current.manual.unwrap().state, MarkState::Active);
        assert_eq!(current.freeze_override, None);
        assert!(current.budget_frozen);
        p.status = None;
        assert!(!Current::of(&p, now()).budget_frozen);
    }
}
