//! OpenAPI fragments and CEL rules (`x-kubernetes-validations`) shared by the Herald CRDs.
//!
//! Owns every validation the apiserver performs on Herald objects: the string shapes
//! (patterns, lengths), list semantics (`x-kubernetes-list-type`) and the CEL rules that
//! Kubernetes' IP/CIDR library (`isIP`, `ip()`, `isCIDR`, `cidr()`, `.family()`, …) and
//! `duration()` make expressible. Pure: functions that build [`Schema`] values, used through
//! `#[schemars(schema_with = ...)]` on the API fields.
//!
//! The apiserver estimates the cost of each rule from the maximum sizes in the schema, so every
//! list that a rule walks has a `maxItems`, and every string a rule reads has a `maxLength`.

use schemars::{Schema, SchemaGenerator, json_schema};
use serde_json::{Value, json};
use std::ops::RangeInclusive;

/// Most entries one IPAddressPool may list.
pub const MAX_POOL_ENTRIES: u64 = 128;
/// Longest pool entry text: an IPv6 range of two full-length addresses is 79 characters.
pub const MAX_POOL_ENTRY_LENGTH: u64 = 100;
/// Most communities one BGPAdvertisement may attach.
pub const MAX_COMMUNITIES: u64 = 64;
/// Most aliases one Community object may define.
pub const MAX_COMMUNITY_ALIASES: u64 = 256;
/// Longest textual IP address (a full IPv6 address with an embedded IPv4 tail).
pub const MAX_IP_LENGTH: u64 = 45;

/// A DNS-1123 subdomain: the shape of Kubernetes object names.
pub const OBJECT_NAME_PATTERN: &str =
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";
/// A DNS-1123 label: the shape of namespace names.
pub const NAMESPACE_NAME_PATTERN: &str = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$";
/// A Linux interface name: 1 to 15 bytes (IFNAMSIZ - 1), no whitespace, `/` or `:`.
pub const INTERFACE_NAME_PATTERN: &str = r"^[^\s/:]{1,15}$";
/// A Community alias name: a DNS-1123 label that starts with a letter, so it can never be
/// mistaken for a numeric community value.
pub const COMMUNITY_ALIAS_NAME_PATTERN: &str = "^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$";
/// A Go-style duration limited to whole hours, minutes and seconds (`90s`, `3m`, `1m30s`):
/// BGP timers count whole seconds (RFC 4271 §4.2, §10).
pub const DURATION_PATTERN: &str = "^([0-9]{1,6}(h|m|s))+$";

/// A standard community (RFC 1997) written `ASN:VALUE`, each half 0..=65535.
pub const STANDARD_COMMUNITY_PATTERN: &str = "^[0-9]{1,5}:[0-9]{1,5}$";
/// A large community (RFC 8092) written `large:GLOBAL:LOCAL1:LOCAL2`, each part 0..=4294967295.
pub const LARGE_COMMUNITY_PATTERN: &str = "^large:[0-9]{1,10}:[0-9]{1,10}:[0-9]{1,10}$";

/// One CEL rule with the message the apiserver shows when it evaluates to false.
fn rule(rule: impl Into<String>, message: &str) -> Value {
    json!({ "rule": rule.into(), "message": message })
}

/// One CEL rule whose failure message is itself a CEL expression (so it can quote the value).
fn rule_with_message_expression(rule: impl Into<String>, message_expression: &str) -> Value {
    json!({ "rule": rule.into(), "messageExpression": message_expression })
}

// ---------------------------------------------------------------------------------------------
// Pool entries: a CIDR, or a range `first-last` of one family with first <= last.
// ---------------------------------------------------------------------------------------------

/// CEL for the first address of a range entry (`self` is the entry text).
const RANGE_FIRST: &str = "self.split('-')[0]";
/// CEL for the last address of a range entry.
const RANGE_LAST: &str = "self.split('-')[1]";

/// CEL: the entry is `first-last` with two valid IP addresses.
fn is_range() -> String {
    format!("(self.split('-').size() == 2 && isIP({RANGE_FIRST}) && isIP({RANGE_LAST}))")
}

/// CEL: a range whose ends are of one family.
fn is_single_family_range() -> String {
    format!(
        "({} && ip({RANGE_FIRST}).family() == ip({RANGE_LAST}).family())",
        is_range()
    )
}

