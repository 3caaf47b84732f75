//! Authentication and authorization from the two files a mosquitto
//! operator already keeps, decided as Debian's mosquitto 2.0 decides:
//!
//! - [`PasswordFile`]: mosquitto's `password_file` (`mosquitto_passwd`
//!   writes it), `$7$` PBKDF2-HMAC-SHA512 and `$6$` salted SHA-512 lines,
//!   checked in constant time;
//! - [`AclFile`]: mosquitto's `acl_file` (`user`, `topic`, `pattern` with
//!   `%c` and `%u`), asked about publish ([`Access::Write`]), subscribe
//!   ([`Access::Subscribe`]) and delivery ([`Access::Read`]);
//! - [`Policy`]: both with `allow_anonymous` and a username from a client
//!   certificate, giving the CONNECT answer ([`ConnectDecision`]) and every
//!   later one ([`Policy::authorize`]).
//!
//! Files are read whole, bounded ([`MAX_FILE_SIZE`]), and only when they
//! are regular files. Where mosquitto would log a line and drop an entry
//! (a hash it cannot decode, a line it cannot parse), loading fails with
//! the file and the line number instead, so that a broker refuses to start
//! rather than serve with a user or rule quietly missing. No error message
//! carries a password or a hash.

mod acl;
mod file;
mod password;
mod policy;
mod settings;
mod text;
mod topic;

pub use acl::{Access, AclFile, AclFileError, AclProblem, Identity};
pub use file::{FileError, MAX_FILE_SIZE};
pub use password::{
    Fingerprint, PasswordFile, PasswordFileError, PasswordProblem, FINGERPRINT_LEN,
};
pub use policy::{ConnectDecision, Credentials, Policy, PolicyError};
pub use settings::{Settings, SettingsError, ACL_FILE_VAR, ALLOW_ANONYMOUS_VAR, PASSWORD_FILE_VAR};
