//! Which action a maintainer script asks for: dpkg's script arguments and
//! rpm's `$1` counts, mapped for the helper's package and for a release
//! package. Pure, so every row is unit-tested.

use semver::Version;

/// Which package the script belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Package {
    /// `emqx-relup` itself.
    Helper,
    /// `emqx-release-VSN`, which ships `releases/emqx-VSN.*`.
    Release(Version),
}

/// What a hook does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Nothing (an abort, an upgrade step of the package itself...).
    Nothing,
    /// The helper was installed (`first`) or upgraded: user, folders,
    /// `daemon-reload`, and enable the unit the first time. Never a restart.
    Setup {
        /// First installation.
        first: bool,
    },
    /// The helper goes away: stop the broker's unit.
    StopUnit,
    /// A release package arrived: switch to it (hot upgrade or downgrade),
    /// or, for the first release, make it permanent and start the unit.
    Arrive(Version),
    /// A release package is being removed: refused while it runs or is
    /// permanent, else the release is uninstalled.
    Leave(Version),
}

/// A maintainer script's call that no package manager makes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadCall {
    /// An rpm scriptlet without its package count.
    #[error("rpm {script} scriptlet needs the package count as $1, got '{got}'")]
    RpmCount {
        /// The scriptlet.
        script: String,
        /// What came as $1.
        got: String,
    },
    /// A dpkg script's first argument is none it knows.
    #[error("unknown {script} argument '{got}'")]
    Argument {
        /// The script.
        script: String,
        /// What came as $1.
        got: String,
    },
    /// No such maintainer script.
    #[error("unknown maintainer script '{0}'")]
    Script(String),
}