/// CEL that is true when a single-family range ends below where it starts and the first bit in
/// which its two ends differ is one of `bits` (numbered from 1; IPv4 has 32, IPv6 128).
///
/// CEL has no ordering on IP addresses, so the rule finds the first bit in which the two ends
/// differ using prefixes: with `n - 1` the length of their common prefix, `last` lies inside
/// `first/(n-1)` but not inside `first/n`. `last < first` exactly when at that bit `last` has
/// the 0, i.e. the network address of `last/(n-1)` lies inside `last/n`.
///
/// The loop runs over string literals `'/n-1 /n'` rather than integers: the apiserver
/// estimates a rule's cost from the longest strings it can build, and `string(n)` (or a list
/// of lists) would give every prefix text, and so every `cidr()` call, an unbounded size.
fn range_is_reversed(bits: RangeInclusive<u8>) -> String {
    let pairs: Vec<String> = bits.map(|n| format!("'/{} /{n}'", n - 1)).collect();
    let prefix = |addr: &str, part: usize| format!("cidr({addr} + p.split(' ')[{part}])");
    format!(
        "[{pairs}].exists(p, {first_shorter}.containsIP({last}) \
         && !{first_longer}.containsIP({last}) \
         && {last_longer}.containsIP({last_shorter}.masked().ip()))",
        pairs = pairs.join(", "),
        last = RANGE_LAST,
        first_shorter = prefix(RANGE_FIRST, 0),
        first_longer = prefix(RANGE_FIRST, 1),
        last_shorter = prefix(RANGE_LAST, 0),
        last_longer = prefix(RANGE_LAST, 1),
    )
}

/// The first-differing-bit search of [`range_is_reversed`] is split into rules of this many bits:
/// one rule over all 128 bits of IPv6 exceeds the apiserver's per-rule cost budget.
const ORDER_RULE_BITS: u8 = 32;

/// The rules that refuse a range of `family` (4 or 6) whose end lies below its start.
fn range_order_rules(family: u8) -> Vec<Value> {
    let address_bits: u8 = if family == 4 { 32 } else { 128 };
    (0..address_bits / ORDER_RULE_BITS)
        .map(|chunk| {
            let bits = chunk * ORDER_RULE_BITS + 1..=(chunk + 1) * ORDER_RULE_BITS;
            rule_with_message_expression(
                format!(
                    "!({} && ip({RANGE_FIRST}).family() == {family}) || !{}",
                    is_single_family_range(),
                    range_is_reversed(bits)
                ),
                "'range \"' + self + '\" ends before it starts; write the lower address first'",
            )
        })
        .collect()
}

/// The CEL rules on one pool entry, in the order the apiserver reports them.
pub fn pool_entry_rules() -> Vec<Value> {
    let mut rules = vec![
        rule_with_message_expression(
            format!("isCIDR(self) || {}", is_range()),
            "'\"' + self + '\" is neither a CIDR (192.0.2.0/24, 2001:db8::/64) nor an address range (192.0.2.10-192.0.2.20)'",
        ),
        rule_with_message_expression(
            "!isCIDR(self) || cidr(self).masked().ip() == cidr(self).ip()",
            "'CIDR \"' + self + '\" has bits set past its prefix length; write its network address (192.0.2.0/24, not 192.0.2.1/24)'",
        ),
        rule_with_message_expression(
            format!(
                "!{} || ip({RANGE_FIRST}).family() == ip({RANGE_LAST}).family()",
                is_range()
            ),
            "'range \"' + self + '\" mixes IPv4 and IPv6; both ends must be of one family'",
        ),
    ];
    rules.extend(range_order_rules(4));
    rules.extend(range_order_rules(6));
    rules
}

/// `spec.addresses` of an IPAddressPool: a set of CIDR or range strings.
pub fn pool_addresses(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "array",
        "minItems": 1,
        "maxItems": MAX_POOL_ENTRIES,
        "x-kubernetes-list-type": "set",
        "items": {
            "type": "string",
            "minLength": 1,
            "maxLength": MAX_POOL_ENTRY_LENGTH,
            "x-kubernetes-validations": pool_entry_rules(),
        },
    })
}

// ---------------------------------------------------------------------------------------------
// Names and simple strings.
// ---------------------------------------------------------------------------------------------

/// A list of object names (pools, peers) in the install namespace.
pub fn object_names(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "array",
        "x-kubernetes-list-type": "set",
        "items": { "type": "string", "maxLength": 253, "pattern": OBJECT_NAME_PATTERN },
    })
}

