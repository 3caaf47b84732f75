//! Crash safety: `upgrade` of a large package killed with SIGKILL at random
//! moments. After each kill `versions` works and lists no partial release,
//! and the same `upgrade` then completes.

use std::collections::BTreeMap;
use std::fs;
use std::process::Stdio;
use std::thread::sleep;
use std::time::{Duration, Instant, SystemTime};

use emqx_testkit::{big_release, count_tree, write_tar_gz, Host};

const RUNS: usize = 50;

#[test]
fn kill_9_during_upgrade_never_lists_a_partial_release() {
    let work = tempfile::tempdir().unwrap();
    let big = work.path().join("emqx-5.0.1.tar.gz");
    let entries = big_release("5.0.1", 1500, 8 << 20);
    write_tar_gz(&big, &entries);
    let small = work.path().join("emqx-5.0.0.tar.gz");
    write_tar_gz(&small, &emqx_testkit::release("5.0.0", "emqx/"));

    let fresh = || {
        let host = Host::new();
        fs::hard_link(&small, host.drop_dir().join("emqx-5.0.0.tar.gz")).unwrap();
        fs::hard_link(&big, host.drop_dir().join("emqx-5.0.1.tar.gz")).unwrap();
        host.ok(&["install", "5.0.0"]);
        host
    };

    // How long a whole upgrade takes here, and how many paths the tree holds.
    let host = fresh();
    let started = Instant::now();
    host.ok(&["upgrade", "5.0.1"]);
    let full = started.elapsed();
    let tree_size = count_tree(&host.store().join("5.0.1"));
    drop(host);

    let mut seed = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    println!("upgrade takes {full:?}; seed {seed}");
    let mut landed: BTreeMap<String, usize> = BTreeMap::new();
    let mut repaired = 0;
    for run in 0..RUNS {
        let host = fresh();
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let mut child = host
            .command()
            .args(["upgrade", "5.0.1"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // A third of the kills at a random time; the others a random few
        // milliseconds after a sign of progress, so that every phase is hit:
        // the tree renamed into place, the state naming the release.
        let jitter = Duration::from_micros(seed % 3000);
        match run % 3 {
            0 => sleep(full.mul_f64((seed % 1000) as f64 / 1000.0)),
            1 => wait_until(|| host.store().join("5.0.1").exists(), jitter),
            _ => wait_until(
                || fs::read_to_string(host.state_file()).is_ok_and(|s| s.contains("5.0.1")),
                jitter,
            ),
        }
        child.kill().unwrap();
        child.wait().unwrap();

        let versions = host.versions();
        let v501 = versions
            .iter()
            .find(|(v, _)| v == "5.0.1")
            .map(|(_, s)| s.clone())
            .unwrap_or_else(|| "absent".into());
        *landed.entry(v501).or_default() += 1;
        for (v, _) in &versions {
            let tree = host.store().join(v);
            assert!(
                tree.join("releases").join(v).is_dir(),
                "run {run}: {v} listed without its tree"
            );
            if v == "5.0.1" {
                assert_eq!(
                    count_tree(&tree),
                    tree_size,
                    "run {run}: partial tree listed"
                );
                assert_eq!(
                    fs::metadata(tree.join("lib/big.bin")).unwrap().len(),
                    8 << 20
                );
            }
        }

        let out = host.emqx(&["upgrade", "5.0.1"]);
        if emqx_testkit::text(&out).1.contains("interrupted run") {
            repaired += 1;
        }
        assert!(
            out.status.success(),
            "run {run}: {:?}",
            emqx_testkit::text(&out)
        );
        assert_eq!(
            host.versions(),
            [
                ("5.0.1".to_string(), "permanent".to_string()),
                ("5.0.0".into(), "old".into())
            ],
            "run {run}"
        );
        assert_eq!(
            count_tree(&host.store().join("5.0.1")),
            tree_size,
            "run {run}"
        );
        let mut left: Vec<String> = fs::read_dir(host.store())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(
            left,
            [".lock", "5.0.0", "5.0.1", "RELEASES"],
            "run {run}: leftovers"
        );
    }
    println!(
        "state of 5.0.1 right after each kill: {landed:?}; {repaired} runs repaired leftovers"
    );
    assert!(repaired > 0, "no kill left anything to repair");
    assert!(
        landed.len() >= 2,
        "kills all landed in one phase: {landed:?}"
    );
}

/// Polls `ready` every 100 µs for up to 20 s, then waits `extra`.
fn wait_until(ready: impl Fn() -> bool, extra: Duration) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !ready() && Instant::now() < deadline {
        sleep(Duration::from_micros(100));
    }
    sleep(extra);
}
