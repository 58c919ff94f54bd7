//! herald-lab: the test harness for Herald.
//!
//! It gives tests the real things Herald meets in production, on one machine:
//! a real Kubernetes control plane ([`kube::ControlPlane`], with [`kube::Kubectl`] and
//! helpers that play the kubelet), and a network of Linux network namespaces
//! ([`topology::Lab`]) with an FRR router, nodes, pods running an echo server
//! ([`echo`]), and a client. Everything is torn down on drop; `herald-lab down`
//! removes whatever a crashed run left behind ([`cleanup`]).
//!
//! Modules:
//! - [`plan`]: address plan and names (pure)
//! - [`netns`]: namespaces and processes in them
//! - [`topology`]: the lab builder and its faults
//! - [`frr`]: FRR router instances and config generation; [`gobgp`]: a stand-in BGP peer
//! - [`kube`]: control plane, kubectl, Kubernetes objects
//! - [`herald`]: Herald's binaries, CRDs, objects, metrics and annotations as the lab reads them
//! - [`chaos`]: faults on the control plane and a continuous client (chaos tests)
//! - [`metallb`]: the real MetalLB (built by `tests/reference/metallb.sh`) as a same-run reference
//! - [`bench`]: percentiles and a timestamping Service watch for the benchmarks
//! - [`echo`]: the pods' echo server and its clients
//! - [`image`]: OCI images (Herald, pause, echo) built without Docker, for real nodes
//! - [`helm`]: `helm install` of Herald's chart with the lab's image
//! - [`realnode`]: real nodes — containerd, kubelet, kube-proxy in a node namespace
//! - [`realcluster`]: a real cluster: lab + real nodes + images + helm-installed Herald
//! - [`inspect`]: typed `ip -j` output
//! - [`cleanup`]: find and remove lab leftovers
//! - [`cmd`], [`wait`], [`lock`], [`paths`]: bounded commands, bounded waits, flocks, paths

pub mod bench;
pub mod chaos;
pub mod cleanup;
pub mod cmd;
pub mod echo;
pub mod error;
pub mod frr;
pub mod gobgp;
pub mod helm;
pub mod herald;
pub mod image;
pub mod inspect;
pub mod kube;
pub mod lock;
pub mod metallb;
pub mod netns;
pub mod paths;
pub mod plan;
pub mod realcluster;
pub mod realnode;
pub mod topology;
pub mod wait;

pub use error::{LabError, Result};
pub use kube::{ControlPlane, Kubectl};
pub use netns::{Family, LabProcess, Netns};
pub use topology::{Lab, LabBuilder};
