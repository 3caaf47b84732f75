//! The cells of the fault matrices (tests/fault_matrix.rs, and the
//! systemd one in tests/systemd_faults.rs): a step of a switch, an action,
//! and the documented exception, if any, its invariants allow.
#![allow(dead_code)]

use std::fmt;

/// What is injected at a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// The process aborts there, as `kill -9` would.
    Kill,
    /// The step's operation fails.
    Error,
    /// The step takes this many milliseconds longer.
    Delay(u64),
}

/// A crash the invariants cannot hold through, by its nature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exception {
    None,
    /// The old broker died before go: the connections and sessions in its
    /// memory die with it (clients reconnect to the new broker, which
    /// holds the listeners: nothing is refused).
    OldCrashed,
    /// The new broker died after go, owning every connection: a broker
    /// crash (the direct path has no supervisor; systemd restarts it on
    /// the stored listeners).
    NewCrashedAfterGo,
}

/// One cell of a matrix.
#[derive(Debug, Clone, Copy)]
pub struct Cell {
    pub point: &'static str,
    pub action: Action,
}

impl Cell {
    /// The process the step belongs to: `helper`, `hook`, `old`, `new`.
    pub fn process(&self) -> &'static str {
        self.point.split("::").next().unwrap_or("")
    }

    /// The `FAILPOINTS` value that arms it, once: a broker that survives
    /// its fault meets the step again in the next switch.
    pub fn armed(&self) -> String {
        let action = match self.action {
            Action::Kill => "return".to_string(),
            Action::Error => "return(error)".to_string(),
            Action::Delay(ms) => format!("sleep({ms})"),
        };
        format!("{}=1*{action}", self.point)
    }

    /// The exception its invariants allow.
    pub fn exception(&self) -> Exception {
        match (self.point, self.action) {
            ("old::commit" | "old::frozen" | "old::exported", Action::Kill) => {
                Exception::OldCrashed
            }
            ("new::after_go", Action::Kill) => Exception::NewCrashedAfterGo,
            _ => Exception::None,
        }
    }

    /// Whether the upgrade may end with a switch record pending: the
    /// helper killed after recording it, or the switch done and not
    /// finished (its socket unpublished, its state unwritten).
    pub fn may_leave_a_record(&self) -> bool {
        match (self.process(), self.action) {
            ("helper", Action::Kill) => true,
            ("helper", Action::Error) => {
                matches!(self.point, "helper::rename" | "helper::write_state")
            }
            _ => false,
        }
    }
}

impl fmt::Display for Cell {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let action = match self.action {
            Action::Kill => "kill".to_string(),
            Action::Error => "error".to_string(),
            Action::Delay(ms) => format!("delay {:.1} s", ms as f64 / 1000.0),
        };
        write!(f, "{} {action}", self.point)
    }
}

/// Runs `run` on every cell (a failed cell does not stop the others),
/// prints the table (step x action -> outcome) under `title`, and returns
/// the failures with their messages. `FAULT_CELLS=substring` runs only
/// the matching cells (to debug one); `after_failure` restores what the
/// next cell needs.
pub fn matrix(
    title: &str,
    cells: Vec<Cell>,
    run: impl Fn(&Cell) -> String,
    after_failure: impl Fn(),
) -> Vec<String> {
    if !emqx_handoff::faults::ENABLED {
        panic!("the fault matrix needs the failpoints feature: cargo test --features emqx-relup/failpoints");
    }
    let only = std::env::var("FAULT_CELLS").unwrap_or_default();
    let cells: Vec<Cell> = cells
        .into_iter()
        .filter(|c| c.to_string().contains(&only))
        .collect();
    let began = std::time::Instant::now();
    let mut rows = Vec::new();
    let mut failed = Vec::new();
    for cell in &cells {
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(cell))) {
            Ok(line) => rows.push((*cell, line)),
            Err(e) => {
                let why = e
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                rows.push((*cell, "FAILED".into()));
                failed.push(format!("{cell}: {why}"));
                after_failure();
            }
        }
    }
    // One print, so the tables of matrices running side by side do not
    // interleave.
    let mut table = format!(
        "\n{title}: {} cells in {:.0} s\n| step | action | outcome |\n| --- | --- | --- |\n",
        cells.len(),
        began.elapsed().as_secs_f64()
    );
    for (cell, line) in &rows {
        let text = cell.to_string();
        let (point, action) = text.split_once(' ').unwrap_or((&text, ""));
        table.push_str(&format!("| {point} | {action} | {line} |\n"));
    }
    print!("{table}");
    failed
}

/// Past the brokers' move bound of 1 s (`move_bound_ms = 1000`).
pub const PAST_MOVE_BOUND: u64 = 1_500;
/// Past the helper's wait for the new broker (`ready_timeout_secs = 2`).
pub const PAST_READY: u64 = 3_000;
/// No broker bounds the helper below its session idle time (600 s): a
/// slow helper, to show nothing times out under it.
pub const SLOW_HELPER: u64 = 2_000;
/// Past the helper's wait for the old broker's answer (its move bound
/// and 10 s).
pub const PAST_ANSWER_WAIT: u64 = 12_000;

fn all(point: &'static str, delay: u64) -> [Cell; 3] {
    [
        Cell {
            point,
            action: Action::Kill,
        },
        Cell {
            point,
            action: Action::Error,
        },
        Cell {
            point,
            action: Action::Delay(delay),
        },
    ]
}

/// Steps where an error means nothing (past the point of no return):
/// kill and delay only.
fn kill_delay(point: &'static str, delay: u64) -> [Cell; 2] {
    let [kill, _, delay] = all(point, delay);
    [kill, delay]
}

/// The helper's steps of a direct switch, in order.
pub fn helper_cells() -> Vec<Cell> {
    let mut cells = Vec::new();
    for point in ["helper::hello", "helper::listeners", "helper::spawned"] {
        cells.extend(all(point, SLOW_HELPER));
    }
    cells.extend(all("helper::ready", PAST_READY));
    for point in [
        "helper::settled",
        "helper::recorded",
        "helper::confirmed",
        "helper::commit_sent",
        "helper::answered",
        "helper::rename",
    ] {
        cells.extend(all(point, SLOW_HELPER));
    }
    cells.extend(kill_delay("helper::published", SLOW_HELPER));
    cells.extend(all("helper::write_state", SLOW_HELPER));
    cells.extend(kill_delay("helper::state_written", SLOW_HELPER));
    cells
}

/// The old broker's steps, in order.
pub fn old_cells() -> Vec<Cell> {
    let mut cells = Vec::new();
    cells.extend(all("old::commit", PAST_ANSWER_WAIT));
    for point in ["old::frozen", "old::exported", "old::before_go"] {
        cells.extend(all(point, PAST_MOVE_BOUND));
    }
    cells.extend(kill_delay("old::after_go", PAST_MOVE_BOUND));
    cells.extend(all("old::answer", PAST_ANSWER_WAIT));
    cells
}

/// The new broker's steps, in order.
pub fn new_cells() -> Vec<Cell> {
    let mut cells = Vec::new();
    cells.extend(all("new::imported_batch", PAST_MOVE_BOUND));
    cells.extend(all("new::reported", PAST_MOVE_BOUND));
    cells.extend(kill_delay("new::after_go", PAST_MOVE_BOUND));
    cells
}
