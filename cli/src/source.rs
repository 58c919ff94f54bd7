//! Input documents: multi-document YAML split into documents that remember where they came
//! from (file and first line), and the lookup of a field's line inside a document, so every
//! message can say `file:line`.
//!
//! Pure: callers read the files (or the cluster) and hand the text in; nothing here does I/O.

use std::fmt;

/// Where an input object came from: a file (or `<stdin>`, or `cluster`) and, when known, the
/// 1-based line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// File path, `<stdin>`, or `cluster` for objects read from the API.
    pub origin: String,
    /// 1-based line in the origin, when known.
    pub line: Option<usize>,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{}", self.origin, line),
            None => f.write_str(&self.origin),
        }
    }
}

/// Input that cannot be read at all: not YAML, an unknown kind, a field with an invalid value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{location}: {message}")]
pub struct InputError {
    /// Where.
    pub location: Location,
    /// What is wrong, in words an operator can act on.
    pub message: String,
}

/// One YAML document of an input.
#[derive(Debug, Clone)]
pub struct Document {
    /// File path, `<stdin>` or `cluster`.
    pub origin: String,
    /// 1-based line of the document's first line in the origin (`None` for cluster objects).
    pub first_line: Option<usize>,
    /// The document's text (empty for objects that came from the API).
    pub text: String,
    /// The parsed document, as JSON data.
    pub value: serde_json::Value,
}

impl Document {
    /// A document for an object read from the cluster (no text, no lines).
    pub fn from_cluster(value: serde_json::Value) -> Self {
        Document {
            origin: "cluster".to_owned(),
            first_line: None,
            text: String::new(),
            value,
        }
    }

    /// The location of the document's start.
    pub fn location(&self) -> Location {
        Location {
            origin: self.origin.clone(),
            line: self.first_line,
        }
    }

    /// The location of the field at `path` (keys from the document root, e.g.
    /// `["spec", "peerASN"]`); falls back to the document's start when the key is not found
    /// on a line of its own.
    pub fn location_of(&self, path: &[&str]) -> Location {
        let line = self
            .first_line
            .map(|first| first + line_in_text(&self.text, path).unwrap_or(0));
        Location {
            origin: self.origin.clone(),
            line,
        }
    }

    /// An error at the field `path`.
    pub fn error_at(&self, path: &[&str], message: impl Into<String>) -> InputError {
        InputError {
            location: self.location_of(path),
            message: message.into(),
        }
    }
}

/// 0-based line offset (within `text`) of the last key of `path`, found by looking for each
/// key in turn, in document order, as `key:` at the start of a line (after indentation or a
/// `- ` list marker).
fn line_in_text(text: &str, path: &[&str]) -> Option<usize> {
    let lines: Vec<&str> = text.lines().collect();
    let mut from = 0;
    let mut found = None;
    for key in path {
        let hit = lines.iter().enumerate().skip(from).find(|(_, line)| {
            let trimmed = line.trim_start().trim_start_matches("- ").trim_start();
            let trimmed = trimmed
                .strip_prefix('"')
                .and_then(|t| t.strip_prefix(*key))
                .and_then(|t| t.strip_prefix('"'))
                .or_else(|| trimmed.strip_prefix(*key));
            trimmed.is_some_and(|rest| rest.starts_with(':'))
        });
        let (index, _) = hit?;
        found = Some(index);
        from = index + 1;
    }
    found
}

/// Whether a line separates YAML documents (`---`, possibly followed by a comment or
/// content, or the end marker `...`).
fn is_separator(line: &str) -> bool {
    let line = line.trim_end();
    line == "---" || line.starts_with("--- ") || line.starts_with("---\t") || line == "..."
}

