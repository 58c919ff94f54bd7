//! Finding and removing lab leftovers by name prefix: namespaces (and the processes in
//! them), root-namespace links, `/run/netns` mounts, FRR instance directories and FRR
//! daemons. A [`crate::topology::Lab`] removes exactly what it made on drop; this module
//! is the safety net behind it — `herald-lab down` and the start of every new lab use it
//! to clear what a crashed or killed run left behind.
//!
//! A name must both start with the requested prefix and follow the lab's naming scheme
//! ([`plan::is_lab_namespace`], [`plan::is_lab_root_link`]): other programs' namespaces
//! that merely begin with `hl` are never touched.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::cmd;
use crate::error::Result;
use crate::netns::{self, Netns};
use crate::plan;
use crate::wait::{Poll, poll_until};

/// Directories where FRR instances keep per-instance config and runtime state.
const FRR_DIRS: [&str; 3] = ["/etc/frr", "/var/run/frr", "/run/frr"];

/// Lab objects found on the machine.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Leftovers {
    /// Named network namespaces (`ip netns list`).
    pub namespaces: Vec<String>,
    /// Links in the root namespace.
    pub links: Vec<String>,
    /// Mount points under `/run/netns`.
    pub mounts: Vec<String>,
    /// Processes inside the namespaces, or FRR daemons of an instance with the prefix:
    /// `(pid, command line)`.
    pub processes: Vec<(u32, String)>,
    /// FRR per-instance directories and `/etc/netns` entries.
    pub dirs: Vec<PathBuf>,
}

impl Leftovers {
    /// True if nothing was found.
    pub fn is_empty(&self) -> bool {
        self.namespaces.is_empty()
            && self.links.is_empty()
            && self.mounts.is_empty()
            && self.processes.is_empty()
            && self.dirs.is_empty()
    }

    /// Everything whose name starts with `prefix`.
    pub fn find(prefix: &str) -> Result<Leftovers> {
        let namespaces = namespaces_with_prefix(prefix)?;
        let mut processes = Vec::new();
        for ns in &namespaces {
            for pid in Netns::existing(ns).pids()? {
                processes.push((pid, cmdline(pid)));
            }
        }
        for pid in frr_daemons_with_prefix(prefix) {
            if !processes.iter().any(|(p, _)| *p == pid) {
                processes.push((pid, cmdline(pid)));
            }
        }
        let mut dirs = Vec::new();
        for base in FRR_DIRS.iter().chain(["/etc/netns"].iter()) {
            dirs.extend(entries_with_prefix(Path::new(base), prefix));
        }
        Ok(Leftovers {
            namespaces,
            links: root_links_with_prefix(prefix)?,
            mounts: netns_mounts_with_prefix(prefix),
            processes,
            dirs,
        })
    }
}

impl std::fmt::Display for Leftovers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.is_empty() {
            return write!(f, "nothing");
        }
        let mut parts = Vec::new();
        if !self.namespaces.is_empty() {
            parts.push(format!("namespaces {}", self.namespaces.join(" ")));
        }
        if !self.links.is_empty() {
            parts.push(format!("links {}", self.links.join(" ")));
        }
        if !self.mounts.is_empty() {
            parts.push(format!("mounts {}", self.mounts.join(" ")));
        }
        if !self.processes.is_empty() {
            let procs: Vec<String> = self
                .processes
                .iter()
                .map(|(pid, cmd)| format!("{pid} ({cmd})"))
                .collect();
            parts.push(format!("processes {}", procs.join(", ")));
        }
        if !self.dirs.is_empty() {
            let dirs: Vec<String> = self.dirs.iter().map(|d| d.display().to_string()).collect();
            parts.push(format!("dirs {}", dirs.join(" ")));
        }
        write!(f, "{}", parts.join("; "))
    }
}

/// Removes everything whose name starts with `prefix`: kills the processes, deletes the
/// namespaces, links and directories, unmounts stale mounts. Tolerates partial state and
/// keeps going past individual failures. Returns what was found before removal.
pub fn sweep(prefix: &str) -> Result<Leftovers> {
    let found = Leftovers::find(prefix)?;
    for (pid, _) in &found.processes {
        let _ = netns::signal(*pid, "KILL");
    }
    let pids: Vec<u32> = found.processes.iter().map(|(p, _)| *p).collect();
    let _ = netns::wait_gone(&pids, Duration::from_secs(5));
    for link in &found.links {
        let _ = cmd::sh("ip", &["link", "del", link]);
    }
    for ns in &found.namespaces {
        let _ = Netns::existing(ns).delete();
    }
    // Whatever `ip netns del` could not unmount (e.g. a namespace file left by a crash).
    for mount in netns_mounts_with_prefix(prefix) {
        let _ = cmd::sh("umount", &["-l", &mount]);
    }
    for entry in entries_with_prefix(Path::new("/run/netns"), prefix) {
        let _ = std::fs::remove_file(entry);
    }
    for dir in &found.dirs {
        let _ = std::fs::remove_dir_all(dir);
    }
    Ok(found)
}

/// Waits (bounded) until nothing with `prefix` is left. The kernel destroys a deleted
/// namespace (and the veth peers of its links) asynchronously, so a check right after
/// deletion can still see them for a moment.
pub fn wait_clean(prefix: &str, timeout: Duration) -> Result<()> {
    poll_until(
        &format!("no lab objects with prefix {prefix:?}"),
        timeout,
        Duration::from_millis(100),
        || {
            let left = Leftovers::find(prefix)?;
            Ok(if left.is_empty() {
                Poll::Ready(())
            } else {
                Poll::Pending(left.to_string())
            })
        },
    )
}

