//! Address math: pool entries (CIDRs and ranges), overlap detection, free-address sets. Pure.