/// A list of namespace names.
pub fn namespace_names(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "array",
        "x-kubernetes-list-type": "set",
        "items": { "type": "string", "maxLength": 63, "pattern": NAMESPACE_NAME_PATTERN },
    })
}

/// A list of network interface names.
pub fn interface_names(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "array",
        "x-kubernetes-list-type": "set",
        "items": { "type": "string", "maxLength": 15, "pattern": INTERFACE_NAME_PATTERN },
    })
}

/// The name of one Kubernetes object.
pub fn object_name(_: &mut SchemaGenerator) -> Schema {
    json_schema!({ "type": "string", "minLength": 1, "maxLength": 253, "pattern": OBJECT_NAME_PATTERN })
}

/// An IPv4 or IPv6 address in its usual text form.
pub fn ip_address(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "string",
        "maxLength": MAX_IP_LENGTH,
        "x-kubernetes-validations": [rule_with_message_expression(
            "isIP(self)",
            "'\"' + self + '\" is not an IP address (192.0.2.1, 2001:db8::1)'",
        )],
    })
}

/// An optional IP address (`Option<String>`).
pub fn optional_ip_address(generator: &mut SchemaGenerator) -> Schema {
    let mut schema = ip_address(generator);
    schema.insert("nullable".into(), true.into());
    schema
}

/// An optional IPv4 address used as a BGP identifier (RFC 6286 allows any non-zero 32 bits,
/// written as an IPv4 address).
pub fn optional_router_id(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "string",
        "nullable": true,
        "maxLength": 15,
        "x-kubernetes-validations": [rule_with_message_expression(
            "isIP(self) && ip(self).family() == 4 && !ip(self).isUnspecified()",
            "'routerID \"' + self + '\" must be a non-zero IPv4 address such as 192.0.2.11'",
        )],
    })
}

// ---------------------------------------------------------------------------------------------
// BGP numbers and timers.
// ---------------------------------------------------------------------------------------------

/// A 4-octet AS number (RFC 6793): 1..=4294967295, and not AS_TRANS.
pub fn asn(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "integer",
        "format": "int64",
        "minimum": 1,
        "maximum": u32::MAX,
        "x-kubernetes-validations": [rule(
            "self != 23456",
            "AS 23456 is AS_TRANS (RFC 6793), a placeholder that cannot be configured as an AS number",
        )],
    })
}

/// A Go-style duration string such as `90s`, whole seconds or coarser, with `(rule, message)`
/// pairs that compare it via CEL's `duration()`. The apiserver evaluates CEL even on a value
/// that failed the pattern, so each rule first lets such a value through: the pattern's own
/// message is then the only one the user sees.
fn duration_string(rules: &[(&str, &str)]) -> Schema {
    let rules: Vec<Value> = rules
        .iter()
        .map(|(body, message)| {
            rule(
                format!("!self.matches('{DURATION_PATTERN}') || ({body})"),
                message,
            )
        })
        .collect();
    json_schema!({
        "type": "string",
        "nullable": true,
        "maxLength": 20,
        "pattern": DURATION_PATTERN,
        "x-kubernetes-validations": rules,
    })
}

/// `holdTime`: 0 (no keepalives, RFC 4271 §4.2) or 3..=65535 seconds.
pub fn hold_time(_: &mut SchemaGenerator) -> Schema {
    duration_string(&[(
        "duration(self) == duration('0s') || (duration(self) >= duration('3s') && duration(self) <= duration('65535s'))",
        "holdTime must be 0s (no keepalives) or between 3s and 65535s (RFC 4271 section 4.2)",
    )])
}

/// `keepaliveTime`: at most 65535 seconds; its relation to `holdTime` is a rule on the spec.
pub fn keepalive_time(_: &mut SchemaGenerator) -> Schema {
    duration_string(&[(
        "duration(self) <= duration('65535s')",
        "keepaliveTime must be at most 65535s",
    )])
}

/// `connectTime`: 1..=65535 seconds between connection attempts (RFC 4271 ConnectRetryTimer).
pub fn connect_time(_: &mut SchemaGenerator) -> Schema {
    duration_string(&[(
        "duration(self) >= duration('1s') && duration(self) <= duration('65535s')",
        "connectTime must be between 1s and 65535s",
    )])
}

