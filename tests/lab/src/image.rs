//! Container images for the lab's real nodes, built without a Docker daemon.
//!
//! No registry is reachable from the lab, so every image a real node runs is assembled
//! here from binaries already on this machine and imported into each node's containerd:
//! - Herald's image ([`herald_image`]): `herald-controller` and `herald-speaker`, `nft`,
//!   the CA bundle, and exactly the shared libraries these need (the `ldd` closure),
//!   user 65532, entrypoint and exposed ports as in the repository's Dockerfile;
//! - the pause (sandbox) image ([`pause_image`]): `sleep infinity` and its libraries;
//! - the echo workload ([`echo_image`]): the lab's own `herald-lab echo`.
//!
//! Pure parts: [`ImageSpec`] (what goes in), [`parse_ldd`], [`DockerfileRuntime::parse`]
//! (what the Dockerfile's runtime stage says, so a test can hold the two in step), and
//! [`OciConfig`] (the config read back from a built image). I/O stops in [`build`]
//! (root filesystem, `umoci` to pack an OCI layout, `tar`) and [`import`] (`ctr`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde::Deserialize;

use crate::cmd;
use crate::error::{LabError, Result};

/// The tag every lab image carries.
pub const LAB_TAG: &str = "lab";
/// Herald's image as the chart's values name it (`image.repository`, `image.tag`).
pub const HERALD_REPOSITORY: &str = "localhost/herald";
/// The sandbox image each node's containerd is configured with.
pub const PAUSE_REPOSITORY: &str = "localhost/pause";
/// The echo workload's image.
pub const ECHO_REPOSITORY: &str = "localhost/echo";
/// The PATH every lab image sets (as Debian's base images do, which the Dockerfile's
/// runtime stage inherits): the chart runs `herald-speaker` by name, the speaker runs `nft`.
pub const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// The unprivileged user of Herald's image (as the Dockerfile's `USER`).
pub const NONROOT: &str = "65532:65532";

/// How long packing one image may take (umoci compresses the layer; the Herald binaries
/// are tens of MB).
const PACK_TIMEOUT: Duration = Duration::from_secs(300);

/// A file put into an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageFile {
    /// Where it is on this machine.
    pub source: PathBuf,
    /// Its absolute path in the image.
    pub dest: String,
    /// Also copy the shared libraries it loads (its `ldd` closure), each at its path.
    pub with_libraries: bool,
}

/// What an image contains and how it runs. Plain data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageSpec {
    /// Repository, e.g. `localhost/herald`.
    pub repository: String,
    pub tag: String,
    pub files: Vec<ImageFile>,
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    /// `uid:gid`, or empty for root.
    pub user: String,
    /// `port/proto`, e.g. `7472/tcp`.
    pub exposed_ports: Vec<String>,
    /// `NAME=value` entries of the image's environment.
    pub env: Vec<String>,
}

impl ImageSpec {
    /// `repository:tag`.
    pub fn reference(&self) -> String {
        format!("{}:{}", self.repository, self.tag)
    }

    /// The image paths of the files listed (not their libraries).
    pub fn destinations(&self) -> BTreeSet<String> {
        self.files.iter().map(|f| f.dest.clone()).collect()
    }
}

fn file(source: impl Into<PathBuf>, dest: &str, with_libraries: bool) -> ImageFile {
    ImageFile {
        source: source.into(),
        dest: dest.to_string(),
        with_libraries,
    }
}

/// The host file a Debian package installs that the runtime image needs from it (the
/// Dockerfile installs packages; the lab copies these files). `None`: unknown package.
pub fn package_payload(package: &str) -> Option<&'static str> {
    match package {
        "nftables" => Some("/usr/sbin/nft"),
        "ca-certificates" => Some("/etc/ssl/certs/ca-certificates.crt"),
        _ => None,
    }
}

