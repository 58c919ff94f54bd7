//! Wiring the membership protocol into the speaker: which address to bind, whom to seed
//! with, which key to use, and restarting the driver when any of those change.
//!
//! The pure half turns watched objects into membership settings: a node's membership
//! address ([`membership_address`]), the seed list ([`seeds`]) and the shared key from the
//! memberlist Secret ([`key_from_secret`]). The I/O half, [`MembershipSupervisor`], owns the
//! running [`MembershipDriver`] and is the only place here that binds sockets.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Secret};
use tokio::sync::watch;

use crate::membership::{
    ClusterKeys, DriverConfig, MembershipConfig, MembershipCounters, MembershipDriver,
    MembershipError,
};

/// The key in the memberlist Secret holding the shared key.
pub const SECRET_KEY_FIELD: &str = "secretkey";

/// A fixed, public key used with `--insecure-memberlist`: frames are still framed and
/// tagged, but anyone can forge them, so this authenticates nothing.
pub const INSECURE_SHARED_KEY: &[u8] = b"herald-insecure-memberlist-no-auth";

/// How often binding is retried when the previous driver's socket is still closing.
const BIND_ATTEMPTS: u32 = 10;
const BIND_RETRY_DELAY: Duration = Duration::from_millis(100);

/// Why the memberlist Secret gives no usable key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("the memberlist Secret has no {SECRET_KEY_FIELD:?} key")]
    Missing,
    #[error("the memberlist Secret's {SECRET_KEY_FIELD:?} is empty")]
    Empty,
}

/// Where the shared key comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// The named Secret in the install namespace, key [`SECRET_KEY_FIELD`].
    Secret(String),
    /// No authentication (explicitly asked for).
    Insecure,
}

/// The address a node's speaker binds for membership: its first IPv4 InternalIP, else its
/// first InternalIP. Every speaker applies the same rule to every Node, so the seeds and
/// the bound addresses agree.
pub fn membership_address(node: &Node) -> Option<IpAddr> {
    let internal: Vec<IpAddr> = node
        .status
        .as_ref()
        .and_then(|s| s.addresses.as_ref())
        .into_iter()
        .flatten()
        .filter(|a| a.type_ == "InternalIP")
        .filter_map(|a| a.address.parse::<IpAddr>().ok())
        .collect();
    internal
        .iter()
        .copied()
        .find(IpAddr::is_ipv4)
        .or_else(|| internal.first().copied())
}

/// Every other Node's membership address at `port`, sorted and without duplicates.
pub fn seeds<'a>(
    nodes: impl IntoIterator<Item = &'a Node>,
    this_node: &str,
    port: u16,
) -> Vec<SocketAddr> {
    let set: BTreeSet<SocketAddr> = nodes
        .into_iter()
        .filter(|n| n.metadata.name.as_deref() != Some(this_node))
        .filter_map(membership_address)
        .map(|ip| SocketAddr::new(ip, port))
        .collect();
    set.into_iter().collect()
}

/// The shared key from the memberlist Secret (the apiserver has already base64-decoded
/// `data`; `stringData` is folded into `data` on write).
pub fn key_from_secret(secret: &Secret) -> Result<Vec<u8>, KeyError> {
    let value = secret
        .data
        .as_ref()
        .and_then(|d| d.get(SECRET_KEY_FIELD))
        .ok_or(KeyError::Missing)?;
    if value.0.is_empty() {
        return Err(KeyError::Empty);
    }
    Ok(value.0.clone())
}

/// What membership should run with right now; `None` fields mean "not known yet".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MembershipSettings {
    pub bind: Option<SocketAddr>,
    pub key: Option<Vec<u8>>,
    pub seeds: Vec<SocketAddr>,
}

/// What [`MembershipSupervisor::sync`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncOutcome {
    /// Bind address or key still unknown: membership is not running.
    Waiting,
    /// Already running with these settings (seeds possibly updated).
    Running,
    /// (Re)started: the first start, or the bind address or key changed.
    Started,
}

