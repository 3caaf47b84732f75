//! The environment variables naming the policy's files, in the style of
//! the broker's other `EMQX_*` settings: `EMQX_AUTH_PASSWORD_FILE`,
//! `EMQX_AUTH_ACL_FILE` (unset or empty: none) and `EMQX_ALLOW_ANONYMOUS`
//! (`true` or `false`; unset: `false` with a password file, else `true`).
//! The certificate-as-username setting is the TLS listener's
//! (`EMQX_SSL_PEER_CERT_AS_USERNAME`): it decides which
//! [`Credentials`](crate::Credentials) the broker builds.

use std::path::PathBuf;

/// The password file variable.
pub const PASSWORD_FILE_VAR: &str = "EMQX_AUTH_PASSWORD_FILE";
/// The ACL file variable.
pub const ACL_FILE_VAR: &str = "EMQX_AUTH_ACL_FILE";
/// The anonymous clients variable.
pub const ALLOW_ANONYMOUS_VAR: &str = "EMQX_ALLOW_ANONYMOUS";

/// Where the policy's files are and whether anonymous clients may connect.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Settings {
    pub password_file: Option<PathBuf>,
    pub acl_file: Option<PathBuf>,
    /// `None`: the default of [`Policy::new`](crate::Policy::new).
    pub allow_anonymous: Option<bool>,
}

/// A setting that does not take the value it was given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{name}: {value:?} is not true or false")]
pub struct SettingsError {
    pub name: &'static str,
    pub value: String,
}

impl Settings {
    /// The settings from the environment (`var` reads one variable).
    pub fn from_env(
        var: impl Fn(&'static str) -> Option<String>,
    ) -> Result<Settings, SettingsError> {
        let path = |name| var(name).filter(|v| !v.is_empty()).map(PathBuf::from);
        let allow_anonymous = match var(ALLOW_ANONYMOUS_VAR).as_deref() {
            None | Some("") => None,
            Some("true") => Some(true),
            Some("false") => Some(false),
            Some(other) => {
                return Err(SettingsError {
                    name: ALLOW_ANONYMOUS_VAR,
                    value: other.to_string(),
                })
            }
        };
        Ok(Settings {
            password_file: path(PASSWORD_FILE_VAR),
            acl_file: path(ACL_FILE_VAR),
            allow_anonymous,
        })
    }
}

#[cfg(test)]
mod tests {
    //! The variables and their values.

    use super::*;

    fn with(vars: &[(&'static str, &str)]) -> Result<Settings, SettingsError> {
        Settings::from_env(|name| {
            vars.iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.to_string())
        })
    }

    #[test]
    fn reads_the_three_variables() {
        assert_eq!(with(&[]), Ok(Settings::default()));
        let s = with(&[
            (PASSWORD_FILE_VAR, "/etc/emqx/passwd"),
            (ACL_FILE_VAR, ""),
            (ALLOW_ANONYMOUS_VAR, "true"),
        ])
        .unwrap();
        assert_eq!(s.password_file, Some(PathBuf::from("/etc/emqx/passwd")));
        assert_eq!(s.acl_file, None);
        assert_eq!(s.allow_anonymous, Some(true));
        let err = with(&[(ALLOW_ANONYMOUS_VAR, "yes")]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "EMQX_ALLOW_ANONYMOUS: \"yes\" is not true or false"
        );
    }
}