/// Herald's image from the binaries in `bin_dir` (`target/release` normally).
pub fn herald_image(bin_dir: &Path) -> ImageSpec {
    ImageSpec {
        repository: HERALD_REPOSITORY.into(),
        tag: LAB_TAG.into(),
        files: vec![
            file(
                bin_dir.join("herald-controller"),
                "/usr/local/bin/herald-controller",
                true,
            ),
            file(
                bin_dir.join("herald-speaker"),
                "/usr/local/bin/herald-speaker",
                true,
            ),
            file("/usr/sbin/nft", "/usr/sbin/nft", true),
            file(
                "/etc/ssl/certs/ca-certificates.crt",
                "/etc/ssl/certs/ca-certificates.crt",
                false,
            ),
        ],
        entrypoint: vec!["/usr/local/bin/herald-controller".into()],
        cmd: vec![],
        user: NONROOT.into(),
        exposed_ports: vec!["7472/tcp".into(), "7473/tcp".into()],
        env: vec![DEFAULT_PATH.into()],
    }
}

/// The sandbox ("pause") image: any process that sleeps until killed. containerd stops
/// sandboxes with SIGKILL, so a PID 1 without a SIGTERM handler is fine.
pub fn pause_image() -> ImageSpec {
    ImageSpec {
        repository: PAUSE_REPOSITORY.into(),
        tag: LAB_TAG.into(),
        files: vec![file("/bin/sleep", "/bin/sleep", true)],
        entrypoint: vec!["/bin/sleep".into()],
        cmd: vec!["infinity".into()],
        user: String::new(),
        exposed_ports: vec![],
        env: vec![DEFAULT_PATH.into()],
    }
}

/// The echo workload: the lab's own binary running `herald-lab echo` (the pod and node
/// names come from the pod spec's arguments, e.g. through the downward API).
pub fn echo_image(herald_lab: &Path) -> ImageSpec {
    ImageSpec {
        repository: ECHO_REPOSITORY.into(),
        tag: LAB_TAG.into(),
        files: vec![file(herald_lab, "/usr/local/bin/herald-lab", true)],
        entrypoint: vec!["/usr/local/bin/herald-lab".into(), "echo".into()],
        cmd: vec![],
        user: NONROOT.into(),
        exposed_ports: vec![format!("{}/tcp", crate::plan::ECHO_PORT)],
        env: vec![DEFAULT_PATH.into()],
    }
}

/// The library paths in `ldd` output (`name => /path (0x..)` and `/path (0x..)` lines;
/// the vDSO and "not found" lines carry no file). Pure.
pub fn parse_ldd(output: &str) -> Result<Vec<PathBuf>> {
    let mut libs = Vec::new();
    for line in output.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if line.contains("not found") {
            return Err(LabError::Parse {
                what: "ldd output".into(),
                detail: format!("a library is missing: {line}"),
            });
        }
        if line == "statically linked" || line.contains("not a dynamic executable") {
            continue;
        }
        let path_part = match line.split_once("=>") {
            Some((_, rest)) => rest.trim(),
            None => line,
        };
        let path = path_part.split_whitespace().next().unwrap_or_default();
        if path.starts_with('/') {
            libs.push(PathBuf::from(path));
        }
    }
    Ok(libs)
}

/// What the Dockerfile's last (runtime) stage declares. Pure.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DockerfileRuntime {
    /// Absolute paths of files the stage copies in (`COPY src... dest/`).
    pub copied: BTreeSet<String>,
    /// Debian packages the stage installs.
    pub packages: BTreeSet<String>,
    pub user: String,
    pub exposed_ports: Vec<String>,
    pub entrypoint: Vec<String>,
}

