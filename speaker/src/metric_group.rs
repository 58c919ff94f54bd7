//! The shape every group of speaker metrics shares, written once: [`metric_group!`] declares
//! a group's struct (clones share the values) and its `register`, which puts each metric
//! under the group's prefix with the field's doc comment as its help text. Also the label
//! set most groups use, [`ResultLabel`]. No I/O.

use prometheus_client::encoding::EncodeLabelSet;

/// Label: a result (`ok`, `error`, ...).
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct ResultLabel {
    pub result: &'static str,
}

/// A field's doc comment (one `#[doc]` per line) as one line of help text.
pub fn help(lines: &[&str]) -> String {
    lines
        .iter()
        .map(|line| line.trim())
        .filter(|line| !line.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Declares a metrics group (help texts end without a full stop: the encoder adds one):
///
/// ```ignore
/// metric_group! {
///     /// The group.
///     pub struct ExampleMetrics, prefix "example" {
///         /// Help text of `herald_speaker_example_things`.
///         things: Counter,
///     }
/// }
/// ```
///
/// gives `ExampleMetrics` (`Debug`, `Clone`, `Default`, public fields) and
/// `ExampleMetrics::register(&mut Registry) -> Self`.
macro_rules! metric_group {
    (
        $(#[$meta:meta])*
        $vis:vis struct $name:ident, prefix $prefix:literal {
            $( $(#[doc = $help:literal])+ $field:ident : $ty:ty, )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Default)]
        $vis struct $name {
            $( $(#[doc = $help])+ pub $field: $ty, )*
        }

        impl $name {
            /// Registers every metric of the group under its prefix in `registry` (whose
            /// prefix is `herald_speaker`); the help texts are the fields' doc comments.
            pub fn register(registry: &mut prometheus_client::registry::Registry) -> Self {
                let metrics = Self::default();
                let sub = registry.sub_registry_with_prefix($prefix);
                $(
                    sub.register(
                        stringify!($field),
                        $crate::metric_group::help(&[$($help),+]),
                        metrics.$field.clone(),
                    );
                )*
                metrics
            }
        }
    };
}

pub(crate) use metric_group;

#[cfg(test)]
mod tests {
    use prometheus_client::encoding::text::encode;
    use prometheus_client::metrics::counter::Counter;
    use prometheus_client::metrics::family::Family;
    use prometheus_client::registry::Registry;

    use super::*;

    metric_group! {
        /// A group for the test.
        struct ExampleMetrics, prefix "example" {
            /// Things counted,
            /// over two lines
            things: Counter,
            /// Results
            results: Family<ResultLabel, Counter>,
        }
    }

    #[test]
    fn a_group_registers_each_field_under_its_prefix_with_its_doc_as_help() {
        let mut registry = Registry::with_prefix("herald_speaker");
        let metrics = ExampleMetrics::register(&mut registry);
        metrics.things.inc();
        metrics
            .results
            .get_or_create(&ResultLabel { result: "ok" })
            .inc();
        let mut text = String::new();
        encode(&mut text, &registry).expect("encodes");
        assert!(
            text.contains("# HELP herald_speaker_example_things Things counted, over two lines.\n"),
            "{text}"
        );
        assert!(
            text.contains("herald_speaker_example_things_total 1\n"),
            "{text}"
        );
        assert!(
            text.contains("herald_speaker_example_results_total{result=\"ok\"} 1\n"),
            "{text}"
        );
    }
}
