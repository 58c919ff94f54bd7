//! The layer-2 I/O edge: kernel interfaces in, frames on the wire out.
//!
//! Owns everything in layer-2 mode that touches the kernel:
//! - [`discover_interfaces`] (re-exported from [`crate::net::interfaces`], which owns it):
//!   links and addresses over rtnetlink, converted to plain
//!   [`InterfaceInfo`](super::interfaces::InterfaceInfo).
//! - [`InterfaceAnnouncer`]: one thread per interface driving an [`Announcer`] with a pnet
//!   datalink channel (promiscuous off, a short read timeout so the thread notices when to
//!   stop) and a UDP socket whose IPv6 multicast memberships make the NIC accept the
//!   solicited-node groups of the owned addresses. Frames we sent ourselves come back on the
//!   packet socket; the announcer drops them by source MAC.
//!
//! The thread lives exactly as long as its [`InterfaceAnnouncer`] (dropping it stops and joins
//! the thread). Sockets are opened on the calling thread, so they belong to the caller's
//! network namespace. Needs CAP_NET_RAW.

use std::collections::BTreeSet;
use std::io;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender, TryRecvError};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use pnet::datalink::{self, Channel, DataLinkReceiver, DataLinkSender};
use socket2::{Domain, Protocol, Socket, Type};
use thiserror::Error;

use super::announcer::{
    Action, AddressPhase, Announcer, AnnouncerConfig, AnnouncerEvent, Counters, TransmitKind,
};
use super::frames::MacAddr;
pub use crate::net::interfaces::discover_interfaces;
use crate::task::ThreadHandle;

/// How long the receive thread blocks before it looks at commands, timers and the stop flag.
/// Bounds the latency of `set_addresses` and of timer-driven announcements.
const RECEIVE_POLL: Duration = Duration::from_millis(10);

#[derive(Debug, Error)]
pub enum L2IoError {
    #[error("interface {0} not found")]
    NoSuchInterface(String),
    #[error("interface {0} has no Ethernet address")]
    NoEthernetAddress(String),
    #[error("opening a packet channel on {interface}: {source}")]
    Channel {
        interface: String,
        #[source]
        source: io::Error,
    },
    #[error("the packet channel on {0} is not an Ethernet channel")]
    NotEthernet(String),
    #[error("opening the multicast membership socket: {0}")]
    MulticastSocket(#[source] io::Error),
    #[error("starting the announcer thread for {interface}: {source}")]
    Spawn {
        interface: String,
        #[source]
        source: io::Error,
    },
}

/// An [`AnnouncerEvent`] with the interface it happened on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterfaceEvent {
    pub interface: String,
    pub event: AnnouncerEvent,
}

/// What an [`InterfaceAnnouncer`] runs on.
#[derive(Debug, Clone)]
pub struct InterfaceAnnouncerConfig {
    pub interface: String,
    /// The MAC to announce; `None` uses the interface's own. (Another MAC is only useful in
    /// tests that play a second owner.)
    pub mac: Option<MacAddr>,
    pub announcer: AnnouncerConfig,
}

#[derive(Debug, Default)]
struct Snapshot {
    counters: Counters,
    phases: Vec<(IpAddr, AddressPhase)>,
    transmit_errors: u64,
}

/// A running announcer on one interface. Dropping it stops the thread (within
/// [`RECEIVE_POLL`]) and closes its sockets, which leaves the multicast groups.
pub struct InterfaceAnnouncer {
    interface: String,
    mac: MacAddr,
    commands: Option<Sender<AddressCommand>>,
    snapshot: Arc<Mutex<Snapshot>>,
    thread: ThreadHandle,
}

/// The addresses an interface should answer for, which of them are takeovers, and which
/// are contested (given up rather than defended on a conflict).
#[derive(Debug)]
struct AddressCommand {
    wanted: BTreeSet<IpAddr>,
    takeovers: BTreeSet<IpAddr>,
    contested: BTreeSet<IpAddr>,
}

