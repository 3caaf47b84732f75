//! emqx-handoff: the one home of the handoff protocol between a running
//! MQTT broker and the emqx-relup helper that moves it to another release.
//!
//! A session: both sides say `hello` (protocol range, release version,
//! pid); the helper asks `get_listeners` and receives them by name with
//! SCM_RIGHTS; it starts the new release with them (the placement rule of
//! [`env`]); once the new broker is ready the helper says `commit`, the old
//! broker answers `committed`, stops accepting, drains and exits. A helper
//! that closes the connection without `commit` leaves the broker serving.
//!
//! Protocol 2 moves the established connections instead: after the hello
//! the helper asks both brokers `get_schemas`; when the old one exports a
//! schema the new one imports, the helper gives each an end of a
//! socketpair (the new one at spawn, the old one with `commit_move`), the
//! old broker streams its state and sockets over it ([`transfer`]), the
//! new one answers `imported`, the old one says `go`, the new one
//! `going`, and the old one answers the helper `moved` and exits ([`broker::mover`] has both sides and their rules).
//!
//! Modules:
//! - [`message`]: the messages and version negotiation;
//! - [`channel`]: one end of a connection, whole messages with fds, and
//!   [`ChannelError`] (typed, never matched on text);
//! - [`env`]: every environment variable and the fd placement rule;
//! - [`client`]: the helper's side of a session;
//! - [`broker`]: the broker's side (listeners, handoff server, readiness,
//!   the helper's lease, the move, drain): implement [`broker::Service`],
//!   call [`broker::run`];
//! - [`notify`]: messages to systemd's notify socket (`MAINPID=`,
//!   `FDSTORE=1`, `BARRIER=1`), for brokers and the helper alike;
//! - `process`: [`alive`], whether a pid still runs, and [`Pinned`], a
//!   process held by a pidfd (its pid may be reused, the pidfd is not);
//! - [`faults`]: the steps where fault tests inject a kill, an error or a
//!   delay (the `failpoints` feature only);
//! - [`transfer`]: the broker-to-broker stream of protocol 2 (a state as
//!   opaque bytes and (fd, bytes) per connection, in batches of 253 fds).
//!
//! This crate depends on nix, serde(_json) and sd-notify only,
//! so a broker adopting the protocol pulls in no CLI, archive or D-Bus code.

pub mod broker;
pub mod channel;
pub mod client;
pub mod env;
mod error;
pub mod faults;
pub mod message;
pub mod notify;
mod process;
pub mod transfer;

pub use channel::{Channel, MAX_FDS};
pub use error::{ChannelError, NotListening, SessionError};
pub use message::{negotiate, Message, MAX_MESSAGE, MIN_PROTOCOL, PROTOCOL};
pub use notify::Notifier;
pub use process::{alive, pidfd_open, Pinned};
