//! The helper's .deb/.rpm and release packages inside a real systemd: an
//! apt/dpkg install of a newer release is a hot upgrade under load, removal
//! of the running release is refused, upgrading the helper never touches
//! the broker, purge removes the store; rpm scriptlets run with the `$1`
//! values rpm passes. Needs root and the helper's packages from
//! `scripts/build-packages` (the README's test command builds them first).

use std::path::{Path, PathBuf};
use std::process::Command;

use emqx_testkit::sandbox::assert_moved;
use emqx_testkit::Sandbox;

/// The helper's packages, built by `scripts/build-packages`.
fn helper_package(ext: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/packages");
    let found = std::fs::read_dir(&dir).ok().and_then(|d| {
        d.flatten().map(|e| e.path()).find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("emqx-relup"))
                && p.extension().is_some_and(|e| e == ext)
        })
    });
    found.unwrap_or_else(|| {
        panic!(
            "no emqx-relup .{ext} in {}: run scripts/build-packages first (scripts/test does)",
            dir.display()
        )
    })
}

/// Builds `emqx-release-VSN` packages (`kind`: deb or rpm) of the reference
/// broker into the sandbox's share; returns the package path.
fn release_package(sb: &Sandbox, version: &str, kind: &str) -> PathBuf {
    let zip = sb.share.path().join(format!("emqx-{version}.zip"));
    emqx_testkit::write_zip(&zip, &emqx_testkit::broker::broker_release(version, ""));
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/package-release");
    let out = Command::new(script)
        .arg(&zip)
        .arg(sb.share.path())
        .arg(kind)
        .env("SOURCE_DATE_EPOCH", "1795000000")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

fn copy_in(sb: &Sandbox, file: &Path) -> String {
    let to = sb.share.path().join(file.file_name().unwrap());
    if file != to {
        std::fs::copy(file, &to).unwrap();
    }
    to.display().to_string()
}

fn pair(v: &str, s: &str) -> (String, String) {
    (v.to_string(), s.to_string())
}

fn assert_clean(report: &serde_json::Value) {
    for key in ["refused", "reset", "timed_out", "other_error"] {
        assert_eq!(report[key], 0, "{key} in {report:#}");
    }
}

/// Installs the load harness into the sandbox (the packages do not ship it).
fn with_load_harness(sb: &Sandbox) {
    sb.ok(&format!(
        "install -m 0755 {} /usr/bin/emqx-load",
        emqx_testkit::bins::bin("emqx-load").display()
    ));
}

#[test]
fn dpkg_and_apt_install_of_releases_switch_the_running_broker() {
    let sb = Sandbox::bare("deb");
    with_load_harness(&sb);
    let helper = copy_in(&sb, &helper_package("deb"));

    // The helper: user, folders, unit; enabled, nothing started.
    sb.ok(&format!("dpkg -i {helper}"));
    sb.ok("id emqx && test -d /var/lib/emqx/releases && test -d /usr/lib/emqx/releases");
    let unit = sb.ok("systemctl cat emqx");
    assert!(
        unit.contains("ExecReload=/usr/bin/emqx-relup reload"),
        "{unit}"
    );
    assert_eq!(sb.ok("systemctl is-enabled emqx").trim(), "enabled");
    assert_ne!(sb.sh("systemctl is-active emqx").status.code(), Some(0));
    sb.ok(&format!(
        "{}{}systemctl daemon-reload",
        sb.test_dropin(1.0),
        sb.install_certs()
    ));

    // The first release: permanent, and the unit starts.
    let r500 = release_package(&sb, "5.0.0", "deb");
    sb.ok(&format!("dpkg -i {}", r500.display()));
    let pid0 = sb.wait_active(std::time::Duration::from_secs(10));
    assert_eq!(sb.ok(&format!("ps -o user= -p {pid0}")).trim(), "emqx");
    assert_eq!(
        sb.ok("emqx-relup versions"),
        "Installed versions:\n* 5.0.0 permanent\n"
    );

    let load = sb.start_load();
    // dpkg -i of a newer release: a hot upgrade.
    let r501 = release_package(&sb, "5.0.1", "deb");
    let out = sb.ok(&format!("dpkg -i {}", r501.display()));
    assert!(out.contains("Installed Release: 5.0.1"), "{out}");
    let pid1 = sb.main_pid();
    assert_ne!(pid1, pid0);
    assert_eq!(sb.broker_of(pid1), ("5.0.1".to_string(), true));
    assert_eq!(
        sb.versions(),
        [pair("5.0.1", "permanent"), pair("5.0.0", "old")]
    );
    // apt-get install ./... of the next one.
    let r502 = release_package(&sb, "5.0.2", "deb");
    sb.ok(&format!(
        "DEBIAN_FRONTEND=noninteractive apt-get install -y -q {} 2>&1",
        r502.display()
    ));
    let pid2 = sb.main_pid();
    assert_ne!(pid2, pid1);
    assert_eq!(sb.broker_of(pid2).0, "5.0.2");

    // Removing the running release is refused; dpkg keeps the package.
    let before = sb.state_bytes();
    let out = sb.sh("dpkg -r emqx-release-5.0.2");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0));
    assert!(
        stderr.contains("refusing to remove the package of release 5.0.2"),
        "{stderr}"
    );
    // dpkg marks it for deinstall, but it stays installed with its files.
    let status = sb.ok("dpkg-query -W -f='${Status}' emqx-release-5.0.2");
    assert!(status.ends_with(" ok installed"), "{status}");
    sb.ok("test -f /usr/lib/emqx/releases/emqx-5.0.2.zip");
    assert_eq!(sb.state_bytes(), before);
    assert_eq!(sb.main_pid(), pid2);
    // Removing an old one uninstalls it.
    sb.ok("dpkg -r emqx-release-5.0.0");
    assert_eq!(
        sb.versions(),
        [pair("5.0.2", "permanent"), pair("5.0.1", "old")]
    );

    // A cross-minor release fails its hook; the broker is untouched.
    let before = sb.state_bytes();
    let r510 = release_package(&sb, "5.1.0", "deb");
    let out = sb.sh(&format!("dpkg -i {}", r510.display()));
    assert_ne!(out.status.code(), Some(0));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("Cannot upgrade/downgrade from '5.0.2' to '5.1.0'"),
        "{stderr}"
    );
    assert_eq!(sb.main_pid(), pid2);
    assert_eq!(sb.state_bytes(), before);
    sb.ok("dpkg -r emqx-release-5.1.0");

    // Reinstalling, then upgrading, the helper package: the broker stays,
    // and so does the operator's relup.toml (a conffile).
    sb.ok("echo 'settle_secs = 0.3 # ours' >> /etc/emqx/relup.toml");
    sb.ok(&format!("dpkg -i {helper}"));
    let newer = sb.share.path().join("emqx-relup-newer.deb");
    sb.ok(&format!(
        "set -e; d=$(mktemp -d); dpkg-deb -R {helper} $d; sed -i 's/^Version: .*/&+1/' $d/DEBIAN/control; dpkg-deb --root-owner-group -b $d {} >/dev/null; dpkg -i {}",
        newer.display(),
        newer.display()
    ));
    assert_eq!(sb.main_pid(), pid2);
    assert_eq!(sb.active_state(), "active");
    sb.ok("grep -q 'settle_secs = 0.3 # ours' /etc/emqx/relup.toml");
    let report = sb.stop_load(load);
    assert_clean(&report);
    // dpkg -i and apt-get install switched with the clients connected.
    assert_moved(&report);

    // Everything goes: stop, remove the releases, purge the helper.
    sb.ok("systemctl stop emqx");
    sb.ok("dpkg -r emqx-release-5.0.1 emqx-release-5.0.2");
    assert_eq!(sb.versions(), []);
    // remove keeps the store; purge says so and removes it.
    sb.ok("dpkg -r emqx-relup && test -d /var/lib/emqx/releases");
    let out = sb.ok("dpkg -P emqx-relup 2>&1");
    assert!(out.contains("purging /var/lib/emqx"), "{out}");
    sb.ok("test ! -e /var/lib/emqx && test ! -e /etc/emqx/relup.toml");
    // The user stays (Debian practice; files elsewhere may belong to it).
    sb.ok("id emqx");
}

