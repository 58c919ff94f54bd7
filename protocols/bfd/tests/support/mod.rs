//! Set-up shared by the session, pair and FRR-vector tests: profiles, sessions and readers
//! of a session's outputs. Pure, no I/O.

#![allow(dead_code)]

use std::time::{Duration, Instant};

use herald_bfd::{ControlPacket, Diagnostic, Output, Profile, Session, SessionConfig, State};

pub fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A profile with `tx` and `rx` in milliseconds.
pub fn profile(tx: u64, rx: u64, mult: u8, passive: bool) -> Profile {
    Profile {
        desired_min_tx: ms(tx),
        required_min_rx: ms(rx),
        detect_mult: mult,
        passive,
    }
}

/// A session with discriminator `discriminator` created at `now`.
pub fn session(discriminator: u32, profile: Profile, jitter_seed: u64, now: Instant) -> Session {
    Session::new(
        SessionConfig {
            local_discriminator: discriminator,
            profile,
            jitter_seed,
        },
        now,
    )
}

/// The packets among `outputs`.
pub fn sends(outputs: &[Output]) -> Vec<ControlPacket> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::Send(p) => Some(p.clone()),
            _ => None,
        })
        .collect()
}

/// The state changes among `outputs`.
pub fn changes(outputs: &[Output]) -> Vec<(State, State, Diagnostic)> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::StateChanged { from, to, diag } => Some((*from, *to, *diag)),
            _ => None,
        })
        .collect()
}
