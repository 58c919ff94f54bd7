//! Cross-process mutual exclusion with `flock(2)` (through `std::fs::File::try_lock`).
//! Used to serialize control-plane start-up and to let only one lab topology exist at a
//! time (labs share the 169.254.100.0/24 control-plane segment). The lock is released when
//! the [`LockGuard`] is dropped or the process dies.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::{LabError, Result};
use crate::wait::{Poll, poll_until};

/// An exclusive lock on a file, held until drop.
#[derive(Debug)]
pub struct LockGuard {
    file: File,
    path: PathBuf,
}

impl LockGuard {
    /// Takes the exclusive lock on `path` (created if missing), waiting at most `timeout`.
    pub fn acquire(path: &Path, timeout: Duration) -> Result<LockGuard> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| LabError::io(format!("creating {}", parent.display()), e))?;
        }
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .map_err(|e| LabError::io(format!("opening lock file {}", path.display()), e))?;
        poll_until(
            &format!("the lock {}", path.display()),
            timeout,
            Duration::from_millis(100),
            || match file.try_lock() {
                Ok(()) => Ok(Poll::Ready(())),
                Err(std::fs::TryLockError::WouldBlock) => {
                    Ok(Poll::Pending("held by another process or test".into()))
                }
                Err(std::fs::TryLockError::Error(e)) => {
                    Err(LabError::io(format!("locking {}", path.display()), e))
                }
            },
        )?;
        Ok(LockGuard {
            file,
            path: path.to_path_buf(),
        })
    }

    /// The locked file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        let _ = self.file.unlock();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_lock_blocks_a_second_holder_until_released() -> Result<()> {
        let dir = std::env::temp_dir().join(format!("herald-lab-lock-{}", std::process::id()));
        let path = dir.join("test.lock");
        let first = LockGuard::acquire(&path, Duration::from_secs(1))?;
        let second = LockGuard::acquire(&path, Duration::from_millis(200));
        assert!(matches!(second, Err(LabError::WaitTimedOut { .. })));
        drop(first);
        let third = LockGuard::acquire(&path, Duration::from_secs(1))?;
        assert_eq!(third.path(), path);
        drop(third);
        let _ = std::fs::remove_dir_all(dir);
        Ok(())
    }
}
