//! Privileges of a broker the helper starts: the service user, no
//! capabilities in any set, and no_new_privs.

use caps::CapSet;
use nix::unistd::{setgroups, setresgid, setresuid, Gid, Uid, User};

/// The service user, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceUser {
    /// Its name.
    pub name: String,
    /// Its uid.
    pub uid: Uid,
    /// Its primary gid.
    pub gid: Gid,
    /// Its home folder (the broker's `HOME`).
    pub home: std::path::PathBuf,
}

/// Why the service user could not be resolved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UserError {
    /// No such user in the user database.
    #[error("service user '{0}' does not exist")]
    Missing(String),
    /// The user database could not be read.
    #[error("looking up service user '{name}': {errno}")]
    Lookup {
        /// The user's name.
        name: String,
        /// The system's error.
        errno: nix::errno::Errno,
    },
}

/// Why privileges could not be dropped to the service user.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DropError {
    /// A capability set could not be changed or read.
    #[error("{what}: {why}")]
    Caps {
        /// Which step (`clearing Bounding capabilities`, `reading Effective`...).
        what: String,
        /// The library's error.
        why: String,
    },
    /// Capabilities remained after clearing.
    #[error("{set} capabilities remain: {left}")]
    Remain {
        /// The set.
        set: String,
        /// What is left in it.
        left: String,
    },
    /// A credential call failed.
    #[error("{call}: {errno}")]
    Credentials {
        /// `setgroups`, `setresgid`, `setresuid` or `no_new_privs`.
        call: &'static str,
        /// The system's error.
        errno: nix::errno::Errno,
    },
    /// Not root, and not the service user either.
    #[error("running as uid {me}, cannot become service user '{name}' (uid {uid})")]
    WrongUser {
        /// Who this process runs as.
        me: Uid,
        /// The service user's name.
        name: String,
        /// Its uid.
        uid: Uid,
    },
}

/// Looks the service user up in the user database.
pub fn lookup(name: &str) -> Result<ServiceUser, UserError> {
    match User::from_name(name) {
        Ok(Some(u)) => Ok(ServiceUser {
            name: name.to_string(),
            uid: u.uid,
            gid: u.gid,
            home: u.dir,
        }),
        Ok(None) => Err(UserError::Missing(name.to_string())),
        Err(errno) => Err(UserError::Lookup {
            name: name.to_string(),
            errno,
        }),
    }
}

fn clear(set: CapSet, what: &str) -> Result<(), DropError> {
    caps::clear(None, set).map_err(|e| DropError::Caps {
        what: what.to_string(),
        why: e.to_string(),
    })
}

fn cred(call: &'static str) -> impl Fn(nix::errno::Errno) -> DropError {
    move |errno| DropError::Credentials { call, errno }
}

/// Becomes `user` (when running as root) with every capability set empty
/// and no_new_privs set. Call in a single-threaded process right before exec.
/// Running as another non-root user than `user` is an error.
pub fn drop_to(user: &ServiceUser) -> Result<(), DropError> {
    let me = Uid::effective();
    if me.is_root() {
        // Before changing uid, while CAP_SETPCAP is still held.
        for set in [CapSet::Ambient, CapSet::Inheritable, CapSet::Bounding] {
            clear(set, &format!("clearing {set:?} capabilities"))?;
        }
        if !user.uid.is_root() {
            setgroups(&[user.gid]).map_err(cred("setgroups"))?;
            setresgid(user.gid, user.gid, user.gid).map_err(cred("setresgid"))?;
            setresuid(user.uid, user.uid, user.uid).map_err(cred("setresuid"))?;
        }
    } else if me != user.uid {
        return Err(DropError::WrongUser {
            me,
            name: user.name.clone(),
            uid: user.uid,
        });
    } else {
        // Without CAP_SETPCAP the bounding set cannot shrink; no_new_privs
        // below keeps exec from gaining anything anyway.
        let _ = caps::clear(None, CapSet::Bounding);
        clear(CapSet::Ambient, "clearing ambient capabilities")?;
        clear(CapSet::Inheritable, "clearing inheritable capabilities")?;
    }
    for set in [CapSet::Effective, CapSet::Permitted] {
        clear(set, &format!("clearing {set:?} capabilities"))?;
    }
    nix::sys::prctl::set_no_new_privs().map_err(cred("no_new_privs"))?;
    for set in [
        CapSet::Effective,
        CapSet::Permitted,
        CapSet::Inheritable,
        CapSet::Ambient,
    ] {
        let left = caps::read(None, set).map_err(|e| DropError::Caps {
            what: format!("reading {set:?}"),
            why: e.to_string(),
        })?;
        if !left.is_empty() {
            return Err(DropError::Remain {
                set: format!("{set:?}"),
                left: format!("{left:?}"),
            });
        }
    }
    Ok(())
}