impl DockerfileRuntime {
    /// Reads the last stage of a Dockerfile: joins `\` continuations, ignores comments,
    /// takes COPY, RUN apt-get install, USER, EXPOSE and ENTRYPOINT (JSON form only).
    pub fn parse(text: &str) -> Result<DockerfileRuntime> {
        let bad = |detail: String| LabError::Parse {
            what: "Dockerfile".into(),
            detail,
        };
        let mut joined = Vec::new();
        let mut current = String::new();
        for line in text.lines() {
            let trimmed = line.trim();
            if trimmed.starts_with('#') {
                continue;
            }
            if let Some(head) = trimmed.strip_suffix('\\') {
                current.push_str(head);
                current.push(' ');
            } else {
                current.push_str(trimmed);
                if !current.trim().is_empty() {
                    joined.push(current.trim().to_string());
                }
                current.clear();
            }
        }
        let last_from = joined
            .iter()
            .rposition(|l| l.to_ascii_uppercase().starts_with("FROM "))
            .ok_or_else(|| bad("no FROM".into()))?;
        let mut out = DockerfileRuntime::default();
        for line in &joined[last_from + 1..] {
            let (instr, rest) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
            let rest = rest.trim();
            match instr.to_ascii_uppercase().as_str() {
                "COPY" => {
                    let words: Vec<&str> = rest
                        .split_whitespace()
                        .filter(|w| !w.starts_with("--"))
                        .collect();
                    let (dest, sources) = words
                        .split_last()
                        .ok_or_else(|| bad(format!("COPY without arguments: {line}")))?;
                    for source in sources {
                        if dest.ends_with('/') {
                            let base = source.rsplit('/').next().unwrap_or(source);
                            out.copied.insert(format!("{dest}{base}"));
                        } else {
                            out.copied.insert((*dest).to_string());
                        }
                    }
                }
                "RUN" => {
                    for command in rest.split("&&") {
                        let words: Vec<&str> = command.split_whitespace().collect();
                        if let Some(at) = words.iter().position(|w| *w == "install")
                            && words.first().is_some_and(|w| w.starts_with("apt"))
                        {
                            out.packages.extend(
                                words[at + 1..]
                                    .iter()
                                    .filter(|w| !w.starts_with('-'))
                                    .map(|w| (*w).to_string()),
                            );
                        }
                    }
                }
                "USER" => out.user = rest.to_string(),
                "EXPOSE" => out.exposed_ports.extend(rest.split_whitespace().map(|p| {
                    if p.contains('/') {
                        p.to_string()
                    } else {
                        format!("{p}/tcp")
                    }
                })),
                "ENTRYPOINT" => {
                    out.entrypoint = serde_json::from_str(rest).map_err(|e| {
                        bad(format!("ENTRYPOINT is not a JSON array ({e}): {line}"))
                    })?;
                }
                _ => {}
            }
        }
        Ok(out)
    }
}

/// The parts of an OCI image config the lab checks.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
pub struct OciConfig {
    #[serde(rename = "User", default)]
    pub user: String,
    #[serde(rename = "Entrypoint", default)]
    pub entrypoint: Option<Vec<String>>,
    #[serde(rename = "Cmd", default)]
    pub cmd: Option<Vec<String>>,
    #[serde(rename = "ExposedPorts", default)]
    pub exposed_ports: Option<BTreeMap<String, serde_json::Value>>,
    #[serde(rename = "Env", default)]
    pub env: Option<Vec<String>>,
}

/// An image built by [`build`].
#[derive(Debug, Clone)]
pub struct BuiltImage {
    pub reference: String,
    /// The OCI layout directory.
    pub layout: PathBuf,
    /// `tar` of the layout, what `ctr images import` reads.
    pub archive: PathBuf,
    /// The config read back from the layout.
    pub config: OciConfig,
    /// Every path in the image's layer (absolute, without trailing `/`).
    pub paths: BTreeSet<String>,
}

fn io_err(what: String) -> impl FnOnce(std::io::Error) -> LabError {
    move |e| LabError::io(what, e)
}

/// Copies `source` to `root/dest`, following symlinks (the image gets plain files).
fn copy_into(root: &Path, source: &Path, dest: &str) -> Result<()> {
    let target = root.join(dest.trim_start_matches('/'));
    if let Some(parent) = target.parent() {
        std::fs::create_dir_all(parent)
            .map_err(io_err(format!("creating {}", parent.display())))?;
    }
    std::fs::copy(source, &target).map_err(io_err(format!(
        "copying {} to {}",
        source.display(),
        target.display()
    )))?;
    Ok(())
}

