//! Where the lab keeps things on disk: the repository root, `target/`, `target/lab/`
//! (control-plane data, kubeconfig, state, logs, locks) and the tool binaries that
//! `tests/setup.sh` builds into `target/lab/bin/`. Pure path computation; no I/O except
//! the existence checks in [`tool`].

use std::path::{Path, PathBuf};

use crate::error::{LabError, Result};

/// The repository root: `$HERALD_REPO` if set, else two levels above this crate's manifest
/// (`tests/lab` → repo root), as seen at compile time.
pub fn repo_root() -> PathBuf {
    if let Some(dir) = std::env::var_os("HERALD_REPO") {
        return PathBuf::from(dir);
    }
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest
        .parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| manifest.to_path_buf())
}

/// The cargo target directory: `$CARGO_TARGET_DIR` if set (absolute or relative to the
/// repo root), else `<repo>/target`.
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => {
            let dir = PathBuf::from(dir);
            if dir.is_absolute() {
                dir
            } else {
                repo_root().join(dir)
            }
        }
        None => repo_root().join("target"),
    }
}

/// `target/lab`: everything the lab writes lives below here.
pub fn lab_dir() -> PathBuf {
    target_dir().join("lab")
}

/// `target/lab/bin`: binaries built by `tests/setup.sh` (herald-cp, kubectl, helm).
pub fn lab_bin_dir() -> PathBuf {
    lab_dir().join("bin")
}

/// `target/lab/logs`: one sub-directory per lab (by prefix) plus the control plane's log.
pub fn logs_dir() -> PathBuf {
    lab_dir().join("logs")
}

/// `target/lab/kubeconfig`: the admin kubeconfig copied out of the control plane's data dir.
pub fn kubeconfig_path() -> PathBuf {
    lab_dir().join("kubeconfig")
}

/// `target/lab/state.json`: what `herald-lab up` left running.
pub fn state_path() -> PathBuf {
    lab_dir().join("state.json")
}

/// The lock that serializes labs. Machine-wide (`/run/herald-lab/lab.lock`), because what
/// labs share is machine-wide too: the root namespace's `hlcp0` segment and the namespace
/// names. `$HERALD_LAB_LOCK` overrides it.
pub fn lab_lock_path() -> PathBuf {
    std::env::var_os("HERALD_LAB_LOCK")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/run/herald-lab/lab.lock"))
}

/// `tests/setup.sh`.
pub fn setup_script() -> PathBuf {
    repo_root().join("tests").join("setup.sh")
}

/// Finds a tool: `target/lab/bin/NAME` if present, else `NAME` on `$PATH`.
/// `env_override` names an environment variable that, when set, wins.
pub fn tool(name: &str, env_override: &str) -> Result<PathBuf> {
    if let Some(path) = std::env::var_os(env_override) {
        return Ok(PathBuf::from(path));
    }
    let local = lab_bin_dir().join(name);
    if local.is_file() {
        return Ok(local);
    }
    find_on_path(name).ok_or_else(|| LabError::MissingTool {
        tool: name.to_string(),
        hint: format!(
            "run tests/setup.sh (it builds {} into target/lab/bin) or set {env_override}",
            name
        ),
    })
}

/// Finds the `herald-lab` binary used to run echo servers inside namespaces:
/// `$HERALD_LAB_BIN`, else the one next to the running executable's target dir
/// (`target/debug/herald-lab`, then `target/release/herald-lab`).
pub fn herald_lab_binary() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os("HERALD_LAB_BIN") {
        return Ok(PathBuf::from(path));
    }
    if let Ok(me) = std::env::current_exe()
        && me.file_name().is_some_and(|n| n == "herald-lab")
    {
        return Ok(me);
    }
    for profile in ["debug", "release"] {
        let candidate = target_dir().join(profile).join("herald-lab");
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    Err(LabError::MissingTool {
        tool: "herald-lab".into(),
        hint: "build it with `cargo build -p herald-lab` (or set HERALD_LAB_BIN)".into(),
    })
}

/// Looks `name` up in `$PATH`.
pub fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_repo_root_is_the_directory_holding_the_workspace_manifest() {
        // Only meaningful when HERALD_REPO is not overriding it.
        if std::env::var_os("HERALD_REPO").is_none() {
            assert!(repo_root().join("Cargo.toml").is_file());
            assert!(repo_root().join("tests").join("lab").is_dir());
        }
    }

    #[test]
    fn lab_files_live_under_the_target_dir() {
        assert!(kubeconfig_path().starts_with(target_dir()));
        assert!(state_path().starts_with(lab_dir()));
        assert!(logs_dir().starts_with(lab_dir()));
    }
}
