//! OPEN handling of a [`Session`]: validation of the peer's OPEN (RFC 4271 §6.2), connection
//! collision resolution (§6.8), capability negotiation (RFC 5492, RFC 6793, RFC 4760,
//! RFC 4724) and our own OPEN. Part of the sans-IO FSM; no I/O.

use super::*;

impl Session {
    pub(super) fn on_open(
        &mut self,
        now: Instant,
        conn: ConnectionId,
        open: OpenMessage,
        out: &mut Vec<Output>,
    ) {
        if let Err(notification) = self.validate_open(&open) {
            self.send_notification_and_close(now, conn, notification, out);
            return;
        }
        if !self.resolve_collision(now, conn, &open, out) {
            return;
        }
        let Some(i) = self.index_of(conn) else {
            return;
        };
        let negotiated = self.negotiate(&open);
        let c = &mut self.connections[i];
        c.phase = Phase::OpenConfirm;
        c.negotiated = Some(negotiated);
        restart_hold_timer(c, now);
        c.keepalive_deadline = c
            .negotiated
            .as_ref()
            .and_then(|n| n.keepalive)
            .map(|k| now + k);
        out.push(Output::SendBytes {
            conn,
            bytes: codec::encode_keepalive(),
        });
    }

    /// OPEN checks of RFC 4271 §6.2 and RFC 6793 §4.1, each with its NOTIFICATION.
    pub(super) fn validate_open(&self, open: &OpenMessage) -> Result<(), NotificationMessage> {
        let open_error =
            |sub: u8, data: Vec<u8>| NotificationMessage::new(error_code::OPEN_MESSAGE, sub, data);
        if open.version != codec::BGP_VERSION {
            return Err(open_error(
                subcode::UNSUPPORTED_VERSION_NUMBER,
                u16::from(codec::BGP_VERSION).to_be_bytes().to_vec(),
            ));
        }
        let as_matches = match open.capabilities.four_octet_as {
            // With the capability, My AS is either the ASN or AS_TRANS for a large one.
            Some(asn) => {
                asn == self.config.peer_as
                    && (u32::from(open.my_as) == asn
                        || (open.my_as == codec::AS_TRANS && asn > u32::from(u16::MAX)))
            }
            None => u32::from(open.my_as) == self.config.peer_as,
        };
        if !as_matches {
            return Err(open_error(
                subcode::BAD_PEER_AS,
                open.my_as.to_be_bytes().to_vec(),
            ));
        }
        // Hold time 1 or 2 seconds MUST be rejected (RFC 4271 §6.2).
        if matches!(open.hold_time_secs, 1 | 2) {
            return Err(open_error(subcode::UNACCEPTABLE_HOLD_TIME, vec![]));
        }
        // BGP Identifier: a valid non-zero unicast address, and for iBGP not ours
        // (RFC 4271 §6.2, RFC 6286 §2.2).
        let id = open.bgp_identifier;
        if id.is_unspecified()
            || id.is_broadcast()
            || id.is_multicast()
            || (!self.config.is_ebgp() && id == self.config.router_id)
        {
            return Err(open_error(subcode::BAD_BGP_IDENTIFIER, vec![]));
        }
        Ok(())
    }

    /// Connection collision detection (RFC 4271 §6.8). Returns whether `conn` survives.
    pub(super) fn resolve_collision(
        &mut self,
        now: Instant,
        conn: ConnectionId,
        open: &OpenMessage,
        out: &mut Vec<Output>,
    ) -> bool {
        let Some(other) = self
            .connections
            .iter()
            .find(|c| c.id != conn)
            .map(|c| (c.id, c.direction, c.phase, c.negotiated.clone()))
        else {
            return true;
        };
        let (other_id, other_direction, other_phase, other_negotiated) = other;
        let collision = || {
            NotificationMessage::new(
                error_code::CEASE,
                subcode::CONNECTION_COLLISION_RESOLUTION,
                vec![],
            )
        };
        let Some(this_direction) = self.index_of(conn).map(|i| self.connections[i].direction)
        else {
            return false;
        };
        if other_phase == Phase::Established {
            // The peer restarted and reconnected before we noticed: with graceful restart the
            // old connection gives way (RFC 4724 §4.2); otherwise the new one does.
            let peer_graceful = open
                .capabilities
                .graceful_restart
                .as_ref()
                .is_some_and(|gr| gr.restart_state)
                || other_negotiated.is_some_and(|n| n.peer_graceful_restart.is_some());
            let peer_restarted = this_direction == Direction::Inbound && peer_graceful;
            if peer_restarted {
                self.close_connection(now, other_id, false, out);
                return true;
            }
            self.send_notification_and_close(now, conn, collision(), out);
            return false;
        }
        if this_direction == other_direction {
            return true;
        }
        // Keep the connection initiated by the speaker with the higher BGP Identifier.
        let keep_direction = if u32::from(self.config.router_id) > u32::from(open.bgp_identifier) {
            Direction::Outbound
        } else {
            Direction::Inbound
        };
        let loser = if this_direction == keep_direction {
            other_id
        } else {
            conn
        };
        out.push(Output::SendBytes {
            conn: loser,
            bytes: codec::encode_notification(&collision()),
        });
        self.close_connection(now, loser, false, out);
        loser != conn
    }

    pub(super) fn negotiate(&self, open: &OpenMessage) -> Negotiated {
        let hold_secs = self.config.hold_time_secs.min(open.hold_time_secs);
        let hold_time = Duration::from_secs(u64::from(hold_secs));
        let keepalive = (hold_secs > 0).then(|| {
            let third = (hold_secs / 3).max(1);
            let secs = self
                .config
                .keepalive_secs
                .map_or(third, |k| k.clamp(1, third));
            Duration::from_secs(u64::from(secs))
        });
        let theirs = open.families();
        let families = self
            .config
            .families
            .iter()
            .copied()
            .filter(|f| theirs.contains(f))
            .collect();
        Negotiated {
            hold_time,
            keepalive,
            four_octet_as: open.capabilities.four_octet_as.is_some(),
            families,
            peer_id: open.bgp_identifier,
            peer_route_refresh: open.capabilities.route_refresh,
            peer_graceful_restart: open.capabilities.graceful_restart.clone(),
        }
    }

    pub(super) fn our_open(&self) -> OpenMessage {
        let graceful_restart = self.config.graceful_restart.as_ref().map(|gr| {
            GracefulRestartCapability {
                restart_state: self.restarting,
                restart_time_secs: gr.restart_time_secs,
                families: self
                    .config
                    .families
                    .iter()
                    .map(|f| {
                        let (afi, safi) = f.afi_safi();
                        // The node keeps forwarding to its Services while the speaker restarts.
                        GracefulRestartFamily {
                            afi,
                            safi,
                            forwarding_preserved: true,
                        }
                    })
                    .collect(),
            }
        });
        codec::open_message(
            self.config.local_as,
            self.config.hold_time_secs,
            self.config.router_id,
            Capabilities {
                four_octet_as: Some(self.config.local_as),
                multiprotocol: self.config.families.iter().map(|f| f.afi_safi()).collect(),
                route_refresh: true,
                graceful_restart,
                other: Vec::new(),
            },
        )
    }
}