/// Lays out `spec`'s root filesystem in `root`: its files, their libraries, and
/// `/etc/passwd` + `/etc/group` naming root and the unprivileged user.
pub fn assemble_rootfs(spec: &ImageSpec, root: &Path) -> Result<()> {
    let mut libraries = BTreeSet::new();
    for f in &spec.files {
        if !f.source.is_file() {
            return Err(LabError::MissingTool {
                tool: f.source.display().to_string(),
                hint: format!("needed for image {}", spec.reference()),
            });
        }
        copy_into(root, &f.source, &f.dest)?;
        if f.with_libraries {
            let source = f.source.to_string_lossy();
            let out = cmd::run(Command::new("ldd").arg(&*source), None, cmd::SHORT)?;
            // ldd exits 1 for a static binary ("not a dynamic executable"): no libraries.
            libraries.extend(parse_ldd(&format!("{}\n{}", out.stdout, out.stderr))?);
        }
    }
    for lib in &libraries {
        copy_into(root, lib, &lib.to_string_lossy())?;
    }
    let etc = root.join("etc");
    std::fs::create_dir_all(&etc).map_err(io_err(format!("creating {}", etc.display())))?;
    let write = |name: &str, text: &str| {
        let path = etc.join(name);
        std::fs::write(&path, text).map_err(io_err(format!("writing {}", path.display())))
    };
    write(
        "passwd",
        "root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/:/sbin/nologin\n",
    )?;
    write("group", "root:x:0:\nnonroot:x:65532:\n")?;
    let tmp = root.join("tmp");
    std::fs::create_dir_all(&tmp).map_err(io_err(format!("creating {}", tmp.display())))?;
    Ok(())
}

/// The `umoci config` arguments that give an image `spec`'s runtime settings. Pure.
pub fn umoci_config_args(spec: &ImageSpec, image: &str) -> Vec<String> {
    let mut args = vec!["config".to_string(), "--image".into(), image.to_string()];
    if !spec.user.is_empty() {
        args.push(format!("--config.user={}", spec.user));
    }
    // umoci appends a repeated flag's values in order.
    for e in &spec.entrypoint {
        args.push(format!("--config.entrypoint={e}"));
    }
    for c in &spec.cmd {
        args.push(format!("--config.cmd={c}"));
    }
    for p in &spec.exposed_ports {
        args.push(format!("--config.exposedports={p}"));
    }
    for e in &spec.env {
        args.push(format!("--config.env={e}"));
    }
    args
}

/// Builds `spec` in `work` (emptied first): `work/rootfs`, the OCI layout `work/oci`,
/// and its tar `work/image.tar`. Needs `umoci`, `ldd` and `tar`.
pub fn build(spec: &ImageSpec, work: &Path) -> Result<BuiltImage> {
    let umoci = crate::paths::find_on_path("umoci").ok_or_else(|| LabError::MissingTool {
        tool: "umoci".into(),
        hint: "run tests/setup.sh (Debian package umoci)".into(),
    })?;
    if work.exists() {
        std::fs::remove_dir_all(work).map_err(io_err(format!("removing {}", work.display())))?;
    }
    let root = work.join("rootfs");
    std::fs::create_dir_all(&root).map_err(io_err(format!("creating {}", root.display())))?;
    assemble_rootfs(spec, &root)?;
    let layout = work.join("oci");
    let layout_text = layout.to_string_lossy().into_owned();
    let image = format!("{layout_text}:{}", spec.tag);
    let root_text = root.to_string_lossy().into_owned();
    let umoci_run = |args: &[&str]| {
        cmd::run_checked(Command::new(&umoci).args(args), None, PACK_TIMEOUT).map(|_| ())
    };
    umoci_run(&["init", "--layout", &layout_text])?;
    umoci_run(&["new", "--image", &image])?;
    // The rootfs directory's contents become the one layer, at /.
    umoci_run(&["insert", "--image", &image, &root_text, "/"])?;
    let config_args = umoci_config_args(spec, &image);
    let config_refs: Vec<&str> = config_args.iter().map(String::as_str).collect();
    umoci_run(&config_refs)?;
    let archive = work.join("image.tar");
    cmd::run_checked(
        Command::new("tar")
            .arg("-C")
            .arg(&layout)
            .arg("-cf")
            .arg(&archive)
            .arg("."),
        None,
        PACK_TIMEOUT,
    )?;
    let (config, paths) = read_layout(&layout, &spec.tag)?;
    Ok(BuiltImage {
        reference: spec.reference(),
        layout,
        archive,
        config,
        paths,
    })
}

