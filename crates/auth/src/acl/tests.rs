//! Parsing edge cases of the ACL file and every kind of rule.

use super::*;

fn who<'a>(username: Option<&'a str>, client_id: &'a str) -> Identity<'a> {
    Identity {
        username,
        client_id,
    }
}

fn problem(text: &str) -> (usize, AclProblem) {
    match AclFile::parse(text) {
        Err(AclFileError::Line { line, problem, .. }) => (line, problem),
        other => panic!("{text:?}: expected a line error, got {other:?}"),
    }
}

const FILE: &str = "\
# anonymous clients
topic read public/#
topic anon/rw

user alice
topic readwrite a/#
topic deny a/secret/#
topic read shared/#
topic write inbox/alice

user bob
topic read a/#
topic write b/+/cmd
user carol
user alice
topic read extra/#

pattern readwrite users/%u/#
pattern deny users/%u/locked
pattern read devices/%c/in
pattern write devices/%c/out
";

#[test]
fn topic_lines_before_any_user_are_for_clients_without_a_username() {
    let acl = AclFile::parse(FILE).unwrap();
    let anon = who(None, "c");
    assert!(acl.check(&anon, "public/x", Access::Read));
    assert!(!acl.check(&anon, "public/x", Access::Write));
    assert!(acl.check(&anon, "anon/rw", Access::Write));
    assert!(acl.check(&anon, "anon/rw", Access::Read));
    // ... and not for users, with or without a section of their own.
    assert!(!acl.check(&who(Some("alice"), "c"), "public/x", Access::Read));
    assert!(!acl.check(&who(Some("zed"), "c"), "public/x", Access::Read));
}

#[test]
fn per_user_read_write_readwrite_and_deny() {
    let acl = AclFile::parse(FILE).unwrap();
    let alice = who(Some("alice"), "alice-1");
    assert!(acl.check(&alice, "a/b", Access::Write));
    assert!(acl.check(&alice, "a/b", Access::Read));
    assert!(acl.check(&alice, "a", Access::Write), "a/# matches a");
    assert!(!acl.check(&alice, "a/secret", Access::Write));
    assert!(!acl.check(&alice, "a/secret/x", Access::Read));
    assert!(acl.check(&alice, "shared/x", Access::Read));
    assert!(!acl.check(&alice, "shared/x", Access::Write));
    assert!(acl.check(&alice, "inbox/alice", Access::Write));
    assert!(!acl.check(&alice, "inbox/alice", Access::Read));
    assert!(
        acl.check(&alice, "extra/1", Access::Read),
        "a second section adds up"
    );
    let bob = who(Some("bob"), "bob-1");
    assert!(
        acl.check(&bob, "a/secret/x", Access::Read),
        "alice's deny is hers"
    );
    assert!(!acl.check(&bob, "a/b", Access::Write));
    assert!(acl.check(&bob, "b/x/cmd", Access::Write));
    assert!(!acl.check(&bob, "b/x/y/cmd", Access::Write));
    assert!(!acl.check(&bob, "extra/1", Access::Read));
    // carol's section is empty: only the patterns speak for her.
    let carol = who(Some("carol"), "c");
    assert!(!acl.check(&carol, "a/b", Access::Read));
    assert!(acl.check(&carol, "users/carol/x", Access::Read));
}

#[test]
fn patterns_substitute_username_and_client_id() {
    let acl = AclFile::parse(FILE).unwrap();
    let alice = who(Some("alice"), "dev7");
    assert!(acl.check(&alice, "users/alice/x", Access::Write));
    assert!(acl.check(&alice, "users/alice", Access::Read));
    assert!(!acl.check(&alice, "users/bob/x", Access::Write));
    assert!(!acl.check(&alice, "users/alice/locked", Access::Write));
    assert!(acl.check(&alice, "devices/dev7/in", Access::Read));
    assert!(!acl.check(&alice, "devices/dev7/in", Access::Write));
    assert!(acl.check(&alice, "devices/dev7/out", Access::Write));
    assert!(!acl.check(&alice, "devices/dev8/out", Access::Write));
    // %u patterns are skipped without a username; %c ones still apply.
    let anon = who(None, "dev9");
    assert!(!acl.check(&anon, "users/%u/x", Access::Write));
    assert!(acl.check(&anon, "devices/dev9/out", Access::Write));
    // '/' in a name spreads over levels; mosquitto does not refuse it.
    let eve = who(Some("team/eve"), "x/y");
    assert!(acl.check(&eve, "users/team/eve/1", Access::Write));
    assert!(acl.check(&eve, "devices/x/y/out", Access::Write));
}

#[test]
fn wildcards_in_names_deny_the_patterns_but_not_the_own_list() {
    let acl = AclFile::parse(FILE).unwrap();
    for (user, id) in [
        (Some("al+ce"), "c"),
        (Some("a#"), "c"),
        (Some("alice"), "c+1"),
        (None, "c#"),
    ] {
        let w = who(user, id);
        assert!(!acl.check(&w, "devices/c/out", Access::Write), "{w:?}");
        assert!(
            !acl.check(&w, &format!("devices/{id}/out"), Access::Write),
            "{w:?}"
        );
        assert!(!acl.check(&w, "users/alice/x", Access::Write), "{w:?}");
    }
    // alice's own grant is decided before the wildcard check.
    assert!(acl.check(&who(Some("alice"), "c+1"), "a/b", Access::Write));
    // Without patterns the check does not apply at all.
    let plain = AclFile::parse("user a+b\ntopic x\ntopic read y/#").unwrap();
    assert!(acl.check(&who(Some("alice"), "c#"), "a/x", Access::Read));
    assert!(plain.check(&who(Some("a+b"), "c"), "x", Access::Write));
}