/// Maps `script` (dpkg: `preinst|postinst|prerm|postrm`, rpm:
/// `pre|post|preun|postun`) and its arguments to the action.
pub fn action(package: &Package, script: &str, args: &[String]) -> Result<Action, BadCall> {
    let first = args.first().map(String::as_str).unwrap_or("");
    let rpm_count = || -> Result<u32, BadCall> {
        first.parse().map_err(|_| BadCall::RpmCount {
            script: script.to_string(),
            got: first.to_string(),
        })
    };
    let unknown = || BadCall::Argument {
        script: script.to_string(),
        got: first.to_string(),
    };
    let action = match (package, script) {
        // dpkg, the helper.
        (Package::Helper, "preinst") | (Package::Helper, "postrm") => Action::Nothing,
        (Package::Helper, "postinst") => match first {
            "configure" => Action::Setup {
                first: args.get(1).is_none_or(|v| v.is_empty()),
            },
            "abort-upgrade" | "abort-remove" | "abort-deconfigure" | "triggered" => Action::Nothing,
            _ => return Err(unknown()),
        },
        (Package::Helper, "prerm") => match first {
            "remove" => Action::StopUnit,
            "upgrade" | "failed-upgrade" | "deconfigure" => Action::Nothing,
            _ => return Err(unknown()),
        },
        // rpm, the helper: $1 counts the packages of this name after the step.
        (Package::Helper, "pre") | (Package::Helper, "postun") => {
            rpm_count()?;
            Action::Nothing
        }
        (Package::Helper, "post") => Action::Setup {
            first: rpm_count()? == 1,
        },
        (Package::Helper, "preun") => match rpm_count()? {
            0 => Action::StopUnit,
            _ => Action::Nothing,
        },
        // dpkg, a release.
        (Package::Release(_), "preinst") | (Package::Release(_), "postrm") => Action::Nothing,
        (Package::Release(v), "postinst") => match first {
            "configure" => Action::Arrive(v.clone()),
            // A refused removal: dpkg calls this after prerm failed.
            "abort-upgrade" | "abort-remove" | "abort-deconfigure" | "triggered" => Action::Nothing,
            _ => return Err(unknown()),
        },
        (Package::Release(v), "prerm") => match first {
            "remove" => Action::Leave(v.clone()),
            "upgrade" | "failed-upgrade" | "deconfigure" => Action::Nothing,
            _ => return Err(unknown()),
        },
        // rpm, a release.
        (Package::Release(_), "pre") | (Package::Release(_), "postun") => {
            rpm_count()?;
            Action::Nothing
        }
        (Package::Release(v), "post") => {
            rpm_count()?;
            Action::Arrive(v.clone())
        }
        (Package::Release(v), "preun") => match rpm_count()? {
            0 => Action::Leave(v.clone()),
            _ => Action::Nothing,
        },
        _ => return Err(BadCall::Script(script.to_string())),
    };
    Ok(action)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(p: &Package, script: &str, args: &[&str]) -> Result<Action, BadCall> {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        action(p, script, &args)
    }

    #[test]
    fn dpkg_helper() {
        let h = Package::Helper;
        assert_eq!(
            a(&h, "postinst", &["configure", ""]),
            Ok(Action::Setup { first: true })
        );
        assert_eq!(
            a(&h, "postinst", &["configure"]),
            Ok(Action::Setup { first: true })
        );
        assert_eq!(
            a(&h, "postinst", &["configure", "0.1.0"]),
            Ok(Action::Setup { first: false })
        );
        assert_eq!(
            a(&h, "postinst", &["abort-upgrade", "0.1.0"]),
            Ok(Action::Nothing)
        );
        assert_eq!(a(&h, "prerm", &["remove"]), Ok(Action::StopUnit));
        assert_eq!(a(&h, "prerm", &["upgrade", "0.2.0"]), Ok(Action::Nothing));
        assert_eq!(
            a(&h, "prerm", &["failed-upgrade", "0.1.0"]),
            Ok(Action::Nothing)
        );
        assert_eq!(a(&h, "preinst", &["install"]), Ok(Action::Nothing));
        assert_eq!(
            a(&h, "postinst", &["bogus"]),
            Err(BadCall::Argument {
                script: "postinst".into(),
                got: "bogus".into()
            })
        );
        assert_eq!(a(&h, "config", &[]), Err(BadCall::Script("config".into())));
    }

    #[test]
    fn rpm_helper() {
        let h = Package::Helper;
        assert_eq!(a(&h, "post", &["1"]), Ok(Action::Setup { first: true }));
        assert_eq!(a(&h, "post", &["2"]), Ok(Action::Setup { first: false }));
        assert_eq!(a(&h, "preun", &["0"]), Ok(Action::StopUnit));
        assert_eq!(a(&h, "preun", &["1"]), Ok(Action::Nothing));
        assert_eq!(a(&h, "postun", &["0"]), Ok(Action::Nothing));
        assert!(matches!(
            a(&h, "post", &[]),
            Err(BadCall::RpmCount { got, .. }) if got.is_empty()
        ));
        assert!(matches!(
            a(&h, "post", &["x"]),
            Err(BadCall::RpmCount { .. })
        ));
    }

    #[test]
    fn release_packages() {
        let v = Version::new(5, 0, 1);
        let r = Package::Release(v.clone());
        assert_eq!(
            a(&r, "postinst", &["configure", ""]),
            Ok(Action::Arrive(v.clone()))
        );
        assert_eq!(a(&r, "postinst", &["abort-remove"]), Ok(Action::Nothing));
        assert_eq!(a(&r, "prerm", &["remove"]), Ok(Action::Leave(v.clone())));
        assert_eq!(a(&r, "prerm", &["upgrade", "5.0.1-1"]), Ok(Action::Nothing));
        assert_eq!(a(&r, "post", &["1"]), Ok(Action::Arrive(v.clone())));
        assert_eq!(a(&r, "post", &["2"]), Ok(Action::Arrive(v.clone())));
        assert_eq!(a(&r, "preun", &["0"]), Ok(Action::Leave(v.clone())));
        assert_eq!(a(&r, "preun", &["1"]), Ok(Action::Nothing));
        assert_eq!(a(&r, "postun", &["0"]), Ok(Action::Nothing));
    }
}
