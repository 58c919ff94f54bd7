//! Well-known names: API group, annotations, labels, finalizers and the load-balancer class.
//!
//! Pure constants shared by the controller, the speaker, the chart and the tests.

/// API group of every Herald custom resource.
pub const GROUP: &str = "herald.dev";
/// API version of the custom resources.
pub const VERSION: &str = "v1alpha1";

/// `spec.loadBalancerClass` that Herald serves. Class-less Services are served too unless
/// the controller is started with `--ignore-classless`.
pub const LOAD_BALANCER_CLASS: &str = "herald.dev/lb";

/// Service annotation pinning the pool to allocate from.
pub const ANNOTATION_ADDRESS_POOL: &str = "herald.dev/address-pool";
/// Service annotation requesting specific addresses (comma separated, at most one per family).
pub const ANNOTATION_LOAD_BALANCER_IPS: &str = "herald.dev/loadBalancerIPs";
/// Service annotation: Services with the same key may share an address when ports don't clash.
pub const ANNOTATION_ALLOW_SHARED_IP: &str = "herald.dev/allow-shared-ip";
/// Service annotation written by the controller: the pool the address came from.
pub const ANNOTATION_ALLOCATED_FROM_POOL: &str = "herald.dev/ip-allocated-from-pool";

/// Service annotation written by the controller: the `spec.externalIPs` entries it accepted
/// and booked for the Service (comma separated). Speakers announce only these, so an entry
/// the controller refused (outside an `allowExternalIPs` pool, or held by another Service)
/// is never announced.
pub const ANNOTATION_EXTERNAL_IPS_BOOKED: &str = "herald.dev/external-ips-booked";

/// Finalizer that keeps an IPAddressPool while Services still hold its addresses.
pub const FINALIZER_POOL_IN_USE: &str = "herald.dev/pool-in-use";

/// Node label that excludes a node from announcing external load-balancer addresses.
pub const LABEL_EXCLUDE_FROM_EXTERNAL_LB: &str =
    "node.kubernetes.io/exclude-from-external-load-balancers";

/// Field manager used for server-side apply by the controller.
pub const FIELD_MANAGER_CONTROLLER: &str = "herald-controller";
/// Field manager used for server-side apply by the speaker.
pub const FIELD_MANAGER_SPEAKER: &str = "herald-speaker";
