//! What an operator asks for: which command asked for a move.

/// Which command asked for a move.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MoveKind {
    /// `install`: either way.
    Install,
    /// `upgrade`: only to newer releases.
    Upgrade,
    /// `downgrade`: only to older releases.
    Downgrade,
}

impl MoveKind {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            MoveKind::Install => "install",
            MoveKind::Upgrade => "upgrade",
            MoveKind::Downgrade => "downgrade",
        }
    }
}
