//! Bidirectional Forwarding Detection for Herald, sans-IO.
//!
//! Owns the BFD control packet format ([`packet`], RFC 5880 §4.1) and the state machine of one
//! asynchronous-mode session ([`session`], RFC 5880 §6), flap damping ([`damping`]) and what a
//! BGP session does about its BFD session ([`coupling`], RFC 5882). Nothing here reads a clock,
//! opens a socket or spawns a task: time is passed in, packets go in and out as plain values,
//! and the UDP driver (RFC 5881 single hop, RFC 5883 multihop) lives in the speaker.

pub mod coupling;
pub mod damping;
pub mod packet;
pub mod session;

pub use coupling::{BgpAction, PathState, PathView};
pub use damping::{Damper, DampingConfig};
pub use packet::{ControlPacket, DecodeError, Diagnostic, State};
pub use session::{DropReason, Input, Output, Profile, Session, SessionConfig};
