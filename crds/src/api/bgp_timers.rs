//! The BGPPeer timer rules as one function: what the CRD's CEL rules on `holdTime`,
//! `keepaliveTime` and `connectTime` accept ([`super::schema::hold_time`],
//! [`super::schema::keepalive_time`], [`super::schema::connect_time`],
//! [`super::schema::bgp_peer_spec_rules`]), for callers that must refuse what the apiserver
//! would refuse before they write it (`herald migrate`). `tests/cel_rules.rs` evaluates the
//! CEL and this function on the same tables, so the two stay in step. Pure.

use std::time::Duration;

use super::bgp_peer::DEFAULT_HOLD_TIME;

/// The longest timer BGP can carry: the OPEN message's Hold Time is 16 bits of seconds
/// (RFC 4271 §4.2).
pub const MAX_TIMER: Duration = Duration::from_secs(65535);
/// The shortest non-zero hold time (RFC 4271 §4.2).
pub const MIN_HOLD_TIME: Duration = Duration::from_secs(3);
/// The shortest connect-retry interval Herald's schema accepts.
pub const MIN_CONNECT_TIME: Duration = Duration::from_secs(1);

/// A timer the schema refuses; `field` names it, the message says why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimerError {
    /// `holdTime` is neither 0 nor 3s..65535s.
    #[error("{0:?}: a hold time is 0s or 3s..65535s (RFC 4271 §4.2)")]
    HoldTime(Duration),
    /// `keepaliveTime` is not below the hold time (or not 0 with a hold time of 0).
    #[error(
        "{keepalive:?}: the keepalive interval must be above 0s and below the hold time ({hold:?}), or 0s with a hold time of 0s (RFC 4271 §10)"
    )]
    KeepaliveTime {
        /// The keepalive interval given.
        keepalive: Duration,
        /// The hold time it is compared with (90s when unset).
        hold: Duration,
    },
    /// `connectTime` is not 1s..65535s.
    #[error("{0:?}: must be 1s..65535s")]
    ConnectTime(Duration),
}

impl TimerError {
    /// The spec field the error is about (`holdTime`, `keepaliveTime`, `connectTime`).
    pub fn field(&self) -> &'static str {
        match self {
            TimerError::HoldTime(_) => "holdTime",
            TimerError::KeepaliveTime { .. } => "keepaliveTime",
            TimerError::ConnectTime(_) => "connectTime",
        }
    }
}

/// Checks the timers of a BGPPeer spec as its CEL rules do (unset fields are `None`); the
/// first refused field, in the order hold, keepalive, connect.
pub fn check_timers(
    hold: Option<Duration>,
    keepalive: Option<Duration>,
    connect: Option<Duration>,
) -> Result<(), TimerError> {
    if let Some(hold) = hold
        && !hold.is_zero()
        && !(MIN_HOLD_TIME..=MAX_TIMER).contains(&hold)
    {
        return Err(TimerError::HoldTime(hold));
    }
    if let Some(keepalive) = keepalive {
        let hold = hold.unwrap_or(DEFAULT_HOLD_TIME);
        let fits = if hold.is_zero() {
            keepalive.is_zero()
        } else {
            !keepalive.is_zero() && keepalive < hold
        };
        if !fits || keepalive > MAX_TIMER {
            return Err(TimerError::KeepaliveTime { keepalive, hold });
        }
    }
    if let Some(connect) = connect
        && !(MIN_CONNECT_TIME..=MAX_TIMER).contains(&connect)
    {
        return Err(TimerError::ConnectTime(connect));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Option<Duration> {
        Some(Duration::from_secs(s))
    }

    #[test]
    fn unset_timers_pass_and_each_refusal_names_its_field() {
        assert_eq!(check_timers(None, None, None), Ok(()));
        assert_eq!(
            check_timers(secs(2), None, None).map_err(|e| e.field()),
            Err("holdTime")
        );
        assert_eq!(
            check_timers(secs(9), secs(9), None).map_err(|e| e.field()),
            Err("keepaliveTime")
        );
        assert_eq!(
            check_timers(None, None, secs(0)).map_err(|e| e.field()),
            Err("connectTime")
        );
    }

    #[test]
    fn messages_say_the_rule_in_seconds() {
        let error = check_timers(secs(30), secs(30), None).expect_err("refused");
        assert_eq!(
            error.to_string(),
            "30s: the keepalive interval must be above 0s and below the hold time (30s), or 0s with a hold time of 0s (RFC 4271 §10)"
        );
        assert_eq!(
            check_timers(secs(1), None, None)
                .expect_err("refused")
                .to_string(),
            "1s: a hold time is 0s or 3s..65535s (RFC 4271 §4.2)"
        );
    }
}
