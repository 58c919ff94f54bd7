//! Flushing stale connection-tracking entries through ctnetlink: the I/O edge of
//! [`super::stale`].
//!
//! One blocking netlink socket per flush (NETLINK_NETFILTER, the ctnetlink subsystem): dump
//! the table of each address family that has stale flows, pick the entries whose original
//! destination is a forwarded address and whose reply source is a backend that left
//! ([`super::stale::is_stale`]), and delete each by its original tuple. The kernel's
//! `conntrack -D` does the same; kube-proxy runs it for UDP Services. Every read has a
//! timeout and the dump is bounded in entries, so a huge table costs a bounded pass. Run it
//! from `spawn_blocking`.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::time::Duration;

use netlink_packet_core::{
    NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST, NetlinkBuffer, NetlinkHeader, NetlinkMessage,
    NetlinkPayload,
};
use netlink_packet_netfilter::conntrack::{
    ConntrackAttribute, ConntrackMessage, IPTuple, ProtoTuple, Protocol as CtProtocol, Tuple,
};
use netlink_packet_netfilter::{
    NetfilterHeader, NetfilterMessage, NetfilterMessageInner, NetfilterProtoFamily,
};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_NETFILTER};

use super::stale::{StaleFlow, TrackedFlow, is_stale};
use crate::model::Protocol;

/// Most entries one dump reads (per family) before giving up on the rest.
pub const MAX_DUMP_ENTRIES: usize = 2_000_000;
/// Longest wait for one datagram from the kernel.
const RECV_TIMEOUT: Duration = Duration::from_secs(5);
const RECV_BUFFER: usize = 1 << 16;
/// Delete requests sent in one datagram (each ~80 bytes; the kernel acknowledges each).
const DELETE_BATCH: usize = 256;
/// `ENOENT`: the entry expired or was deleted by someone else meanwhile; nothing to do.
const ENOENT: i32 = 2;

