//! The layer-2 executor's state between passes, and the performing of a pass.
//!
//! Owns the running [`InterfaceAnnouncer`]s (one per interface with addresses, with what each
//! was told), the last plan, the records, and one [`AddressState`] per address.
//! [`Engine::pass`] gathers the facts, runs the pure [`decide`] (one state-machine step per
//! address) and performs the result: tells announcers what to answer for, starts and stops
//! them, queues record writes and Events, logs and counts. Time comes in as `now`; the engine
//! reads no clock. It never waits on the API server: requests go to a queue
//! ([`KubeEdge::send`]). The async shell around it is in [`super`].

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::mpsc as std_mpsc;
use std::time::{Duration, Instant};

use super::address::{AddressState, Publish};
use super::conflicts::{
    CONDITION_L2_CONFLICT, ConflictNotice, ConflictReport, ConflictStance, ConflictTracker,
    QUIET_BEFORE_CLEAR,
};
use super::decide::{AddressDecision, PassInput, Start, Verdict, decide, known_speakers};
use super::kube_edge::{ApiRequest, KubeEdge};
use super::metrics::{L2Metrics, PhaseLabel};
use super::record::Records;
use crate::l2::announcer::{AddressPhase, AnnouncerConfig, AnnouncerEvent, Counters};
use crate::l2::interfaces::InterfaceInfo;
use crate::l2::io::{InterfaceAnnouncer, InterfaceAnnouncerConfig, InterfaceEvent};
use crate::model::ServiceKey;
use crate::planner::L2Announcement;

/// How the layer-2 executor behaves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct L2ExecutorConfig {
    /// This node's name.
    pub node: String,
    /// Probe, burst and refresh timing of the announcers.
    pub announcer: AnnouncerConfig,
    /// After start, announce only what the records say is already ours for this long (and
    /// until the records have been read), so that a speaker that does not yet see its peers
    /// does not grab every address.
    pub startup_hold: Duration,
    /// A record write that has not shown up in the watched Service after this long is sent
    /// again.
    pub record_retry: Duration,
}

impl L2ExecutorConfig {
    /// Defaults: the announcer's default timing, a 2 s start-up hold (membership joins in
    /// well under a second once it runs), records re-sent after 5 s.
    pub fn new(node: impl Into<String>) -> Self {
        L2ExecutorConfig {
            node: node.into(),
            announcer: AnnouncerConfig::default(),
            startup_hold: Duration::from_secs(2),
            record_retry: Duration::from_secs(5),
        }
    }
}

/// What a pass did, for the executor's report.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PassSummary {
    pub changed: bool,
    pub lines: Vec<String>,
}

/// A running announcer and what it was last told.
struct Running {
    announcer: InterfaceAnnouncer,
    wanted: BTreeSet<IpAddr>,
    contested: BTreeSet<IpAddr>,
    /// Its counters when last added to the metrics.
    counters_seen: Counters,
}

/// Everything the layer-2 executor keeps between passes.
pub struct Engine {
    config: L2ExecutorConfig,
    hold_until: Instant,
    plan: Option<BTreeMap<IpAddr, L2Announcement>>,
    /// `None` until the first list of Services is complete (always `Some` without a client).
    records: Option<Records>,
    interfaces: Vec<InterfaceInfo>,
    /// One per interface with addresses.
    announcers: BTreeMap<String, Running>,
    /// The state machine of every address this node plans for or has to clean up after.
    addresses: BTreeMap<IpAddr, AddressState>,
    /// Every node membership showed live (as a candidate) since this speaker started.
    speakers_seen_live: BTreeSet<String>,
    conflicts: ConflictTracker,
    events: std_mpsc::Sender<InterfaceEvent>,
    kube: Option<KubeEdge>,
    metrics: L2Metrics,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("node", &self.config.node)
            .field("assigned", &self.assigned())
            .finish_non_exhaustive()
    }
}

impl Engine {
    pub fn new(
        config: L2ExecutorConfig,
        now: Instant,
        events: std_mpsc::Sender<InterfaceEvent>,
        kube: Option<KubeEdge>,
        metrics: L2Metrics,
    ) -> Self {
        Engine {
            hold_until: now + config.startup_hold,
            records: if kube.is_some() {
                None
            } else {
                Some(Records::default())
            },
            config,
            plan: None,
            interfaces: Vec::new(),
            announcers: BTreeMap::new(),
            addresses: BTreeMap::new(),
            speakers_seen_live: BTreeSet::new(),
            conflicts: ConflictTracker::default(),
            events,
            kube,
            metrics,
        }
    }

