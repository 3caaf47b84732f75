//! TLS between byte queues, on s2n-tls, for the reference broker and the
//! load harness: an [`Engine`] never touches a socket. Its owner reads
//! the socket into [`Engine::incoming`] and writes [`Engine::outgoing`]
//! to it; the engine feeds s2n whole TLS records only and s2n's output
//! lands in the outgoing queue at once. So at any moment between two
//! calls s2n holds no partial record, no unread plaintext and no
//! unflushed output, and an established connection serializes
//! ([`Engine::export`]) without waiting on its peer; the partial record
//! and the unsent ciphertext move as plain bytes (design.md, "Moving TLS
//! sessions").
//!
//! Modules: `config` (server and client configurations from files),
//! `engine` (one connection), `identity` (the peer certificate's common
//! name), `secret` (bytes wiped when dropped), `spare` (connections
//! made ahead of a move).

mod config;
mod engine;
mod identity;
mod secret;
mod spare;

pub use config::{ClientFiles, ConfigError, ServerFiles, TlsConfig, Verify};
pub use engine::{Engine, EngineError, Progress, Side, TlsState, MAX_RECORD};
pub use identity::common_name;
pub use secret::{wipe, Secret};
pub use spare::{Spare, Spares};