/// Owns the running membership driver and restarts it when its bind address or key
/// changes. The driver's task ends when the supervisor drops it.
#[derive(Debug)]
pub struct MembershipSupervisor {
    node_name: String,
    protocol: MembershipConfig,
    driver: Option<MembershipDriver>,
    running_bind: Option<SocketAddr>,
    running_key: Option<Vec<u8>>,
    running_seeds: Vec<SocketAddr>,
    /// Frames signed with the key used before the last rotation stay accepted.
    previous_key: Option<Vec<u8>>,
}

impl MembershipSupervisor {
    pub fn new(node_name: impl Into<String>, protocol: MembershipConfig) -> Self {
        Self {
            node_name: node_name.into(),
            protocol,
            driver: None,
            running_bind: None,
            running_key: None,
            running_seeds: Vec::new(),
            previous_key: None,
        }
    }

    pub fn is_running(&self) -> bool {
        self.driver.is_some()
    }

    /// The live set of the running driver (this node included); `None` when not running.
    pub fn live_members(&self) -> Option<watch::Receiver<BTreeSet<String>>> {
        self.driver.as_ref().map(MembershipDriver::live_members)
    }

    /// Counters of the running driver; `None` when not running.
    pub fn counters(&self) -> Option<watch::Receiver<MembershipCounters>> {
        self.driver.as_ref().map(MembershipDriver::counters)
    }

    /// Brings the driver in line with `settings`.
    pub async fn sync(
        &mut self,
        settings: &MembershipSettings,
    ) -> Result<SyncOutcome, MembershipError> {
        let (Some(bind), Some(key)) = (settings.bind, settings.key.as_ref()) else {
            return Ok(if self.driver.is_some() {
                SyncOutcome::Running
            } else {
                SyncOutcome::Waiting
            });
        };
        let same = self.driver.is_some()
            && self.running_bind == Some(bind)
            && self.running_key.as_ref() == Some(key);
        if same {
            if self.running_seeds != settings.seeds
                && let Some(driver) = &self.driver
            {
                driver.set_seeds(settings.seeds.clone()).await;
                self.running_seeds = settings.seeds.clone();
            }
            return Ok(SyncOutcome::Running);
        }
        if let Some(old) = self.running_key.take()
            && &old != key
        {
            self.previous_key = Some(old);
        }
        let mut keys = ClusterKeys::new(key)?;
        if let Some(previous) = &self.previous_key {
            keys = keys.also_accepting(previous)?;
        }
        // A restart for a new key or address: no goodbye, the new generation rejoins at
        // once under the same node name, so peers never see this node leave.
        self.driver = None;
        let config = DriverConfig {
            node_name: self.node_name.clone(),
            bind,
            seeds: settings.seeds.clone(),
            keys,
            protocol: self.protocol.clone(),
        };
        let driver = start_with_retries(config).await?;
        self.driver = Some(driver);
        self.running_bind = Some(bind);
        self.running_key = Some(key.clone());
        self.running_seeds = settings.seeds.clone();
        Ok(SyncOutcome::Started)
    }

    /// Says goodbye to the cluster and stops.
    pub async fn leave(&mut self) {
        if let Some(driver) = self.driver.take() {
            driver.leave().await;
        }
    }
}

