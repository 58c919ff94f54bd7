//! BGP: message codec wrapper over zettabgp, the sans-IO session FSM (RFC 4271), and the per-peer driver.