impl InterfaceAnnouncer {
    /// Opens the packet channel and multicast socket on the calling thread (so in its network
    /// namespace) and starts the announcer thread. Events go to `events`; a closed receiver
    /// only drops them.
    pub fn start(
        config: InterfaceAnnouncerConfig,
        events: Sender<InterfaceEvent>,
    ) -> Result<Self, L2IoError> {
        let name = config.interface.clone();
        let interface = datalink::interfaces()
            .into_iter()
            .find(|candidate| candidate.name == name)
            .ok_or_else(|| L2IoError::NoSuchInterface(name.clone()))?;
        let mac = match (config.mac, interface.mac) {
            (Some(mac), _) => mac,
            (None, Some(own)) if own.octets() != [0; 6] => MacAddr(own.octets()),
            (None, _) => return Err(L2IoError::NoEthernetAddress(name)),
        };
        let channel_config = datalink::Config {
            read_timeout: Some(RECEIVE_POLL),
            promiscuous: false,
            ..datalink::Config::default()
        };
        let (tx, rx) = match datalink::channel(&interface, channel_config) {
            Ok(Channel::Ethernet(tx, rx)) => (tx, rx),
            Ok(_) => return Err(L2IoError::NotEthernet(name)),
            Err(source) => {
                return Err(L2IoError::Channel {
                    interface: name,
                    source,
                });
            }
        };
        let multicast = Socket::new(Domain::IPV6, Type::DGRAM, Some(Protocol::UDP))
            .map_err(L2IoError::MulticastSocket)?;

        let (commands, command_rx) = mpsc::channel();
        let snapshot = Arc::new(Mutex::new(Snapshot::default()));
        let mut worker = Worker {
            interface: name.clone(),
            index: interface.index,
            announcer: Announcer::new(config.announcer, mac),
            tx,
            rx,
            multicast,
            commands: command_rx,
            events,
            snapshot: Arc::clone(&snapshot),
            stop: Arc::default(),
            transmit_errors: 0,
        };
        let thread = ThreadHandle::spawn(format!("herald-l2-{name}"), move |stop| {
            worker.stop = stop;
            worker.run();
        })
        .map_err(|source| L2IoError::Spawn {
            interface: name.clone(),
            source,
        })?;
        Ok(InterfaceAnnouncer {
            interface: name,
            mac,
            commands: Some(commands),
            snapshot,
            thread,
        })
    }

    pub fn interface(&self) -> &str {
        &self.interface
    }

    pub fn mac(&self) -> MacAddr {
        self.mac
    }

    /// Makes `addresses` the set this interface answers for (takes effect within
    /// [`RECEIVE_POLL`]).
    pub fn set_addresses(&self, addresses: BTreeSet<IpAddr>) {
        self.take_over(addresses, BTreeSet::new());
    }

    /// Like [`InterfaceAnnouncer::set_addresses`], but new addresses in `takeovers` are
    /// announced at once without probing (see [`Announcer::set_addresses_taking_over`]).
    pub fn take_over(&self, wanted: BTreeSet<IpAddr>, takeovers: BTreeSet<IpAddr>) {
        self.assign(wanted, takeovers, BTreeSet::new());
    }

    /// Like [`InterfaceAnnouncer::take_over`], and makes `contested` the addresses given up
    /// rather than defended when another MAC claims them (see [`Announcer::set_contested`]).
    pub fn assign(
        &self,
        wanted: BTreeSet<IpAddr>,
        takeovers: BTreeSet<IpAddr>,
        contested: BTreeSet<IpAddr>,
    ) {
        if let Some(commands) = &self.commands {
            // A send only fails when the thread has ended; then there is nothing to update.
            let _ = commands.send(AddressCommand {
                wanted,
                takeovers,
                contested,
            });
        }
    }

    pub fn counters(&self) -> Counters {
        self.snapshot
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .counters
    }

    pub fn phases(&self) -> Vec<(IpAddr, AddressPhase)> {
        self.snapshot
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .phases
            .clone()
    }

    /// Frames the kernel refused to send.
    pub fn transmit_errors(&self) -> u64 {
        self.snapshot
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .transmit_errors
    }

    pub fn is_running(&self) -> bool {
        !self.thread.is_finished()
    }
}

struct Worker {
    interface: String,
    index: u32,
    announcer: Announcer,
    tx: Box<dyn DataLinkSender>,
    rx: Box<dyn DataLinkReceiver>,
    multicast: Socket,
    commands: Receiver<AddressCommand>,
    events: Sender<InterfaceEvent>,
    snapshot: Arc<Mutex<Snapshot>>,
    stop: Arc<AtomicBool>,
    transmit_errors: u64,
}