/// Why a flush failed.
#[derive(Debug, thiserror::Error)]
pub enum ConntrackError {
    #[error("ctnetlink socket: {0}")]
    Socket(#[from] std::io::Error),
    #[error("ctnetlink answered error {0} to {1}")]
    Kernel(i32, &'static str),
    #[error("ctnetlink dump: {0}")]
    Decode(String),
}

/// What one flush did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FlushReport {
    /// Entries read from the table.
    pub scanned: usize,
    /// Entries deleted.
    pub deleted: usize,
    /// Entries whose attributes could not be read (skipped).
    pub unreadable: usize,
    /// The dump stopped at [`MAX_DUMP_ENTRIES`].
    pub truncated: bool,
}

/// Deletes every tracked connection that belongs to one of `stale` (blocking).
pub fn flush(stale: &BTreeSet<StaleFlow>) -> Result<FlushReport, ConntrackError> {
    let mut report = FlushReport::default();
    if stale.is_empty() {
        return Ok(report);
    }
    let mut socket = Socket::new(NETLINK_NETFILTER)?;
    socket.bind_auto()?;
    socket2::SockRef::from(&socket).set_read_timeout(Some(RECV_TIMEOUT))?;
    socket.connect(&SocketAddr::new(0, 0))?;
    let families: BTreeSet<bool> = stale.iter().map(|f| f.key.address.is_ipv4()).collect();
    let mut sequence = 1;
    for ipv4 in families {
        let family = if ipv4 {
            NetfilterProtoFamily::IPv4
        } else {
            NetfilterProtoFamily::IPv6
        };
        let doomed = dump_matching(&socket, family, stale, &mut sequence, &mut report)?;
        for batch in doomed.chunks(DELETE_BATCH) {
            report.deleted += delete_batch(&socket, family, batch, &mut sequence)?;
        }
    }
    Ok(report)
}

fn request(
    family: NetfilterProtoFamily,
    message: ConntrackMessage,
    flags: u16,
    sequence: u32,
) -> Vec<u8> {
    let mut header = NetlinkHeader::default();
    header.flags = flags;
    header.sequence_number = sequence;
    let mut packet = NetlinkMessage::new(
        header,
        NetlinkPayload::InnerMessage(NetfilterMessage::new(
            NetfilterHeader::new(family, 0, 0),
            message,
        )),
    );
    packet.finalize();
    let mut buffer = vec![0; packet.buffer_len()];
    packet.serialize(&mut buffer);
    buffer
}

/// Dumps one family's table and returns the original tuples of the stale entries.
fn dump_matching(
    socket: &Socket,
    family: NetfilterProtoFamily,
    stale: &BTreeSet<StaleFlow>,
    sequence: &mut u32,
    report: &mut FlushReport,
) -> Result<Vec<Vec<Tuple>>, ConntrackError> {
    *sequence += 1;
    let dump = request(
        family,
        ConntrackMessage::Get(Vec::new()),
        NLM_F_REQUEST | NLM_F_DUMP,
        *sequence,
    );
    socket.send(&dump, 0)?;
    let mut doomed = Vec::new();
    let mut buffer = vec![0u8; RECV_BUFFER];
    let mut read = 0usize;
    loop {
        let size = socket.recv(&mut &mut buffer[..], 0)?;
        for message in messages(&buffer[..size])? {
            let Some(message) = message else {
                report.unreadable += 1;
                continue;
            };
            match message.payload {
                NetlinkPayload::Done(_) => return Ok(doomed),
                NetlinkPayload::Error(error) => {
                    if let Some(code) = error.code {
                        return Err(ConntrackError::Kernel(code.get(), "the dump"));
                    }
                }
                NetlinkPayload::InnerMessage(inner) => {
                    report.scanned += 1;
                    read += 1;
                    match tracked(&inner.inner) {
                        Some((flow, original)) if is_stale(&flow, stale) => doomed.push(original),
                        Some(_) => {}
                        None => report.unreadable += 1,
                    }
                }
                _ => {}
            }
        }
        if read >= MAX_DUMP_ENTRIES {
            // Drain is not possible without reading; the socket is dropped with the rest.
            report.truncated = true;
            return Ok(doomed);
        }
    }
}

/// Deletes a batch of entries by their original tuples: every request in one datagram,
/// then one acknowledgement per request. Returns how many existed (the rest had already
/// expired, `ENOENT`).
fn delete_batch(
    socket: &Socket,
    family: NetfilterProtoFamily,
    originals: &[Vec<Tuple>],
    sequence: &mut u32,
) -> Result<usize, ConntrackError> {
    let first = *sequence + 1;
    let mut datagram = Vec::new();
    for original in originals {
        *sequence += 1;
        let message =
            ConntrackMessage::Delete(vec![ConntrackAttribute::CtaTupleOrig(original.clone())]);
        datagram.extend(request(
            family,
            message,
            NLM_F_REQUEST | NLM_F_ACK,
            *sequence,
        ));
    }
    socket.send(&datagram, 0)?;
    let mut pending = originals.len();
    let mut deleted = 0;
    let mut buffer = vec![0u8; RECV_BUFFER];
    while pending > 0 {
        let size = socket.recv(&mut &mut buffer[..], 0)?;
        for message in messages(&buffer[..size])?.into_iter().flatten() {
            let seq = message.header.sequence_number;
            if seq < first || seq > *sequence {
                continue;
            }
            if let NetlinkPayload::Error(error) = message.payload {
                pending -= 1;
                match error.code.map(|c| -c.get()) {
                    None => deleted += 1,
                    Some(ENOENT) => {}
                    Some(code) => return Err(ConntrackError::Kernel(code, "a delete")),
                }
            }
        }
    }
    Ok(deleted)
}

/// Splits one received datagram into its netlink messages; an undecodable message is
/// `None` (the framing must hold, or the rest could not be found).
fn messages(
    datagram: &[u8],
) -> Result<Vec<Option<NetlinkMessage<NetfilterMessage>>>, ConntrackError> {
    let mut messages = Vec::new();
    let mut offset = 0;
    while offset < datagram.len() {
        let bytes = &datagram[offset..];
        let length = NetlinkBuffer::new_checked(bytes)
            .map_err(|e| ConntrackError::Decode(e.to_string()))?
            .length() as usize;
        if length == 0 {
            return Err(ConntrackError::Decode("zero-length message".into()));
        }
        messages.push(NetlinkMessage::<NetfilterMessage>::deserialize(bytes).ok());
        offset += length.max(4).next_multiple_of(4);
    }
    Ok(messages)
}

/// The flow an entry describes, and its original tuple for the delete.
fn tracked(message: &NetfilterMessageInner) -> Option<(TrackedFlow, Vec<Tuple>)> {
    let NetfilterMessageInner::Conntrack(ConntrackMessage::New(attributes)) = message else {
        return None;
    };
    let mut original = None;
    let mut reply = None;
    for attribute in attributes {
        match attribute {
            ConntrackAttribute::CtaTupleOrig(tuple) => original = Some(tuple),
            ConntrackAttribute::CtaTupleReply(tuple) => reply = Some(tuple),
            _ => {}
        }
    }
    let original = original?;
    let reply = reply?;
    let (protocol, _, destination, _, destination_port) = endpoints(original)?;
    let (_, source, _, source_port, _) = endpoints(reply)?;
    let flow = TrackedFlow {
        protocol,
        original_destination: destination,
        original_destination_port: destination_port,
        reply_source: source,
        reply_source_port: source_port,
    };
    Some((flow, original.clone()))
}

/// (protocol, source, destination, source port, destination port) of a tuple.
fn endpoints(tuple: &[Tuple]) -> Option<(Protocol, IpAddr, IpAddr, u16, u16)> {
    let (mut source, mut destination) = (None, None);
    let (mut protocol, mut source_port, mut destination_port) = (None, None, None);
    for part in tuple {
        match part {
            Tuple::Ip(addresses) => {
                for address in addresses {
                    match address {
                        IPTuple::SourceAddress(ip) => source = Some(*ip),
                        IPTuple::DestinationAddress(ip) => destination = Some(*ip),
                        _ => {}
                    }
                }
            }
            Tuple::Proto(fields) => {
                for field in fields {
                    match field {
                        ProtoTuple::Protocol(CtProtocol::Tcp) => protocol = Some(Protocol::Tcp),
                        ProtoTuple::Protocol(CtProtocol::Udp) => protocol = Some(Protocol::Udp),
                        ProtoTuple::Protocol(CtProtocol::Sctp) => protocol = Some(Protocol::Sctp),
                        ProtoTuple::SourcePort(port) => source_port = Some(*port),
                        ProtoTuple::DestinationPort(port) => destination_port = Some(*port),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    Some((
        protocol?,
        source?,
        destination?,
        source_port?,
        destination_port?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_datagram_splits_into_its_messages_and_bad_framing_is_an_error_not_a_panic() {
        assert!(messages(&[]).expect("empty").is_empty());
        assert!(messages(&[1, 2, 3]).is_err(), "shorter than a header");
        let zero_length = [0u8; 16];
        assert!(messages(&zero_length).is_err());
        let request = request(
            NetfilterProtoFamily::IPv4,
            ConntrackMessage::Get(Vec::new()),
            NLM_F_REQUEST,
            7,
        );
        let mut two = request.clone();
        two.extend(&request);
        let decoded = messages(&two).expect("two messages");
        assert_eq!(decoded.len(), 2);
        assert!(
            decoded
                .iter()
                .all(|m| m.as_ref().is_some_and(|m| m.header.sequence_number == 7))
        );
        let mut truncated = request.clone();
        truncated.truncate(request.len() - 1);
        assert!(
            messages(&truncated).is_err(),
            "a length beyond the datagram"
        );
    }

    #[test]
    fn an_entry_without_both_tuples_is_unreadable_not_stale() {
        let entry = NetfilterMessageInner::Conntrack(ConntrackMessage::New(vec![
            ConntrackAttribute::CtaTupleOrig(vec![Tuple::Ip(vec![
                IPTuple::SourceAddress("198.51.100.100".parse().expect("ip")),
                IPTuple::DestinationAddress("203.0.113.10".parse().expect("ip")),
            ])]),
        ]));
        assert!(tracked(&entry).is_none());
    }
}
