//! Listeners by name: inherited through `LISTEN_FDS`/`LISTEN_FDNAMES`/
//! `LISTEN_PID` (systemd's socket-activation convention), else bound.

use std::net::{SocketAddr, TcpListener};
use std::os::fd::{FromRawFd, OwnedFd};

use crate::env::{LISTEN_FDNAMES, LISTEN_FDS, LISTEN_PID};

/// A named listening socket.
#[derive(Debug)]
pub struct Listener {
    /// Its name (`mqtt`, `mqtt-alt`...).
    pub name: String,
    /// The socket.
    pub socket: TcpListener,
    /// Passed in (`LISTEN_FDS`) rather than bound by this process.
    pub inherited: bool,
}

/// Takes the inherited listeners (clearing `LISTEN_*` so children do not
/// see them) and binds each of `wanted` not inherited under its name.
/// Inherited listeners with other names are kept too, so that a later
/// handoff passes them on.
pub fn take_listeners(wanted: &[(String, SocketAddr)]) -> std::io::Result<Vec<Listener>> {
    let mut out = Vec::new();
    let inherited = sd_notify::listen_fds_with_names();
    for name in [LISTEN_PID, LISTEN_FDS, LISTEN_FDNAMES] {
        std::env::remove_var(name);
    }
    for (raw, name) in inherited? {
        // SAFETY: LISTEN_PID named this process, so by the socket-activation
        // convention fds 3..3+LISTEN_FDS are ours alone; sd_notify has set
        // them close-on-exec.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        out.push(Listener {
            name,
            socket: TcpListener::from(fd),
            inherited: true,
        });
    }
    for (name, addr) in wanted {
        if out.iter().any(|l| &l.name == name) {
            continue;
        }
        let socket = TcpListener::bind(addr)
            .map_err(|e| std::io::Error::new(e.kind(), format!("binding {name} on {addr}: {e}")))?;
        out.push(Listener {
            name: name.clone(),
            socket,
            inherited: false,
        });
    }
    Ok(out)
}

/// Hands the listeners this process bound to systemd's fd store
/// (`FDSTORE=1`, `FDNAME=`), so that if every broker dies, `Restart=`
/// passes the same sockets back and clients queue instead of being refused.
/// Inherited ones are already held by systemd or by the previous broker.
/// Outside systemd this does nothing.
pub fn store_listeners(listeners: &[Listener]) -> std::io::Result<()> {
    use std::os::fd::AsFd;
    let bound: Vec<&Listener> = listeners.iter().filter(|l| !l.inherited).collect();
    let Some(addr) = super::lease::systemd_notify_addr() else {
        return Ok(());
    };
    if bound.is_empty() {
        return Ok(());
    }
    let notifier = crate::Notifier::at(&addr)?;
    for l in bound {
        notifier.send_with_fds(
            &format!("FDSTORE=1\nFDNAME={}", l.name),
            &[l.socket.as_fd()],
        )?;
    }
    Ok(())
}
