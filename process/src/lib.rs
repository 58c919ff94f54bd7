//! herald-process: what both binaries set up the same way before their own work starts.
//!
//! - [`client`]: the Kubernetes client, from a kubeconfig file or the in-cluster config.
//! - [`logging`]: `tracing` to stdout, text or JSON, filtered by `RUST_LOG` (default `info`).
//! - [`signals`]: the first SIGTERM or SIGINT.
//! - [`http`]: the `/metrics`, `/healthz`, `/readyz` endpoint server; what each path answers
//!   is the binary's pure routing function, returning a [`http::Reply`].
//!
//! All of this is I/O at the edge of a process; nothing here decides anything for Herald.

pub mod client;
pub mod http;
pub mod logging;
pub mod signals;

pub use logging::LogFormat;
