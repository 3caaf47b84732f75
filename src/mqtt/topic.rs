//! Topic names and filters (MQTT 3.1.1 §4.7).

/// A topic name a client may publish to: non-empty, no wildcards.
pub fn valid_topic(topic: &str) -> bool {
    !topic.is_empty() && !topic.contains(['+', '#'])
}

/// A filter: `+` fills a whole level, `#` only as the whole last level.
pub fn valid_filter(filter: &str) -> bool {
    if filter.is_empty() {
        return false;
    }
    let levels: Vec<&str> = filter.split('/').collect();
    levels.iter().enumerate().all(|(i, level)| match *level {
        "#" => i == levels.len() - 1,
        "+" => true,
        l => !l.contains(['+', '#']),
    })
}

/// Whether `filter` matches `topic`; topics starting with `$` are not
/// matched by a filter starting with a wildcard.
pub fn matches(filter: &str, topic: &str) -> bool {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matching() {
        for (f, t, want) in [
            ("sport/#", "sport", true),
            ("sport/#", "sport/tennis/player1", true),
            ("sport/+/player1", "sport/tennis/player1", true),
            ("sport/+", "sport", false),
            ("+/+", "/finance", true),
            ("+", "/finance", false),
            ("#", "$SYS/broker/version", false),
            ("+/broker/version", "$SYS/broker/version", false),
            ("$SYS/#", "$SYS/broker/version", true),
            ("$SYS/broker/version", "$SYS/broker/version", true),
            ("a/b", "a/b/c", false),
        ] {
            assert_eq!(matches(f, t), want, "{f} vs {t}");
        }
    }

    #[test]
    fn validity() {
        assert!(valid_filter("a/+/#") && valid_filter("#") && valid_filter("+"));
        assert!(!valid_filter("a/#/b") && !valid_filter("a+") && !valid_filter(""));
        assert!(valid_topic("a/b") && !valid_topic("a/+") && !valid_topic(""));
    }
}