    pub fn set_plan(&mut self, l2: &BTreeMap<IpAddr, L2Announcement>) {
        self.plan = Some(l2.clone());
    }

    pub fn set_interfaces(&mut self, interfaces: Vec<InterfaceInfo>) {
        self.interfaces = interfaces;
    }

    /// Takes a new view of the records. The next pass compares it with the last one (a
    /// record another node just wrote over this node's is noticed there).
    pub fn set_records(&mut self, records: Records) {
        self.records = Some(records);
    }

    /// When the start-up hold ends (it may last longer, until the records are read).
    pub fn hold_until(&self) -> Instant {
        self.hold_until
    }

    pub fn holding(&self, now: Instant) -> bool {
        now < self.hold_until || self.records.is_none()
    }

    /// Addresses this node currently announces (or probes for).
    pub fn owned(&self) -> BTreeSet<IpAddr> {
        self.announcers
            .values()
            .flat_map(|running| running.wanted.iter().copied())
            .collect()
    }

    /// What each announcer was last told to answer for.
    fn assigned(&self) -> BTreeMap<String, BTreeSet<IpAddr>> {
        self.announcers
            .iter()
            .map(|(name, running)| (name.clone(), running.wanted.clone()))
            .collect()
    }

    /// Stops announcers whose thread has ended, so that the next pass starts them again.
    pub fn repair(&mut self) -> Vec<String> {
        let dead: Vec<String> = self
            .announcers
            .iter()
            .filter(|(_, running)| !running.announcer.is_running())
            .map(|(name, _)| name.clone())
            .collect();
        for name in &dead {
            self.stop_announcer(name);
        }
        // Re-send every record that is not in place yet.
        for state in self.addresses.values_mut() {
            state.requests.clear();
        }
        dead.into_iter()
            .map(|name| format!("layer-2 announcer on {name} had stopped; restarting it"))
            .collect()
    }

    /// Stops announcing everything (shutdown). Records stay: the next owner overwrites them.
    pub fn stop(&mut self) {
        let names: Vec<String> = self.announcers.keys().cloned().collect();
        for name in names {
            self.stop_announcer(&name);
        }
        self.plan = None;
        self.metrics.owned_addresses.set(0);
    }

    fn stop_announcer(&mut self, name: &str) {
        self.sample_counters();
        if self.announcers.remove(name).is_some() {
            tracing::info!(interface = name, "layer-2 announcer stopped");
        }
    }

    /// Adds the announcers' counter growth to the metrics.
    pub fn sample_counters(&mut self) {
        for (name, running) in &mut self.announcers {
            let now = running.announcer.counters();
            self.metrics
                .add_counter_growth(name, &running.counters_seen, &now);
            running.counters_seen = now;
        }
    }

    /// One pass: decide, then make the announcers and the records match.
    pub fn pass(&mut self, now: Instant) -> PassSummary {
        let mut summary = PassSummary::default();
        // Taken out for the pass (the pass borrows it while changing the rest), put back
        // at the end.
        let Some(plan) = self.plan.take() else {
            return summary;
        };
        self.pass_with(now, &plan, &mut summary);
        self.plan = Some(plan);
        summary
    }