#[test]
fn deny_wins_within_a_list_and_an_own_grant_beats_a_pattern_deny() {
    let acl = AclFile::parse("user u\ntopic readwrite t/#\ntopic deny t/x\npattern deny t/%u/#\n")
        .unwrap();
    let u = who(Some("u"), "c");
    assert!(!acl.check(&u, "t/x", Access::Write));
    assert!(
        acl.check(&u, "t/u/1", Access::Write),
        "own list decides first"
    );
    let order = AclFile::parse("user u\ntopic deny t/x\ntopic readwrite t/#\n").unwrap();
    assert!(
        !order.check(&u, "t/x", Access::Read),
        "deny first, whatever the order"
    );
    let pat = AclFile::parse("pattern readwrite p/#\npattern deny p/%c\n").unwrap();
    assert!(!pat.check(&who(None, "c"), "p/c", Access::Write));
    assert!(pat.check(&who(None, "c"), "p/d", Access::Write));
}

#[test]
fn subscriptions_are_always_allowed_and_dollar_rules_hold() {
    let acl = AclFile::parse("user u\ntopic readwrite #\ntopic readwrite $SYS/#\n").unwrap();
    let u = who(Some("u"), "c");
    let nobody = who(Some("nobody"), "c");
    for filter in ["#", "secret/#", "+/+", "$SYS/#", "$share/g/t"] {
        assert!(acl.check(&nobody, filter, Access::Subscribe), "{filter}");
    }
    assert!(
        !acl.check(&u, "$SYS/x", Access::Write),
        "$SYS is never writable"
    );
    assert!(acl.check(&u, "$SYS/broker/connection/b/state", Access::Write));
    assert!(acl.check(&u, "$SYS/x", Access::Read));
    assert!(!acl.check(&u, "$share/g/t", Access::Write));
    let hash_only = AclFile::parse("user u\ntopic #\n").unwrap();
    assert!(
        !hash_only.check(&u, "$SYS/x", Access::Read),
        "# does not reach $ topics"
    );
    assert!(!hash_only.check(&u, "$other/x", Access::Write));
    assert!(hash_only.check(&u, "x", Access::Write));
}

#[test]
fn an_empty_file_denies_publish_and_delivery() {
    let acl = AclFile::parse("# nothing\n\n").unwrap();
    assert!(acl.is_empty());
    let u = who(Some("u"), "c");
    assert!(!acl.check(&u, "a", Access::Read));
    assert!(!acl.check(&u, "a", Access::Write));
    assert!(acl.check(&u, "a", Access::Subscribe));
}

#[test]
fn lines_split_on_spaces_and_the_topic_is_the_rest_of_the_line() {
    let acl = AclFile::parse(
        "  user   bob smith  \r\n topic   read   a b/c  \ntopic deny\ntopic read\ntopic x\n",
    )
    .unwrap();
    let bob = who(Some("bob smith"), "c");
    assert!(acl.check(&bob, "a b/c", Access::Read));
    assert!(!acl.check(&bob, "a b/c", Access::Write));
    // A lone word is a readwrite topic, even "deny" or "read".
    for t in ["deny", "read", "x"] {
        assert!(acl.check(&bob, t, Access::Write), "{t}");
    }
}

#[test]
fn malformed_lines_are_errors_with_their_number() {
    let topic = |t: &str| AclProblem::BadTopic(t.into());
    assert_eq!(problem("topic"), (1, AclProblem::MissingTopic));
    assert_eq!(problem("# c\npattern   "), (2, AclProblem::MissingTopic));
    assert_eq!(problem("user"), (1, AclProblem::MissingUsername));
    assert_eq!(problem("user   \t"), (1, AclProblem::MissingUsername));
    assert_eq!(
        problem("topic Read a"),
        (1, AclProblem::BadAccess("Read".into()))
    );
    assert_eq!(problem("topic a b"), (1, AclProblem::BadAccess("a".into())));
    assert_eq!(
        problem("topic read a/b # trailing comment"),
        (1, topic("a/b # trailing comment"))
    );
    assert_eq!(problem("topic read a+"), (1, topic("a+")));
    assert_eq!(problem("pattern read a/#/b"), (1, topic("a/#/b")));
    assert_eq!(problem("pattern read %c+"), (1, topic("%c+")));
    assert_eq!(
        problem("Topic a"),
        (1, AclProblem::UnknownKeyword("Topic".into()))
    );
    assert_eq!(
        problem("topic\tread\ta"),
        (1, AclProblem::UnknownKeyword("topic\tread\ta".into()))
    );
    assert_eq!(
        problem(" # indented"),
        (1, AclProblem::UnknownKeyword("#".into()))
    );
    assert_eq!(problem("topic a\0b"), (1, AclProblem::Nul));
    let deep = format!("topic {}", "a/".repeat(201));
    assert!(matches!(problem(&deep), (1, AclProblem::BadTopic(_))));
}

#[test]
fn errors_name_the_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("acl");
    std::fs::write(&path, "user a\ntopic read x\nfrobnicate\n").unwrap();
    let err = AclFile::load(&path).unwrap_err().to_string();
    let want = format!(
        "ACL file {}: line 3: \"frobnicate\" is not user, topic or pattern",
        path.display()
    );
    assert_eq!(err, want);
    std::fs::write(&path, b"topic \xff\n").unwrap();
    let err = AclFile::load(&path).unwrap_err().to_string();
    assert!(err.ends_with("line 1: not UTF-8"), "{err}");
    let err = AclFile::load(&dir.path().join("none"))
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("ACL file ") && err.contains("cannot open"),
        "{err}"
    );
}
