//! The Ansible collection `emqx.relup` (`ansible/`) against three hosts
//! over SSH: systemd sandboxes in network namespaces of their own, with
//! sshd, the helper from its `.deb` and `emqx.service`, under MQTT load
//! with persistent sessions on each host's address. A rolling upgrade and
//! downgrade lose nothing, a rerun changes nothing, check mode changes no
//! state file and puts no file on a host, a roll by OS package from the
//! hosts' own apt repository loses nothing either, a release that never
//! becomes ready on host two stops the roll there, and a host on 5.1.x
//! fails the pre-flight before any host changes. Also: ansible-lint's
//! production profile and ansible-doc. Needs root, openssh-server and the
//! helper's .deb (scripts/test); installs dpkg-dev (dpkg-scanpackages, the
//! repository) and python3-apt (Ansible's apt module on the hosts) itself.

use std::path::Path;
use std::time::Instant;

use emqx_load::{Load, LoadOptions};
use emqx_testkit::ansible::{collection_dir, Controller, Played};
use emqx_testkit::fleet::{ensure_debian_packages, helper_deb, Fleet, FleetHost};
use emqx_testkit::sandbox::assert_moved;
use emqx_testkit::text;

fn vars(version: &str, package: Option<&Path>) -> Vec<String> {
    let mut args = vec![
        "-e".to_string(),
        format!("rolling_upgrade_version={version}"),
    ];
    if let Some(p) = package {
        args.push("-e".into());
        args.push(format!("rolling_upgrade_package={}", p.display()));
    }
    args
}

/// Load with persistent sessions on one host's address.
fn load_on(fleet: &Fleet) -> Vec<Load> {
    fleet
        .hosts
        .iter()
        .map(|h| Load::start(LoadOptions::moving(vec![h.mqtt()])))
        .collect()
}

/// Stops the loads; prints and checks each host's report: nothing
/// refused, reset or timed out, no connection closed by a broker, no
/// session or session message lost.
fn stop_and_check(fleet: &Fleet, loads: Vec<Load>, moved: bool) {
    for (h, load) in fleet.hosts.iter().zip(loads) {
        let report: serde_json::Value = serde_json::from_str(&load.stop().json()).unwrap();
        println!(
            "{}: attempts {}, refused {}, reset {}, timed out {}, closed by broker {}, sessions resumed {} lost {}",
            h.name,
            report["attempts"],
            report["refused"],
            report["reset"],
            report["timed_out"],
            report["closed_by_broker"],
            report["sessions"]["resumed"],
            report["sessions"]["lost"],
        );
        for key in ["refused", "reset", "timed_out", "other_error"] {
            assert_eq!(report[key], 0, "{}: {key} in {report:#}", h.name);
        }
        if moved {
            assert_moved(&report);
        } else {
            assert_eq!(report["closed_by_broker"], 0, "{}: {report:#}", h.name);
            assert_eq!(report["sessions"]["lost"], 0, "{}: {report:#}", h.name);
        }
    }
}

fn assert_played(p: &Played, what: &str) {
    assert_eq!(p.code, Some(0), "{what} failed:\n{}", p.text);
}

/// Every host's state file.
fn state_files(fleet: &Fleet) -> Vec<String> {
    fleet
        .hosts
        .iter()
        .map(|h| h.sandbox.state_bytes())
        .collect()
}

/// What every host holds under its drop folder and its release store:
/// each file's path, size, mode and modification time.
fn release_files(fleet: &Fleet) -> Vec<String> {
    fleet
        .hosts
        .iter()
        .map(|h| {
            h.sandbox
                .ok("find /usr/lib/emqx/releases /var/lib/emqx/releases -printf '%p %s %m %T@\\n' | sort")
        })
        .collect()
}

fn states(fleet: &Fleet) -> Vec<Vec<(String, String)>> {
    fleet.hosts.iter().map(|h| h.sandbox.versions()).collect()
}

fn pair(v: &str, s: &str) -> (String, String) {
    (v.to_string(), s.to_string())
}

