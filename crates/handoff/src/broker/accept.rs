//! Accepting that can be stopped at once without closing the sockets:
//! by the broker's own event loop ([`Service::accept`]) or, for a broker
//! that declines, by one library thread per listener.

use std::net::TcpListener;
use std::os::fd::AsFd;
use std::sync::Arc;
use std::thread::JoinHandle;

use super::stop::{Stop, Wake};
use super::{Listener, Service};

/// Who accepts: the broker itself, or the library's threads.
pub enum Accepting {
    /// The broker's event loop polls the listeners.
    Service(Arc<dyn Service>),
    /// Threads call [`Service::serve`].
    Threads(Acceptors),
}

impl Accepting {
    /// Starts accepting on every listener: the broker's way if it takes
    /// them, else with threads.
    pub fn start(
        listeners: Vec<Listener>,
        service: Arc<dyn Service>,
    ) -> std::io::Result<Accepting> {
        for l in &listeners {
            // Once, never toggled: O_NONBLOCK belongs to the open file
            // description, which a handoff shares with the other process.
            l.socket.set_nonblocking(true)?;
        }
        match service.accept(listeners) {
            Ok(()) => Ok(Accepting::Service(service)),
            Err(listeners) => Acceptors::start(listeners, service).map(Accepting::Threads),
        }
    }

    /// Stops accepting; the sockets stay open (another process holds them).
    pub fn stop(self) {
        match self {
            Accepting::Service(service) => service.stop_accepting(),
            Accepting::Threads(threads) => threads.stop(),
        }
    }
}

/// One thread per listener; [`Acceptors::stop`] wakes them through a pipe.
pub struct Acceptors {
    stop: Arc<Stop>,
    threads: Vec<JoinHandle<()>>,
}

impl Acceptors {
    /// Starts accepting on every listener.
    pub fn start(
        listeners: Vec<Listener>,
        service: Arc<dyn Service>,
    ) -> std::io::Result<Acceptors> {
        let stop = Arc::new(Stop::new()?);
        let mut threads = Vec::new();
        for Listener { name, socket, .. } in listeners {
            let stop = Arc::clone(&stop);
            let service = Arc::clone(&service);
            threads.push(std::thread::spawn(move || {
                accept_loop(&name, &socket, &stop, &*service)
            }));
        }
        Ok(Acceptors { stop, threads })
    }

    /// Stops accepting; the sockets stay open (another process holds them).
    pub fn stop(self) {
        self.stop.stop();
        for t in self.threads {
            let _ = t.join();
        }
    }
}

fn accept_loop(name: &str, socket: &TcpListener, stop: &Stop, service: &dyn Service) {
    loop {
        match stop.wait(socket.as_fd()) {
            Ok(Wake::Ready) => {}
            Ok(Wake::Stopped) => return,
            Err(e) => {
                eprintln!("listener {name}: poll failed: {e}");
                return;
            }
        }
        // The socket is shared with other processes: another may have taken
        // the connection first, hence non-blocking.
        match socket.accept() {
            Ok((stream, _)) => {
                let _ = stream.set_nonblocking(false);
                service.serve(name, stream);
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                eprintln!("listener {name}: accept failed: {e}");
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
        }
    }
}
