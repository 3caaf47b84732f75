//! Release packages: find one in the drop folder, verify its checksum, and
//! extract it safely into a staging folder of the store.

mod checksum;
mod extract;
mod guard;
mod locate;
mod tree;
mod zipdir;

pub use checksum::{verify_checksum, ChecksumError};
pub use extract::{extract, ExtractError, Links};
pub use guard::{entry_path, symlink_target_ok};
pub use locate::{locate, matches_version, Format, PackageFile};
pub use tree::release_root;