    fn pass_with(
        &mut self,
        now: Instant,
        plan: &BTreeMap<IpAddr, L2Announcement>,
        summary: &mut PassSummary,
    ) {
        let empty = Records::default();
        let records = self.records.as_ref().unwrap_or(&empty);
        self.speakers_seen_live.extend(
            plan.values()
                .flat_map(|announcement| announcement.candidates.iter().cloned()),
        );
        let known_speakers = known_speakers(&self.speakers_seen_live, records, plan);
        let pass = decide(
            &PassInput {
                node: &self.config.node,
                l2: plan,
                records,
                interfaces: &self.interfaces,
                assigned: &self.assigned(),
                announced: &self.announced_addresses(),
                holding: self.holding(now),
                known_speakers: &known_speakers,
                record_retry: self.config.record_retry,
            },
            &self.addresses,
            now,
        );

        for (address, by) in &pass.taken_away {
            tracing::info!(%address, to = %by, "another node recorded itself as the announcer of an address this node announces: it took the address over and is alive; this node will not write its own record over that one while it cannot see that node");
        }
        for address in &pass.changed {
            let Some(decision) = pass.decisions.get(address) else {
                continue;
            };
            let was_ours = self
                .addresses
                .get(address)
                .is_some_and(|state| state.phase.is_ours());
            log_decision(&self.config.node, *address, decision, was_ours);
            if let Verdict::Announce {
                start: Start::TakeOver { .. },
                ..
            } = &decision.verdict
            {
                self.metrics.takeovers.inc();
            }
        }

        for (name, assignment) in &pass.interfaces {
            if assignment.wanted.is_empty() {
                if self.announcers.contains_key(name) {
                    self.stop_announcer(name);
                    summary.changed = true;
                    summary
                        .lines
                        .push(format!("{name}: released every address"));
                }
                continue;
            }
            if !self.announcers.contains_key(name) {
                let config = InterfaceAnnouncerConfig {
                    interface: name.clone(),
                    mac: None,
                    announcer: self.config.announcer.clone(),
                };
                match InterfaceAnnouncer::start(config, self.events.clone()) {
                    Ok(announcer) => {
                        tracing::info!(interface = %name, mac = %announcer.mac(), "layer-2 announcer started");
                        self.announcers.insert(
                            name.clone(),
                            Running {
                                announcer,
                                wanted: BTreeSet::new(),
                                contested: BTreeSet::new(),
                                counters_seen: Counters::default(),
                            },
                        );
                    }
                    Err(error) => {
                        self.metrics.interface_start_errors.inc();
                        tracing::error!(interface = %name, %error, "cannot announce on this interface; retrying on the next pass");
                        summary.lines.push(format!("{name}: {error}"));
                        continue;
                    }
                }
            }
            let Some(running) = self.announcers.get_mut(name) else {
                continue;
            };
            let wanted_changed = running.wanted != assignment.wanted;
            if wanted_changed || running.contested != assignment.contested {
                running.announcer.assign(
                    assignment.wanted.clone(),
                    assignment.takeovers.clone(),
                    assignment.contested.clone(),
                );
                running.contested.clone_from(&assignment.contested);
            }
            if wanted_changed {
                summary.changed = true;
                summary.lines.push(format!(
                    "{name}: {} address(es), {} taken over",
                    assignment.wanted.len(),
                    assignment.takeovers.len()
                ));
                running.wanted.clone_from(&assignment.wanted);
            }
        }

        for send in &pass.sends {
            self.publish_record(send);
        }

        self.metrics
            .owned_addresses
            .set(count(pass.owned().count()));
        self.metrics.owned_without_interface.set(count(
            pass.decisions
                .values()
                .filter(|d| d.verdict == Verdict::NoInterface)
                .count(),
        ));
        self.addresses = pass.states;
    }

    /// Queues a record write, and with a new acquisition an Event saying who announces now.
    fn publish_record(&self, send: &Publish) {
        let Some(kube) = &self.kube else {
            return;
        };
        let write = &send.write;
        kube.send(ApiRequest::Record(write.clone()));
        let (Some(record), Some(start)) = (&write.record, &send.event) else {
            return;
        };
        let how = match start {
            Start::TakeOver { from } => {
                format!(" (took over from {from}, no longer live or eligible, without probing)")
            }
            Start::FirstAnnouncement => " (after probing that nobody else uses it)".to_owned(),
            Start::Resume => " (resumed after a restart)".to_owned(),
            Start::Continuing => String::new(),
        };
        kube.send(ApiRequest::Event {
            service: write.service.clone(),
            warning: false,
            reason: "L2Announcing",
            note: format!(
                "{} announces {} on {}{how}",
                record.node,
                write.address,
                record.interfaces.join(",")
            ),
        });
    }

    /// Handles one announcer event; returns whether a pass should follow.
    pub fn handle_event(&mut self, now: Instant, event: &InterfaceEvent) -> bool {
        let report = match event.event {
            AnnouncerEvent::Announcing { .. } => return true,
            AnnouncerEvent::Released { .. } => return false,
            AnnouncerEvent::ConflictWhileOwning {
                address, other_mac, ..
            } => ConflictReport {
                address,
                other_mac,
                stance: ConflictStance::Defending,
            },
            AnnouncerEvent::ConflictWhileProbing {
                address, other_mac, ..
            } => ConflictReport {
                address,
                other_mac,
                stance: ConflictStance::Probing,
            },
            AnnouncerEvent::GaveWay {
                address, other_mac, ..
            } => ConflictReport {
                address,
                other_mac,
                stance: ConflictStance::GivingWay,
            },
        };
        self.metrics
            .conflicts
            .get_or_create(&PhaseLabel {
                phase: report.stance.label(),
            })
            .inc();
        if let Some(notice) = self.conflicts.report(now, report) {
            self.publish_conflict(&event.interface, &notice);
        }
        false
    }