/// The scriptlets of an rpm, by name (`post`, `preun`...), from
/// `rpm -qp --scripts`.
fn scriptlets(rpm: &Path) -> Vec<(String, String)> {
    let out = Command::new("rpm")
        .args(["-qp", "--scripts"])
        .arg(rpm)
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    println!("{}:\n{text}", rpm.display());
    let mut found: Vec<(String, String)> = Vec::new();
    for line in text.lines() {
        let header = [
            ("preinstall scriptlet", "pre"),
            ("postinstall scriptlet", "post"),
            ("preuninstall scriptlet", "preun"),
            ("postuninstall scriptlet", "postun"),
        ]
        .iter()
        .find(|(h, _)| line.starts_with(h));
        match header {
            Some((_, name)) => found.push((name.to_string(), String::new())),
            None => {
                if let Some((_, body)) = found.last_mut() {
                    body.push_str(line);
                    body.push('\n');
                }
            }
        }
    }
    found
}

/// Puts an rpm's payload in place, as `rpm -i` would (Debian's rpm refuses
/// to install packages).
fn unpack_rpm(sb: &Sandbox, rpm: &Path) {
    let path = copy_in(sb, rpm);
    sb.ok(&format!("cd / && rpm2cpio {path} | cpio -idmu --quiet"));
}