/// Rules on the whole BGPPeer spec: the ones that relate two fields.
pub fn bgp_peer_spec_rules() -> Value {
    let unparsable = format!(
        "!self.keepaliveTime.matches('{DURATION_PATTERN}') \
         || (has(self.holdTime) && !self.holdTime.matches('{DURATION_PATTERN}'))"
    );
    json!([
        {
            "rule": format!(
                "!has(self.keepaliveTime) || {unparsable} \
                 || ((has(self.holdTime) && duration(self.holdTime) == duration('0s')) \
                     ? duration(self.keepaliveTime) == duration('0s') \
                     : (duration(self.keepaliveTime) > duration('0s') \
                        && duration(self.keepaliveTime) < (has(self.holdTime) ? duration(self.holdTime) : duration('90s'))))"
            ),
            "message": "keepaliveTime must be above 0s and shorter than holdTime (90s when unset); with holdTime 0s it must be 0s",
            "fieldPath": ".keepaliveTime",
        },
        {
            "rule": "!has(self.sourceAddress) || !isIP(self.sourceAddress) || !isIP(self.peerAddress) \
                     || ip(self.sourceAddress).family() == ip(self.peerAddress).family()",
            "message": "sourceAddress and peerAddress must be of the same family",
            "fieldPath": ".sourceAddress",
        },
    ])
}

// ---------------------------------------------------------------------------------------------
// Communities.
// ---------------------------------------------------------------------------------------------

/// CEL rules on a community value; `allow_alias` also admits the name of a Community alias.
fn community_rules(allow_alias: bool) -> Vec<Value> {
    let syntax = if allow_alias {
        rule_with_message_expression(
            format!(
                "self.matches('{STANDARD_COMMUNITY_PATTERN}') || self.matches('{LARGE_COMMUNITY_PATTERN}') \
                 || self.matches('{COMMUNITY_ALIAS_NAME_PATTERN}')"
            ),
            "'\"' + self + '\" is neither a standard community (65000:100), a large community (large:65000:1:2) nor the name of a Community alias'",
        )
    } else {
        rule_with_message_expression(
            format!(
                "self.matches('{STANDARD_COMMUNITY_PATTERN}') || self.matches('{LARGE_COMMUNITY_PATTERN}')"
            ),
            "'\"' + self + '\" is neither a standard community (65000:100) nor a large community (large:65000:1:2)'",
        )
    };
    vec![
        syntax,
        rule_with_message_expression(
            format!(
                "!self.matches('{STANDARD_COMMUNITY_PATTERN}') || self.split(':').all(part, int(part) <= 65535)"
            ),
            "'standard community \"' + self + '\": both halves must be at most 65535 (RFC 1997)'",
        ),
        rule_with_message_expression(
            format!(
                "!self.matches('{LARGE_COMMUNITY_PATTERN}') || [1, 2, 3].all(i, int(self.split(':')[i]) <= 4294967295)"
            ),
            "'large community \"' + self + '\": each part must be at most 4294967295 (RFC 8092)'",
        ),
    ]
}

/// `communities` of a BGPAdvertisement: values or alias names.
pub fn advertisement_communities(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "array",
        "maxItems": MAX_COMMUNITIES,
        "x-kubernetes-list-type": "set",
        "items": {
            "type": "string",
            "maxLength": 40,
            "x-kubernetes-validations": community_rules(true),
        },
    })
}

/// `value` of a Community alias: a standard or large community, never another alias.
pub fn community_value(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "string",
        "maxLength": 40,
        "x-kubernetes-validations": community_rules(false),
    })
}

/// `name` of a Community alias.
pub fn community_alias_name(_: &mut SchemaGenerator) -> Schema {
    json_schema!({ "type": "string", "maxLength": 63, "pattern": COMMUNITY_ALIAS_NAME_PATTERN })
}

// ---------------------------------------------------------------------------------------------
// BFD (RFC 5880) timing, in whole milliseconds as MetalLB's BFDProfile has it.
// ---------------------------------------------------------------------------------------------

/// An optional integer field checked against `range` by a CEL rule whose message names it.
/// (A `messageExpression` that prints the value is refused by the apiserver's cost estimate:
/// `string(int)` has no bounded length.)
fn optional_integer_in(field: &str, range: RangeInclusive<u32>, unit: &str) -> Schema {
    let (min, max) = (*range.start(), *range.end());
    json_schema!({
        "type": "integer",
        "format": "int64",
        "nullable": true,
        "x-kubernetes-validations": [rule(
            format!("self >= {min} && self <= {max}"),
            &format!("{field} must be between {min} and {max}{unit}"),
        )],
    })
}

