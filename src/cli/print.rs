//! What the commands print: the transcript and notes ([`Printer`]), and
//! the answers of `versions` and `status`, as text or JSON.

use std::io::Write;

use crate::ops::Report;
use crate::ops::SwitchFigures;
use crate::release::{Releases, Say};
use crate::systemd::{Journal, Priority};

/// Prints the transcript to stdout and notes to stderr; under systemd
/// (stderr is the journal) sends both to the journal with fields instead.
#[derive(Default)]
pub(super) struct Printer {
    pub(super) verbose: bool,
    pub(super) journal: Option<Journal>,
    /// With `--json`: the transcript and the switch's figures are kept
    /// for the one JSON answer instead of printed.
    pub(super) collected: Option<Collected>,
}

/// What a command said, for its JSON answer.
#[derive(Debug, Default)]
pub(super) struct Collected {
    /// The transcript lines.
    pub(super) lines: Vec<String>,
    /// The switch's figures, if it switched.
    pub(super) switch: Option<SwitchFigures>,
}

impl Printer {
    /// A note or error line (stderr).
    pub(super) fn line(&mut self, priority: Priority, text: &str) {
        if let Some(j) = &self.journal {
            if j.send(priority, text).is_ok() {
                return;
            }
        }
        eprintln!("{text}");
    }
}

impl Report for Printer {
    fn say(&mut self, line: &Say) {
        if let Some(c) = &mut self.collected {
            c.lines.push(line.to_string());
            return;
        }
        if let Some(j) = &self.journal {
            if j.send(Priority::Info, &line.to_string()).is_ok() {
                return;
            }
        }
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    }

    fn note(&mut self, text: &str) {
        self.line(Priority::Notice, &format!("note: {text}"));
    }

    fn warn(&mut self, text: &str) {
        self.line(Priority::Warning, &format!("note: WARNING: {text}"));
    }

    fn detail(&mut self, text: &str) {
        if self.verbose {
            self.line(Priority::Info, &format!("note: {text}"));
        }
    }

    fn switched(&mut self, figures: &SwitchFigures) {
        if let Some(c) = &mut self.collected {
            c.switch = Some(figures.clone());
        }
    }
}

pub(super) fn print_versions(releases: &Releases, json: bool) {
    if json {
        let list = crate::ops::Entry::all(releases);
        println!("{}", serde_json::json!({ "releases": list }));
        return;
    }
    let mut text = String::from("Installed versions:\n");
    for (v, state) in releases.newest_first() {
        text.push_str(&format!("* {v} {state}\n"));
    }
    print!("{text}");
}

pub(super) fn print_status(status: &crate::ops::Status, json: bool) {
    use crate::ops::utc;
    if json {
        println!("{}", serde_json::to_string(status).unwrap_or_default());
        return;
    }
    let since = |s: Option<u64>| s.map(|s| format!(", since {}", utc(s))).unwrap_or_default();
    let mut text = String::new();
    match &status.broker {
        Some(b) => text.push_str(&format!(
            "Broker: pid {}, release {}{}, {}\n",
            b.pid,
            b.release,
            since(b.since),
            match &b.unit {
                Some(u) => format!("in {u}"),
                None => "direct (not in a systemd unit)".to_string(),
            }
        )),
        None => match &status.broker_unknown {
            Some(why) => text.push_str(&format!("Broker: unknown ({why})\n")),
            None => text.push_str("Broker: none running\n"),
        },
    }
    match &status.draining {
        Some(d) => text.push_str(&format!("Draining: pid {}{}\n", d.pid, since(d.since))),
        None => text.push_str("Draining: none\n"),
    }
    match &status.pending {
        Some(p) => text.push_str(&format!(
            "Pending switch: {} to {} ({}), left by an interrupted command; the next command will {}\n",
            p.from, p.to, p.path, p.next_words
        )),
        None => text.push_str("Pending switch: none\n"),
    }
    print!("{text}");
}
