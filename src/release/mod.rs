//! Release planning, pure: states, the patch-only rule, messages, and plans.
//!
//! Nothing here touches a file, a socket or a process: a request and the
//! current state go in, a [`Plan`] of steps (or a [`Refusal`]) comes out.

mod message;
mod plan;
mod state;
mod version;

pub use message::Say;
pub use plan::{
    plan_leave, plan_move, plan_start, plan_uninstall, plan_unpack, MoveKind, Plan, Refusal, Step,
};
pub use state::{ReleaseState, Releases};
pub use version::{check_move, parse_version, Direction};
