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

/// Looks the service user up in the user database.
pub fn lookup(name: &str) -> Result<ServiceUser, String> {
    match User::from_name(name) {
        Ok(Some(u)) => Ok(ServiceUser {
            name: name.to_string(),
            uid: u.uid,
            gid: u.gid,
            home: u.dir,
        }),
        Ok(None) => Err(format!("service user '{name}' does not exist")),
        Err(e) => Err(format!("looking up service user '{name}': {e}")),
    }
}

/// Becomes `user` (when running as root) with every capability set empty
/// and no_new_privs set. Call in a single-threaded process right before exec.
/// Running as another non-root user than `user` is an error.
pub fn drop_to(user: &ServiceUser) -> Result<(), String> {
    let me = Uid::effective();
    if me.is_root() {
        // Before changing uid, while CAP_SETPCAP is still held.
        for set in [CapSet::Ambient, CapSet::Inheritable, CapSet::Bounding] {
            caps::clear(None, set).map_err(|e| format!("clearing {set:?} capabilities: {e}"))?;
        }
        if !user.uid.is_root() {
            setgroups(&[user.gid]).map_err(|e| format!("setgroups: {e}"))?;
            setresgid(user.gid, user.gid, user.gid).map_err(|e| format!("setresgid: {e}"))?;
            setresuid(user.uid, user.uid, user.uid).map_err(|e| format!("setresuid: {e}"))?;
        }
    } else if me != user.uid {
        return Err(format!(
            "running as uid {me}, cannot become service user '{}' (uid {})",
            user.name, user.uid
        ));
    } else {
        // Without CAP_SETPCAP the bounding set cannot shrink; no_new_privs
        // below keeps exec from gaining anything anyway.
        let _ = caps::clear(None, CapSet::Bounding);
        caps::clear(None, CapSet::Ambient)
            .map_err(|e| format!("clearing ambient capabilities: {e}"))?;
        caps::clear(None, CapSet::Inheritable)
            .map_err(|e| format!("clearing inheritable capabilities: {e}"))?;
    }
    for set in [CapSet::Effective, CapSet::Permitted] {
        caps::clear(None, set).map_err(|e| format!("clearing {set:?} capabilities: {e}"))?;
    }
    nix::sys::prctl::set_no_new_privs().map_err(|e| format!("no_new_privs: {e}"))?;
    for set in [
        CapSet::Effective,
        CapSet::Permitted,
        CapSet::Inheritable,
        CapSet::Ambient,
    ] {
        let left = caps::read(None, set).map_err(|e| format!("reading {set:?}: {e}"))?;
        if !left.is_empty() {
            return Err(format!("{set:?} capabilities remain: {left:?}"));
        }
    }
    Ok(())
}