fn timed<T>(what: &str, f: impl FnOnce() -> T) -> T {
    let t = Instant::now();
    let r = f();
    println!("{what}: {:.1} s", t.elapsed().as_secs_f64());
    r
}

#[test]
fn the_collection_is_lint_clean_and_documented() {
    let ctl = Controller::new();
    let out = ctl
        .command("ansible-lint")
        .args(["--profile", "production", "--offline"])
        .current_dir(collection_dir())
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    let said = stdout + &stderr;
    assert!(out.status.success(), "ansible-lint:\n{said}");
    assert!(said.contains("0 failure(s), 0 warning(s)"), "{said}");
    for plugin in ["emqx.relup.emqx_release", "emqx.relup.mqtt_probe"] {
        let out = ctl.command("ansible-doc").arg(plugin).output().unwrap();
        let doc = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && doc.contains("OPTIONS"),
            "{plugin}: {doc}"
        );
    }
    let out = ctl
        .command("ansible-doc")
        .args(["-t", "role", "emqx.relup.rolling_upgrade"])
        .output()
        .unwrap();
    let (doc, err) = text(&out);
    assert!(
        out.status.success() && doc.contains("ENTRY POINT"),
        "{doc}{err}"
    );
}

#[test]
fn a_rolling_upgrade_and_downgrade_of_three_hosts_keep_every_session() {
    let started = Instant::now();
    // Before the hosts boot: their `/` is this machine's.
    ensure_debian_packages(&["dpkg-dev", "python3-apt"]);
    let ctl = Controller::new();
    let fleet = timed("three hosts booted", || {
        Fleet::boot(
            3,
            &helper_deb(),
            "settle_secs = 0.1\nready_timeout_secs = 4\n",
        )
    });
    let inventory = fleet.inventory(&[]);
    let good = fleet.package("good", "5.0.1", "");

    // Check mode: the plan of every host, nothing on any host changed.
    // Host one holds the package already (pushed before): the helper plans
    // with it; the others would get it pushed, and check mode pushes nothing.
    let one = &fleet.hosts[0].sandbox;
    std::fs::copy(&good, one.share.path().join("emqx-5.0.1.zip")).unwrap();
    one.ok(&format!(
        "install -m 0644 {}/emqx-5.0.1.zip /usr/lib/emqx/releases/",
        one.share.path().display()
    ));
    let before = (state_files(&fleet), release_files(&fleet));
    let mut check = vars("5.0.1", Some(&good));
    check.push("--check".into());
    let p = timed("check mode", || ctl.roll(&inventory, &check));
    assert_played(&p, "check mode");
    println!("{}", summary(&p));
    let planned = |h: &str| format!("{h}: unpack, switch, make_permanent;");
    let would_push = |h: &str| {
        format!("{h}: would push emqx-5.0.1.zip into /usr/lib/emqx/releases/, then move to 5.0.1")
    };
    for (i, h) in fleet.hosts.iter().enumerate() {
        let said = if i == 0 {
            planned(&h.name)
        } else {
            would_push(&h.name)
        };
        assert!(p.text.contains(&said), "no '{said}':\n{}", p.text);
        assert_eq!(h.serving(), "5.0.0");
    }
    let after = (state_files(&fleet), release_files(&fleet));
    assert_eq!(after.0, before.0, "check mode changed a state file");
    assert_eq!(
        after.1, before.1,
        "check mode changed a file under releases/"
    );

    // The roll up and back down, under load on every host.
    let loads = load_on(&fleet);
    let p = timed("rolling upgrade", || {
        ctl.roll(&inventory, &vars("5.0.1", Some(&good)))
    });
    assert_played(&p, "the rolling upgrade");
    println!("{}", summary(&p));
    for h in &fleet.hosts {
        assert_eq!(h.serving(), "5.0.1");
        assert!(p.recap(&h.name, "changed").unwrap_or(0) > 0, "{}", p.text);
    }
    assert_eq!(
        states(&fleet),
        vec![vec![pair("5.0.1", "permanent"), pair("5.0.0", "old")]; 3]
    );
    let p = timed("rerun", || {
        ctl.roll(&inventory, &vars("5.0.1", Some(&good)))
    });
    assert_played(&p, "the rerun");
    for h in &fleet.hosts {
        assert_eq!(p.recap(&h.name, "changed"), Some(0), "{}", p.text);
    }
    let p = timed("rolling downgrade", || {
        ctl.roll(&inventory, &vars("5.0.0", None))
    });
    assert_played(&p, "the rolling downgrade");
    println!("{}", summary(&p));
    assert_eq!(
        states(&fleet),
        vec![vec![pair("5.0.1", "old"), pair("5.0.0", "permanent")]; 3]
    );
    stop_and_check(&fleet, loads, true);

    a_roll_by_os_package_from_the_hosts_repository(&ctl, &fleet);
    never_ready_on_host_two_stops_the_roll(&ctl, &fleet);
    a_minor_release_fails_the_preflight(&ctl, &fleet);
    println!(
        "the Ansible fleet test took {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

/// The hosts on 5.0.0, as if 5.0.1 had never reached them, and their own
/// apt repository holding `emqx-release-5.0.1`: check mode installs
/// nothing; the roll installs it host by host (its maintainer hooks
/// hot-upgrade the broker) under load and loses nothing, each host's
/// summary giving the hooks' switch; a rerun changes nothing.
fn a_roll_by_os_package_from_the_hosts_repository(ctl: &Controller, fleet: &Fleet) {
    for h in &fleet.hosts {
        h.sandbox.ok(
            "emqx-relup uninstall 5.0.1 >/dev/null && rm -f /usr/lib/emqx/releases/emqx-5.0.1.*",
        );
    }
    let deb = fleet.release_deb("5.0.1");
    timed("the hosts' apt repository", || {
        fleet.apt_repository(std::slice::from_ref(&deb))
    });
    let inventory = fleet.inventory(&[]);
    let mut args = vars("5.0.1", None);
    args.extend([
        "-e".into(),
        "rolling_upgrade_os_package=emqx-release-5.0.1".into(),
    ]);
    let installed = |h: &FleetHost| {
        h.sandbox
            .sh("dpkg-query -W --showformat='${Status}' emqx-release-5.0.1")
            .stdout
            .ends_with(b" ok installed")
    };

    // Check mode installs nothing and plans the install.
    let before = (state_files(fleet), release_files(fleet));
    let mut check = args.clone();
    check.push("--check".into());
    let p = timed("check mode by OS package", || ctl.roll(&inventory, &check));
    assert_played(&p, "check mode by OS package");
    println!("{}", summary(&p));
    for h in &fleet.hosts {
        let said = format!(
            "{}: would install emqx-release-5.0.1 from its repository, whose hooks move the broker to 5.0.1",
            h.name
        );
        assert!(p.text.contains(&said), "no '{said}':\n{}", p.text);
        assert!(
            !installed(h),
            "{}: check mode installed the package",
            h.name
        );
    }
    assert_eq!(
        (state_files(fleet), release_files(fleet)),
        before,
        "check mode changed a file under releases/"
    );

    let loads = load_on(fleet);
    let p = timed("rolling upgrade by OS package", || {
        ctl.roll(&inventory, &args)
    });
    assert_played(&p, "the rolling upgrade by OS package");
    println!("{}", summary(&p));
    for h in &fleet.hosts {
        assert!(
            p.text.contains(&format!(
                "{}: install emqx-release-5.0.1 from its repository",
                h.name
            )),
            "no pre-flight plan for {}:\n{}",
            h.name,
            p.text
        );
        let line = format!(
            "{}: changed, 5.0.0 -> 5.0.1 by emqx-release-5.0.1, ",
            h.name
        );
        assert!(p.text.contains(&line), "no '{line}':\n{}", p.text);
        assert_eq!(h.serving(), "5.0.1");
        assert!(installed(h), "{}: emqx-release-5.0.1 not installed", h.name);
        assert!(p.recap(&h.name, "changed").unwrap_or(0) > 0, "{}", p.text);
    }
    assert_eq!(
        states(fleet),
        vec![vec![pair("5.0.1", "permanent"), pair("5.0.0", "old")]; 3]
    );
    let p = timed("rerun by OS package", || ctl.roll(&inventory, &args));
    assert_played(&p, "the rerun by OS package");
    for h in &fleet.hosts {
        assert_eq!(p.recap(&h.name, "changed"), Some(0), "{}", p.text);
    }
    stop_and_check(fleet, loads, true);
}

/// Host two gets a 5.0.2 whose broker never reports ready: host one is
/// on 5.0.2, host two serves 5.0.1 (what it ran) with its sessions, host
/// three is untouched, and the play fails naming host two and why.
fn never_ready_on_host_two_stops_the_roll(ctl: &Controller, fleet: &Fleet) {
    let good = fleet.package("good", "5.0.2", "");
    let bad = fleet.package("never-ready", "5.0.2", "fail = \"never-ready\"\n");
    // Per host (an extra var would win over host two's).
    let pkg = |p: &Path| format!("rolling_upgrade_package={}", p.display());
    let inventory = fleet.inventory(&[
        ("host1", pkg(&good)),
        ("host2", pkg(&bad)),
        ("host3", pkg(&good)),
    ]);
    let third = fleet.hosts[2].sandbox.state_bytes();
    let loads = load_on(fleet);
    let p = timed("roll with a never-ready release on host two", || {
        ctl.roll(&inventory, &vars("5.0.2", None))
    });
    assert_ne!(p.code, Some(0), "{}", p.text);
    println!("{}", summary(&p));
    assert!(
        p.text.contains("The roll stopped at host2:") && p.text.contains("not ready within 4.0 s"),
        "{}",
        p.text
    );
    let (one, two, three) = (&fleet.hosts[0], &fleet.hosts[1], &fleet.hosts[2]);
    assert_eq!(one.serving(), "5.0.2");
    assert_eq!(two.serving(), "5.0.1");
    assert_eq!(three.serving(), "5.0.1");
    assert_eq!(three.sandbox.state_bytes(), third, "host three was touched");
    // Unpacked before its switch failed; 5.0.1 is still permanent.
    assert_eq!(
        two.sandbox.versions(),
        [
            pair("5.0.2", "unpacked"),
            pair("5.0.1", "permanent"),
            pair("5.0.0", "old")
        ]
    );
    assert!(p.text.contains("host3: untouched"), "{}", p.text);
    stop_and_check(fleet, loads, false);
}

/// Host three runs 5.1.0: the pre-flight refuses before any host changes.
fn a_minor_release_fails_the_preflight(ctl: &Controller, fleet: &Fleet) {
    let three = &fleet.hosts[2].sandbox;
    three.add_release("5.1.0", true, "");
    three.ok("systemctl stop emqx && rm -rf /var/lib/emqx/releases/* && emqx-relup install 5.1.0 >/dev/null && systemctl start emqx");
    three.wait_active(std::time::Duration::from_secs(10));
    let before = state_files(fleet);
    let good = fleet.package("good", "5.0.2", "");
    let p = timed("roll refused by the pre-flight", || {
        ctl.roll(&fleet.inventory(&[]), &vars("5.0.2", Some(&good)))
    });
    assert_ne!(p.code, Some(0), "{}", p.text);
    assert!(
        p.text
            .contains("host3 runs 5.1.0: a hot upgrade only moves between patch releases"),
        "{}",
        p.text
    );
    let after = state_files(fleet);
    assert_eq!(after, before, "a host changed before the pre-flight passed");
    assert!(
        !p.text.contains("Move the broker to the release"),
        "{}",
        p.text
    );
}

/// The summary lines of a run.
fn summary(p: &Played) -> String {
    p.text
        .lines()
        .filter(|l| l.contains("\"msg\": \"host"))
        .map(|l| l.trim())
        .collect::<Vec<_>>()
        .join("\n")
}