    /// Addresses an announcer reports as announced (probing over, frames sent).
    fn announced_addresses(&self) -> BTreeSet<IpAddr> {
        self.announcers
            .values()
            .flat_map(|running| running.announcer.phases())
            .filter(|(_, phase)| *phase == AddressPhase::Announcing)
            .map(|(address, _)| address)
            .collect()
    }

    /// Clears conflict conditions that went quiet or whose conflict is over.
    pub fn expire_conflicts(&mut self, now: Instant) {
        let owned = self.owned();
        let announced = self.announced_addresses();
        for notice in self.conflicts.expire(now, &owned, &announced) {
            self.publish_conflict("", &notice);
        }
    }

    fn publish_conflict(&self, interface: &str, notice: &ConflictNotice) {
        let Some(kube) = &self.kube else {
            return;
        };
        let address = match notice {
            ConflictNotice::Raise { address, .. } | ConflictNotice::Clear { address } => *address,
        };
        let services: Vec<ServiceKey> = self
            .plan
            .as_ref()
            .and_then(|plan| plan.get(&address))
            .map(|a| a.services.iter().cloned().collect())
            .unwrap_or_default();
        let node = &self.config.node;
        for service in services {
            match notice {
                ConflictNotice::Raise {
                    other_mac,
                    stance,
                    suppressed,
                    ..
                } => {
                    let (reason, message) = match stance {
                        ConflictStance::Defending => (
                            "AddressClaimedByAnotherMAC",
                            format!("{address}: MAC {other_mac} claims it while {node} announces it on {interface}; {node} keeps it and defends it"),
                        ),
                        ConflictStance::Probing => (
                            "AddressInUse",
                            format!("{address}: MAC {other_mac} answered {node}'s probe on {interface}; {node} does not take it and probes again later"),
                        ),
                        ConflictStance::GivingWay => (
                            "AddressGivenWay",
                            format!("{address}: MAC {other_mac} claims it while {node} announces it on {interface} against the record naming another node (taken while {node} could not see it); {node} gave it up and probes again later"),
                        ),
                    };
                    let more = if *suppressed > 0 {
                        format!(" ({suppressed} more reports since the last Event)")
                    } else {
                        String::new()
                    };
                    kube.send(ApiRequest::Event {
                        service: service.clone(),
                        warning: true,
                        reason,
                        note: format!("{message}{more}"),
                    });
                    kube.send(ApiRequest::Condition {
                        service,
                        type_: CONDITION_L2_CONFLICT,
                        status: true,
                        reason,
                        message,
                    });
                }
                ConflictNotice::Clear { .. } => kube.send(ApiRequest::Condition {
                    service,
                    type_: CONDITION_L2_CONFLICT,
                    status: false,
                    reason: "NoConflict",
                    message: format!(
                        "{address}: no other MAC claimed it for {}s, or {node} no longer announces it",
                        QUIET_BEFORE_CLEAR.as_secs()
                    ),
                }),
            }
        }
    }
}

fn count(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn log_decision(node: &str, address: IpAddr, decision: &AddressDecision, was_ours: bool) {
    match &decision.verdict {
        Verdict::Announce { interfaces, start } => match start {
            Start::TakeOver { from } => {
                tracing::info!(%address, ?interfaces, from = %from, "taking the address over at once (previous announcer not live or not eligible)")
            }
            Start::FirstAnnouncement => {
                tracing::info!(%address, ?interfaces, "elected to announce the address; probing first")
            }
            Start::Resume => {
                tracing::info!(%address, ?interfaces, "the record gives this node the address (restarted); probing before resuming")
            }
            Start::Continuing => {
                tracing::info!(%address, ?interfaces, "announcing on a changed set of interfaces")
            }
        },
        Verdict::OwnedElsewhere { owner } if was_ours => {
            tracing::info!(%address, owner = %owner, "another node announces the address now; released");
        }
        Verdict::OwnedElsewhere { owner } => {
            tracing::debug!(%address, owner = %owner, "another node announces the address");
        }
        Verdict::NoEligibleNode => {
            tracing::info!(%address, "no node may announce the address");
        }
        Verdict::HeldAtStartup => {
            tracing::debug!(%address, node, "elected, but holding back until membership settles");
        }
        Verdict::NoInterface => {
            tracing::warn!(%address, node, "elected to announce the address but no interface covers it");
        }
    }
}
