//! mosquitto's `acl_file`, read as mosquitto 2.0's `aclfile__parse` reads
//! it. Each line, trailing spaces removed, is one of:
//!
//! - `# ...`: a comment (only with `#` first on the line);
//! - `user NAME`: the following `topic` lines are NAME's (the rest of the
//!   line, trimmed, so a name may hold spaces); `topic` lines before any
//!   `user` line are for clients without a username;
//! - `topic [read|write|readwrite|deny] TOPIC`: a rule for the current user,
//!   `readwrite` when the access word is left out (so `topic deny` alone is
//!   `readwrite` on the topic `deny`);
//! - `pattern [read|write|readwrite|deny] TOPIC`: a rule for every client,
//!   wherever it stands, with `%c` replaced by the client id and `%u` by
//!   the username (a pattern holding `%u` is skipped for a client without
//!   one).
//!
//! Words are separated by spaces only (not tabs); the topic is the rest of
//! the line, trimmed, and must be a valid subscription filter. Anything
//! else is an error naming the file and the line, as mosquitto refuses to
//! start on it. What the rules decide is in [`check`](self::check).

pub(crate) mod check;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::file::{file_prefix, read_bounded, FileError, MAX_FILE_SIZE};
use crate::text::{is_c_space, lines, trim_c};
use crate::topic::valid_filter;

pub use check::{Access, Identity};

/// mosquitto's `MOSQ_ACL_READ`.
const READ: u8 = 1;
/// mosquitto's `MOSQ_ACL_WRITE`.
const WRITE: u8 = 2;

/// The rules of an ACL file.
#[derive(Debug, Clone, Default)]
pub struct AclFile {
    /// `topic` lines before any `user` line: clients without a username.
    anonymous: Rules,
    /// Each user's `topic` lines (several `user` sections of one name add up).
    users: HashMap<String, Rules>,
    /// Every `pattern` line.
    patterns: Rules,
}

/// One list of rules; mosquitto puts `deny` rules first, so any matching
/// `deny` wins over every grant of the same list.
#[derive(Debug, Clone, Default)]
struct Rules {
    deny: Vec<String>,
    grant: Vec<(String, u8)>,
}

impl Rules {
    fn push(&mut self, topic: &str, access: u8) {
        if access == 0 {
            self.deny.push(topic.to_string());
        } else {
            self.grant.push((topic.to_string(), access));
        }
    }

    fn is_empty(&self) -> bool {
        self.deny.is_empty() && self.grant.is_empty()
    }
}

/// What is wrong with a line of an ACL file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AclProblem {
    #[error("not UTF-8")]
    NotUtf8,
    #[error("holds a NUL byte")]
    Nul,
    #[error("{0:?} is not user, topic or pattern")]
    UnknownKeyword(String),
    #[error("no topic")]
    MissingTopic,
    #[error("{0:?} is not read, write, readwrite or deny")]
    BadAccess(String),
    #[error("{0:?} is not a valid topic filter")]
    BadTopic(String),
    #[error("no username after user")]
    MissingUsername,
}

/// Why an ACL file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum AclFileError {
    /// The file could not be read.
    #[error("ACL file {0}")]
    File(#[from] FileError),
    /// A line does not parse.
    #[error("ACL file {}line {line}: {problem}", file_prefix(file.as_deref()))]
    Line {
        file: Option<PathBuf>,
        line: usize,
        problem: AclProblem,
    },
}

impl AclFile {
    /// Reads and parses the ACL file at `path`.
    pub fn load(path: &Path) -> Result<AclFile, AclFileError> {
        let bytes = read_bounded(path, MAX_FILE_SIZE)?;
        AclFile::parse_bytes(&bytes, Some(path))
    }

    /// Parses the text of an ACL file.
    pub fn parse(text: &str) -> Result<AclFile, AclFileError> {
        AclFile::parse_bytes(text.as_bytes(), None)
    }

    fn parse_bytes(bytes: &[u8], file: Option<&Path>) -> Result<AclFile, AclFileError> {
        let mut acl = AclFile::default();
        let mut user: Option<String> = None;
        for (number, line) in lines(bytes) {
            let fail = |problem| AclFileError::Line {
                file: file.map(Path::to_path_buf),
                line: number,
                problem,
            };
            let line = line.map_err(|()| fail(AclProblem::NotUtf8))?;
            acl.parse_line(line, &mut user).map_err(fail)?;
        }
        Ok(acl)
    }

    fn parse_line(&mut self, line: &str, user: &mut Option<String>) -> Result<(), AclProblem> {
        let line = line.trim_end_matches(is_c_space);
        if line.starts_with('#') {
            return Ok(());
        }
        if line.contains('\0') {
            return Err(AclProblem::Nul);
        }
        let Some((keyword, rest)) = word(line) else {
            return Ok(());
        };
        match keyword {
            "topic" | "pattern" => {
                let (access, topic) = access_and_topic(rest)?;
                let rules = match (keyword, user.as_deref()) {
                    ("pattern", _) => &mut self.patterns,
                    (_, None) => &mut self.anonymous,
                    (_, Some(name)) => self.users.entry(name.to_string()).or_default(),
                };
                rules.push(topic, access);
            }
            "user" if rest.is_empty() => return Err(AclProblem::MissingUsername),
            "user" => *user = Some(trim_c(rest).to_string()),
            other => return Err(AclProblem::UnknownKeyword(other.to_string())),
        }
        Ok(())
    }

    /// Whether the file has no rule at all (then mosquitto denies every
    /// publish and delivery).
    pub fn is_empty(&self) -> bool {
        self.anonymous.is_empty() && self.users.is_empty() && self.patterns.is_empty()
    }
}

/// The first space-separated word of `s` and what follows the one space
/// after it (`strtok_r(s, " ")`, then `strtok_r(NULL, "")`).
fn word(s: &str) -> Option<(&str, &str)> {
    let s = s.trim_start_matches(' ');
    if s.is_empty() {
        return None;
    }
    Some(match s.split_once(' ') {
        Some((w, rest)) => (w, rest),
        None => (s, ""),
    })
}

/// The access and topic of a `topic` or `pattern` line after its keyword.
fn access_and_topic(rest: &str) -> Result<(u8, &str), AclProblem> {
    let (first, rest) = word(rest).ok_or(AclProblem::MissingTopic)?;
    let (access, topic) = if rest.is_empty() {
        (READ | WRITE, first)
    } else {
        let access = match first {
            "read" => READ,
            "write" => WRITE,
            "readwrite" => READ | WRITE,
            "deny" => 0,
            other => return Err(AclProblem::BadAccess(other.to_string())),
        };
        (access, trim_c(rest))
    };
    if !valid_filter(topic) {
        return Err(AclProblem::BadTopic(topic.to_string()));
    }
    Ok((access, topic))
}
