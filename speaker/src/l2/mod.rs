//! Layer 2: ARP/NDP frames (pure), address ownership, announcer I/O.
