//! `broker.pid` in the runtime dir: the pid, start time and release of the
//! broker that `start` or the last switch left running; how a broker
//! without a handoff socket is found. The service user can rewrite it, so
//! a pid read from it is only a claim (see [`super::process::verify`]).

use std::path::Path;

use super::process::start_time;
use super::runtime::RuntimeDir;

const PIDFILE: &str = "broker.pid";

/// A broker as `broker.pid` records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    /// Its pid.
    pub pid: u32,
    /// Its start time, when recorded (files of older helpers lack it).
    pub start: Option<u64>,
    /// The release it runs.
    pub version: String,
}

/// Records `pid` (this process, or a broker a switch started) as running
/// `version`.
pub fn record(runtime_dir: &Path, pid: u32, version: &str) -> std::io::Result<()> {
    let start =
        start_time(pid).ok_or_else(|| std::io::Error::other(format!("pid {pid} does not run")))?;
    RuntimeDir::open(runtime_dir)?
        .write_record(PIDFILE, format!("{pid} {start} {version}\n").as_bytes())
}

/// Why `broker.pid` cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum PidfileError {
    /// The folder or the file cannot be read as a record (a link, FIFO,
    /// device, oversized).
    #[error("{}: {source}", path.display())]
    Unreadable {
        /// The folder or file.
        path: std::path::PathBuf,
        /// What failed.
        #[source]
        source: std::io::Error,
    },
    /// Not what this helper writes.
    #[error("{}: not a pid record", .0.display())]
    Garbled(std::path::PathBuf),
}

/// The recorded broker, if its pid runs; `Err` when the file is not one
/// this helper wrote (a link, FIFO, device, oversized or garbled).
pub fn running(runtime_dir: &Path) -> Result<Option<Recorded>, PidfileError> {
    let path = || runtime_dir.join(PIDFILE);
    let rt = match RuntimeDir::open(runtime_dir) {
        Ok(rt) => rt,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(PidfileError::Unreadable {
                path: runtime_dir.to_path_buf(),
                source,
            })
        }
    };
    let Some(text) = rt
        .read_record(PIDFILE)
        .map_err(|source| PidfileError::Unreadable {
            path: path(),
            source,
        })?
    else {
        return Ok(None);
    };
    let recorded = parse(&text).ok_or_else(|| PidfileError::Garbled(path()))?;
    Ok(emqx_handoff::alive(recorded.pid).then_some(recorded))
}

/// `PID START VERSION`, or the older `PID VERSION`.
fn parse(text: &str) -> Option<Recorded> {
    let fields: Vec<&str> = text.split_whitespace().collect();
    let (pid, start, version) = match fields.as_slice() {
        [pid, start, version] => (pid, Some(start.parse().ok()?), version),
        [pid, version] => (pid, None, version),
        _ => return None,
    };
    semver::Version::parse(version).ok()?;
    Some(Recorded {
        pid: pid.parse().ok()?,
        start,
        version: version.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_parse_old_and_new_and_refuse_garbage() {
        let r = parse("12 345 5.0.1\n").unwrap();
        assert_eq!(
            (r.pid, r.start, r.version.as_str()),
            (12, Some(345), "5.0.1")
        );
        assert_eq!(parse("12 5.0.1").unwrap().start, None);
        assert!(parse("12 x 5.0.1").is_none());
        assert!(parse("12 1 ../../etc").is_none());
        assert!(parse("").is_none());
    }
}
