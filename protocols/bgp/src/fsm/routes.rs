//! The routes a [`Session`] advertises (Adj-RIB-Out, RFC 4271 §9.2): the full table plus
//! End-of-RIB (RFC 4724 §2) when a session is established, differences afterwards. Part of
//! the sans-IO FSM; no I/O.

use super::*;

impl Session {
    /// Sends the full table (for one family or all negotiated ones) followed by End-of-RIB.
    pub(super) fn readvertise(
        &mut self,
        now: Instant,
        conn: ConnectionId,
        only: Option<Family>,
        out: &mut Vec<Output>,
    ) {
        let Some(families) = self
            .established()
            .and_then(|c| c.negotiated.clone())
            .map(|n| n.families)
        else {
            return;
        };
        let families: Vec<Family> = families
            .into_iter()
            .filter(|f| only.is_none_or(|o| o == *f))
            .collect();
        let routes: BTreeMap<IpNet, RouteAttributes> = self
            .desired
            .iter()
            .filter(|(p, _)| families.contains(&Family::of(p)))
            .map(|(p, a)| (*p, a.clone()))
            .collect();
        let (sent, messages) = self.send_updates(now, conn, &routes, &[], out);
        for family in &families {
            out.push(Output::SendBytes {
                conn,
                bytes: codec::encode_end_of_rib(*family),
            });
        }
        self.update_messages_sent += families.len() as u64;
        self.advertised
            .retain(|p, _| !families.contains(&Family::of(p)));
        self.advertised.extend(sent);
        out.push(Output::RoutesSent {
            announced: routes.len(),
            withdrawn: 0,
            messages: messages + families.len(),
        });
    }

    pub(super) fn on_set_routes(
        &mut self,
        now: Instant,
        routes: BTreeMap<IpNet, RouteAttributes>,
        out: &mut Vec<Output>,
    ) {
        self.desired = routes;
        let Some((conn, families)) = self
            .established()
            .and_then(|c| c.negotiated.as_ref().map(|n| (c.id, n.families.clone())))
        else {
            return;
        };
        let announce: BTreeMap<IpNet, RouteAttributes> = self
            .desired
            .iter()
            .filter(|(p, a)| {
                families.contains(&Family::of(p)) && self.advertised.get(p) != Some(*a)
            })
            .map(|(p, a)| (*p, a.clone()))
            .collect();
        let withdraw: Vec<IpNet> = self
            .advertised
            .keys()
            .filter(|p| !self.desired.contains_key(p))
            .copied()
            .collect();
        if announce.is_empty() && withdraw.is_empty() {
            return;
        }
        let (sent, messages) = self.send_updates(now, conn, &announce, &withdraw, out);
        for prefix in &withdraw {
            self.advertised.remove(prefix);
        }
        self.advertised.extend(sent);
        out.push(Output::RoutesSent {
            announced: announce.len(),
            withdrawn: withdraw.len(),
            messages,
        });
    }

    /// Encodes and queues UPDATEs, one family at a time so that a family we cannot encode (no
    /// next hop) does not hold back the other. Returns what was announced and the message count.
    pub(super) fn send_updates(
        &mut self,
        now: Instant,
        conn: ConnectionId,
        announce: &BTreeMap<IpNet, RouteAttributes>,
        withdraw: &[IpNet],
        out: &mut Vec<Output>,
    ) -> (BTreeMap<IpNet, RouteAttributes>, usize) {
        let Some(i) = self.index_of(conn) else {
            return (BTreeMap::new(), 0);
        };
        let connection = &self.connections[i];
        let Some(negotiated) = connection.negotiated.as_ref() else {
            return (BTreeMap::new(), 0);
        };
        let ctx = UpdateContext {
            local_as: self.config.local_as,
            ebgp: self.config.is_ebgp(),
            four_octet_as: negotiated.four_octet_as,
            next_hop_v4: self.config.next_hop_v4.or(match connection.local_address {
                IpAddr::V4(a) => Some(a),
                IpAddr::V6(_) => None,
            }),
            next_hop_v6: self.config.next_hop_v6.or(match connection.local_address {
                IpAddr::V6(a) if !a.is_unicast_link_local() => Some(a),
                _ => None,
            }),
        };
        let mut sent = BTreeMap::new();
        let mut messages = 0;
        let mut errors = Vec::new();
        for family in [Family::Ipv4Unicast, Family::Ipv6Unicast] {
            let announce_family: Vec<(&IpNet, &RouteAttributes)> = announce
                .iter()
                .filter(|(p, _)| Family::of(p) == family)
                .collect();
            let withdraw_family: Vec<&IpNet> = withdraw
                .iter()
                .filter(|p| Family::of(p) == family)
                .collect();
            if announce_family.is_empty() && withdraw_family.is_empty() {
                continue;
            }
            match codec::pack_updates(&ctx, announce_family.iter().copied(), withdraw_family) {
                Ok(packed) => {
                    messages += packed.messages.len();
                    for bytes in packed.messages {
                        out.push(Output::SendBytes { conn, bytes });
                    }
                    sent.extend(announce_family.into_iter().map(|(p, a)| (*p, a.clone())));
                }
                Err(error) => errors.push(SessionError::Encode(error)),
            }
        }
        for error in errors {
            self.report(error, out);
        }
        if messages > 0 {
            self.update_messages_sent += messages as u64;
            self.restart_keepalive_timer(conn, now);
        }
        (sent, messages)
    }
}
