//! Fuzz target: BGP message decoding and stream framing must never panic, whatever the bytes.
//!
//! The input is used three ways: as one whole message (`decode`), as a TCP stream cut into
//! chunks whose sizes come from the first byte (`Framer`), and as the bytes a session receives
//! after reaching Established (`Session::handle`).
#![no_main]

use std::net::{IpAddr, Ipv4Addr};
use std::time::Instant;

use herald_bgp::codec::{self, Framer};
use herald_bgp::fsm::{Direction, Input, Session, SessionConfig};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = codec::decode(data);

    let chunk = usize::from(data.first().copied().unwrap_or(1)).max(1);
    let mut framer = Framer::new();
    for piece in data.chunks(chunk) {
        if framer.push(piece).is_err() {
            break;
        }
        while let Some(result) = framer.next_message() {
            if result.is_err() {
                break;
            }
        }
        assert!(framer.buffered() <= codec::FRAMER_CAPACITY);
    }

    // An Established session fed the raw bytes: every outcome must be a clean output list.
    let now = Instant::now();
    let mut session = Session::new(SessionConfig::new(
        64512,
        64500,
        Ipv4Addr::new(192, 0, 2, 11),
    ));
    session.handle(now, Input::Start);
    let conn = session.allocate_connection_id();
    session.handle(
        now,
        Input::TcpConnected {
            conn,
            direction: Direction::Inbound,
            local_address: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 11)),
        },
    );
    let peer_open = codec::open_message(
        64500,
        90,
        Ipv4Addr::new(192, 0, 2, 1),
        codec::Capabilities {
            four_octet_as: Some(64500),
            ..Default::default()
        },
    );
    let mut handshake = codec::encode_open(&peer_open).unwrap_or_default();
    handshake.extend_from_slice(&codec::encode_keepalive());
    for bytes in [handshake, data.to_vec()] {
        session.handle(now, Input::BytesReceived { conn, bytes });
    }
});
