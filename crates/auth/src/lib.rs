//! Authentication and authorization from the two files a mosquitto
//! operator already keeps, decided as Debian's mosquitto 2.0 decides
//! (work in progress: the file reader and topic matching).

mod file;
mod text;
mod topic;

pub use file::{FileError, MAX_FILE_SIZE};