/// Runs scriptlet `name` of `rpm` inside with `$1 = count`.
fn run_scriptlet(sb: &Sandbox, rpm: &Path, name: &str, count: u32) -> std::process::Output {
    let body = scriptlets(rpm)
        .into_iter()
        .find(|(n, _)| n == name)
        .map(|(_, b)| b)
        .unwrap_or_else(|| panic!("{} has no {name} scriptlet", rpm.display()));
    let file = sb.share.path().join(format!("scriptlet-{name}"));
    std::fs::write(&file, body).unwrap();
    sb.sh(&format!("sh -e {} {count}", file.display()))
}

#[test]
fn rpm_scriptlets_do_what_the_debs_do() {
    let sb = Sandbox::bare("rpm");
    with_load_harness(&sb);
    let helper = helper_package("rpm");
    let r500 = release_package(&sb, "5.0.0", "rpm");
    let r501 = release_package(&sb, "5.0.1", "rpm");
    for rpm in [&helper, &r500, &r501] {
        let lint = Command::new("rpmlint")
            .args([
                "-c",
                concat!(env!("CARGO_MANIFEST_DIR"), "/rpm/rpmlintrc.toml"),
            ])
            .arg(rpm)
            .output()
            .unwrap();
        assert!(
            lint.status.success(),
            "{}",
            String::from_utf8_lossy(&lint.stdout)
        );
    }

    // Install (1): user, folders, enabled, nothing started.
    unpack_rpm(&sb, &helper);
    assert!(run_scriptlet(&sb, &helper, "post", 1).status.success());
    sb.ok("id emqx && test -d /var/lib/emqx/releases");
    assert_eq!(sb.ok("systemctl is-enabled emqx").trim(), "enabled");
    sb.ok(&format!(
        "{}{}systemctl daemon-reload",
        sb.test_dropin(1.0),
        sb.install_certs()
    ));
    assert_ne!(sb.sh("systemctl is-active emqx").status.code(), Some(0));

    // The first release (install, 1): permanent and started.
    unpack_rpm(&sb, &r500);
    let out = run_scriptlet(&sb, &r500, "post", 1);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pid0 = sb.wait_active(std::time::Duration::from_secs(10));
    assert_eq!(sb.versions(), [pair("5.0.0", "permanent")]);

    let load = sb.start_load();
    // A newer release (install, 1): hot upgrade.
    unpack_rpm(&sb, &r501);
    let out = run_scriptlet(&sb, &r501, "post", 1);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pid1 = sb.main_pid();
    assert_ne!(pid1, pid0);
    assert_eq!(sb.broker_of(pid1), ("5.0.1".to_string(), true));
    // Erase (0) of the running release: refused, nothing changes.
    let before = sb.state_bytes();
    let out = run_scriptlet(&sb, &r501, "preun", 0);
    assert_ne!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("refusing to remove the package of release 5.0.1"));
    assert_eq!(sb.state_bytes(), before);
    // Upgrade (1) of a release package: nothing happens.
    assert!(run_scriptlet(&sb, &r501, "preun", 1).status.success());
    assert_eq!(sb.state_bytes(), before);
    // Erase (0) of the old one: refused while its broker still drains
    // (a live process runs from its tree), then uninstalled.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let out = run_scriptlet(&sb, &r500, "preun", 0);
        if out.status.success() {
            break;
        }
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("in use by pid"), "{stderr}");
        assert!(
            std::time::Instant::now() < deadline,
            "still refused: {stderr}"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert_eq!(sb.versions(), [pair("5.0.1", "permanent")]);
    // The helper upgraded (post 2, preun 1): the broker stays.
    assert!(run_scriptlet(&sb, &helper, "post", 2).status.success());
    assert!(run_scriptlet(&sb, &helper, "preun", 1).status.success());
    assert_eq!(sb.main_pid(), pid1);
    assert_clean(&sb.stop_load(load));
    // The helper erased (preun 0): the unit stops.
    assert!(run_scriptlet(&sb, &helper, "preun", 0).status.success());
    assert_ne!(sb.sh("systemctl is-active emqx").status.code(), Some(0));
}

/// The kill points of the fault tests exist only in test builds: the
/// packaged helper has none, the binary under test has them (so the
/// search below can find what it looks for).
#[test]
fn the_packaged_helper_has_no_kill_points() {
    let deb = helper_package("deb");
    let dir = tempfile::tempdir().unwrap();
    let status = Command::new("dpkg-deb")
        .arg("-x")
        .arg(&deb)
        .arg(dir.path())
        .status()
        .unwrap();
    assert!(status.success());
    let has = |bytes: &[u8]| {
        bytes
            .windows(b"helper::confirmed".len())
            .any(|w| w == b"helper::confirmed")
    };
    let packaged = std::fs::read(dir.path().join("usr/bin/emqx-relup")).unwrap();
    assert!(!has(&packaged), "the packaged helper holds kill points");
    let tested = std::fs::read(env!("CARGO_BIN_EXE_emqx-relup")).unwrap();
    assert_eq!(
        has(&tested),
        cfg!(feature = "failpoints"),
        "the test binary's kill points follow the feature"
    );
}