/// Named namespaces whose name starts with `prefix`.
pub fn namespaces_with_prefix(prefix: &str) -> Result<Vec<String>> {
    let out = cmd::sh("ip", &["netns", "list"])?;
    Ok(parse_netns_list(&out)
        .into_iter()
        .filter(|n| n.starts_with(prefix) && plan::is_lab_namespace(n))
        .collect())
}

/// Names from `ip netns list` output (`NAME` or `NAME (id: N)` per line).
pub fn parse_netns_list(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|line| line.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

#[derive(Deserialize)]
struct LinkName {
    ifname: String,
}

/// Root-namespace links whose name starts with `prefix`.
pub fn root_links_with_prefix(prefix: &str) -> Result<Vec<String>> {
    let out = cmd::sh("ip", &["-j", "link", "show"])?;
    let links: Vec<LinkName> =
        serde_json::from_str(if out.trim().is_empty() { "[]" } else { &out })
            .map_err(|e| crate::LabError::parse("`ip -j link show`", e))?;
    Ok(links
        .into_iter()
        .map(|l| l.ifname)
        .filter(|n| n.starts_with(prefix) && plan::is_lab_root_link(n))
        .collect())
}

/// Mount points `/run/netns/PREFIX*` from `/proc/self/mountinfo`.
pub fn netns_mounts_with_prefix(prefix: &str) -> Vec<String> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    parse_netns_mounts(&info, prefix)
}

/// The `/run/netns/PREFIX*` mount points in mountinfo text (5th field = mount point).
pub fn parse_netns_mounts(mountinfo: &str, prefix: &str) -> Vec<String> {
    let wanted = format!("/run/netns/{prefix}");
    let mut mounts: Vec<String> = mountinfo
        .lines()
        .filter_map(|line| line.split_whitespace().nth(4))
        .filter(|mount_point| mount_point.starts_with(&wanted))
        .filter(|mount_point| {
            mount_point
                .rsplit('/')
                .next()
                .is_some_and(plan::is_lab_namespace)
        })
        .map(str::to_string)
        .collect();
    mounts.dedup();
    mounts
}

fn entries_with_prefix(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok())
        .filter(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.starts_with(prefix) && plan::is_lab_namespace(&name)
        })
        .map(|e| e.path())
        .collect()
}

fn cmdline(pid: u32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|raw| {
            raw.split(|b| *b == 0)
                .filter(|part| !part.is_empty())
                .map(|part| String::from_utf8_lossy(part).into_owned())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default()
}

/// FRR daemons (`/usr/lib/frr/*`) started with `-N NAME` where NAME starts with `prefix`.
fn frr_daemons_with_prefix(prefix: &str) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_string_lossy().parse::<u32>().ok())
        .filter(|pid| is_frr_instance_of(&cmdline_args(*pid), prefix))
        .collect()
}

fn cmdline_args(pid: u32) -> Vec<String> {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|raw| {
            raw.split(|b| *b == 0)
                .filter(|part| !part.is_empty())
                .map(|part| String::from_utf8_lossy(part).into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// True for an FRR daemon's argv whose `-N` instance name starts with `prefix`.
pub fn is_frr_instance_of(argv: &[String], prefix: &str) -> bool {
    let is_frr = argv
        .first()
        .is_some_and(|program| program.starts_with("/usr/lib/frr/"));
    is_frr
        && argv.windows(2).any(|pair| {
            pair[0] == "-N" && pair[1].starts_with(prefix) && plan::is_lab_namespace(&pair[1])
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn netns_list_lines_yield_bare_names() {
        assert_eq!(
            parse_netns_list("hl1abc-r (id: 3)\nhl1abc-c\n\n"),
            vec!["hl1abc-r".to_string(), "hl1abc-c".to_string()]
        );
    }

    #[test]
    fn only_netns_mounts_with_the_prefix_are_reported() {
        let info = "\
612 28 0:4 net:[4026532456] /run/netns/hl1abc-r rw shared:4 - nsfs nsfs rw
613 28 0:4 net:[4026532457] /run/netns/other rw shared:4 - nsfs nsfs rw
614 28 0:4 net:[4026532458] /run/netns/hl1abc-tmp rw shared:4 - nsfs nsfs rw
40 28 0:25 / /run rw,nosuid shared:5 - tmpfs tmpfs rw";
        assert_eq!(
            parse_netns_mounts(info, "hl1abc"),
            vec!["/run/netns/hl1abc-r".to_string()]
        );
    }

    #[test]
    fn an_frr_daemon_is_matched_by_its_instance_name_only() {
        let argv = |s: &str| s.split(' ').map(str::to_string).collect::<Vec<_>>();
        assert!(is_frr_instance_of(
            &argv("/usr/lib/frr/bgpd -d -N hl1abc-r -F traditional"),
            "hl"
        ));
        assert!(!is_frr_instance_of(
            &argv("/usr/lib/frr/bgpd -d -N prod -F traditional"),
            "hl"
        ));
        assert!(!is_frr_instance_of(&argv("/usr/bin/vim -N hl1abc"), "hl"));
        assert!(!is_frr_instance_of(
            &argv("/usr/lib/frr/bgpd -d -N hl2t-frr"),
            "hl"
        ));
    }
}
