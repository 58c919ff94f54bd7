//! `Community`: named aliases for BGP community values, and the parser of community text
//! (`65000:100`, `large:65000:1:2`, or an alias name) shared by controller and speaker.
//! Pure: no I/O.

use std::fmt;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::schema;

/// Prefix that marks a large community in text.
pub const LARGE_COMMUNITY_PREFIX: &str = "large:";

/// Names for community values, usable in `BGPAdvertisement.spec.communities`.
// kube's printcolumn(...) repeats keys such as `type_`, which clippy mistakes for duplicates.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "herald.dev",
    version = "v1alpha1",
    kind = "Community",
    plural = "communities",
    namespaced,
    derive = "PartialEq",
    category = "herald",
    doc = "Community gives names to BGP community values, so BGPAdvertisements can say no-export-upstream instead of 65000:666.",
    printcolumn(
        name = "Aliases",
        type_ = "string",
        json_path = ".spec.communities[*].name"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
pub struct CommunitySpec {
    /// The aliases; names are unique within the object.
    #[serde(default)]
    #[schemars(transform = schema::list_map_by_name, length(max = 256))]
    pub communities: Vec<CommunityAlias>,
}

/// One named community value.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
pub struct CommunityAlias {
    /// The alias: lower-case letters, digits and `-`, starting with a letter (e.g.
    /// `no-advertise-upstream`).
    #[schemars(schema_with = "schema::community_alias_name")]
    pub name: String,

    /// The community it stands for: standard `65000:100` (RFC 1997) or large
    /// `large:65000:1:2` (RFC 8092).
    #[schemars(schema_with = "schema::community_value")]
    pub value: String,
}

/// A BGP community value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CommunityValue {
    /// RFC 1997: two 16-bit halves, conventionally `ASN:VALUE`.
    Standard {
        /// High 16 bits.
        high: u16,
        /// Low 16 bits.
        low: u16,
    },
    /// RFC 8092: global administrator and two local data parts, 32 bits each.
    Large {
        /// Global administrator (an ASN).
        global: u32,
        /// First local data part.
        local1: u32,
        /// Second local data part.
        local2: u32,
    },
}

impl CommunityValue {
    /// The 32-bit wire form of a standard community (RFC 1997 §3); `None` for large ones.
    pub fn standard_u32(&self) -> Option<u32> {
        match *self {
            CommunityValue::Standard { high, low } => {
                Some((u32::from(high) << 16) | u32::from(low))
            }
            CommunityValue::Large { .. } => None,
        }
    }
}

impl fmt::Display for CommunityValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CommunityValue::Standard { high, low } => write!(f, "{high}:{low}"),
            CommunityValue::Large {
                global,
                local1,
                local2,
            } => write!(f, "{LARGE_COMMUNITY_PREFIX}{global}:{local1}:{local2}"),
        }
    }
}

/// An entry of `BGPAdvertisement.spec.communities`: a value, or the name of an alias.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum CommunityRef {
    /// A literal community value.
    Value(CommunityValue),
    /// The name of a [`CommunityAlias`], resolved against the Community objects.
    Alias(String),
}

/// Why community text was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommunityError {
    /// Not of the form `A:B`, `large:A:B:C` or an alias name.
    #[error(
        "{0:?} is neither a standard community (65000:100), a large community (large:65000:1:2) nor an alias name"
    )]
    Syntax(String),
    /// A part is out of range for its field.
    #[error("{text:?}: {part:?} is out of range (at most {max})")]
    OutOfRange {
        /// The whole community text.
        text: String,
        /// The offending part.
        part: String,
        /// Its largest allowed value.
        max: u32,
    },
    /// An alias was given where only a value is allowed.
    #[error("{0:?} is an alias name; a Community alias must stand for a value")]
    AliasNotAllowed(String),
}

/// Parses one field of community text: decimal digits only, at most `max`.
fn parse_part(text: &str, part: &str, max: u32) -> Result<u32, CommunityError> {
    if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
        return Err(CommunityError::Syntax(text.to_owned()));
    }
    part.parse::<u64>()
        .ok()
        .filter(|value| *value <= u64::from(max))
        .and_then(|value| u32::try_from(value).ok())
        .ok_or_else(|| CommunityError::OutOfRange {
            text: text.to_owned(),
            part: part.to_owned(),
            max,
        })
}

