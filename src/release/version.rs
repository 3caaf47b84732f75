//! Version parsing and the patch-only rule.

use std::cmp::Ordering;

use semver::Version;

use super::refusal::Refusal;

/// A version argument that is not a semantic version; carries the text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Invalid semantic version: '{0}'")]
pub struct InvalidVersion(pub String);

/// Parses a version argument; `v5`, `5.0` and `05.0.1` are refused.
pub fn parse_version(text: &str) -> Result<Version, InvalidVersion> {
    Version::parse(text).map_err(|_| InvalidVersion(text.to_string()))
}

/// Which way a move goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// To a newer release.
    Up,
    /// To an older release.
    Down,
    /// To the release that runs.
    Same,
}

/// The patch-only rule: a move stays within one major.minor.
pub fn check_move(from: &Version, to: &Version) -> Result<Direction, Refusal> {
    if from.major != to.major || from.minor != to.minor {
        return Err(Refusal::NotPatch {
            from: from.clone(),
            to: to.clone(),
        });
    }
    Ok(match to.cmp(from) {
        Ordering::Greater => Direction::Up,
        Ordering::Less => Direction::Down,
        Ordering::Equal => Direction::Same,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn v(s: &str) -> Version {
        Version::parse(s).unwrap()
    }

    #[test]
    fn invalid_versions_are_refused_with_the_text() {
        for bad in ["v5", "5.0", "5", "05.0.1", "", "5.0.1.2", " 5.0.1"] {
            let err = parse_version(bad).unwrap_err();
            assert_eq!(
                err.to_string(),
                format!("Invalid semantic version: '{bad}'")
            );
        }
        assert_eq!(
            parse_version("5.0.1-rc.1").unwrap().to_string(),
            "5.0.1-rc.1"
        );
    }

    #[test]
    fn patch_moves_only() {
        assert_eq!(check_move(&v("5.0.0"), &v("5.0.3")), Ok(Direction::Up));
        assert_eq!(check_move(&v("5.0.3"), &v("5.0.0")), Ok(Direction::Down));
        assert_eq!(check_move(&v("5.0.3"), &v("5.0.3")), Ok(Direction::Same));
        assert!(check_move(&v("5.0.1"), &v("5.1.0")).is_err());
        assert!(check_move(&v("4.2.3"), &v("4.4.3")).is_err());
        assert!(check_move(&v("5.0.0"), &v("6.0.0")).is_err());
        assert_eq!(check_move(&v("5.0.1"), &v("5.0.2-rc.1")), Ok(Direction::Up));
    }

    proptest! {
        #[test]
        fn allowed_iff_same_major_minor(
            a in (0u64..4, 0u64..4, 0u64..20),
            b in (0u64..4, 0u64..4, 0u64..20),
        ) {
            let from = Version::new(a.0, a.1, a.2);
            let to = Version::new(b.0, b.1, b.2);
            let result = check_move(&from, &to);
            prop_assert_eq!(result.is_ok(), a.0 == b.0 && a.1 == b.1);
            if let Ok(dir) = result {
                let expected = match b.2.cmp(&a.2) {
                    Ordering::Greater => Direction::Up,
                    Ordering::Less => Direction::Down,
                    Ordering::Equal => Direction::Same,
                };
                prop_assert_eq!(dir, expected);
            }
        }

        #[test]
        fn parse_round_trips(x in 0u64..1000, y in 0u64..1000, z in 0u64..1000) {
            let text = format!("{x}.{y}.{z}");
            prop_assert_eq!(parse_version(&text).unwrap().to_string(), text);
        }
    }
}