impl Worker {
    fn run(mut self) {
        tracing::debug!(interface = %self.interface, mac = %self.announcer.mac(), "layer-2 announcer started");
        while !self.stop.load(Ordering::Relaxed) {
            loop {
                match self.commands.try_recv() {
                    Ok(command) => {
                        self.announcer.set_contested(command.contested);
                        let actions = self.announcer.set_addresses_taking_over(
                            Instant::now(),
                            &command.wanted,
                            &command.takeovers,
                        );
                        self.perform(actions);
                    }
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => return,
                }
            }
            let now = Instant::now();
            if self.announcer.poll_timeout().is_some_and(|due| due <= now) {
                let actions = self.announcer.handle_timeout(now);
                self.perform(actions);
            }
            match self.rx.next() {
                Ok(frame) => {
                    let actions = self.announcer.handle_frame(Instant::now(), frame);
                    self.perform(actions);
                }
                Err(error)
                    if matches!(
                        error.kind(),
                        io::ErrorKind::TimedOut
                            | io::ErrorKind::WouldBlock
                            | io::ErrorKind::Interrupted
                    ) => {}
                Err(error) => {
                    tracing::warn!(interface = %self.interface, %error, "receiving frames failed");
                    std::thread::sleep(RECEIVE_POLL);
                }
            }
            self.publish();
        }
        tracing::debug!(interface = %self.interface, "layer-2 announcer stopped");
    }

    fn perform(&mut self, actions: Vec<Action>) {
        for action in actions {
            match action {
                Action::Transmit { frame, kind } => self.transmit(&frame, kind),
                Action::JoinGroup(group) => self.membership(group, true),
                Action::LeaveGroup(group) => self.membership(group, false),
                Action::Event(event) => {
                    log_event(&self.interface, &event);
                    // Nobody listening is fine: the counters still tell the story.
                    let _ = self.events.send(InterfaceEvent {
                        interface: self.interface.clone(),
                        event,
                    });
                }
            }
        }
    }

    fn transmit(&mut self, frame: &[u8], kind: TransmitKind) {
        match self.tx.send_to(frame, None) {
            Some(Ok(())) => {}
            Some(Err(error)) => {
                self.transmit_errors += 1;
                tracing::warn!(interface = %self.interface, ?kind, %error, "sending a frame failed");
            }
            None => {
                self.transmit_errors += 1;
                tracing::warn!(interface = %self.interface, ?kind, "sending a frame failed: no buffer");
            }
        }
    }

    fn membership(&self, group: Ipv6Addr, join: bool) {
        let result = if join {
            self.multicast.join_multicast_v6(&group, self.index)
        } else {
            self.multicast.leave_multicast_v6(&group, self.index)
        };
        if let Err(error) = result {
            tracing::warn!(interface = %self.interface, %group, join, %error, "changing multicast membership failed");
        }
    }

    fn publish(&self) {
        let mut snapshot = self.snapshot.lock().unwrap_or_else(PoisonError::into_inner);
        snapshot.counters = self.announcer.counters();
        snapshot.phases.clear();
        snapshot.phases.extend(self.announcer.phases());
        snapshot.transmit_errors = self.transmit_errors;
    }
}

fn log_event(interface: &str, event: &AnnouncerEvent) {
    match event {
        AnnouncerEvent::Announcing { address } => {
            tracing::info!(interface, %address, "announcing address");
        }
        AnnouncerEvent::Released { address } => {
            tracing::info!(interface, %address, "stopped announcing address");
        }
        AnnouncerEvent::ConflictWhileProbing {
            address,
            other_mac,
            evidence,
        } => {
            tracing::warn!(interface, %address, %other_mac, ?evidence, "address already in use by another MAC; not taking it");
        }
        AnnouncerEvent::ConflictWhileOwning {
            address,
            other_mac,
            evidence,
        } => {
            tracing::warn!(interface, %address, %other_mac, ?evidence, "another MAC claims an address we announce");
        }
        AnnouncerEvent::GaveWay {
            address,
            other_mac,
            evidence,
        } => {
            tracing::warn!(interface, %address, %other_mac, ?evidence, "another MAC claims an address recorded as another node's; gave it up without defending it, probing again later");
        }
    }
}