/// Splits a multi-document YAML text into its documents; empty documents (only comments or
/// whitespace) are skipped. A document `kind: List` (what `kubectl get -o yaml` prints) is
/// expanded into its items, which keep the list's location.
pub fn split_documents(origin: &str, text: &str) -> Result<Vec<Document>, InputError> {
    let mut chunks: Vec<(usize, String)> = Vec::new();
    let mut current = String::new();
    let mut start = 1;
    for (index, line) in text.lines().enumerate() {
        if is_separator(line) {
            chunks.push((start, std::mem::take(&mut current)));
            start = index + 2;
            continue;
        }
        current.push_str(line);
        current.push('\n');
    }
    chunks.push((start, current));

    let mut documents = Vec::new();
    for (first_line, chunk) in chunks {
        let yaml: serde_yaml::Value = serde_yaml::from_str(&chunk).map_err(|error| {
            let line = error
                .location()
                .map_or(first_line, |l| first_line + l.line() - 1);
            InputError {
                location: Location {
                    origin: origin.to_owned(),
                    line: Some(line),
                },
                message: format!("not valid YAML: {}", strip_location(&error.to_string())),
            }
        })?;
        if yaml.is_null() {
            continue;
        }
        let value = serde_json::to_value(&yaml).map_err(|error| InputError {
            location: Location {
                origin: origin.to_owned(),
                line: Some(first_line),
            },
            message: format!("YAML that has no JSON form (Kubernetes objects must): {error}"),
        })?;
        if !value.is_object() {
            return Err(InputError {
                location: Location {
                    origin: origin.to_owned(),
                    line: Some(first_line),
                },
                message: "expected a Kubernetes object (a mapping with apiVersion and kind)"
                    .to_owned(),
            });
        }
        if value.get("kind").and_then(|k| k.as_str()) == Some("List") {
            for item in value
                .get("items")
                .and_then(|i| i.as_array())
                .into_iter()
                .flatten()
            {
                documents.push(Document {
                    origin: origin.to_owned(),
                    first_line: Some(first_line),
                    text: String::new(),
                    value: item.clone(),
                });
            }
            continue;
        }
        documents.push(Document {
            origin: origin.to_owned(),
            first_line: Some(first_line),
            text: chunk,
            value,
        });
    }
    Ok(documents)
}

/// serde_yaml appends " at line L column C" to its messages; the location is reported
/// separately (relative to the whole file), so the relative one is dropped.
pub fn strip_location(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(index) => message[..index].to_owned(),
        None => message.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_remember_their_first_line() {
        let text = "a: 1\n---\n# comment\nkind: X\n---\n\n---\nkind: Y\n";
        let docs = split_documents("f.yaml", text).expect("valid");
        assert_eq!(docs.len(), 3);
        assert_eq!(docs[0].first_line, Some(1));
        assert_eq!(docs[1].first_line, Some(3));
        assert_eq!(docs[2].first_line, Some(8));
    }

    #[test]
    fn a_yaml_error_names_the_line_in_the_whole_file() {
        let text = "kind: A\n---\nkind: B\nspec:\n  x: [1, 2\n";
        let error = split_documents("f.yaml", text).expect_err("broken");
        assert_eq!(error.location.origin, "f.yaml");
        let line = error.location.line.expect("a line");
        assert!((5..=6).contains(&line), "line {line}");
        assert!(
            error.message.starts_with("not valid YAML"),
            "{}",
            error.message
        );
    }

    #[test]
    fn fields_are_located_by_their_key_in_document_order() {
        let text = "---\nkind: A\nmetadata:\n  name: x\nspec:\n  name: y\n  peerASN: 7\n";
        let docs = split_documents("f.yaml", text).expect("valid");
        assert_eq!(docs[0].location_of(&["spec", "name"]).line, Some(6));
        assert_eq!(docs[0].location_of(&["spec", "peerASN"]).line, Some(7));
        assert_eq!(docs[0].location_of(&["spec", "missing"]).line, Some(2));
    }

    #[test]
    fn a_list_is_expanded_into_its_items() {
        let text = "kind: List\nitems:\n- kind: A\n- kind: B\n";
        let docs = split_documents("<stdin>", text).expect("valid");
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[1].value["kind"], "B");
    }

    #[test]
    fn a_scalar_document_is_not_an_object() {
        let error = split_documents("f.yaml", "just text\n").expect_err("not an object");
        assert_eq!(error.location.line, Some(1));
    }
}
