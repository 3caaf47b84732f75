//! Authentication and authorization from the two files a mosquitto
//! operator already keeps, decided as Debian's mosquitto 2.0 decides
//! (work in progress: the file reader, topic matching, password and ACL
//! files).

mod acl;
mod file;
mod password;
mod text;
mod topic;

pub use acl::{Access, AclFile, AclFileError, AclProblem, Identity};
pub use file::{FileError, MAX_FILE_SIZE};
pub use password::{PasswordFile, PasswordFileError, PasswordProblem};
