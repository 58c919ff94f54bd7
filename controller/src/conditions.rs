//! `metav1.Condition` bookkeeping shared by Service and pool status: replace one condition
//! type in a list, keeping `lastTransitionTime` when the status did not change, and leaving
//! other writers' conditions alone. Pure: the time is a parameter.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;

/// A condition as Herald wants it, before timestamps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredCondition {
    /// The condition type.
    pub type_: String,
    /// True when the condition holds.
    pub status: bool,
    /// CamelCase reason.
    pub reason: String,
    /// Human-readable message.
    pub message: String,
}

impl DesiredCondition {
    /// A condition of `type_` with `status`, `reason` and `message`.
    pub fn new(
        type_: impl Into<String>,
        status: bool,
        reason: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        DesiredCondition {
            type_: type_.into(),
            status,
            reason: reason.into(),
            message: message.into(),
        }
    }
}

/// The API spelling of a condition status.
pub fn status_text(status: bool) -> &'static str {
    if status { "True" } else { "False" }
}

/// `existing` with the condition of `desired.type_` replaced by `desired` (appended when
/// absent). `lastTransitionTime` is kept when the status is unchanged, else set to `now`.
pub fn upsert(
    existing: &[Condition],
    desired: &DesiredCondition,
    observed_generation: Option<i64>,
    now: Timestamp,
) -> Vec<Condition> {
    let status = status_text(desired.status);
    let previous = existing.iter().find(|c| c.type_ == desired.type_);
    let last_transition_time = match previous {
        Some(p) if p.status == status => p.last_transition_time.clone(),
        _ => Time(now),
    };
    let condition = Condition {
        type_: desired.type_.clone(),
        status: status.to_owned(),
        reason: desired.reason.clone(),
        message: truncate(&desired.message, MAX_MESSAGE_BYTES),
        observed_generation,
        last_transition_time,
    };
    let mut out: Vec<Condition> = Vec::with_capacity(existing.len() + 1);
    let mut placed = false;
    for c in existing {
        if c.type_ == desired.type_ {
            if !placed {
                out.push(condition.clone());
                placed = true;
            }
        } else {
            out.push(c.clone());
        }
    }
    if !placed {
        out.push(condition);
    }
    out
}

/// `existing` without conditions of `type_`.
pub fn remove(existing: &[Condition], type_: &str) -> Vec<Condition> {
    existing
        .iter()
        .filter(|c| c.type_ != type_)
        .cloned()
        .collect()
}

/// The apiserver's limit on a condition message.
pub const MAX_MESSAGE_BYTES: usize = 32 * 1024;

/// `text` cut to at most `max` bytes on a character boundary (with a marker when cut).
pub fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    const MARK: &str = " …";
    let mut end = max.saturating_sub(MARK.len());
    while end > 0 && !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{MARK}", &text[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(seconds).unwrap_or(Timestamp::UNIX_EPOCH)
    }

    fn other() -> Condition {
        Condition {
            type_: "example.com/Other".into(),
            status: "True".into(),
            reason: "X".into(),
            message: String::new(),
            observed_generation: None,
            last_transition_time: Time(at(1)),
        }
    }

    #[test]
    fn a_new_condition_is_appended_and_others_are_left_alone() {
        let out = upsert(
            &[other()],
            &DesiredCondition::new("herald.dev/AddressAssigned", true, "Assigned", "ok"),
            Some(3),
            at(100),
        );
        assert_eq!(out.len(), 2);
        assert_eq!(out[0], other());
        assert_eq!(out[1].status, "True");
        assert_eq!(out[1].observed_generation, Some(3));
        assert_eq!(out[1].last_transition_time, Time(at(100)));
    }

    #[test]
    fn the_transition_time_moves_only_when_the_status_changes() {
        let first = upsert(
            &[],
            &DesiredCondition::new("T", false, "PoolExhausted", "full"),
            None,
            at(100),
        );
        let same_status = upsert(
            &first,
            &DesiredCondition::new("T", false, "PoolExhausted", "still full"),
            None,
            at(200),
        );
        assert_eq!(same_status[0].last_transition_time, Time(at(100)));
        assert_eq!(same_status[0].message, "still full");
        let flipped = upsert(
            &same_status,
            &DesiredCondition::new("T", true, "Assigned", "got one"),
            None,
            at(300),
        );
        assert_eq!(flipped.len(), 1);
        assert_eq!(flipped[0].last_transition_time, Time(at(300)));
    }

    #[test]
    fn removing_a_condition_keeps_the_rest() {
        let list = upsert(
            &[other()],
            &DesiredCondition::new("T", true, "R", ""),
            None,
            at(1),
        );
        assert_eq!(remove(&list, "T"), vec![other()]);
    }

    #[test]
    fn long_messages_are_cut_on_a_character_boundary() {
        let text = "é".repeat(100);
        let cut = truncate(&text, 51);
        assert!(cut.len() <= 51);
        assert!(cut.ends_with('…'));
        assert_eq!(truncate("short", 51), "short");
    }
}
