//! Speaker membership: which speakers are alive, learned directly between nodes over UDP
//! (SWIM with suspicion, via the `foca` crate). Work in progress.
