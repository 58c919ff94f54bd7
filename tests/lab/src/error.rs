//! The lab's one error type. Every fallible helper in this crate returns [`LabError`];
//! test code usually just propagates it with `?` (tests return `Result<(), LabError>`).

use std::time::Duration;

/// What went wrong while building, driving or inspecting the lab.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    /// A filesystem or process-spawning operation failed.
    #[error("I/O error while {context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// An external command ran and exited unsuccessfully.
    #[error("`{command}` failed ({status}): {}", stderr_or_stdout(.stderr, .stdout))]
    CommandFailed {
        command: String,
        status: String,
        stdout: String,
        stderr: String,
    },
    /// An external command was killed because it overran its time budget.
    #[error("`{command}` did not finish within {timeout:?}")]
    CommandTimedOut { command: String, timeout: Duration },
    /// A bounded wait gave up.
    #[error("timed out after {timeout:?} waiting for {what}{}", last_seen(.last))]
    WaitTimedOut {
        what: String,
        timeout: Duration,
        last: Option<String>,
    },
    /// Output of a tool (ip, vtysh, kubectl, the echo server) was not what we expected.
    #[error("could not parse {what}: {detail}")]
    Parse { what: String, detail: String },
    /// A required program is not installed.
    #[error("required tool `{tool}` not found: {hint}")]
    MissingTool { tool: String, hint: String },
    /// The caller asked for something the lab cannot do (bad index, name too long, ...).
    #[error("invalid lab request: {0}")]
    Invalid(String),
    /// Something already on the machine conflicts with what the lab needs.
    #[error("lab conflict: {0}")]
    Conflict(String),
}

/// Shorthand used throughout the crate.
pub type Result<T, E = LabError> = std::result::Result<T, E>;

impl LabError {
    /// Wraps an [`std::io::Error`] with a description of what was being done.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        LabError::Io {
            context: context.into(),
            source,
        }
    }

    /// A parse failure of `what`, with a short detail.
    pub fn parse(what: impl Into<String>, detail: impl std::fmt::Display) -> Self {
        LabError::Parse {
            what: what.into(),
            detail: detail.to_string(),
        }
    }
}

fn stderr_or_stdout(stderr: &str, stdout: &str) -> String {
    let text = if stderr.trim().is_empty() {
        stdout
    } else {
        stderr
    };
    clip(text.trim(), 2000)
}

fn last_seen(last: &Option<String>) -> String {
    match last {
        Some(l) => format!(" (last observation: {})", clip(l, 2000)),
        None => String::new(),
    }
}

/// Shortens `text` to at most `max` bytes (on a char boundary), marking the cut.
pub(crate) fn clip(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_command_reports_stderr_and_falls_back_to_stdout() {
        let with_stderr = LabError::CommandFailed {
            command: "ip link".into(),
            status: "exit status: 1".into(),
            stdout: "out".into(),
            stderr: "Cannot find device".into(),
        };
        assert!(with_stderr.to_string().contains("Cannot find device"));
        let only_stdout = LabError::CommandFailed {
            command: "vtysh".into(),
            status: "exit status: 1".into(),
            stdout: "% Unknown command".into(),
            stderr: "  ".into(),
        };
        assert!(only_stdout.to_string().contains("% Unknown command"));
    }

    #[test]
    fn clip_cuts_long_text_on_a_char_boundary() {
        assert_eq!(clip("short", 10), "short");
        assert_eq!(clip("ééé", 3), "é…");
    }
}
