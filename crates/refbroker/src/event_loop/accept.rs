//! Accepting in the event loop: each listener is polled like a
//! connection (no thread per listener: the thread count stays the same
//! whatever the number and kind of listeners), and each accepted socket
//! gets the transport of its listener's kind. Stopping removes the
//! listeners from the poll and closes this process's copies only; the
//! sockets live on in the processes that hold them.

use std::collections::HashMap;
use std::io;

use emqx_handoff::broker::Listener;
use emqx_tls::TlsConfig;
use mio::net::TcpListener;
use mio::{Interest, Token};

use super::Loop;
use crate::settings::ListenerKind;

/// Connections accepted from one listener per turn; the rest wait for
/// the next turn (the kernel's backlog holds them).
const ACCEPTS_PER_TURN: usize = 64;
/// Listener `i` polls under token `LISTENER_TOKENS - i`; connections
/// count up from 1, so the two never meet.
const LISTENER_TOKENS: usize = usize::MAX - 1;
/// The most listeners a broker polls.
const MAX_LISTENERS: usize = 1024;

/// What the loop serves listeners with: each one's kind, by name (a
/// listener not named is plain TCP), and the TLS configuration of `ssl`
/// listeners, read at start.
#[derive(Default, Clone)]
pub struct Listening {
    pub kinds: HashMap<String, ListenerKind>,
    pub tls: Option<TlsConfig>,
    /// The HTTP paths of the WebSocket listeners.
    pub paths: HashMap<String, String>,
}

impl Listening {
    /// Listeners of these kinds, `ssl` and `wss` ones served with `tls`.
    pub fn new(kinds: HashMap<String, ListenerKind>, tls: Option<TlsConfig>) -> Listening {
        Listening {
            kinds,
            tls,
            paths: HashMap::new(),
        }
    }

    /// With these paths for the WebSocket listeners (by name).
    pub fn with_paths(self, paths: HashMap<String, String>) -> Listening {
        Listening { paths, ..self }
    }

    /// The HTTP path the WebSocket listener `name` serves.
    pub fn path(&self, name: &str) -> &str {
        self.paths
            .get(name)
            .map_or(crate::settings::DEFAULT_WS_PATH, String::as_str)
    }

    /// The kind of the listener named `name`.
    pub fn kind(&self, name: &str) -> ListenerKind {
        self.kinds.get(name).copied().unwrap_or_default()
    }

    /// The configuration moved TLS connections continue under: the
    /// `ssl` listeners', or a bare one when there is none (a TLS
    /// connection keeps its negotiated state; the files matter only to
    /// new handshakes). None if even a bare one cannot be made.
    pub fn import_config(&self) -> Option<TlsConfig> {
        match &self.tls {
            Some(tls) => Some(tls.clone()),
            None => TlsConfig::bare().ok(),
        }
    }
}

/// A listener the loop polls.
pub(super) struct Polled {
    name: String,
    socket: TcpListener,
}

/// The listener index of token `t`, if it is a listener's.
pub(super) fn listener_index(t: usize) -> Option<usize> {
    let i = LISTENER_TOKENS.checked_sub(t)?;
    (i < MAX_LISTENERS).then_some(i)
}

impl Loop {
    /// Starts polling `listeners` (non-blocking already).
    pub(super) fn listen(&mut self, listeners: Vec<Listener>) {
        for l in listeners {
            let i = self.listeners.len();
            if i >= MAX_LISTENERS {
                self.broker.log(format_args!(
                    "ERROR: listener {}: over {MAX_LISTENERS} listeners",
                    l.name
                ));
                continue;
            }
            let mut socket = TcpListener::from_std(l.socket);
            let token = Token(LISTENER_TOKENS - i);
            if let Err(e) = self
                .poll
                .registry()
                .register(&mut socket, token, Interest::READABLE)
            {
                self.broker.log(format_args!(
                    "ERROR: listener {}: cannot poll it: {e}",
                    l.name
                ));
                continue;
            }
            self.listeners.push(Polled {
                name: l.name,
                socket,
            });
            // Connections may be waiting since before the registration.
            self.accept_again.push(i);
        }
    }

    /// Stops polling the listeners and closes our copies.
    pub(super) fn stop_accepting(&mut self) {
        for mut l in std::mem::take(&mut self.listeners) {
            let _ = self.poll.registry().deregister(&mut l.socket);
        }
        self.accept_again.clear();
        self.accept_later.clear();
    }

    /// Accepts what listener `i` has, up to a turn's share.
    pub(super) fn accept(&mut self, i: usize) {
        if self.frozen.is_some() {
            // Left in the backlog; the thaw accepts them.
            self.accept_again.push(i);
            return;
        }
        for _ in 0..ACCEPTS_PER_TURN {
            let Some(l) = self.listeners.get(i) else {
                return;
            };
            // Another process may hold the same socket and take the
            // connection first: hence non-blocking.
            match l.socket.accept() {
                Ok((stream, _)) => {
                    let name = l.name.clone();
                    // Into std's type, which the transports take.
                    let stream = std::net::TcpStream::from(std::os::fd::OwnedFd::from(stream));
                    self.serve(&name, stream);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    // EMFILE and the like: tried again at the next tick
                    // (100 ms) rather than in a spin.
                    let name = l.name.clone();
                    self.broker
                        .log(format_args!("listener {name}: accept failed: {e}"));
                    self.accept_later.push(i);
                    return;
                }
            }
        }
        self.accept_again.push(i);
    }
}
