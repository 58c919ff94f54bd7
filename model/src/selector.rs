//! Kubernetes label selectors as plain data, and their evaluation as a pure function.
//!
//! Semantics follow `metav1.LabelSelector`: every `matchLabels` pair and every
//! `matchExpressions` requirement must hold; an empty selector matches everything. The API's
//! selector is converted into this type at the edge (`herald_crds::convert::label_selector`).

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

/// Labels of an object (Service or Namespace).
pub type Labels = BTreeMap<String, String>;

/// The operator of one selector requirement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SelectorOperator {
    /// The label is present and its value is one of `values`.
    In,
    /// The label is absent, or its value is none of `values`.
    NotIn,
    /// The label is present (any value).
    Exists,
    /// The label is absent.
    DoesNotExist,
}

/// An operator name that Kubernetes does not define.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown label selector operator {0:?} (expected In, NotIn, Exists or DoesNotExist)")]
pub struct UnknownOperator(pub String);

impl FromStr for SelectorOperator {
    type Err = UnknownOperator;

    fn from_str(text: &str) -> Result<Self, UnknownOperator> {
        match text {
            "In" => Ok(SelectorOperator::In),
            "NotIn" => Ok(SelectorOperator::NotIn),
            "Exists" => Ok(SelectorOperator::Exists),
            "DoesNotExist" => Ok(SelectorOperator::DoesNotExist),
            other => Err(UnknownOperator(other.to_owned())),
        }
    }
}

impl fmt::Display for SelectorOperator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SelectorOperator::In => "In",
            SelectorOperator::NotIn => "NotIn",
            SelectorOperator::Exists => "Exists",
            SelectorOperator::DoesNotExist => "DoesNotExist",
        })
    }
}

/// One `matchExpressions` entry.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SelectorRequirement {
    /// The label key.
    pub key: String,
    /// How the label is tested.
    pub operator: SelectorOperator,
    /// Values for `In`/`NotIn`; ignored by `Exists`/`DoesNotExist`.
    pub values: Vec<String>,
}

impl SelectorRequirement {
    /// Whether `labels` satisfy this requirement.
    pub fn matches(&self, labels: &Labels) -> bool {
        let value = labels.get(&self.key);
        match self.operator {
            SelectorOperator::In => value.is_some_and(|v| self.values.contains(v)),
            SelectorOperator::NotIn => value.is_none_or(|v| !self.values.contains(v)),
            SelectorOperator::Exists => value.is_some(),
            SelectorOperator::DoesNotExist => value.is_none(),
        }
    }
}

/// A label selector: `matchLabels` and `matchExpressions`, all of which must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LabelSelector {
    /// Labels that must be present with exactly these values.
    pub match_labels: Labels,
    /// Further requirements.
    pub match_expressions: Vec<SelectorRequirement>,
}

impl LabelSelector {
    /// A selector made only of `matchLabels`.
    pub fn with_labels<K: Into<String>, V: Into<String>>(
        labels: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        LabelSelector {
            match_labels: labels
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
            match_expressions: Vec::new(),
        }
    }

    /// Whether `labels` satisfy the selector. The empty selector matches everything.
    pub fn matches(&self, labels: &Labels) -> bool {
        self.match_labels
            .iter()
            .all(|(key, value)| labels.get(key) == Some(value))
            && self.match_expressions.iter().all(|r| r.matches(labels))
    }
}

/// True when `selectors` is empty (no restriction) or any of them matches: how lists of
/// `nodeSelectors` (advertisements, peers) are read.
pub fn any_selector_matches(selectors: &[LabelSelector], labels: &Labels) -> bool {
    selectors.is_empty() || selectors.iter().any(|s| s.matches(labels))
}

