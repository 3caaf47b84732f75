//! Authentication and authorization from the two files a mosquitto
//! operator already keeps, decided as Debian's mosquitto 2.0 decides
//! (work in progress: the file reader, topic matching, password file).

mod file;
mod password;
mod text;
#[allow(dead_code)]
mod topic;

pub use file::{FileError, MAX_FILE_SIZE};
pub use password::{PasswordFile, PasswordFileError, PasswordProblem};