#[derive(Deserialize)]
struct Descriptor {
    digest: String,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

#[derive(Deserialize)]
struct Index {
    manifests: Vec<Descriptor>,
}

#[derive(Deserialize)]
struct Manifest {
    config: Descriptor,
    layers: Vec<Descriptor>,
}

#[derive(Deserialize)]
struct ImageConfigFile {
    #[serde(default)]
    config: OciConfig,
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let text =
        std::fs::read_to_string(path).map_err(io_err(format!("reading {}", path.display())))?;
    serde_json::from_str(&text).map_err(|e| LabError::Parse {
        what: path.display().to_string(),
        detail: e.to_string(),
    })
}

fn blob(layout: &Path, digest: &str) -> Result<PathBuf> {
    let hex = digest
        .strip_prefix("sha256:")
        .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
        .ok_or_else(|| LabError::Parse {
            what: "OCI descriptor".into(),
            detail: format!("unexpected digest {digest:?}"),
        })?;
    Ok(layout.join("blobs").join("sha256").join(hex))
}

/// Reads tag `tag` of an OCI layout back: its config and every path of its layers.
pub fn read_layout(layout: &Path, tag: &str) -> Result<(OciConfig, BTreeSet<String>)> {
    let index: Index = read_json(&layout.join("index.json"))?;
    let entry = index
        .manifests
        .iter()
        .find(|m| {
            m.annotations
                .get("org.opencontainers.image.ref.name")
                .is_some_and(|n| n == tag)
        })
        .ok_or_else(|| LabError::Parse {
            what: format!("{}/index.json", layout.display()),
            detail: format!("no manifest tagged {tag}"),
        })?;
    let manifest: Manifest = read_json(&blob(layout, &entry.digest)?)?;
    let config: ImageConfigFile = read_json(&blob(layout, &manifest.config.digest)?)?;
    let mut paths = BTreeSet::new();
    for layer in &manifest.layers {
        let listing = cmd::run(
            Command::new("tar")
                .arg("-tzf")
                .arg(blob(layout, &layer.digest)?),
            None,
            PACK_TIMEOUT,
        )?;
        // umoci ends its layers without tar's two zero end blocks: GNU tar lists every
        // member, then reports "Unexpected EOF" (Go's archive/tar, which containerd
        // uses, does not mind). Anything else is an error.
        let only_missing_end = listing.stderr.lines().all(|l| {
            l.contains("Removing leading")
                || l.contains("Unexpected EOF")
                || l.contains("not recoverable")
        });
        if !listing.success() && !only_missing_end {
            return Err(LabError::CommandFailed {
                command: format!("tar -tzf (layer {})", layer.digest),
                status: listing.status.to_string(),
                stdout: String::new(),
                stderr: listing.stderr,
            });
        }
        for line in listing.stdout.lines() {
            let p = line.trim_start_matches("./").trim_end_matches('/');
            if !p.is_empty() {
                paths.insert(format!("/{}", p.trim_start_matches('/')));
            }
        }
    }
    Ok((config.config, paths))
}

/// Imports a built image into the containerd at `socket`, in the namespace the CRI
/// plugin uses (`k8s.io`), under its reference.
pub fn import(image: &BuiltImage, socket: &Path) -> Result<()> {
    let repository = image
        .reference
        .rsplit_once(':')
        .map_or(image.reference.as_str(), |(r, _)| r);
    cmd::run_checked(
        Command::new("ctr")
            .arg("--address")
            .arg(socket)
            .args([
                "-n",
                "k8s.io",
                "images",
                "import",
                "--base-name",
                repository,
            ])
            .arg(&image.archive),
        None,
        PACK_TIMEOUT,
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOCKERFILE: &str = include_str!("../../../Dockerfile");

    #[test]
    fn ldd_lines_with_and_without_arrow_give_paths_and_the_vdso_gives_none() {
        let out = "\tlinux-vdso.so.1 (0x00007ffd)\n\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f)\n\t/lib64/ld-linux-x86-64.so.2 (0x00007f)\n";
        assert_eq!(
            parse_ldd(out).unwrap(),
            vec![
                PathBuf::from("/lib/x86_64-linux-gnu/libc.so.6"),
                PathBuf::from("/lib64/ld-linux-x86-64.so.2")
            ]
        );
        assert!(
            parse_ldd("\tnot a dynamic executable\n")
                .unwrap()
                .is_empty()
        );
        assert!(parse_ldd("\tlibfoo.so.1 => not found\n").is_err());
    }

    #[test]
    fn dockerfile_parse_reads_only_the_last_stage() {
        let text = "FROM a AS build\nUSER 1\nEXPOSE 1\nCOPY x /y\nFROM b\nRUN apt-get update \\\n && apt-get install -y --no-install-recommends p1 p2 \\\n && rm -rf z\nCOPY --from=build /o/a /o/b /bin/\nUSER 2:2\nEXPOSE 80 53/udp\nENTRYPOINT [\"/bin/a\", \"x\"]\n";
        let d = DockerfileRuntime::parse(text).unwrap();
        assert_eq!(
            d.copied,
            BTreeSet::from(["/bin/a".to_string(), "/bin/b".to_string()])
        );
        assert_eq!(
            d.packages,
            BTreeSet::from(["p1".to_string(), "p2".to_string()])
        );
        assert_eq!(d.user, "2:2");
        assert_eq!(d.exposed_ports, vec!["80/tcp", "53/udp"]);
        assert_eq!(d.entrypoint, vec!["/bin/a", "x"]);
        assert!(DockerfileRuntime::parse("ENTRYPOINT /bin/a\n").is_err());
    }

    /// The lab's image and the repository's Dockerfile must not drift apart: the same
    /// binaries, the files of the packages the Dockerfile installs, entrypoint, user and
    /// exposed ports.
    #[test]
    fn lab_image_and_dockerfile_agree() {
        let docker = DockerfileRuntime::parse(DOCKERFILE).unwrap();
        let spec = herald_image(Path::new("/nonexistent"));
        let dests = spec.destinations();
        for copied in &docker.copied {
            assert!(
                dests.contains(copied),
                "the Dockerfile copies {copied}, the lab image lacks it"
            );
        }
        for package in &docker.packages {
            let payload = package_payload(package).unwrap_or_else(|| {
                panic!("the Dockerfile installs {package}: teach package_payload what the image needs from it")
            });
            assert!(
                dests.contains(payload),
                "{package}: the lab image lacks {payload}"
            );
        }
        let herald_binaries: BTreeSet<String> = dests
            .iter()
            .filter(|d| d.starts_with("/usr/local/bin/"))
            .cloned()
            .collect();
        assert_eq!(
            herald_binaries, docker.copied,
            "binaries differ from the Dockerfile's"
        );
        assert_eq!(spec.entrypoint, docker.entrypoint);
        assert_eq!(spec.user, docker.user);
        assert_eq!(spec.exposed_ports, docker.exposed_ports);
    }

    #[test]
    fn umoci_config_repeats_list_flags_in_order() {
        let args = umoci_config_args(&pause_image(), "L:lab");
        assert_eq!(
            args,
            vec![
                "config",
                "--image",
                "L:lab",
                "--config.entrypoint=/bin/sleep",
                "--config.cmd=infinity",
                "--config.env=PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
            ]
        );
    }
}
