//! The transcripts of the hot-upgrade reference that need no running broker,
//! run through the `emqx` link; stdout compared byte for byte.

use emqx_testkit::{text, Host};

/// 5.0.0 installed and permanent, as at the start of the reference.
fn host_with_500() -> Host {
    let host = Host::new();
    host.drop_release("5.0.0", true);
    host.ok(&["install", "5.0.0"]);
    host
}

#[test]
fn versions_lists_the_permanent_release() {
    let host = host_with_500();
    assert_eq!(
        host.ok(&["versions"]),
        "Installed versions:\n* 5.0.0 permanent\n"
    );
}

#[test]
fn root_dir_prints_the_install_dir_quoted() {
    let host = Host::new();
    let out = host
        .command()
        .env_remove("EMQX_ROOT_DIR")
        .arg("root_dir")
        .output()
        .unwrap();
    assert_eq!(text(&out).0, "\"/usr/lib/emqx\"\n");
    assert!(out.status.success());
    let out = host.ok(&["root_dir"]);
    assert_eq!(out, format!("\"{}\"\n", host.root().display()));
}

#[test]
fn upgrade_then_versions() {
    let host = host_with_500();
    host.drop_release("5.0.1", false);
    let out = host.emqx(&["upgrade", "5.0.1"]);
    assert!(out.status.success(), "{:?}", text(&out));
    assert_eq!(
        text(&out).0,
        "Release 5.0.1 not found, attempting to unpack releases/emqx-5.0.1.tar.gz\n\
         Unpacked successfully: \"5.0.1\"\n\
         Installed Release: 5.0.1\n\
         Made release permanent: \"5.0.1\"\n"
    );
    assert_eq!(
        text(&out).1,
        "note: no broker is running; release 5.0.1 will run at the next start\n"
    );
    assert_eq!(
        host.ok(&["versions"]),
        "Installed versions:\n* 5.0.1 permanent\n* 5.0.0 old\n"
    );
}

#[test]
fn upgrade_from_a_zip_names_the_zip() {
    let host = host_with_500();
    host.drop_release("5.0.1", true);
    assert_eq!(
        host.ok(&["upgrade", "5.0.1"]),
        "Release 5.0.1 not found, attempting to unpack releases/emqx-5.0.1.zip\n\
         Unpacked successfully: \"5.0.1\"\n\
         Installed Release: 5.0.1\n\
         Made release permanent: \"5.0.1\"\n"
    );
}

#[test]
fn downgrade_to_the_old_release() {
    let host = host_with_500();
    host.drop_release("5.0.1", false);
    host.ok(&["upgrade", "5.0.1"]);
    assert_eq!(
        host.ok(&["downgrade", "5.0.0"]),
        "Release 5.0.0 is marked old, switching to it.\n\
         Installed Release: 5.0.0\n\
         Made release permanent: \"5.0.0\"\n"
    );
    assert_eq!(
        host.ok(&["versions"]),
        "Installed versions:\n* 5.0.1 old\n* 5.0.0 permanent\n"
    );
}

#[test]
fn uninstall_the_old_release() {
    let host = host_with_500();
    host.drop_release("5.0.1", false);
    host.ok(&["upgrade", "5.0.1"]);
    assert_eq!(
        host.ok(&["uninstall", "5.0.0"]),
        "Release 5.0.0 is marked old, uninstalling it.\nUninstalled Release: 5.0.0\n"
    );
    assert_eq!(
        host.ok(&["versions"]),
        "Installed versions:\n* 5.0.1 permanent\n"
    );
    assert!(!host.store().join("5.0.0").exists(), "the tree is gone");
    assert!(
        host.drop_dir().join("emqx-5.0.0.zip").exists(),
        "the operator's package stays"
    );
}

#[test]
fn cross_minor_upgrade_is_refused_with_the_reference_words() {
    let host = host_with_500();
    host.drop_release("5.1.0", true);
    let before = host.snapshot();
    let out = host.emqx(&["upgrade", "5.1.0"]);
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(text(&out).0, "");
    assert_eq!(
        text(&out).1,
        "ERROR: Cannot upgrade/downgrade from '5.0.0' to '5.1.0'\n\
         Hot upgrade is only supported between patch releases.\n"
    );
    assert_eq!(host.snapshot(), before);
}

#[test]
fn no_permanent_flag_is_accepted_on_either_side() {
    let host = host_with_500();
    host.drop_release("5.0.1", false);
    for args in [
        ["upgrade", "--no-permanent", "5.0.1"],
        ["upgrade", "5.0.1", "--no-permanent"],
    ] {
        let out = host.emqx(&args);
        // No broker runs here, so a trial is refused (exit 3), not a usage error.
        assert_eq!(out.status.code(), Some(3), "{args:?}: {:?}", text(&out));
        assert!(text(&out)
            .1
            .contains("--no-permanent needs a running broker"));
    }
}
