//! The store's exclusive lock: flock on a file that names its holder's pid.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::thread::sleep;
use std::time::{Duration, Instant};

use crate::Error;

/// Held while a command changes the store; released on drop (and on exec,
/// since the file is close-on-exec).
#[derive(Debug)]
pub struct StoreLock {
    _file: File,
}

impl StoreLock {
    /// Takes the lock, polling until `timeout` has passed.
    pub fn acquire(path: &Path, timeout: Duration) -> Result<StoreLock, Error> {
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(nix::libc::O_NOFOLLOW)
            .open(path)
            .map_err(|e| Error::io(format!("opening lock {}", path.display()), e))?;
        // 0600: anyone who can open the lock can flock it and hold root's
        // commands off (exit 6); older helpers made it 0644.
        let mode = file
            .metadata()
            .map_err(|e| Error::io(format!("reading lock {}", path.display()), e))?
            .permissions()
            .mode();
        if mode & 0o777 != 0o600 {
            file.set_permissions(std::fs::Permissions::from_mode(0o600))
                .map_err(|e| {
                    Error::io(format!("setting the mode of lock {}", path.display()), e)
                })?;
        }
        let deadline = Instant::now() + timeout;
        loop {
            match file.try_lock() {
                Ok(()) => break,
                Err(TryLockError::WouldBlock) if Instant::now() < deadline => {
                    sleep(Duration::from_millis(20));
                }
                Err(TryLockError::WouldBlock) => {
                    return Err(Error::Busy {
                        pid: holder(&mut file),
                    })
                }
                Err(TryLockError::Error(e)) => {
                    return Err(Error::io(format!("locking {}", path.display()), e))
                }
            }
        }
        let pid = std::process::id().to_string();
        let written = file
            .set_len(0)
            .and_then(|_| file.seek(SeekFrom::Start(0)))
            .and_then(|_| file.write_all(pid.as_bytes()));
        written.map_err(|e| Error::io(format!("writing lock {}", path.display()), e))?;
        Ok(StoreLock { _file: file })
    }
}

fn holder(file: &mut File) -> Option<u32> {
    let mut text = String::new();
    file.seek(SeekFrom::Start(0)).ok()?;
    file.read_to_string(&mut text).ok()?;
    text.trim().parse().ok()
}
