//! The API's shared pieces converted into Herald's vocabulary (`herald-model`): this is the
//! one place a `metav1.LabelSelector` becomes a [`LabelSelector`]. Pure; callers decide what
//! an error means for their object.

use herald_model::{LabelSelector, SelectorOperator, SelectorRequirement, UnknownOperator};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector as ApiLabelSelector;

/// A `metav1.LabelSelector` as plain data. An operator Kubernetes does not define is an
/// error (the apiserver validates selectors of built-in kinds, not of custom resources).
pub fn label_selector(selector: &ApiLabelSelector) -> Result<LabelSelector, UnknownOperator> {
    let mut match_expressions = Vec::new();
    for expression in selector.match_expressions.iter().flatten() {
        match_expressions.push(SelectorRequirement {
            key: expression.key.clone(),
            operator: expression.operator.parse::<SelectorOperator>()?,
            values: expression.values.clone().unwrap_or_default(),
        });
    }
    Ok(LabelSelector {
        match_labels: selector
            .match_labels
            .clone()
            .unwrap_or_default()
            .into_iter()
            .collect(),
        match_expressions,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    fn requirement(operator: &str, values: Option<Vec<String>>) -> LabelSelectorRequirement {
        LabelSelectorRequirement {
            key: "env".into(),
            operator: operator.into(),
            values,
        }
    }

    #[test]
    fn labels_and_expressions_carry_over_with_their_meaning() {
        let api = ApiLabelSelector {
            match_labels: Some([("team".to_string(), "web".to_string())].into()),
            match_expressions: Some(vec![requirement("NotIn", Some(vec!["prod".into()]))]),
        };
        let selector = label_selector(&api).expect("valid");
        assert_eq!(selector.to_string(), "team=web,env notin (prod)");
        assert_eq!(
            selector.match_expressions[0].operator,
            SelectorOperator::NotIn
        );
    }

    #[test]
    fn an_absent_selector_part_is_empty_and_matches_everything() {
        let selector = label_selector(&ApiLabelSelector::default()).expect("valid");
        assert_eq!(selector, LabelSelector::default());
        let exists = label_selector(&ApiLabelSelector {
            match_labels: None,
            match_expressions: Some(vec![requirement("Exists", None)]),
        })
        .expect("valid");
        assert!(exists.match_expressions[0].values.is_empty());
    }

    #[test]
    fn an_unknown_operator_is_refused_by_name() {
        let api = ApiLabelSelector {
            match_labels: None,
            match_expressions: Some(vec![requirement("Near", None)]),
        };
        assert_eq!(label_selector(&api), Err(UnknownOperator("Near".into())));
    }
}
