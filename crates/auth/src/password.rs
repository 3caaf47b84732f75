//! mosquitto's `password_file`, read as mosquitto 2.0's `pwfile__parse`
//! and `unpwd__decode_passwords` read it: one `username:hash` per line, a
//! line starting with `#` a comment, a line without `:` skipped when blank
//! (or a comment indented), the username the text before the first `:`
//! and the hash the text up to the next (leading `:` skipped, both trimmed
//! of spaces, as `strtok` and `misc__trimblanks` do). The hash is
//! `$7$ITERATIONS$SALT$HASH` (PBKDF2-HMAC-SHA512) or `$6$SALT$HASH`
//! (SHA-512 of password then salt), salt 12 bytes and hash 64 in base64.
//!
//! Where mosquitto logs a line and drops the user (a hash it cannot
//! decode, no hash, an unknown type, a name too long) or silently skips a
//! line of text without `:`, this is an error naming the file and line; so
//! is a user given twice (mosquitto_passwd never writes that, and which one
//! mosquitto uses depends on its hash table).

mod hash;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use crate::file::{file_prefix, read_bounded, FileError, MAX_FILE_SIZE};
use crate::text::{is_c_space, lines, trim_c};
use hash::Hash;
pub use hash::{Fingerprint, FINGERPRINT_LEN};

/// The longest username and hash field mosquitto keeps.
const MAX_FIELD: usize = 65535;

/// The users of a password file and their hashes.
pub struct PasswordFile {
    users: HashMap<String, Hash>,
}

/// What is wrong with a line of a password file (never its content).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PasswordProblem {
    #[error("not UTF-8")]
    NotUtf8,
    #[error("holds a NUL byte")]
    Nul,
    #[error("no ':' between username and password hash")]
    NoSeparator,
    #[error("no username before ':'")]
    NoUsername,
    #[error("username longer than 65535 bytes")]
    UsernameTooLong,
    #[error("no password hash after the username")]
    NoHash,
    #[error("password hash field longer than 65535 bytes")]
    HashTooLong,
    #[error("unknown password hash type (mosquitto reads $6$ and $7$ hashes)")]
    UnknownHashType,
    #[error("incomplete password hash (want $7$ITERATIONS$SALT$HASH or $6$SALT$HASH)")]
    Incomplete,
    #[error("iteration count is not a number from 1 to 2147483647")]
    BadIterations,
    #[error("salt is not 12 bytes of base64")]
    BadSalt,
    #[error("hash is not 64 bytes of base64")]
    BadHash,
    #[error("the same username as line {first_line}")]
    Duplicate { first_line: usize },
}

/// Why a password file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum PasswordFileError {
    /// The file could not be read.
    #[error("password file {0}")]
    File(#[from] FileError),
    /// A line is malformed.
    #[error("password file {}line {line}: {problem}", file_prefix(file.as_deref()))]
    Line {
        file: Option<PathBuf>,
        line: usize,
        problem: PasswordProblem,
    },
}

impl PasswordFile {
    /// Reads and parses the password file at `path`.
    pub fn load(path: &Path) -> Result<PasswordFile, PasswordFileError> {
        let bytes = read_bounded(path, MAX_FILE_SIZE)?;
        PasswordFile::parse_bytes(&bytes, Some(path))
    }

    /// Parses the text of a password file.
    pub fn parse(text: &str) -> Result<PasswordFile, PasswordFileError> {
        PasswordFile::parse_bytes(text.as_bytes(), None)
    }

    fn parse_bytes(bytes: &[u8], file: Option<&Path>) -> Result<PasswordFile, PasswordFileError> {
        let mut users = HashMap::new();
        let mut first_lines: HashMap<String, usize> = HashMap::new();
        for (number, line) in lines(bytes) {
            let fail = |problem| PasswordFileError::Line {
                file: file.map(Path::to_path_buf),
                line: number,
                problem,
            };
            let line = line.map_err(|()| fail(PasswordProblem::NotUtf8))?;
            let Some((user, hash)) = parse_line(line).map_err(fail)? else {
                continue;
            };
            if let Some(&first_line) = first_lines.get(&user) {
                return Err(fail(PasswordProblem::Duplicate { first_line }));
            }
            first_lines.insert(user.clone(), number);
            users.insert(user, hash);
        }
        Ok(PasswordFile { users })
    }

    /// Whether `password` is `username`'s password. An unknown user costs
    /// the same hashing as a known one with mosquitto_passwd's defaults, and
    /// the digests are compared in constant time.
    /// As in mosquitto, which hashes the password as a C string, the
    /// password ends at its first NUL byte.
    pub fn verify(&self, username: &str, password: &[u8]) -> bool {
        let end = password.iter().position(|&b| b == 0);
        let password = &password[..end.unwrap_or(password.len())];
        match self.users.get(username) {
            Some(hash) => hash.verify(password),
            None => {
                std::hint::black_box(Hash::decoy().verify(password));
                false
            }
        }
    }

    /// The fingerprint of `username`'s entry, if the file names it: a
    /// broker that verified a login against an entry passes it on with the
    /// login, and another broker whose entry has the same fingerprint
    /// knows the password without hashing it again.
    pub fn fingerprint(&self, username: &str) -> Option<Fingerprint> {
        self.users.get(username).map(Hash::fingerprint)
    }

    /// Whether the file names `username`.
    pub fn contains(&self, username: &str) -> bool {
        self.users.contains_key(username)
    }

    /// How many users the file names.
    pub fn len(&self) -> usize {
        self.users.len()
    }

    /// Whether the file names no user.
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }
}

/// Only the count: hashes stay out of logs.
impl fmt::Debug for PasswordFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PasswordFile")
            .field("users", &self.users.len())
            .finish()
    }
}

/// The user and hash of one line, `None` for a line mosquitto skips.
fn parse_line(line: &str) -> Result<Option<(String, Hash)>, PasswordProblem> {
    if line.starts_with('#') {
        return Ok(None);
    }
    if !line.contains(':') {
        let rest = line.trim_start_matches(is_c_space);
        if rest.is_empty() || rest.starts_with('#') {
            return Ok(None);
        }
        return Err(PasswordProblem::NoSeparator);
    }
    if line.contains('\0') {
        return Err(PasswordProblem::Nul);
    }
    // strtok(buf, ":") twice: empty fields are skipped, a third is ignored.
    let mut fields = line.split(':').filter(|f| !f.is_empty());
    let user = trim_c(fields.next().ok_or(PasswordProblem::NoUsername)?);
    if user.len() > MAX_FIELD {
        return Err(PasswordProblem::UsernameTooLong);
    }
    let hash = trim_c(fields.next().ok_or(PasswordProblem::NoHash)?);
    if hash.len() > MAX_FIELD {
        return Err(PasswordProblem::HashTooLong);
    }
    if hash.is_empty() {
        return Err(PasswordProblem::NoHash);
    }
    Ok(Some((user.to_string(), Hash::parse(hash)?)))
}
