//! Allocator throughput benchmark (placeholder until the full version lands).
fn main() {}
