//! Topic names and filters (MQTT 3.1.1 §4.7): validity and matching.

use super::packet::MAX_FIELD;

fn fits(s: &str) -> bool {
    !s.is_empty() && s.len() <= MAX_FIELD && !s.contains('\0')
}

/// A topic name a client may publish to: non-empty, no wildcards, no
/// U+0000, at most 65,535 bytes.
pub fn valid_topic(topic: &str) -> bool {
    fits(topic) && !topic.contains(['+', '#'])
}

/// A filter: `+` fills a whole level, `#` only as the whole last level.
pub fn valid_filter(filter: &str) -> bool {
    if !fits(filter) {
        return false;
    }
    let mut levels = filter.split('/').peekable();
    while let Some(level) = levels.next() {
        let ok = match level {
            "#" => levels.peek().is_none(),
            "+" => true,
            l => !l.contains(['+', '#']),
        };
        if !ok {
            return false;
        }
    }
    true
}

/// Whether `filter` matches `topic` (false when either is invalid). A
/// filter starting with a wildcard does not match a topic starting with
/// `$`; `a/#` matches `a` itself; `+` matches an empty level.
pub fn matches(filter: &str, topic: &str) -> bool {
    if !valid_filter(filter) || !valid_topic(topic) {
        return false;
    }
    if topic.starts_with('$') && (filter.starts_with('+') || filter.starts_with('#')) {
        return false;
    }
    let mut t = topic.split('/');
    for f in filter.split('/') {
        match f {
            "#" => return true,
            "+" => {
                if t.next().is_none() {
                    return false;
                }
            }
            level => {
                if t.next() != Some(level) {
                    return false;
                }
            }
        }
    }
    t.next().is_none()
}

/// Whether a filter has a wildcard (else it matches only the topic equal
/// to it).
pub fn has_wildcard(filter: &str) -> bool {
    filter.contains(['+', '#'])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matching() {
        for (f, t, want) in [
            ("sport/#", "sport", true),
            ("sport/#", "sport/", true),
            ("sport/#", "sport/tennis/player1", true),
            ("sport/tennis/#", "sport/tennis", true),
            ("sport/tennis/#", "sport/tenniss", false),
            ("sport/+/player1", "sport/tennis/player1", true),
            ("sport/+/player1", "sport/tennis/player2", false),
            ("sport/+", "sport", false),
            ("sport/+", "sport/", true),
            ("sport/+", "sport/tennis", true),
            ("sport/+", "sport/tennis/x", false),
            ("+", "sport", true),
            ("+/+", "/finance", true),
            ("/+", "/finance", true),
            ("+", "/finance", false),
            ("#", "sport/tennis", true),
            ("#", "/", true),
            ("+/#", "a", true),
            ("a/b", "a/b", true),
            ("a/b", "a/b/c", false),
            ("a/b/c", "a/b", false),
            ("A", "a", false),
            ("#", "$SYS/broker/version", false),
            ("+/broker/version", "$SYS/broker/version", false),
            ("+/#", "$SYS", false),
            ("$SYS/#", "$SYS/broker/version", true),
            ("$SYS/+/version", "$SYS/broker/version", true),
            ("$SYS/broker/version", "$SYS/broker/version", true),
            ("a/$SYS", "a/$SYS", true),
            ("+/$SYS", "a/$SYS", true),
            // Invalid either side: no match.
            ("a/#/b", "a/x/b", false),
            ("a+", "a+", false),
            ("a/+", "a/+", false),
            ("#", "", false),
        ] {
            assert_eq!(matches(f, t), want, "{f} vs {t}");
        }
    }

    #[test]
    fn validity() {
        for f in ["a/+/#", "#", "+", "/", "+/+", "a//b", "$SYS/#", "/#"] {
            assert!(valid_filter(f), "{f}");
        }
        for f in ["a/#/b", "a+", "a/b#", "##", "", "a\0", "#/"] {
            assert!(!valid_filter(f), "{f:?}");
        }
        for t in ["a/b", "/", "$SYS/x", " "] {
            assert!(valid_topic(t), "{t}");
        }
        for t in ["a/+", "#", "", "a\0b"] {
            assert!(!valid_topic(t), "{t:?}");
        }
        assert!(!valid_topic(&"a".repeat(65_536)) && valid_topic(&"a".repeat(65_535)));
        assert!(has_wildcard("a/+") && has_wildcard("#") && !has_wildcard("a/b"));
    }
}
