//! Log lines to the journal with structured fields (the native protocol on
//! `/run/systemd/journal/socket`), used when stderr is the unit's journal
//! stream; elsewhere the caller prints to stderr.

use std::io;
use std::os::fd::AsFd;
use std::os::unix::net::UnixDatagram;
use std::path::Path;

/// The journal's native socket.
const SOCKET: &str = "/run/systemd/journal/socket";

/// syslog priorities used here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Priority {
    /// 3: an operation failed.
    Error = 3,
    /// 4: it worked, but something needs attention.
    Warning = 4,
    /// 5: a note for the operator.
    Notice = 5,
    /// 6: a transcript line.
    Info = 6,
}

/// The journal's stream socket (what a unit's stdout is connected to).
const STREAM_SOCKET: &str = "/run/systemd/journal/stdout";

/// Whether this process's stderr is a journal stream (systemd sets
/// `JOURNAL_STREAM=DEV:INODE` of it).
pub fn stderr_is_journal() -> bool {
    let Ok(stream) = std::env::var("JOURNAL_STREAM") else {
        return false;
    };
    nix::sys::stat::fstat(std::io::stderr().as_fd())
        .is_ok_and(|st| stream == format!("{}:{}", st.st_dev, st.st_ino))
}

/// A new journal stream whose lines are logged under `identifier` at
/// priority info: what `systemd-cat` does, for a process's stdout/stderr.
pub fn stream(identifier: &str) -> io::Result<std::os::fd::OwnedFd> {
    use std::io::Write;
    let mut s = std::os::unix::net::UnixStream::connect(STREAM_SOCKET)?;
    // identifier, unit id, priority, level prefix, then no forwarding to
    // syslog, kmsg or console (sd_journal_stream_fd's header).
    s.write_all(format!("{identifier}\n\n6\n0\n0\n0\n0\n").as_bytes())?;
    s.shutdown(std::net::Shutdown::Read)?;
    Ok(s.into())
}

/// A connection to the journal.
#[derive(Debug)]
pub struct Journal {
    socket: UnixDatagram,
    fields: Vec<(String, String)>,
}

impl Journal {
    /// The journal, when this process's stderr is a journal stream (systemd
    /// sets `JOURNAL_STREAM=DEV:INODE` of it); `fields` go on every entry.
    pub fn for_stderr(fields: Vec<(String, String)>) -> Option<Journal> {
        if !stderr_is_journal() {
            return None;
        }
        Journal::at(Path::new(SOCKET), fields).ok()
    }

    /// A journal listening on `path`.
    pub fn at(path: &Path, fields: Vec<(String, String)>) -> io::Result<Journal> {
        let socket = UnixDatagram::unbound()?;
        socket.connect(path)?;
        Ok(Journal { socket, fields })
    }

    /// Sends one entry.
    pub fn send(&self, priority: Priority, message: &str) -> io::Result<()> {
        let mut fields: Vec<(&str, &str)> = vec![("MESSAGE", message)];
        let prio = (priority as u8).to_string();
        fields.push(("PRIORITY", &prio));
        fields.push(("SYSLOG_IDENTIFIER", "emqx-relup"));
        for (k, v) in &self.fields {
            fields.push((k, v));
        }
        self.socket.send(&encode(&fields)).map(|_| ())
    }

    /// Waits, at most [`FLUSH_WAIT`], until journald has taken every entry
    /// sent (the socket's send queue is empty), and a moment more for it
    /// to read this process's unit from `/proc`: journald learns the unit
    /// of a native entry from its sender's cgroup, and one that arrives
    /// after its sender exited is logged without it, so `journalctl -u`
    /// does not show it (seen: 5 of 20 switch notes in the soak).
    pub fn flush(&self) {
        let until = std::time::Instant::now() + FLUSH_WAIT;
        while unsent(&self.socket).is_some_and(|n| n > 0) && std::time::Instant::now() < until {
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// The longest [`Journal::flush`] waits for journald.
const FLUSH_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// Bytes sent on `socket` that the receiver has not taken yet
/// (`SIOCOUTQ`); `None` when the kernel does not say.
fn unsent(socket: &UnixDatagram) -> Option<i32> {
    use std::os::fd::AsRawFd;
    let mut n: nix::libc::c_int = 0;
    // SAFETY: SIOCOUTQ (TIOCOUTQ) writes one int through the pointer,
    // which points at `n`, alive for the call; the fd is ours.
    let r = unsafe { nix::libc::ioctl(socket.as_raw_fd(), nix::libc::TIOCOUTQ, &mut n) };
    (r == 0).then_some(n)
}

/// The native protocol: `KEY=value\n`, or for a value holding a newline
/// `KEY\n`, its length as 64-bit little endian, the value, `\n`.
pub fn encode(fields: &[(&str, &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (key, value) in fields {
        out.extend_from_slice(key.as_bytes());
        if value.contains('\n') {
            out.push(b'\n');
            out.extend_from_slice(&(value.len() as u64).to_le_bytes());
        } else {
            out.push(b'=');
        }
        out.extend_from_slice(value.as_bytes());
        out.push(b'\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_and_multiline_values() {
        assert_eq!(
            encode(&[("MESSAGE", "hi"), ("PRIORITY", "5")]),
            b"MESSAGE=hi\nPRIORITY=5\n"
        );
        let mut want = b"MESSAGE\n".to_vec();
        want.extend_from_slice(&3u64.to_le_bytes());
        want.extend_from_slice(b"a\nb\n");
        assert_eq!(encode(&[("MESSAGE", "a\nb")]), want);
    }

    #[test]
    fn entries_carry_the_fields() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal");
        let server = UnixDatagram::bind(&path).unwrap();
        let j = Journal::at(&path, vec![("EMQX_RELUP_COMMAND".into(), "reload".into())]).unwrap();
        j.send(Priority::Warning, "careful").unwrap();
        let mut buf = [0u8; 512];
        let n = server.recv(&mut buf).unwrap();
        let text = String::from_utf8_lossy(&buf[..n]);
        assert_eq!(
            text,
            "MESSAGE=careful\nPRIORITY=4\nSYSLOG_IDENTIFIER=emqx-relup\nEMQX_RELUP_COMMAND=reload\n"
        );
    }
}