/// `receiveInterval` / `transmitInterval`: 10..=60000 ms.
pub fn bfd_interval(_: &mut SchemaGenerator) -> Schema {
    optional_integer_in("receiveInterval and transmitInterval", 10..=60_000, " ms")
}

/// `detectMultiplier`: 2..=255 (RFC 5880 §4.1 allows 1..=255; one lost packet must not be
/// enough to tear a session down).
pub fn bfd_detect_multiplier(_: &mut SchemaGenerator) -> Schema {
    optional_integer_in("detectMultiplier", 2..=255, "")
}

/// `minimumTtl`: 1..=254 (255 is what single-hop sessions require anyway, RFC 5881 §5).
pub fn bfd_minimum_ttl(_: &mut SchemaGenerator) -> Schema {
    optional_integer_in("minimumTtl", 1..=254, "")
}

/// `dampingInitialWait` / `dampingMaximumWait`: 0..=3600000 ms (0 turns damping off).
pub fn bfd_damping_wait(_: &mut SchemaGenerator) -> Schema {
    optional_integer_in(
        "dampingInitialWait and dampingMaximumWait",
        0..=3_600_000,
        " ms",
    )
}

/// `dampingStableTime`: 1000..=3600000 ms.
pub fn bfd_damping_stable_time(_: &mut SchemaGenerator) -> Schema {
    optional_integer_in("dampingStableTime", 1_000..=3_600_000, " ms")
}

/// Rules on the whole BFDProfile spec: the damping delays in order (defaults 2000 and 60000 ms
/// where unset, as in `herald_crds::api::bfd_profile`).
pub fn bfd_profile_spec_rules() -> Value {
    json!([{
        "rule": "(has(self.dampingInitialWait) ? self.dampingInitialWait : 2000) \
                 <= (has(self.dampingMaximumWait) ? self.dampingMaximumWait : 60000)",
        "message": "dampingMaximumWait must not be shorter than dampingInitialWait (defaults 60000 and 2000 ms)",
        "fieldPath": ".dampingMaximumWait",
    }])
}

/// The name of one Kubernetes object, optional (`Option<String>`).
pub fn optional_object_name(generator: &mut SchemaGenerator) -> Schema {
    let mut schema = object_name(generator);
    schema.insert("nullable".into(), true.into());
    schema
}

// ---------------------------------------------------------------------------------------------
// List semantics.
// ---------------------------------------------------------------------------------------------

/// Marks a list of objects as a map keyed by `key`, so server-side apply merges entries by key
/// and the apiserver rejects duplicate keys.
pub fn list_map_keyed_by(schema: &mut Schema, key: &str) {
    schema.insert("x-kubernetes-list-type".into(), "map".into());
    schema.insert("x-kubernetes-list-map-keys".into(), json!([key]));
}

/// `x-kubernetes-list-type: map` keyed by `type` (status conditions).
pub fn list_map_by_type(schema: &mut Schema) {
    list_map_keyed_by(schema, "type");
}

/// `x-kubernetes-list-type: map` keyed by `name`.
pub fn list_map_by_name(schema: &mut Schema) {
    list_map_keyed_by(schema, "name");
}

/// `x-kubernetes-list-type: map` keyed by `node`.
pub fn list_map_by_node(schema: &mut Schema) {
    list_map_keyed_by(schema, "node");
}

/// `x-kubernetes-list-type: atomic`: the list is replaced whole (label selectors).
pub fn list_atomic(schema: &mut Schema) {
    schema.insert("x-kubernetes-list-type".into(), "atomic".into());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reversed_range_rule_walks_every_ipv6_prefix_length() {
        let rules: Vec<String> = range_order_rules(6)
            .iter()
            .map(|r| r["rule"].as_str().unwrap_or_default().to_owned())
            .collect();
        assert_eq!(rules.len(), 4);
        assert!(rules[0].contains("['/0 /1', '/1 /2', "));
        assert!(rules[3].contains(", '/127 /128']"));
        let ipv4 = range_order_rules(4);
        assert_eq!(ipv4.len(), 1);
        assert!(
            ipv4[0]["rule"]
                .as_str()
                .unwrap_or_default()
                .contains(", '/31 /32']")
        );
    }
}
