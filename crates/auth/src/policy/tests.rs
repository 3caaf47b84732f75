//! The CONNECT decisions and authorization of a whole policy.

use super::*;

/// mosquitto_passwd 2.0.11: alice/secret.
const ALICE: &str = "alice:$7$101$zQASycP1WEtpj+Fd$HYPBt1jaZLpgAkWMOwQAEjvZeW0T7FKG4ZsAzoBF/8PFcmX9r2Xx/M7KUcEpsJ43eMQSc5xIZoeTjft/e+ttLQ==";

fn pw<'a>(username: Option<&'a str>, password: Option<&'a str>) -> Credentials<'a> {
    Credentials::Password {
        username,
        password: password.map(str::as_bytes),
    }
}

fn cert(username: Option<&str>) -> Credentials<'_> {
    Credentials::Certificate { username }
}

fn with_passwords(allow_anonymous: Option<bool>) -> Policy {
    Policy::new(
        Some(PasswordFile::parse(ALICE).unwrap()),
        None,
        allow_anonymous,
    )
}

#[test]
fn a_password_file_checks_every_username_and_refuses_anonymous_by_default() {
    use ConnectDecision::*;
    let p = with_passwords(None);
    assert!(!p.allow_anonymous());
    assert_eq!(p.connect(&pw(Some("alice"), Some("secret"))), Allowed);
    assert_eq!(p.connect(&pw(Some("alice"), Some("wrong"))), NotAuthorized);
    assert_eq!(p.connect(&pw(Some("alice"), None)), NotAuthorized);
    assert_eq!(p.connect(&pw(Some("alice"), Some(""))), NotAuthorized);
    assert_eq!(
        p.connect(&pw(Some("mallory"), Some("secret"))),
        NotAuthorized
    );
    assert_eq!(p.connect(&pw(None, None)), NotAuthorized);
    let open = with_passwords(Some(true));
    assert_eq!(open.connect(&pw(None, None)), Allowed);
    assert_eq!(open.connect(&pw(Some("mallory"), Some("x"))), NotAuthorized);
    assert_eq!(
        open.connect(&pw(Some("alice"), Some("wrong"))),
        NotAuthorized
    );
}

#[test]
fn without_a_password_file_allow_anonymous_decides_for_everyone() {
    let open = Policy::default();
    assert!(open.allow_anonymous());
    assert!(open.connect(&pw(Some("anyone"), Some("x"))).is_allowed());
    assert!(open.connect(&pw(None, None)).is_allowed());
    let closed = Policy::new(None, None, Some(false));
    assert_eq!(
        closed.connect(&pw(Some("anyone"), Some("x"))),
        ConnectDecision::NotAuthorized
    );
}

#[test]
fn a_certificate_username_needs_no_password() {
    let p = with_passwords(Some(false));
    assert_eq!(p.connect(&cert(Some("device-1"))), ConnectDecision::Allowed);
    assert_eq!(p.connect(&cert(None)), ConnectDecision::BadCredentials);
    assert_eq!(cert(Some("device-1")).username(), Some("device-1"));
    assert_eq!(pw(Some("a"), None).username(), Some("a"));
}

#[test]
fn codes_for_both_protocol_versions() {
    use ConnectDecision::*;
    let codes: Vec<_> = [Allowed, BadCredentials, NotAuthorized]
        .iter()
        .map(|d| (d.v311_return_code(), d.v5_reason_code()))
        .collect();
    assert_eq!(codes, vec![(0, 0x00), (4, 0x86), (5, 0x87)]);
}

