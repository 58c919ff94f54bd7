//! Configuration of one BGP session: ASNs, timers (RFC 4271 §10), families, graceful
//! restart (RFC 4724) and the restart back-off (RFC 4271 §8.1.1). Plain data.

use super::*;

/// Back-off of automatic restarts after a session fails (RFC 4271 §8.1.1, IdleHoldTimer and
/// DampPeerOscillations): the idle time doubles with each consecutive failure up to `max`, and
/// the count resets once a session has stayed Established for `stable_after`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
    pub stable_after: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(120),
            stable_after: Duration::from_secs(60),
        }
    }
}

impl Backoff {
    /// Idle time after the `failures`-th consecutive failure (1-based).
    pub fn delay(&self, failures: u32) -> Duration {
        let exponent = failures.saturating_sub(1).min(20);
        self.initial.saturating_mul(1u32 << exponent).min(self.max)
    }
}

/// Graceful restart as the restarting speaker (RFC 4724): the router keeps our routes for
/// `restart_time_secs` while the speaker comes back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GracefulRestartConfig {
    /// Restart Time advertised (12 bits).
    pub restart_time_secs: u16,
    /// Set the Restart State bit on the first OPEN: this process is a restart of a speaker whose
    /// routes the peer may still hold (RFC 4724 §3). Cleared once End-of-RIB has been sent.
    pub restarting: bool,
}

/// Static configuration of one session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionConfig {
    pub local_as: u32,
    pub peer_as: u32,
    pub router_id: Ipv4Addr,
    /// Hold time we propose; 0 disables keepalives and the hold timer (RFC 4271 §4.2).
    pub hold_time_secs: u16,
    /// Keepalive interval; `None` means a third of the negotiated hold time.
    pub keepalive_secs: Option<u16>,
    pub connect_retry: Duration,
    /// Never connect out; wait for the peer (RFC 4271 §8.1.1 PassiveTcpEstablishment).
    pub passive: bool,
    pub families: Vec<Family>,
    pub graceful_restart: Option<GracefulRestartConfig>,
    pub backoff: Backoff,
    /// Next hops to announce; `None` uses the connection's local address for its family.
    pub next_hop_v4: Option<Ipv4Addr>,
    pub next_hop_v6: Option<Ipv6Addr>,
}

impl SessionConfig {
    pub fn new(local_as: u32, peer_as: u32, router_id: Ipv4Addr) -> Self {
        Self {
            local_as,
            peer_as,
            router_id,
            hold_time_secs: DEFAULT_HOLD_TIME_SECS,
            keepalive_secs: None,
            connect_retry: DEFAULT_CONNECT_RETRY,
            passive: false,
            families: vec![Family::Ipv4Unicast, Family::Ipv6Unicast],
            graceful_restart: None,
            backoff: Backoff::default(),
            next_hop_v4: None,
            next_hop_v6: None,
        }
    }

    pub fn is_ebgp(&self) -> bool {
        self.local_as != self.peer_as
    }
}
