//! The README and the manual (`docs/`) against the code, so that they
//! cannot drift:
//! - the command tables of the README and of `docs/operating.md` name
//!   exactly the visible commands of `emqx-relup --help`, each with the
//!   flags and arguments clap gives it, and the manual's table of options
//!   names exactly the global options; every command has its man page
//!   (whose content `tests/generated.rs` keeps in step with clap);
//! - every relative link of the README and of `docs/*.md` reaches a file
//!   (and a heading, when it names one), and the manual's index links
//!   every file of `docs/`;
//! - the README stays a front page: at most [`README_MAX_BYTES`].

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

use clap::ArgAction;

/// The most the README may weigh: a front page, the rest is the manual.
const README_MAX_BYTES: u64 = 12_000;

/// The tables checked against clap: (file, the heading the table follows).
const COMMAND_TABLES: &[(&str, &str)] = &[
    ("README.md", "## Commands"),
    ("docs/operating.md", "## Commands"),
];
const OPTIONS_TABLE: (&str, &str) = ("docs/operating.md", "### Options of every command");

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    let path = repo().join(rel);
    fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// A command as `--help` shows it: its flags and its arguments' names.
#[derive(Debug, Default, PartialEq, Eq)]
struct Usage {
    flags: BTreeSet<String>,
    args: BTreeSet<String>,
}

impl std::fmt::Display for Usage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let all: Vec<&str> = self
            .flags
            .iter()
            .chain(&self.args)
            .map(String::as_str)
            .collect();
        write!(f, "[{}]", all.join(" "))
    }
}

/// The visible commands of `emqx-relup --help` (not `hook`, which is
/// hidden, nor clap's own `help`), with their flags and arguments.
fn cli_commands() -> BTreeMap<String, Usage> {
    let cmd = emqx_relup::cli::command();
    let mut out = BTreeMap::new();
    for sub in cmd.get_subcommands() {
        if sub.is_hide_set() || sub.get_name() == "help" {
            continue;
        }
        let mut usage = Usage::default();
        for arg in sub.get_arguments() {
            let builtin = matches!(
                arg.get_action(),
                ArgAction::Help | ArgAction::HelpShort | ArgAction::HelpLong | ArgAction::Version
            );
            if arg.is_hide_set() || arg.is_global_set() || builtin {
                continue;
            }
            if arg.is_positional() {
                let name = arg
                    .get_value_names()
                    .and_then(|names| names.first())
                    .map(|n| n.to_string())
                    .unwrap_or_else(|| arg.get_id().as_str().to_uppercase());
                usage.args.insert(name);
            } else if let Some(long) = arg.get_long() {
                usage.flags.insert(format!("--{long}"));
            }
        }
        out.insert(sub.get_name().to_string(), usage);
    }
    assert!(
        out.contains_key("upgrade") && !out.contains_key("hook"),
        "clap's commands are not what this test expects: {:?}",
        out.keys()
    );
    out
}

/// The long names of the options every command takes.
fn cli_global_options() -> BTreeSet<String> {
    emqx_relup::cli::command()
        .get_arguments()
        .filter(|a| a.is_global_set() && !a.is_hide_set())
        .filter_map(|a| a.get_long().map(|l| format!("--{l}")))
        .collect()
}

/// The lines of `text` outside fenced code blocks, with their numbers.
fn prose_lines(text: &str) -> Vec<(usize, &str)> {
    let mut fenced = false;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if !fenced {
            out.push((i + 1, line));
        }
    }
    out
}

/// The first cell of each body row of the first table after the line
/// `heading` in `file`, with its line number.
fn table_after(file: &str, heading: &str) -> Vec<(usize, String)> {
    let text = read(file);
    let lines = prose_lines(&text);
    let start = lines
        .iter()
        .position(|(_, l)| l.trim_end() == heading)
        .unwrap_or_else(|| {
            panic!("{file}: no heading {heading:?} (the table this test checks follows it)")
        });
    let mut rows = Vec::new();
    let mut in_table = false;
    for (n, line) in &lines[start + 1..] {
        if line.starts_with('#') && !in_table {
            break;
        }
        if !line.starts_with('|') {
            if in_table {
                break;
            }
            continue;
        }
        in_table = true;
        let first = line.split('|').nth(1).unwrap_or("").trim().to_string();
        rows.push((*n, first));
    }
    assert!(rows.len() > 2, "{file}: no table after {heading:?}");
    // The header row and the separator row.
    rows.drain(..2);
    rows
}

/// The text of every `code` span in a cell.
fn code_spans(cell: &str) -> Vec<&str> {
    cell.split('`').skip(1).step_by(2).collect()
}

