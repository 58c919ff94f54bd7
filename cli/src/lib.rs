//! herald-cli: the `herald` command (also usable as the kubectl plugin `kubectl herald`).
//!
//! - [`translate`]: `herald migrate`, MetalLB manifests ([`metallb`]) to Herald manifests
//!   plus a report of what could not be translated;
//! - [`status`]: `herald status`, who announces what;
//! - [`check`]: `herald check`, problems an operator should know about.
//!
//! Every module here is pure (plain data in, plain data out); the binary (`main.rs`) reads
//! files, stdin and the cluster, and prints.

pub mod check;
pub mod metallb;
pub mod source;
pub mod status;
pub mod translate;
