//! Network namespaces and the processes that run in them.
//!
//! [`Netns`] is a cheap handle on a named namespace (`ip netns`): create it, run `ip`
//! against it, execute commands inside it, list and kill what runs in it, delete it.
//! [`LabProcess`] is a long-running program started inside a namespace, its stdout and
//! stderr going to a log file; it is killed when dropped. Every call here runs an
//! external command with a time budget (see [`crate::cmd`]).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;

use crate::cmd::{self, CmdOutput, SHORT};
use crate::error::{LabError, Result};
use crate::wait::{Poll, poll_until};

/// A named network namespace (`/run/netns/NAME`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// A handle on an existing namespace (nothing is checked).
    pub fn existing(name: &str) -> Netns {
        Netns {
            name: name.to_string(),
        }
    }

    /// Creates the namespace, brings its loopback up and turns IPv6 duplicate address
    /// detection off (so addresses are usable at once). Fails if it already exists.
    pub fn create(name: &str) -> Result<Netns> {
        cmd::sh("ip", &["netns", "add", name])?;
        let ns = Netns::existing(name);
        ns.ip(&["link", "set", "lo", "up"])?;
        ns.sysctl(&[
            ("net.ipv6.conf.all.accept_dad", "0"),
            ("net.ipv6.conf.default.accept_dad", "0"),
            ("net.ipv6.conf.all.dad_transmits", "0"),
            ("net.ipv6.conf.default.dad_transmits", "0"),
            // No router advertisements are wanted anywhere in the lab.
            ("net.ipv6.conf.all.accept_ra", "0"),
            ("net.ipv6.conf.default.accept_ra", "0"),
        ])?;
        Ok(ns)
    }

    /// The namespace's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// True if `/run/netns/NAME` exists.
    pub fn exists(&self) -> bool {
        Path::new("/run/netns").join(&self.name).exists()
    }

    /// A [`Command`] that runs `program` inside this namespace (via `ip netns exec`, which
    /// execs the program in place, so the child's pid is the program's).
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.name]).arg(program);
        command
    }

    /// A [`Command`] that runs `program` in this namespace's network namespace only
    /// (`nsenter --net=/run/netns/NAME`). Unlike `ip netns exec` it makes no mount
    /// namespace and does not remount /sys, so the program sees the host's cgroup mounts:
    /// what kubelet and containerd need.
    pub fn nsenter_command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut command = Command::new("nsenter");
        command
            .arg(format!("--net=/run/netns/{}", self.name))
            .arg("--")
            .arg(program);
        command
    }

    /// Runs `argv` inside the namespace within `timeout`; returns its output whatever its
    /// exit status.
    pub fn exec_unchecked(&self, argv: &[&str], timeout: Duration) -> Result<CmdOutput> {
        let (program, args) = split_argv(argv)?;
        cmd::run(self.command(program).args(args), None, timeout)
    }

    /// Runs `argv` inside the namespace (budget [`SHORT`]), failing on a non-zero exit;
    /// returns stdout.
    pub fn exec(&self, argv: &[&str]) -> Result<String> {
        let (program, args) = split_argv(argv)?;
        Ok(cmd::run_checked(self.command(program).args(args), None, SHORT)?.stdout)
    }

    /// `ip -n NAME ARGS...`, failing on a non-zero exit; returns stdout.
    pub fn ip(&self, args: &[&str]) -> Result<String> {
        Ok(cmd::run_checked(
            Command::new("ip").args(["-n", &self.name]).args(args),
            None,
            SHORT,
        )?
        .stdout)
    }

    /// `ip -n NAME -j ARGS...` parsed as JSON into `T`.
    pub fn ip_json<T: DeserializeOwned>(&self, args: &[&str]) -> Result<T> {
        let mut full = vec!["-j"];
        full.extend_from_slice(args);
        let text = self.ip(&full)?;
        let text = if text.trim().is_empty() { "[]" } else { &text };
        serde_json::from_str(text)
            .map_err(|e| LabError::parse(format!("`ip -j {}` in {}", args.join(" "), self.name), e))
    }

    /// Sets sysctls inside the namespace.
    pub fn sysctl(&self, settings: &[(&str, &str)]) -> Result<()> {
        let assignments: Vec<String> = settings.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let mut argv = vec!["sysctl", "-q", "-w"];
        argv.extend(assignments.iter().map(String::as_str));
        self.exec(&argv).map(|_| ())
    }

    /// Turns IPv4 and IPv6 forwarding on.
    pub fn enable_forwarding(&self) -> Result<()> {
        self.sysctl(&[
            ("net.ipv4.ip_forward", "1"),
            ("net.ipv6.conf.all.forwarding", "1"),
        ])
    }

    /// Pids of every process whose network namespace is this one.
    pub fn pids(&self) -> Result<Vec<u32>> {
        let out = cmd::run(
            Command::new("ip").args(["netns", "pids", &self.name]),
            None,
            SHORT,
        )?;
        Ok(out
            .stdout
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect())
    }

    /// SIGKILLs every process in the namespace and waits (bounded) until none is left.
    /// Returns how many were killed.
    pub fn kill_all(&self) -> Result<usize> {
        let mut killed = 0;
        for _ in 0..5 {
            let pids = self.pids()?;
            if pids.is_empty() {
                break;
            }
            for pid in &pids {
                if signal(*pid, "KILL").is_ok() {
                    killed += 1;
                }
            }
            let _ = wait_gone(&pids, Duration::from_secs(2));
        }
        Ok(killed)
    }

    /// Kills everything inside and deletes the namespace. A missing namespace is fine.
    pub fn delete(&self) -> Result<()> {
        if !self.exists() {
            return Ok(());
        }
        self.kill_all()?;
        cmd::sh("ip", &["netns", "del", &self.name]).map(|_| ())
    }

    /// The kernel routing table for `family` (`"-4"` or `"-6"`), from `ip -j route`.
    pub fn routes(&self, family: Family) -> Result<Vec<crate::inspect::Route>> {
        self.ip_json(&[family.flag(), "route", "show", "table", "main"])
    }

    /// The neighbour (ARP/NDP) table, from `ip -j neigh`.
    pub fn neighbours(&self) -> Result<Vec<crate::inspect::Neighbour>> {
        self.ip_json(&["neigh", "show"])
    }

    /// Addresses configured in the namespace, from `ip -j addr`.
    pub fn addresses(&self) -> Result<Vec<crate::inspect::LinkAddresses>> {
        self.ip_json(&["addr", "show"])
    }

    /// Sets link `dev` up or down.
    pub fn set_link(&self, dev: &str, up: bool) -> Result<()> {
        self.ip(&["link", "set", dev, if up { "up" } else { "down" }])
            .map(|_| ())
    }
}

