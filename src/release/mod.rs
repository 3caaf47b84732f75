//! Release planning, pure: states, the patch-only rule, messages, and plans.
//!
//! Nothing here touches a file, a socket or a process: a request and the
//! current state go in, a [`Plan`] of steps (or a [`Refusal`]) comes out.
//! Modules: `request` (what was asked), `version` (parsing, the patch-only
//! rule), `state` (release states and their transitions), `plan` (requests
//! to steps), `refusal` (why not), `message` (the lines operators read).
//! None imports the application's error type.

mod message;
mod plan;
mod refusal;
mod request;
mod state;
mod version;

pub use message::Say;
pub use plan::{apply, plan_leave, plan_move, plan_start, plan_uninstall, plan_unpack, Plan, Step};
pub use refusal::Refusal;
pub use request::MoveKind;
pub use state::{Invariant, ReleaseState, Releases};
pub use version::{check_move, parse_version, Direction, InvalidVersion};