#[test]
fn authorize_uses_the_acl_or_only_the_dollar_rules() {
    let who = Identity {
        username: Some("alice"),
        client_id: "c",
    };
    let open = Policy::default();
    assert!(open.authorize(&who, "any/topic", Access::Write));
    assert!(open.authorize(&who, "$SYS/x", Access::Read));
    assert!(!open.authorize(&who, "$SYS/x", Access::Write));
    let acl = AclFile::parse("user alice\ntopic read a/#\n").unwrap();
    let p = Policy::new(None, Some(acl), None);
    assert!(p.authorize(&who, "a/b", Access::Read));
    assert!(!p.authorize(&who, "a/b", Access::Write));
    assert!(p.authorize(&who, "z/#", Access::Subscribe));
}

#[test]
fn load_reads_the_settings_files_and_reports_the_failing_one() {
    let dir = tempfile::tempdir().unwrap();
    let pw_path = dir.path().join("passwd");
    let acl_path = dir.path().join("acl");
    std::fs::write(&pw_path, format!("{ALICE}\n")).unwrap();
    std::fs::write(&acl_path, "user alice\ntopic a\n").unwrap();
    let settings = Settings {
        password_file: Some(pw_path.clone()),
        acl_file: Some(acl_path.clone()),
        allow_anonymous: None,
    };
    let p = Policy::load(&settings).unwrap();
    assert_eq!(p.passwords().map(PasswordFile::len), Some(1));
    assert!(p.acl().is_some() && !p.allow_anonymous());
    std::fs::write(&acl_path, "user alice\ntopic sometimes a\n").unwrap();
    let err = Policy::load(&settings).unwrap_err();
    assert!(matches!(err, PolicyError::Acl(_)), "{err}");
    assert!(err.to_string().contains("line 2"), "{err}");
    std::fs::write(&pw_path, "alice:$8$x$y\n").unwrap();
    let err = Policy::load_files(Some(&pw_path), None, None).unwrap_err();
    assert!(err.to_string().starts_with("password file "), "{err}");
    assert!(
        err.to_string().contains("unknown password hash type"),
        "{err}"
    );
}

/// alice with another password (`mosquitto_passwd -H sha512`, hunter2).
const ALICE_OTHER: &str = "alice:$6$9ko2pMwHKt98PLA8$HO4bdRSofGtl3t8MlouD7ZEtEALSEGpaAFmekMj+08ga0LndG3lcrMWo4xRzhLIb08KfikYlJTIu7pBJOBdbYQ==";

#[test]
fn a_moved_login_is_answered_as_a_connect_would_be() {
    use ConnectDecision::*;
    let old = with_passwords(None);
    let good = pw(Some("alice"), Some("secret"));
    let seen = old.entry_of(&good).unwrap();
    assert_eq!(old.entry_of(&pw(Some("mallory"), Some("x"))), None);
    assert_eq!(old.entry_of(&pw(Some("alice"), None)), None);
    // The same entry (another parse of the same line): not hashed again.
    let same = with_passwords(None);
    assert_eq!(same.entry_of(&good), Some(seen));
    assert_eq!(same.reconnect(&good, Some(&seen)), Allowed);
    // A changed entry, a removed user, no password file, no fingerprint:
    // the full check, whose answer a connect would give.
    let changed = Policy::new(Some(PasswordFile::parse(ALICE_OTHER).unwrap()), None, None);
    assert_ne!(changed.entry_of(&good), Some(seen));
    assert_eq!(changed.reconnect(&good, Some(&seen)), NotAuthorized);
    let empty = Policy::new(Some(PasswordFile::parse("").unwrap()), None, None);
    assert_eq!(empty.reconnect(&good, Some(&seen)), NotAuthorized);
    assert_eq!(Policy::default().reconnect(&good, Some(&seen)), Allowed);
    assert_eq!(same.reconnect(&good, None), Allowed);
    assert_eq!(
        same.reconnect(&pw(Some("alice"), Some("wrong")), None),
        NotAuthorized
    );
    // Anonymous and certificates never use it.
    assert_eq!(same.reconnect(&pw(None, None), Some(&seen)), NotAuthorized);
    assert_eq!(same.reconnect(&cert(None), Some(&seen)), BadCredentials);
}
