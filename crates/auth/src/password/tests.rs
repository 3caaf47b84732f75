//! Parsing edge cases of the password file, and verification against
//! lines Debian's mosquitto_passwd 2.0.11 wrote.

use super::*;

/// `mosquitto_passwd -c -b f alice secret` (the default, PBKDF2, 101 rounds).
const ALICE: &str = "alice:$7$101$zQASycP1WEtpj+Fd$HYPBt1jaZLpgAkWMOwQAEjvZeW0T7FKG4ZsAzoBF/8PFcmX9r2Xx/M7KUcEpsJ43eMQSc5xIZoeTjft/e+ttLQ==";
/// `mosquitto_passwd -H sha512 -b f bob hunter2`.
const BOB: &str = "bob:$6$9ko2pMwHKt98PLA8$HO4bdRSofGtl3t8MlouD7ZEtEALSEGpaAFmekMj+08ga0LndG3lcrMWo4xRzhLIb08KfikYlJTIu7pBJOBdbYQ==";

fn problem(text: &str) -> (usize, PasswordProblem) {
    match PasswordFile::parse(text) {
        Err(PasswordFileError::Line { line, problem, .. }) => (line, problem),
        other => panic!("{text:?}: expected a line error, got {other:?}"),
    }
}

#[test]
fn verifies_both_hash_types_from_mosquitto_passwd() {
    let f = PasswordFile::parse(&format!("{ALICE}\n{BOB}\n")).unwrap();
    assert_eq!(f.len(), 2);
    assert!(f.verify("alice", b"secret"));
    assert!(!f.verify("alice", b"Secret"));
    // The password ends at its first NUL, as mosquitto's C string does.
    assert!(f.verify("alice", b"secret\0more"));
    assert!(f.verify("bob", b"hunter2\0"));
    assert!(!f.verify("alice", b"sec\0ret"));
    assert!(!f.verify("alice", b""));
    assert!(f.verify("bob", b"hunter2"));
    assert!(!f.verify("bob", b"hunter"));
    assert!(!f.verify("bob", b"secret"));
    assert!(!f.verify("carol", b"secret"));
    assert!(!f.verify("Alice", b"secret"));
}

#[test]
fn comments_blank_lines_and_spaces_are_read_as_mosquitto_reads_them() {
    let text = format!(
        "# a comment\n\n   \n\t# indented comment\n  {ALICE}  \r\n{BOB}:ignored third field\n"
    );
    let f = PasswordFile::parse(&text).unwrap();
    assert!(f.verify("alice", b"secret"));
    assert!(f.verify("bob", b"hunter2"));
    // strtok skips leading ':' and empty '$' pieces.
    let f = PasswordFile::parse(&format!(":{}", ALICE.replacen("$7$", "$$7$$", 1))).unwrap();
    assert!(f.verify("alice", b"secret"));
    // No trailing newline, CRLF, a missing final newline: all fine.
    assert!(PasswordFile::parse(ALICE).unwrap().contains("alice"));
    assert!(PasswordFile::parse("").unwrap().is_empty());
    // Padding may be left off, as OpenSSL's base64 allows.
    let f = PasswordFile::parse(BOB.trim_end_matches('=')).unwrap();
    assert!(f.verify("bob", b"hunter2"));
}

#[test]
fn malformed_lines_are_errors_with_their_number() {
    assert_eq!(problem("# ok\nalice"), (2, PasswordProblem::NoSeparator));
    assert_eq!(problem(":::"), (1, PasswordProblem::NoUsername));
    assert_eq!(problem("alice:"), (1, PasswordProblem::NoHash));
    assert_eq!(problem("alice: \t"), (1, PasswordProblem::NoHash));
    assert_eq!(problem("alice:$$$"), (1, PasswordProblem::NoHash));
    assert_eq!(
        problem("alice:secret"),
        (1, PasswordProblem::UnknownHashType)
    );
    assert_eq!(
        problem("alice:$5$abc$def"),
        (1, PasswordProblem::UnknownHashType)
    );
    assert_eq!(problem("alice:$7$"), (1, PasswordProblem::Incomplete));
    assert_eq!(
        problem("alice:$7$101$zQASycP1WEtpj+Fd"),
        (1, PasswordProblem::Incomplete)
    );
    assert_eq!(
        problem("alice:$7$101$c2FsdA=="),
        (1, PasswordProblem::BadSalt)
    );
    assert_eq!(problem("alice:$6$"), (1, PasswordProblem::Incomplete));
    for n in ["0", "-1", "abc", "101abc", "2147483648", "99999999999"] {
        let line = ALICE.replacen("$101$", &format!("${n}$"), 1);
        assert_eq!(problem(&line), (1, PasswordProblem::BadIterations), "{n}");
    }
    let short_salt = ALICE.replacen("zQASycP1WEtpj+Fd", "c2FsdA==", 1);
    assert_eq!(problem(&short_salt), (1, PasswordProblem::BadSalt));
    let not_b64 = ALICE.replacen("zQASycP1WEtpj+Fd", "zQAS!cP1WEtpj+Fd", 1);
    assert_eq!(problem(&not_b64), (1, PasswordProblem::BadSalt));
    let short_hash = &ALICE[..ALICE.len() - 8];
    assert_eq!(problem(short_hash), (1, PasswordProblem::BadHash));
    let dup = format!("{ALICE}\n{BOB}\n{ALICE}\n");
    assert_eq!(
        problem(&dup),
        (3, PasswordProblem::Duplicate { first_line: 1 })
    );
    assert_eq!(problem("a:\0b"), (1, PasswordProblem::Nul));
    let long = format!("{}:$6$x$y", "u".repeat(65536));
    assert_eq!(problem(&long), (1, PasswordProblem::UsernameTooLong));
}

#[test]
fn errors_name_file_and_line_but_never_the_secret() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("passwd");
    std::fs::write(&path, format!("{ALICE}\nbob:plaintext-secret\n")).unwrap();
    let err = PasswordFile::load(&path).unwrap_err().to_string();
    assert!(err.contains(&path.display().to_string()), "{err}");
    assert!(err.contains("line 2"), "{err}");
    assert!(
        !err.contains("plaintext-secret") && !err.contains("bob"),
        "{err}"
    );
    std::fs::write(&path, b"alice:\xff\n").unwrap();
    let err = PasswordFile::load(&path).unwrap_err().to_string();
    assert!(err.ends_with("line 1: not UTF-8"), "{err}");
    let err = PasswordFile::load(dir.path()).unwrap_err().to_string();
    assert!(err.contains("not a regular file"), "{err}");
    let dbg = format!("{:?}", PasswordFile::parse(ALICE).unwrap());
    assert_eq!(dbg, "PasswordFile { users: 1 }");
}

#[test]
fn a_hundred_thousand_users_load_and_look_up() {
    let mut text = String::new();
    for i in 0..100_000 {
        text.push_str(&ALICE.replacen("alice", &format!("user{i:06}"), 1));
        text.push('\n');
    }
    let started = std::time::Instant::now();
    let f = PasswordFile::parse(&text).unwrap();
    let parsed = started.elapsed();
    assert_eq!(f.len(), 100_000);
    let started = std::time::Instant::now();
    assert!(f.verify("user099999", b"secret"));
    assert!(!f.verify("user100000", b"secret"));
    let verified = started.elapsed() / 2;
    println!(
        "100,000 users ({} bytes): parsed in {parsed:?}, one verify {verified:?}",
        text.len()
    );
}
