//! Forwarding: nftables ruleset rendering (pure) and the `nft -f -` executor.