/// A command table's rows: command name -> (its usage as written, the cell).
fn documented_commands(
    file: &str,
    heading: &str,
) -> (BTreeMap<String, (Usage, String)>, Vec<String>) {
    let mut out = BTreeMap::new();
    let mut problems = Vec::new();
    for (line, cell) in table_after(file, heading) {
        let Some(code) = code_spans(&cell).first().copied() else {
            problems.push(format!(
                "{file}:{line}: the first cell {cell:?} names no command in `backticks`"
            ));
            continue;
        };
        let mut tokens = code
            .split_whitespace()
            .map(|t| t.trim_matches(|c| c == '[' || c == ']'));
        let name = tokens.next().unwrap_or_default().to_string();
        let mut usage = Usage::default();
        for token in tokens {
            if token.starts_with("--") {
                usage.flags.insert(token.to_string());
            } else if !token.is_empty() && token.chars().all(|c| c.is_ascii_uppercase() || c == '_')
            {
                usage.args.insert(token.to_string());
            } else {
                problems.push(format!(
                    "{file}:{line}: `{code}`: {token:?} is neither a --flag nor an ARGUMENT"
                ));
            }
        }
        if out
            .insert(name.clone(), (usage, code.to_string()))
            .is_some()
        {
            problems.push(format!("{file}:{line}: `{name}` is in the table twice"));
        }
    }
    (out, problems)
}

/// What is wrong with the command table under `heading` in `file`.
fn command_table_problems(file: &str, heading: &str) -> Vec<String> {
    let cli = cli_commands();
    let (documented, mut problems) = documented_commands(file, heading);
    for (name, usage) in &cli {
        match documented.get(name) {
            None => problems.push(format!(
                "{file}: the table under {heading:?} lacks `{name}`, which `emqx-relup --help` lists \
                 (src/cli.rs): add a row `{name}{}`",
                usage
                    .flags
                    .iter()
                    .map(|f| format!(" [{f}]"))
                    .chain(usage.args.iter().map(|a| format!(" {a}")))
                    .collect::<String>()
            )),
            Some((written, code)) if written != usage => problems.push(format!(
                "{file}: `{code}` does not match `emqx-relup {name} --help`, which has {usage} \
                 (the table has {written})"
            )),
            Some(_) => {}
        }
    }
    for name in documented.keys() {
        if !cli.contains_key(name) {
            problems.push(format!(
                "{file}: the table under {heading:?} names `{name}`, which is no visible command \
                 of `emqx-relup --help` (src/cli.rs)"
            ));
        }
    }
    problems
}

fn assert_none(what: &str, problems: Vec<String>) {
    assert!(problems.is_empty(), "{what}:\n  {}", problems.join("\n  "));
}

#[test]
fn the_readme_command_table_is_the_cli() {
    let (file, heading) = COMMAND_TABLES[0];
    assert_none(
        "the README's command table drifted from emqx-relup --help",
        command_table_problems(file, heading),
    );
}

#[test]
fn the_operating_command_table_is_the_cli() {
    let (file, heading) = COMMAND_TABLES[1];
    assert_none(
        "docs/operating.md's command table drifted from emqx-relup --help",
        command_table_problems(file, heading),
    );
}

#[test]
fn the_options_table_is_the_cli() {
    let (file, heading) = OPTIONS_TABLE;
    let mut documented = BTreeSet::new();
    for (_, cell) in table_after(file, heading) {
        for code in code_spans(&cell) {
            documented.extend(
                code.split_whitespace()
                    .filter(|t| t.starts_with("--"))
                    .map(str::to_string),
            );
        }
    }
    let cli = cli_global_options();
    let mut problems = Vec::new();
    for o in cli.difference(&documented) {
        problems.push(format!(
            "{file}: the table under {heading:?} lacks `{o}`, a global option of emqx-relup"
        ));
    }
    for o in documented.difference(&cli) {
        problems.push(format!("{file}: the table under {heading:?} names `{o}`, which is no global option of emqx-relup"));
    }
    assert_none(
        "the manual's table of options drifted from emqx-relup --help",
        problems,
    );
}

#[test]
fn every_command_has_a_man_page() {
    let problems: Vec<String> = cli_commands()
        .keys()
        .map(|name| format!("man/emqx-relup-{name}.1"))
        .filter(|page| !repo().join(page).is_file())
        .map(|page| {
            format!("{page} is missing: run UPDATE_GENERATED=1 cargo test --test generated")
        })
        .collect();
    assert_none("man pages", problems);
}

/// The README and every Markdown file of `docs/`, relative to the repo.
fn documents() -> Vec<String> {
    let mut out = vec!["README.md".to_string()];
    let mut docs: Vec<String> = fs::read_dir(repo().join("docs"))
        .expect("reading docs/")
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".md"))
        .map(|n| format!("docs/{n}"))
        .collect();
    docs.sort();
    out.extend(docs);
    out
}

