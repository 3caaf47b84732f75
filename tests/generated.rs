//! The man pages in `man/` and the completions in `completions/` are
//! generated from the clap definitions; this test fails when they are stale.
//! Regenerate with `UPDATE_GENERATED=1 cargo test --test generated`: that
//! run rewrites them and still fails (they were stale); the next run passes.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;

use clap_complete::Shell;

fn render(dir: &Path) {
    let cmd = emqx_relup::cli::command();
    clap_mangen::generate_to(cmd.clone(), dir.join("man")).unwrap();
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        let mut cmd = cmd.clone();
        clap_complete::generate_to(shell, &mut cmd, "emqx-relup", dir.join("completions")).unwrap();
    }
}

fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    for sub in ["man", "completions"] {
        let Ok(entries) = fs::read_dir(dir.join(sub)) else {
            continue;
        };
        for e in entries {
            let e = e.unwrap();
            out.insert(
                format!("{sub}/{}", e.file_name().to_string_lossy()),
                fs::read(e.path()).unwrap(),
            );
        }
    }
    out
}

#[test]
fn man_pages_and_completions_are_up_to_date() {
    let fresh = tempfile::tempdir().unwrap();
    fs::create_dir_all(fresh.path().join("man")).unwrap();
    fs::create_dir_all(fresh.path().join("completions")).unwrap();
    render(fresh.path());
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let want = files(fresh.path());
    assert!(want.contains_key("man/emqx-relup.1") && want.contains_key("man/emqx-relup-upgrade.1"));
    // The committed files against the fresh render, before anything is
    // rewritten: a run that regenerates them still fails when they were stale.
    let have = files(repo);
    let stale: BTreeSet<_> = want
        .keys()
        .chain(have.keys())
        .filter(|k| want.get(*k) != have.get(*k))
        .collect();
    if stale.is_empty() {
        return;
    }
    if std::env::var_os("UPDATE_GENERATED").is_some() {
        for sub in ["man", "completions"] {
            let _ = fs::remove_dir_all(repo.join(sub));
            fs::create_dir_all(repo.join(sub)).unwrap();
        }
        render(repo);
        assert!(
            files(repo) == want,
            "the rewritten files are not the render"
        );
        panic!("stale generated files {stale:?}: rewritten now; review and commit them");
    }
    panic!("stale generated files {stale:?}: run UPDATE_GENERATED=1 cargo test --test generated");
}