/// Starts the driver, retrying a bind that fails because the previous driver's socket is
/// still being closed (its task is aborted asynchronously).
async fn start_with_retries(config: DriverConfig) -> Result<MembershipDriver, MembershipError> {
    let mut attempt = 1;
    loop {
        match MembershipDriver::start(config.clone()).await {
            Err(MembershipError::Io(error))
                if error.kind() == std::io::ErrorKind::AddrInUse && attempt < BIND_ATTEMPTS =>
            {
                attempt += 1;
                tokio::time::sleep(BIND_RETRY_DELAY).await;
            }
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use k8s_openapi::ByteString;
    use k8s_openapi::api::core::v1::{NodeAddress, NodeStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    use super::*;

    fn node(name: &str, addresses: &[(&str, &str)]) -> Node {
        Node {
            metadata: ObjectMeta {
                name: Some(name.to_string()),
                ..Default::default()
            },
            status: Some(NodeStatus {
                addresses: Some(
                    addresses
                        .iter()
                        .map(|(kind, address)| NodeAddress {
                            type_: kind.to_string(),
                            address: address.to_string(),
                        })
                        .collect(),
                ),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn secret(data: &[(&str, &[u8])]) -> Secret {
        Secret {
            data: Some(
                data.iter()
                    .map(|(k, v)| (k.to_string(), ByteString(v.to_vec())))
                    .collect::<BTreeMap<_, _>>(),
            ),
            ..Default::default()
        }
    }

    #[test]
    fn the_membership_address_is_the_first_ipv4_internal_ip() {
        let dual = node(
            "n1",
            &[
                ("Hostname", "n1"),
                ("ExternalIP", "203.0.113.1"),
                ("InternalIP", "2001:db8:1::11"),
                ("InternalIP", "192.0.2.11"),
            ],
        );
        assert_eq!(
            membership_address(&dual),
            Some("192.0.2.11".parse().expect("ip"))
        );
        let v6_only = node("n2", &[("InternalIP", "2001:db8:1::12")]);
        assert_eq!(
            membership_address(&v6_only),
            Some("2001:db8:1::12".parse().expect("ip"))
        );
        let external_only = node("n3", &[("ExternalIP", "203.0.113.3")]);
        assert_eq!(membership_address(&external_only), None);
        let garbage = node("n4", &[("InternalIP", "not-an-ip")]);
        assert_eq!(membership_address(&garbage), None);
    }

    #[test]
    fn seeds_are_the_other_nodes_at_the_membership_port_sorted_and_unique() {
        let nodes = [
            node("n3", &[("InternalIP", "192.0.2.13")]),
            node("n1", &[("InternalIP", "192.0.2.11")]),
            node("n2", &[("InternalIP", "192.0.2.12")]),
            node("n2-twin", &[("InternalIP", "192.0.2.12")]),
            node("no-address", &[]),
        ];
        assert_eq!(
            seeds(&nodes, "n1", 7946),
            vec![
                "192.0.2.12:7946".parse::<SocketAddr>().expect("addr"),
                "192.0.2.13:7946".parse().expect("addr"),
            ]
        );
    }

    #[test]
    fn the_key_comes_from_the_secretkey_field_and_must_not_be_empty() {
        let key = b"0123456789abcdef0123456789abcdef";
        assert_eq!(
            key_from_secret(&secret(&[(SECRET_KEY_FIELD, key)])),
            Ok(key.to_vec())
        );
        assert_eq!(
            key_from_secret(&secret(&[("other", key)])),
            Err(KeyError::Missing)
        );
        assert_eq!(
            key_from_secret(&secret(&[(SECRET_KEY_FIELD, b"")])),
            Err(KeyError::Empty)
        );
        assert_eq!(key_from_secret(&Secret::default()), Err(KeyError::Missing));
    }

    #[test]
    fn the_insecure_key_is_long_enough_for_the_protocol() {
        assert!(ClusterKeys::new(INSECURE_SHARED_KEY).is_ok());
    }

    #[tokio::test]
    async fn the_supervisor_waits_for_an_address_and_a_key_then_starts_once() {
        let mut supervisor = MembershipSupervisor::new("n1", MembershipConfig::default());
        let mut settings = MembershipSettings {
            bind: None,
            key: Some(INSECURE_SHARED_KEY.to_vec()),
            seeds: Vec::new(),
        };
        assert_eq!(
            supervisor.sync(&settings).await.ok(),
            Some(SyncOutcome::Waiting)
        );
        assert!(supervisor.live_members().is_none());
        settings.bind = Some("127.0.0.1:0".parse().expect("addr"));
        assert_eq!(
            supervisor.sync(&settings).await.ok(),
            Some(SyncOutcome::Started)
        );
        assert_eq!(
            supervisor.sync(&settings).await.ok(),
            Some(SyncOutcome::Running)
        );
        let live = supervisor.live_members().expect("running");
        assert!(live.borrow().contains("n1"));
        settings.key = Some(b"another-key-of-enough-length".to_vec());
        assert_eq!(
            supervisor.sync(&settings).await.ok(),
            Some(SyncOutcome::Started)
        );
        supervisor.leave().await;
        assert!(!supervisor.is_running());
    }
}
