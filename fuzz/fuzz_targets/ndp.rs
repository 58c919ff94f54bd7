//! Fuzzes the IPv6 Neighbor Discovery decoder (options, RFC 4861 validation, checksum) and the
//! announcer's handling of whatever it accepts: no input may panic, and every accepted message
//! re-encodes to one that decodes to the same value.
#![no_main]

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv6Addr};
use std::time::Instant;

use herald_l2::announcer::{Announcer, AnnouncerConfig};
use herald_l2::frames::{MacAddr, NdpPacket, parse_frame};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The first 32 bytes choose the IPv6 source and destination, the rest is the ICMPv6 message.
    if data.len() >= 32 {
        let mut source = [0u8; 16];
        let mut destination = [0u8; 16];
        source.copy_from_slice(&data[..16]);
        destination.copy_from_slice(&data[16..32]);
        let (source, destination) = (Ipv6Addr::from(source), Ipv6Addr::from(destination));
        if let Ok(Some(ndp)) = NdpPacket::decode_icmpv6(source, destination, 255, &data[32..]) {
            let again = NdpPacket::decode_icmpv6(source, destination, 255, &ndp.encode_icmpv6());
            assert_eq!(again, Ok(Some(ndp)));
        }
    }
    // Whole frames, through parser and announcer.
    let _ = parse_frame(data);
    let now = Instant::now();
    let mut announcer = Announcer::new(
        AnnouncerConfig {
            probe_count: 0,
            ..AnnouncerConfig::default()
        },
        MacAddr([0x02, 0, 0x5e, 0, 0x53, 0x01]),
    );
    let owned: BTreeSet<IpAddr> = [IpAddr::V6(Ipv6Addr::new(
        0x2001, 0xdb8, 1, 0, 0, 0, 0, 0x200,
    ))]
    .into_iter()
    .collect();
    announcer.set_addresses(now, &owned);
    let _ = announcer.handle_frame(now, data);
});