/// An address family selector for inspection calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    fn flag(self) -> &'static str {
        match self {
            Family::V4 => "-4",
            Family::V6 => "-6",
        }
    }
}

fn split_argv<'a>(argv: &'a [&'a str]) -> Result<(&'a str, &'a [&'a str])> {
    argv.split_first()
        .map(|(program, args)| (*program, args))
        .ok_or_else(|| LabError::Invalid("empty command".into()))
}

/// Sends `signal` (a name such as `TERM` or `KILL`) to `pid` with `kill(1)`.
pub fn signal(pid: u32, signal: &str) -> Result<()> {
    cmd::sh("kill", &[&format!("-{signal}"), &pid.to_string()]).map(|_| ())
}

/// True while `/proc/PID` exists and the process is not a zombie.
pub fn is_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state is the first field after the parenthesised command name.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

/// Waits (bounded) until none of `pids` is alive.
pub fn wait_gone(pids: &[u32], timeout: Duration) -> Result<()> {
    poll_until(
        "processes to exit",
        timeout,
        Duration::from_millis(20),
        || {
            let alive: Vec<u32> = pids.iter().copied().filter(|p| is_alive(*p)).collect();
            Ok(if alive.is_empty() {
                Poll::Ready(())
            } else {
                Poll::Pending(format!("still alive: {alive:?}"))
            })
        },
    )
}

/// A program running inside a namespace, with its output in a log file. Killed (SIGKILL)
/// when dropped, unless it already exited.
#[derive(Debug)]
pub struct LabProcess {
    name: String,
    netns: String,
    child: Child,
    log: PathBuf,
    exit: Option<ExitStatus>,
}

impl LabProcess {
    /// Starts `argv` inside `netns`; stdout and stderr go to `LOG_DIR/NAME.log`.
    pub fn spawn(netns: &Netns, name: &str, argv: &[&str], log_dir: &Path) -> Result<LabProcess> {
        let (program, args) = split_argv(argv)?;
        let mut command = netns.command(program);
        command.args(args);
        Self::spawn_command(netns, name, command, log_dir)
    }

