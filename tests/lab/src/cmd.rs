//! Running external programs (ip, vtysh, kubectl, curl, ...) with a time budget.
//! This is the crate's only way to run a command to completion: output is captured,
//! the child is killed when it overruns, and failures carry the command line and stderr.

use std::io::{Read, Write};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::error::{LabError, Result};

/// The default budget for a short administrative command (ip, sysctl, vtysh -c ...).
pub const SHORT: Duration = Duration::from_secs(30);

/// What a finished command printed.
#[derive(Debug, Clone)]
pub struct CmdOutput {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl CmdOutput {
    /// True when the command exited with status 0.
    pub fn success(&self) -> bool {
        self.status.success()
    }
}

/// `program arg1 arg2 ...`, for messages.
pub fn describe(cmd: &Command) -> String {
    let mut text = cmd.get_program().to_string_lossy().into_owned();
    for arg in cmd.get_args() {
        text.push(' ');
        let arg = arg.to_string_lossy();
        if arg.contains(' ') || arg.is_empty() {
            text.push_str(&format!("'{arg}'"));
        } else {
            text.push_str(&arg);
        }
    }
    text
}

/// Runs `cmd` to completion within `timeout`, feeding it `stdin` if given, and returns its
/// output whatever the exit status. Errors only if it cannot start or overruns.
pub fn run(cmd: &mut Command, stdin: Option<&[u8]>, timeout: Duration) -> Result<CmdOutput> {
    let command = describe(cmd);
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .map_err(|e| LabError::io(format!("starting `{command}`"), e))?;

    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        let input = input.to_vec();
        // A writer thread, so a child that does not read its stdin cannot block us.
        std::thread::spawn(move || {
            let _ = pipe.write_all(&input);
        });
    }
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());

    let started = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if started.elapsed() >= timeout => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(LabError::CommandTimedOut { command, timeout });
            }
            Ok(None) => std::thread::sleep(backoff(started.elapsed())),
            Err(e) => return Err(LabError::io(format!("waiting for `{command}`"), e)),
        }
    };
    // A daemon the command left behind may still hold the pipes open; don't wait for it.
    let grace = Duration::from_secs(2);
    Ok(CmdOutput {
        status,
        stdout: stdout.recv_timeout(grace).unwrap_or_default(),
        stderr: stderr.recv_timeout(grace).unwrap_or_default(),
    })
}

/// Like [`run`] but a non-zero exit is an error ([`LabError::CommandFailed`]).
pub fn run_checked(
    cmd: &mut Command,
    stdin: Option<&[u8]>,
    timeout: Duration,
) -> Result<CmdOutput> {
    let output = run(cmd, stdin, timeout)?;
    if output.success() {
        Ok(output)
    } else {
        Err(LabError::CommandFailed {
            command: describe(cmd),
            status: output.status.to_string(),
            stdout: output.stdout,
            stderr: output.stderr,
        })
    }
}

/// Runs `program args...` within [`SHORT`], failing on a non-zero exit; returns stdout.
pub fn sh(program: &str, args: &[&str]) -> Result<String> {
    Ok(run_checked(Command::new(program).args(args), None, SHORT)?.stdout)
}

fn drain<R: Read + Send + 'static>(pipe: Option<R>) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_end(&mut bytes);
        }
        let _ = tx.send(String::from_utf8_lossy(&bytes).into_owned());
    });
    rx
}

/// Polls quickly at first (most commands take milliseconds), then every 50 ms.
fn backoff(elapsed: Duration) -> Duration {
    if elapsed < Duration::from_millis(20) {
        Duration::from_millis(1)
    } else {
        Duration::from_millis(50)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_and_exit_status_are_captured() -> Result<()> {
        let out = run(
            Command::new("sh").args(["-c", "echo hello; echo oops >&2; exit 3"]),
            None,
            SHORT,
        )?;
        assert_eq!(out.stdout, "hello\n");
        assert_eq!(out.stderr, "oops\n");
        assert_eq!(out.status.code(), Some(3));
        Ok(())
    }

    #[test]
    fn stdin_is_fed_to_the_command() -> Result<()> {
        let out = run_checked(&mut Command::new("cat"), Some(b"from stdin"), SHORT)?;
        assert_eq!(out.stdout, "from stdin");
        Ok(())
    }

    #[test]
    fn a_command_that_overruns_is_killed_and_reported() {
        let started = Instant::now();
        let result = run(
            Command::new("sleep").arg("30"),
            None,
            Duration::from_millis(200),
        );
        assert!(matches!(result, Err(LabError::CommandTimedOut { .. })));
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn a_failing_command_is_an_error_that_names_the_command() {
        let err = run_checked(Command::new("sh").args(["-c", "exit 1"]), None, SHORT)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("sh -c 'exit 1'"), "{err}");
    }
}