impl fmt::Display for LabelSelector {
    /// The `kubectl -l` form: `a=b,c in (d,e),!f`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts: Vec<String> = self
            .match_labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        for r in &self.match_expressions {
            parts.push(match r.operator {
                SelectorOperator::In => format!("{} in ({})", r.key, r.values.join(",")),
                SelectorOperator::NotIn => format!("{} notin ({})", r.key, r.values.join(",")),
                SelectorOperator::Exists => r.key.clone(),
                SelectorOperator::DoesNotExist => format!("!{}", r.key),
            });
        }
        if parts.is_empty() {
            f.write_str("(everything)")
        } else {
            f.write_str(&parts.join(","))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn requirement(key: &str, operator: SelectorOperator, values: &[&str]) -> SelectorRequirement {
        SelectorRequirement {
            key: key.to_owned(),
            operator,
            values: values.iter().map(|v| (*v).to_owned()).collect(),
        }
    }

    #[test]
    fn the_empty_selector_matches_everything() {
        assert!(LabelSelector::default().matches(&Labels::new()));
        assert!(LabelSelector::default().matches(&labels(&[("a", "b")])));
    }

    #[test]
    fn match_labels_need_every_pair_with_the_same_value() {
        let selector = LabelSelector::with_labels([("team", "web"), ("tier", "front")]);
        assert!(selector.matches(&labels(&[("team", "web"), ("tier", "front"), ("x", "y")])));
        assert!(!selector.matches(&labels(&[("team", "web")])));
        assert!(!selector.matches(&labels(&[("team", "web"), ("tier", "back")])));
    }

    #[test]
    fn each_operator_follows_the_kubernetes_meaning() {
        use SelectorOperator::*;
        let cases = [
            (
                requirement("env", In, &["prod", "qa"]),
                &[("env", "qa")][..],
                true,
            ),
            (
                requirement("env", In, &["prod"]),
                &[("env", "dev")][..],
                false,
            ),
            (requirement("env", In, &["prod"]), &[][..], false),
            (requirement("env", In, &[]), &[("env", "")][..], false),
            (
                requirement("env", NotIn, &["prod"]),
                &[("env", "dev")][..],
                true,
            ),
            (requirement("env", NotIn, &["prod"]), &[][..], true),
            (
                requirement("env", NotIn, &["prod"]),
                &[("env", "prod")][..],
                false,
            ),
            (requirement("env", Exists, &[]), &[("env", "")][..], true),
            (requirement("env", Exists, &[]), &[("other", "")][..], false),
            (requirement("env", DoesNotExist, &[]), &[][..], true),
            (
                requirement("env", DoesNotExist, &[]),
                &[("env", "x")][..],
                false,
            ),
        ];
        for (requirement, pairs, expected) in cases {
            let selector = LabelSelector {
                match_labels: Labels::new(),
                match_expressions: vec![requirement.clone()],
            };
            assert_eq!(
                selector.matches(&labels(pairs)),
                expected,
                "{requirement:?} on {pairs:?}"
            );
        }
    }

    #[test]
    fn labels_and_expressions_must_both_hold() {
        let selector = LabelSelector {
            match_labels: labels(&[("team", "web")]),
            match_expressions: vec![requirement("env", SelectorOperator::NotIn, &["prod"])],
        };
        assert!(selector.matches(&labels(&[("team", "web"), ("env", "dev")])));
        assert!(!selector.matches(&labels(&[("team", "web"), ("env", "prod")])));
        assert!(!selector.matches(&labels(&[("env", "dev")])));
        assert_eq!(selector.to_string(), "team=web,env notin (prod)");
    }

    #[test]
    fn an_empty_list_of_selectors_restricts_nothing_and_a_list_needs_one_match() {
        let web = LabelSelector::with_labels([("team", "web")]);
        let db = LabelSelector::with_labels([("team", "db")]);
        assert!(any_selector_matches(&[], &Labels::new()));
        assert!(any_selector_matches(
            &[db.clone(), web.clone()],
            &labels(&[("team", "web")])
        ));
        assert!(!any_selector_matches(&[db], &labels(&[("team", "web")])));
    }

    #[test]
    fn operators_parse_from_their_api_names_only() {
        assert_eq!("NotIn".parse(), Ok(SelectorOperator::NotIn));
        assert_eq!(
            "notin".parse::<SelectorOperator>(),
            Err(UnknownOperator("notin".into()))
        );
    }
}