/// Whether `text` has the shape of an alias name (see `COMMUNITY_ALIAS_NAME_PATTERN`).
pub fn is_alias_name(text: &str) -> bool {
    let bytes = text.as_bytes();
    let (Some(first), Some(last)) = (bytes.first(), bytes.last()) else {
        return false;
    };
    bytes.len() <= 63
        && first.is_ascii_lowercase()
        && (last.is_ascii_lowercase() || last.is_ascii_digit())
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
}

impl CommunityValue {
    /// Parses `65000:100` or `large:65000:1:2`.
    pub fn parse(text: &str) -> Result<Self, CommunityError> {
        if let Some(rest) = text.strip_prefix(LARGE_COMMUNITY_PREFIX) {
            let parts: Vec<&str> = rest.split(':').collect();
            let [global, local1, local2] = parts.as_slice() else {
                return Err(CommunityError::Syntax(text.to_owned()));
            };
            return Ok(CommunityValue::Large {
                global: parse_part(text, global, u32::MAX)?,
                local1: parse_part(text, local1, u32::MAX)?,
                local2: parse_part(text, local2, u32::MAX)?,
            });
        }
        let parts: Vec<&str> = text.split(':').collect();
        let [high, low] = parts.as_slice() else {
            if is_alias_name(text) {
                return Err(CommunityError::AliasNotAllowed(text.to_owned()));
            }
            return Err(CommunityError::Syntax(text.to_owned()));
        };
        let max = u32::from(u16::MAX);
        let high = u16::try_from(parse_part(text, high, max)?);
        let low = u16::try_from(parse_part(text, low, max)?);
        match (high, low) {
            (Ok(high), Ok(low)) => Ok(CommunityValue::Standard { high, low }),
            _ => Err(CommunityError::Syntax(text.to_owned())),
        }
    }
}

impl CommunityRef {
    /// Parses an entry of `BGPAdvertisement.spec.communities`.
    pub fn parse(text: &str) -> Result<Self, CommunityError> {
        match CommunityValue::parse(text) {
            Ok(value) => Ok(CommunityRef::Value(value)),
            Err(CommunityError::AliasNotAllowed(name)) => Ok(CommunityRef::Alias(name)),
            Err(other) => Err(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_communities_parse_into_two_halves() {
        assert_eq!(
            CommunityValue::parse("65000:100"),
            Ok(CommunityValue::Standard {
                high: 65000,
                low: 100
            })
        );
        assert_eq!(
            CommunityValue::parse("65535:65535")
                .ok()
                .and_then(|c| c.standard_u32()),
            Some(u32::MAX)
        );
    }

    #[test]
    fn large_communities_parse_into_three_parts() {
        assert_eq!(
            CommunityValue::parse("large:4294967295:1:2"),
            Ok(CommunityValue::Large {
                global: u32::MAX,
                local1: 1,
                local2: 2
            })
        );
    }

    #[test]
    fn out_of_range_parts_are_refused() {
        assert!(matches!(
            CommunityValue::parse("65536:1"),
            Err(CommunityError::OutOfRange { .. })
        ));
        assert!(matches!(
            CommunityValue::parse("large:4294967296:1:2"),
            Err(CommunityError::OutOfRange { .. })
        ));
        assert!(matches!(
            CommunityValue::parse("99999999999999999999999:1"),
            Err(CommunityError::OutOfRange { .. })
        ));
    }

    #[test]
    fn malformed_text_is_a_syntax_error() {
        for text in [
            "",
            "1",
            "1:2:3",
            ":1",
            "1:",
            "large:1:2",
            "a:b",
            "-1:2",
            "+1:2",
            "Upstream",
        ] {
            assert!(
                matches!(CommunityValue::parse(text), Err(CommunityError::Syntax(_))),
                "{text:?}"
            );
        }
    }

    #[test]
    fn alias_names_are_references_but_not_values() {
        assert_eq!(
            CommunityRef::parse("no-export-upstream"),
            Ok(CommunityRef::Alias("no-export-upstream".to_owned()))
        );
        assert_eq!(
            CommunityValue::parse("no-export-upstream"),
            Err(CommunityError::AliasNotAllowed(
                "no-export-upstream".to_owned()
            ))
        );
        assert!(CommunityRef::parse("9lives").is_err());
    }

    #[test]
    fn display_writes_the_text_that_parses_back() {
        for text in ["0:0", "65000:100", "large:65000:1:2"] {
            let value = CommunityValue::parse(text);
            assert_eq!(value.map(|v| v.to_string()), Ok(text.to_owned()));
        }
    }
}
