//! `herald-lab chaos --duration D --seed N`: the chaos soak for people.
//!
//! Runs the ignored lab test `chaos_soak` of `tests/lab/tests/chaos_apiserver.rs` (a BGP
//! world with TCP-MD5 sessions, a client sending requests to an IPv4 and an IPv6 address, and
//! a seeded random sequence of API faults; the lab takes its lock), and passes its
//! output through: one line per fault, then the table (fault, count, requests sent, lost,
//! longest gap, invariant violations). The test binary is built by cargo if needed.

use std::process::Command;
use std::time::Duration;

use anyhow::{Context, bail};
use herald_lab::paths;

/// Runs the soak for `duration` with `seed`; fails if it found a violation or lost a request.
pub fn run(duration: Duration, seed: u64) -> anyhow::Result<()> {
    println!(
        "herald-lab chaos: {} s, seed {seed} (cargo test -p herald-lab --test chaos_apiserver -- --ignored chaos_soak)",
        duration.as_secs()
    );
    let status = Command::new("cargo")
        .args([
            "test",
            "-p",
            "herald-lab",
            "--test",
            "chaos_apiserver",
            "--",
            "--ignored",
            "--exact",
            "chaos_soak",
            "--nocapture",
        ])
        .env("HERALD_CHAOS_DURATION", duration.as_secs().to_string())
        .env("HERALD_CHAOS_SEED", seed.to_string())
        .current_dir(paths::repo_root())
        .status()
        .context("running cargo test (is cargo on PATH?)")?;
    if !status.success() {
        bail!("the chaos soak failed ({status}); the table above says where");
    }
    Ok(())
}
