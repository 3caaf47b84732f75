//! `--dry-run` and `--json` of the commands that change the store
//! (`install`, `upgrade`, `downgrade`, `uninstall`): the plan as text or
//! JSON, and a real run's one JSON answer (what changed, the transcript,
//! the switch's figures).

use serde_json::json;

use super::print::{Collected, Printer};
use crate::ops::{Entry, Ops, PlannedStep, Preview, Report};
use crate::Error;

/// How a command that changes the store answers.
#[derive(Debug, Clone, Copy, Default, clap::Args)]
pub struct Answer {
    /// Print the plan (steps, releases before and after) and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Print one JSON object instead of the transcript (errors stay one
    /// line on stderr).
    #[arg(long)]
    pub json: bool,
}

/// Prints a dry run's plan.
pub(super) fn print_preview(preview: &Preview, json: bool, out: &mut Printer) {
    if let Some(p) = &preview.pending {
        out.note(&format!(
            "a switch from {} to {} that an interrupted command left is pending: the command would first {} it, which this plan does not foresee",
            p.from, p.to, p.next
        ));
    }
    if json {
        let mut value = serde_json::to_value(preview).unwrap_or_default();
        if let Some(map) = value.as_object_mut() {
            map.insert("dry_run".into(), true.into());
        }
        println!("{value}");
        return;
    }
    print!("{}", preview_text(preview));
}

/// The plan in words, one line a step.
fn preview_text(p: &Preview) -> String {
    let mut text = format!(
        "Dry run of '{} {}': nothing was changed.\n",
        p.command, p.version
    );
    if !p.changed {
        text.push_str(&format!("It would change nothing: {}\n", p.lines.join(" ")));
        return text;
    }
    for step in &p.steps {
        let line = match step {
            PlannedStep::Unpack { version, package } => {
                format!("unpack {package} into the store as release {version}")
            }
            PlannedStep::Switch { version, from } => match (from, &p.broker) {
                (Some(from), Some(b)) => format!(
                    "switch the running broker (pid {}) from {from} to {version}",
                    b.pid
                ),
                _ => format!("record {version} to run at the next start (no broker is running)"),
            },
            PlannedStep::MakePermanent { version } => format!("make {version} permanent"),
            PlannedStep::Remove { version } => format!("remove release {version} and its tree"),
        };
        text.push_str(&format!("Would {line}\n"));
    }
    text.push_str(&format!("Releases now:   {}\n", states(&p.before)));
    text.push_str(&format!("Releases after: {}\n", states(&p.after)));
    text
}

fn states(entries: &[Entry]) -> String {
    if entries.is_empty() {
        return "none".to_string();
    }
    entries
        .iter()
        .map(|e| format!("{} {}", e.version, e.state))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Runs `change` with the transcript kept, then prints one JSON object:
/// whether a release state changed, the releases before and after, the
/// transcript lines, and the switch's figures if it switched.
pub(super) fn run_json(
    ops: &Ops,
    command: &str,
    version: &str,
    out: &mut Printer,
    change: impl FnOnce(&mut Printer) -> Result<(), Error>,
) -> Result<(), Error> {
    let before = ops.versions()?;
    out.collected = Some(Collected::default());
    let result = change(out);
    let collected = out.collected.take().unwrap_or_default();
    result?;
    let after = ops.versions()?;
    let changed = before != after || collected.switch.is_some();
    println!(
        "{}",
        json!({
            "command": command,
            "version": version,
            "dry_run": false,
            "changed": changed,
            "lines": collected.lines,
            "before": Entry::all(&before),
            "after": Entry::all(&after),
            "switch": collected.switch,
        })
    );
    Ok(())
}
