//! Fuzzes the ARP decoder and the announcer's handling of whatever it accepts: no input may
//! panic, and every accepted ARP packet re-encodes to the bytes it came from.
#![no_main]

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Instant;

use herald_l2::announcer::{Announcer, AnnouncerConfig};
use herald_l2::frames::{ARP_PACKET_LEN, ArpPacket, ETHERTYPE_ARP, MacAddr, parse_frame};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(arp) = ArpPacket::decode(data) {
        assert_eq!(arp.encode()[..], data[..ARP_PACKET_LEN]);
    }
    // The same bytes as the payload of an Ethernet frame, through parser and announcer.
    let mut frame = Vec::with_capacity(14 + data.len());
    frame.extend_from_slice(&[0xff; 6]);
    frame.extend_from_slice(&[0x02, 0, 0x5e, 0, 0x53, 0x02]);
    frame.extend_from_slice(&ETHERTYPE_ARP.to_be_bytes());
    frame.extend_from_slice(data);
    let _ = parse_frame(&frame);
    let now = Instant::now();
    let mut announcer = Announcer::new(
        AnnouncerConfig {
            probe_count: 0,
            ..AnnouncerConfig::default()
        },
        MacAddr([0x02, 0, 0x5e, 0, 0x53, 0x01]),
    );
    let owned: BTreeSet<IpAddr> = [IpAddr::V4(Ipv4Addr::new(192, 0, 2, 200))]
        .into_iter()
        .collect();
    announcer.set_addresses(now, &owned);
    let _ = announcer.handle_frame(now, &frame);
    let _ = announcer.handle_frame(now, data);
});