    /// Like [`LabProcess::spawn`], but through [`Netns::nsenter_command`] (network
    /// namespace only; the host's mounts stay visible).
    pub fn spawn_nsenter(
        netns: &Netns,
        name: &str,
        argv: &[&str],
        log_dir: &Path,
    ) -> Result<LabProcess> {
        let (program, args) = split_argv(argv)?;
        let mut command = netns.nsenter_command(program);
        command.args(args);
        Self::spawn_command(netns, name, command, log_dir)
    }

    fn spawn_command(
        netns: &Netns,
        name: &str,
        mut command: Command,
        log_dir: &Path,
    ) -> Result<LabProcess> {
        std::fs::create_dir_all(log_dir)
            .map_err(|e| LabError::io(format!("creating {}", log_dir.display()), e))?;
        let log = log_dir.join(format!("{name}.log"));
        let out = File::create(&log)
            .map_err(|e| LabError::io(format!("creating {}", log.display()), e))?;
        let err = out
            .try_clone()
            .map_err(|e| LabError::io(format!("duplicating {}", log.display()), e))?;
        command
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err));
        let description = cmd::describe(&command);
        let child = command
            .spawn()
            .map_err(|e| LabError::io(format!("starting `{description}`"), e))?;
        Ok(LabProcess {
            name: name.to_string(),
            netns: netns.name().to_string(),
            child,
            log,
            exit: None,
        })
    }

    /// The name given at spawn time.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The namespace it runs in.
    pub fn netns(&self) -> &str {
        &self.netns
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its log file (stdout and stderr interleaved).
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The log so far (empty if unreadable).
    pub fn log(&self) -> String {
        std::fs::read(&self.log)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// True until the process exits.
    pub fn is_running(&mut self) -> bool {
        self.poll_exit().is_none()
    }

    /// The exit status, if it has exited.
    pub fn poll_exit(&mut self) -> Option<ExitStatus> {
        if self.exit.is_none()
            && let Ok(Some(status)) = self.child.try_wait()
        {
            self.exit = Some(status);
        }
        self.exit
    }

    /// SIGKILL, then reap it. Fine if it already exited.
    pub fn kill(&mut self) -> Result<()> {
        if self.poll_exit().is_some() {
            return Ok(());
        }
        let _ = self.child.kill();
        let status = self
            .child
            .wait()
            .map_err(|e| LabError::io(format!("waiting for {}", self.name), e))?;
        self.exit = Some(status);
        Ok(())
    }

    /// SIGTERM, wait up to `grace` for it to exit, then SIGKILL. Returns its exit status.
    pub fn terminate(&mut self, grace: Duration) -> Result<ExitStatus> {
        if let Some(status) = self.poll_exit() {
            return Ok(status);
        }
        signal(self.pid(), "TERM")?;
        let started = Instant::now();
        while started.elapsed() < grace {
            if let Some(status) = self.poll_exit() {
                return Ok(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.kill()?;
        self.exit.ok_or_else(|| {
            LabError::Invalid(format!("{} has no exit status after SIGKILL", self.name))
        })
    }

    /// Waits (bounded) until the log contains `needle`; fails early if the process exits.
    pub fn wait_for_log(&mut self, needle: &str, timeout: Duration) -> Result<()> {
        let what = format!("{:?} in the log of {}", needle, self.name);
        poll_until(&what, timeout, Duration::from_millis(20), || {
            let log = self.log();
            if log.contains(needle) {
                return Ok(Poll::Ready(()));
            }
            if let Some(status) = self.poll_exit() {
                return Err(LabError::Invalid(format!(
                    "{} exited ({status}) before logging {needle:?}; log {}:\n{}",
                    self.name,
                    self.log.display(),
                    crate::error::clip(&log, 4000)
                )));
            }
            Ok(Poll::Pending(crate::error::clip(log.trim(), 500)))
        })
    }
}

impl Drop for LabProcess {
    fn drop(&mut self) {
        let _ = self.kill();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_current_process_is_alive_and_a_made_up_pid_is_not() {
        assert!(is_alive(std::process::id()));
        assert!(!is_alive(u32::MAX - 1));
    }

    #[test]
    fn an_empty_command_is_rejected() {
        let ns = Netns::existing("hlnotthere");
        assert!(matches!(ns.exec(&[]), Err(LabError::Invalid(_))));
    }
}
