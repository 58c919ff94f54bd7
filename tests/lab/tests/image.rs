//! Herald's container image, built without a Docker daemon (`herald_lab::image`), against
//! the repository's Dockerfile: the image the lab's real nodes run must be the image a
//! Docker user gets — same binaries, entrypoint, user, exposed ports — and must actually
//! run (its library closure complete: every binary starts inside the image's root).
//!
//! Needs root (chroot), `umoci` (tests/setup.sh) and the binaries: `target/release` when
//! `herald-controller` is there (what CI builds for the image), else `target/debug`, or
//! `$HERALD_IMAGE_BIN_DIR`. No network, no lab lock.

use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;

use herald_lab::image::{self, DockerfileRuntime};
use herald_lab::{LabError, Result, cmd, paths, realcluster};

#[test]
fn herald_image_matches_the_dockerfile_and_its_binaries_run_inside_it() -> Result<()> {
    let dockerfile = std::fs::read_to_string(paths::repo_root().join("Dockerfile"))
        .map_err(|e| LabError::io("reading the Dockerfile", e))?;
    let docker = DockerfileRuntime::parse(&dockerfile)?;
    let spec = image::herald_image(&realcluster::image_bin_dir());
    let work = paths::lab_dir().join("images").join("herald-test");
    let built = image::build(&spec, &work)?;

    // The config as containerd will read it.
    assert_eq!(built.config.user, docker.user);
    assert_eq!(
        built.config.entrypoint.as_deref(),
        Some(&docker.entrypoint[..])
    );
    let ports: BTreeSet<String> = built
        .config
        .exposed_ports
        .clone()
        .unwrap_or_default()
        .into_keys()
        .collect();
    let docker_ports: BTreeSet<String> = docker.exposed_ports.iter().cloned().collect();
    assert_eq!(ports, docker_ports);
    // The layer: the Dockerfile's binaries, and what its packages provide.
    for path in &docker.copied {
        assert!(built.paths.contains(path), "image lacks {path}");
    }
    for package in &docker.packages {
        let payload = image::package_payload(package)
            .ok_or_else(|| LabError::Invalid(format!("unknown package {package}")))?;
        assert!(
            built.paths.contains(payload),
            "image lacks {payload} ({package})"
        );
    }

    // Every binary starts in the image's root alone: no library is missing.
    let root = work.join("rootfs");
    for argv in [
        vec!["/usr/local/bin/herald-controller", "--help"],
        vec!["/usr/local/bin/herald-speaker", "--help"],
        vec!["/usr/sbin/nft", "--version"],
    ] {
        let out = cmd::run(
            Command::new("chroot").arg(&root).args(&argv),
            None,
            Duration::from_secs(30),
        )?;
        assert!(
            out.success(),
            "{argv:?} does not run inside the image: {} {}",
            out.stdout,
            out.stderr
        );
    }
    println!(
        "herald image: {} files, layer archive {} bytes",
        built.paths.len(),
        std::fs::metadata(&built.archive)
            .map(|m| m.len())
            .unwrap_or(0)
    );
    let _ = std::fs::remove_dir_all(&work);
    Ok(())
}
