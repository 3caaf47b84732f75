//! Topic filters as mosquitto 2.0 checks and matches them: an ACL topic
//! must be a valid subscription filter (`mosquitto_sub_topic_check`), and
//! a rule applies to a topic when the filter matches it
//! (`mosquitto_topic_matches_sub`), `$` topics only by filters that start
//! with `$` themselves.

/// The most `/` a filter may hold (mosquitto's `TOPIC_HIERARCHY_LIMIT`).
const HIERARCHY_LIMIT: usize = 200;

/// The longest filter, in bytes.
const MAX_LEN: usize = 65535;

/// Whether `filter` is a valid subscription filter: `+` only as a whole
/// level, `#` only as the whole last level, at most [`MAX_LEN`] bytes and
/// [`HIERARCHY_LIMIT`] separators. The empty filter passes, as in mosquitto
/// (it then matches nothing).
pub(crate) fn valid_filter(filter: &str) -> bool {
    if filter.len() > MAX_LEN || filter.bytes().filter(|&b| b == b'/').count() > HIERARCHY_LIMIT {
        return false;
    }
    let mut levels = filter.split('/').peekable();
    while let Some(level) = levels.next() {
        let ok = match level {
            "+" => true,
            "#" => levels.peek().is_none(),
            other => !other.contains(['+', '#']),
        };
        if !ok {
            return false;
        }
    }
    true
}

/// Whether `filter` matches the topic name `topic`. A topic holding a
/// wildcard, an invalid filter, or either side empty match nothing (where
/// mosquitto reports an error and no match).
pub(crate) fn matches(filter: &str, topic: &str) -> bool {
    if filter.is_empty() || topic.is_empty() {
        return false;
    }
    if filter.starts_with('$') != topic.starts_with('$') {
        return false;
    }
    if topic.contains(['+', '#']) || !valid_filter(filter) {
        return false;
    }
    let mut f = filter.split('/');
    let mut t = topic.split('/');
    loop {
        match (f.next(), t.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    //! Filter validity and matching cases, mosquitto's quirks included.

    use super::*;

    #[test]
    fn filters_are_checked_like_mosquitto_sub_topic_check() {
        for ok in [
            "a", "a/b", "+", "#", "a/+/b", "a/#", "+/+", "/", "", "a//b", "$SYS/#",
        ] {
            assert!(valid_filter(ok), "{ok:?}");
        }
        for bad in ["a+", "a/b+", "+a", "#/a", "a/#/b", "a#", "a/b#", "##", "++"] {
            assert!(!valid_filter(bad), "{bad:?}");
        }
        assert!(valid_filter(&"a/".repeat(200)));
        assert!(!valid_filter(&"a/".repeat(201)));
        assert!(!valid_filter(&"a".repeat(65536)));
    }

    #[test]
    fn matching_follows_mqtt_and_mosquitto() {
        let yes = [
            ("a/b", "a/b"),
            ("a/+", "a/b"),
            ("a/+", "a/"),
            ("+/+", "/x"),
            ("a/#", "a"),
            ("a/#", "a/b/c"),
            ("a/#", "a/"),
            ("a/+/#", "a/b"),
            ("#", "a/b"),
            ("+", "a"),
            ("a//b", "a//b"),
            ("a/+/b", "a//b"),
            ("$SYS/#", "$SYS/broker/uptime"),
            ("$SYS/+/x", "$SYS/a/x"),
        ];
        for (f, t) in yes {
            assert!(matches(f, t), "{f:?} should match {t:?}");
        }
        let no = [
            ("a/b", "a/c"),
            ("a/+", "a"),
            ("a/+", "a/b/c"),
            ("+", "/"),
            ("+", "a/b"),
            ("a", "a/b"),
            ("a/b", "a"),
            ("#", "$SYS/x"),
            ("+/x", "$SYS/x"),
            ("$SYS/#", "SYS/x"),
            ("a/#", "a/+"),
            ("a/+", "a/#"),
            ("a/b#", "a/b"),
            ("", "a"),
            ("a", ""),
            ("A", "a"),
        ];
        for (f, t) in no {
            assert!(!matches(f, t), "{f:?} should not match {t:?}");
        }
    }
}
