//! The commit of a switch: sending it as planned (a move or a drain), and
//! the decision, pure: what the old broker's answer means for the new
//! one (keep it, or stop it and fail).

use std::time::Duration;

use emqx_handoff::client::{CommitError, Committed, Session};
use emqx_handoff::Channel;

use super::moving::Route;

/// Commits as planned: a move over `ours` (the old broker's end of the
/// brokers' channel), or a drain, with its reason. A drain closes the
/// channel first, so the new broker accepts as soon as the old one stops.
pub(super) fn send(
    session: &Session,
    ours: Option<Channel>,
    route: &Route,
    wait: Duration,
) -> (Result<Committed, CommitError>, Option<String>) {
    match (route, ours) {
        (Route::Move { schema }, Some(ours)) => (session.commit_move(ours, schema, wait), None),
        (Route::Move { .. }, None) => (session.commit(), Some("no brokers' channel".into())),
        (Route::Drain { reason }, ours) => {
            drop(ours);
            (session.commit(), Some(reason.clone()))
        }
    }
}

/// What to do with the new broker once the commit was tried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// The old broker committed: it drains, or moved its connections.
    Committed {
        /// What it said.
        outcome: Committed,
    },
    /// Keep the new broker although the commit is in doubt: stopping it
    /// could leave nothing serving. The warning says why.
    Keep {
        /// For the operator.
        warning: String,
    },
    /// The old broker did not commit and still serves: stop the new one.
    Abandon {
        /// Why, for the error line.
        reason: String,
    },
}

/// Decides from the commit's result; `old_alive` says whether the old
/// broker (`old_pid`) still runs, asked only when the commit failed.
pub fn decide(
    result: Result<Committed, CommitError>,
    old_pid: u32,
    old_alive: impl FnOnce() -> bool,
) -> Decision {
    match result {
        Ok(outcome) => Decision::Committed { outcome },
        // Sent but not answered: the old broker may be draining already,
        // so killing the new one could leave nothing serving.
        Err(CommitError::Unanswered(reason)) => Decision::Keep {
            warning: format!(
                "the old broker (pid {old_pid}) did not confirm the commit ({reason}); it drains, or serves beside the new one until it exits"
            ),
        },
        // Not sent, or refused (a move that failed before its go: the old
        // broker thawed): the old broker did not commit. If it is
        // gone all the same, the new one is ready and holds the listeners.
        Err(CommitError::Unsent(reason)) if !old_alive() => Decision::Keep {
            warning: format!("the old broker exited during the commit ({reason})"),
        },
        Err(CommitError::Unsent(reason) | CommitError::Refused(reason)) => Decision::Abandon {
            reason: format!("commit: {reason}"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unsent() -> CommitError {
        CommitError::Unsent("sending commit: EPIPE".into())
    }
    fn refused() -> CommitError {
        CommitError::Refused("the broker refused the commit: busy".into())
    }
    fn unanswered() -> CommitError {
        CommitError::Unanswered("timed out waiting for the peer".into())
    }

    #[test]
    fn committed_drains() {
        assert_eq!(
            decide(Ok(Committed::Draining(7)), 1, || panic!("not asked")),
            Decision::Committed {
                outcome: Committed::Draining(7)
            }
        );
        let moved = Committed::Moved {
            moved: 9,
            drained: 0,
            drained_why: None,
            pause: std::time::Duration::from_millis(3),
            closed_by_policy: 0,
        };
        assert_eq!(
            decide(Ok(moved.clone()), 1, || panic!("not asked")),
            Decision::Committed { outcome: moved }
        );
    }

    #[test]
    fn unanswered_keeps_the_new_broker_whether_or_not_the_old_runs() {
        for alive in [true, false] {
            let d = decide(Err(unanswered()), 42, || alive);
            assert!(
                matches!(&d, Decision::Keep { warning } if warning.contains("pid 42") && warning.contains("timed out")),
                "{d:?}"
            );
        }
    }

    #[test]
    fn unsent_to_a_live_old_broker_abandons() {
        let d = decide(Err(unsent()), 42, || true);
        assert_eq!(
            d,
            Decision::Abandon {
                reason: "commit: sending commit: EPIPE".into()
            }
        );
    }

    #[test]
    fn unsent_to_a_gone_old_broker_keeps_the_new_one() {
        let d = decide(Err(unsent()), 42, || false);
        assert!(
            matches!(&d, Decision::Keep { warning } if warning.starts_with("the old broker exited during the commit")),
            "{d:?}"
        );
    }

    #[test]
    fn refused_abandons_even_if_the_old_broker_is_gone() {
        for alive in [true, false] {
            assert!(matches!(
                decide(Err(refused()), 42, || alive),
                Decision::Abandon { .. }
            ));
        }
    }
}
