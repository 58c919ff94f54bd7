//! Fuzzes the BFD control packet decoder and a session's handling of whatever it accepts: no
//! input may panic, every accepted packet re-encodes to the bytes it came from (apart from the
//! length field, as Herald never sends an authentication section), and the session's timers
//! stay in the future.
#![no_main]

use std::time::{Duration, Instant};

use herald_bfd::{ControlPacket, Input, Profile, Session, SessionConfig};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(packet) = ControlPacket::decode(data) else {
        return;
    };
    let again = packet.encode();
    assert_eq!(again[..3], data[..3]);
    assert_eq!(again[4..], data[4..24]);
    let now = Instant::now();
    let mut session = Session::new(
        SessionConfig {
            local_discriminator: packet.your_discriminator.max(1),
            profile: Profile::default(),
            jitter_seed: u64::from(packet.my_discriminator),
        },
        now,
    );
    let _ = session.handle(now, Input::Timer);
    let _ = session.handle(now, Input::Packet(packet.clone()));
    let _ = session.handle(now, Input::Packet(packet));
    if let Some(next) = session.poll_timeout() {
        assert!(next >= now);
        let _ = session.handle(next + Duration::from_millis(1), Input::Timer);
    }
});
