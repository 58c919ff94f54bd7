//! What a BGP session does about its BFD session (RFC 5882 §4.3 and §10.2), sans-IO.
//!
//! Owns: the decision, from one change of the (damped) BFD path state, whether BGP must be torn
//! down, held back or let go. The BGP driver feeds it the previous and the current view and
//! turns the returned actions into inputs of its own state machine; nothing here knows BGP
//! messages, sockets or time.
//!
//! - A path failure (Up → Down) always tears BGP down at once (RFC 5882 §4.3), whatever the
//!   mode: that is what BFD is for.
//! - In strict mode (the BFDProfile's `strictMode`, the behaviour FRR calls `bfd strict`), a
//!   BGP session is not brought up while its configured BFD session is not Up (RFC 5882 §10.2:
//!   "a BGP session is not established until BFD is Up"). That includes a session already
//!   Established when its strict BFD session appears (the speaker may see a BGPPeer before
//!   the BFDProfile it names): it is stopped until BFD is Up.
//! - An AdminDown from the remote is not a path failure (RFC 5882 §3.2); it reaches BGP as
//!   [`PathState::Unmonitored`] and neither tears down nor holds back.

/// What BGP sees of a peer's BFD session (damped).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathState {
    /// No BFD for this peer, or the remote took the session administratively down (which is
    /// not a path failure, RFC 5882 §3.2).
    Unmonitored,
    Down,
    Up,
}

/// The BFD side of one BGP peer: the damped path state and whether BGP must wait for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PathView {
    pub state: PathState,
    /// BGP may not come up while `state` is Down.
    pub strict: bool,
}

impl PathView {
    /// No BFD session: BGP runs on its own.
    pub const UNMONITORED: PathView = PathView {
        state: PathState::Unmonitored,
        strict: false,
    };

    /// True while this view keeps BGP from being brought up.
    pub fn holds_bgp(self) -> bool {
        self.strict && self.state == PathState::Down
    }
}

/// One thing the BGP driver must do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BgpAction {
    /// Close every connection with Cease / BFD Down (RFC 9384); the usual back-off follows.
    TearDown,
    /// Stop the session and refuse connections until [`BgpAction::Release`].
    Hold,
    /// Start the held session again.
    Release,
}

/// The actions for a change of the BFD view from `previous` to `current`, given whether BGP is
/// currently `held` (by an earlier [`BgpAction::Hold`]). `_established` is kept for the
/// caller's logs and future policy; strict mode holds an Established session too.
pub fn bgp_actions(
    previous: PathView,
    current: PathView,
    held: bool,
    _established: bool,
) -> Vec<BgpAction> {
    let mut actions = Vec::new();
    let failed = previous.state == PathState::Up && current.state == PathState::Down;
    if failed {
        actions.push(BgpAction::TearDown);
    }
    if held {
        if !current.holds_bgp() {
            actions.push(BgpAction::Release);
        }
    } else if current.holds_bgp() {
        actions.push(BgpAction::Hold);
    }
    actions
}

/// Whether a BGP session may be started at all under `view` (its first start).
pub fn may_start(view: PathView) -> bool {
    !view.holds_bgp()
}

#[cfg(test)]
mod tests {
    use super::*;
    use BgpAction::*;
    use PathState::*;

    fn view(state: PathState, strict: bool) -> PathView {
        PathView { state, strict }
    }

    #[test]
    fn a_failure_tears_bgp_down_in_either_mode_and_holds_it_only_in_strict_mode() {
        for established in [true, false] {
            assert_eq!(
                bgp_actions(view(Up, false), view(Down, false), false, established),
                vec![TearDown]
            );
            assert_eq!(
                bgp_actions(view(Up, true), view(Down, true), false, established),
                vec![TearDown, Hold]
            );
        }
    }

    #[test]
    fn a_strict_session_does_not_start_while_bfd_is_down_and_does_while_it_is_up_or_absent() {
        assert!(!may_start(view(Down, true)));
        assert!(may_start(view(Up, true)));
        assert!(may_start(view(Unmonitored, true)));
        assert!(may_start(view(Down, false)));
        assert!(may_start(PathView::UNMONITORED));
    }

    #[test]
    fn bfd_coming_up_releases_a_held_session_and_nothing_else_does_while_it_is_down() {
        assert_eq!(
            bgp_actions(view(Down, true), view(Up, true), true, false),
            vec![Release]
        );
        assert_eq!(
            bgp_actions(view(Down, true), view(Down, true), true, false),
            vec![]
        );
    }

    #[test]
    fn turning_strict_mode_off_or_removing_bfd_releases_a_held_session() {
        assert_eq!(
            bgp_actions(view(Down, true), view(Down, false), true, false),
            vec![Release]
        );
        assert_eq!(
            bgp_actions(view(Down, true), PathView::UNMONITORED, true, false),
            vec![Release]
        );
    }

    #[test]
    fn a_remote_admin_down_is_no_failure_and_releases_a_held_session() {
        assert_eq!(
            bgp_actions(view(Up, true), view(Unmonitored, true), false, true),
            vec![]
        );
        assert_eq!(
            bgp_actions(view(Down, true), view(Unmonitored, true), true, false),
            vec![Release]
        );
    }

    #[test]
    fn bfd_configured_strict_later_holds_the_session_established_or_not() {
        let before = PathView::UNMONITORED;
        for established in [false, true] {
            assert_eq!(
                bgp_actions(before, view(Down, true), false, established),
                vec![Hold]
            );
        }
    }

    #[test]
    fn without_strict_mode_a_down_session_never_holds_bgp() {
        for previous in [Unmonitored, Down] {
            for established in [true, false] {
                assert_eq!(
                    bgp_actions(view(previous, false), view(Down, false), false, established),
                    vec![]
                );
            }
        }
    }

    #[test]
    fn held_and_released_alternate_over_any_sequence_of_views() {
        // Walk every sequence of three views; the driver's `held` must follow the actions
        // and end consistent: held exactly when the last view holds BGP and the session
        // was not left established.
        let all: Vec<PathView> = [Unmonitored, Down, Up]
            .into_iter()
            .flat_map(|s| [view(s, false), view(s, true)])
            .collect();
        for &a in &all {
            for &b in &all {
                for &c in &all {
                    let mut held = !may_start(a);
                    for (previous, current) in [(a, b), (b, c)] {
                        for action in bgp_actions(previous, current, held, false) {
                            match action {
                                Hold => {
                                    assert!(!held, "{a:?} {b:?} {c:?}");
                                    held = true;
                                }
                                Release => {
                                    assert!(held, "{a:?} {b:?} {c:?}");
                                    held = false;
                                }
                                TearDown => {}
                            }
                        }
                    }
                    assert_eq!(held, c.holds_bgp(), "{a:?} {b:?} {c:?}");
                }
            }
        }
    }
}