/// A heading's anchor as GitHub makes it: lower case, punctuation
/// dropped (but `-` and `_`), spaces to `-`.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_'))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// The anchors of a Markdown file's headings (a repeated one gets `-1`, `-2`...).
fn anchors(text: &str) -> BTreeSet<String> {
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut out = BTreeSet::new();
    for (_, line) in prose_lines(text) {
        let Some(rest) = line.strip_prefix('#') else {
            continue;
        };
        let text = rest.trim_start_matches('#');
        if !text.starts_with(' ') {
            continue;
        }
        let base = slug(text);
        let n = seen.entry(base.clone()).or_insert(0);
        out.insert(if *n == 0 {
            base.clone()
        } else {
            format!("{base}-{n}")
        });
        *n += 1;
    }
    out
}

/// The targets of the inline links `[text](target)` of a Markdown file,
/// outside code, with their line numbers.
fn links(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    for (n, line) in prose_lines(text) {
        // Drop `code spans`: what is inside them is no link.
        let prose: String = line.split('`').step_by(2).collect::<Vec<_>>().join(" ");
        let mut rest = prose.as_str();
        while let Some(at) = rest.find("](") {
            rest = &rest[at + 2..];
            let end = rest.find(')').unwrap_or(rest.len());
            let target = rest[..end]
                .split_whitespace()
                .next()
                .unwrap_or("")
                .to_string();
            out.push((n, target));
            rest = &rest[end..];
        }
    }
    out
}

#[test]
fn every_relative_link_resolves() {
    let mut problems = Vec::new();
    let mut linked_from_index = BTreeSet::new();
    for doc in documents() {
        let text = read(&doc);
        let dir = Path::new(&doc).parent().unwrap_or(Path::new(""));
        for (line, target) in links(&text) {
            if target.is_empty() {
                problems.push(format!("{doc}:{line}: a link without a target"));
                continue;
            }
            if target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            let (path, anchor) = match target.split_once('#') {
                Some((p, a)) => (p, Some(a)),
                None => (target.as_str(), None),
            };
            let rel: PathBuf = if path.is_empty() {
                PathBuf::from(&doc)
            } else {
                dir.join(path)
            };
            let full = repo().join(&rel);
            if !full.exists() {
                problems.push(format!(
                    "{doc}:{line}: ({target}): {} does not exist",
                    rel.display()
                ));
                continue;
            }
            if doc == "docs/README.md" {
                if let Ok(p) = full.canonicalize() {
                    linked_from_index.insert(p);
                }
            }
            if let Some(anchor) = anchor {
                if full.extension().is_some_and(|e| e == "md") {
                    let headings = anchors(&fs::read_to_string(&full).unwrap());
                    if !headings.contains(anchor) {
                        problems.push(format!(
                            "{doc}:{line}: ({target}): {} has no heading whose anchor is #{anchor}",
                            rel.display()
                        ));
                    }
                }
            }
        }
    }
    for doc in documents()
        .iter()
        .filter(|d| d.starts_with("docs/") && *d != "docs/README.md")
    {
        let full = repo().join(doc).canonicalize().unwrap();
        if !linked_from_index.contains(&full) {
            problems.push(format!(
                "{doc} is not linked from the manual's index, docs/README.md"
            ));
        }
    }
    assert_none("links of the README and the manual", problems);
}

#[test]
fn the_readme_links_into_the_manual() {
    let readme = read("README.md");
    let into_docs: Vec<String> = links(&readme)
        .into_iter()
        .map(|(_, t)| t)
        .filter(|t| t.starts_with("docs/"))
        .collect();
    assert!(
        into_docs.iter().any(|t| t.starts_with("docs/README.md")),
        "README.md does not link the manual's index, docs/README.md"
    );
    assert!(
        into_docs.iter().any(|t| t.starts_with("docs/operating.md")),
        "README.md does not link docs/operating.md"
    );
}

#[test]
fn the_readme_is_a_front_page() {
    let size = fs::metadata(repo().join("README.md")).unwrap().len();
    assert!(
        size <= README_MAX_BYTES,
        "README.md is {size} bytes, more than {README_MAX_BYTES}: it is the front page \
         (what the project is, the two set-up commands, install, the command table, links); \
         move the rest into the manual (docs/, one topic a file)"
    );
    // CI reads the README for its test command (.ci/run runs scripts/test).
    let readme = read("README.md");
    for needed in ["scripts/demo", "scripts/test", ".ci/run"] {
        assert!(
            readme.contains(needed),
            "README.md no longer names {needed} (the set-up section)"
        );
    }
}
