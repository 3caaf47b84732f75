//! The TLS settings of `ssl` listeners, named after EMQX's `ssl_options`:
//! `EMQX_SSL_CERTFILE`, `EMQX_SSL_KEYFILE`, `EMQX_SSL_CACERTFILE`,
//! `EMQX_SSL_VERIFY` (`verify_none`, the default, or `verify_peer`),
//! `EMQX_SSL_FAIL_IF_NO_PEER_CERT` (`false`, the default, or `true`) and
//! `EMQX_SSL_PEER_CERT_AS_USERNAME` (`cn`, or unset). The files are read
//! when the broker starts ([`emqx_tls::TlsConfig::server`]): a switch to
//! the same release is how certificates rotate.

use std::fmt;
use std::path::PathBuf;

use emqx_tls::{ServerFiles, Verify};

use super::SettingsError;

/// What `ssl` listeners serve with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    pub files: ServerFiles,
    /// The client certificate's common name is the client's username.
    pub peer_cert_as_username: bool,
}

/// Why the `EMQX_SSL_*` settings cannot be used.
#[derive(Debug, PartialEq, Eq)]
pub enum TlsError {
    /// One of the certificate and key files is set without the other.
    Half(&'static str),
    /// A value the variable (named) does not take (what it says).
    Value(&'static str, String),
}

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TlsError::Half(missing) => write!(
                f,
                "{missing} is not set (the certificate and its key go together)"
            ),
            TlsError::Value(name, v) => {
                let want = match *name {
                    "EMQX_SSL_VERIFY" => "verify_none or verify_peer",
                    "EMQX_SSL_FAIL_IF_NO_PEER_CERT" => "true or false",
                    _ => "cn, or unset",
                };
                write!(f, "{name}: {v:?} is not {want}")
            }
        }
    }
}

impl std::error::Error for TlsError {}

/// The settings from the environment (`var` reads one variable), `None`
/// when no certificate is set.
pub fn from_env(
    var: impl Fn(&'static str) -> Result<Option<String>, SettingsError>,
) -> Result<Option<TlsSettings>, SettingsError> {
    let tls = |e| SettingsError::Tls(e);
    let (cert, key) = match (var("EMQX_SSL_CERTFILE")?, var("EMQX_SSL_KEYFILE")?) {
        (None, None) => return Ok(None),
        (Some(c), Some(k)) => (PathBuf::from(c), PathBuf::from(k)),
        (Some(_), None) => return Err(tls(TlsError::Half("EMQX_SSL_KEYFILE"))),
        (None, Some(_)) => return Err(tls(TlsError::Half("EMQX_SSL_CERTFILE"))),
    };
    let required = match var("EMQX_SSL_FAIL_IF_NO_PEER_CERT")?.as_deref() {
        None | Some("false") => false,
        Some("true") => true,
        Some(v) => {
            return Err(tls(TlsError::Value(
                "EMQX_SSL_FAIL_IF_NO_PEER_CERT",
                v.into(),
            )))
        }
    };
    let verify = match var("EMQX_SSL_VERIFY")?.as_deref() {
        None | Some("verify_none") => Verify::None,
        Some("verify_peer") => Verify::Peer { required },
        Some(v) => return Err(tls(TlsError::Value("EMQX_SSL_VERIFY", v.into()))),
    };
    let peer_cert_as_username = match var("EMQX_SSL_PEER_CERT_AS_USERNAME")?.as_deref() {
        None | Some("") => false,
        Some("cn") => true,
        Some(v) => {
            return Err(tls(TlsError::Value(
                "EMQX_SSL_PEER_CERT_AS_USERNAME",
                v.into(),
            )))
        }
    };
    Ok(Some(TlsSettings {
        files: ServerFiles {
            cert,
            key,
            ca: var("EMQX_SSL_CACERTFILE")?.map(PathBuf::from),
            verify,
        },
        peer_cert_as_username,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(vars: &[(&'static str, &str)]) -> Result<Option<TlsSettings>, String> {
        from_env(|name| {
            Ok(vars
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.to_string()))
        })
        .map_err(|e| e.to_string())
    }

    #[test]
    fn nothing_set_is_no_tls_and_both_files_are_needed() {
        assert_eq!(with(&[]), Ok(None));
        assert_eq!(
            with(&[("EMQX_SSL_CERTFILE", "/c")]).unwrap_err(),
            "EMQX_SSL_KEYFILE is not set (the certificate and its key go together)"
        );
        assert!(with(&[("EMQX_SSL_KEYFILE", "/k")]).is_err());
        let s = with(&[("EMQX_SSL_CERTFILE", "/c"), ("EMQX_SSL_KEYFILE", "/k")])
            .unwrap()
            .unwrap();
        assert_eq!(s.files.verify, Verify::None);
        assert!(!s.peer_cert_as_username);
    }

    #[test]
    fn verify_peer_and_its_options() {
        let files = [("EMQX_SSL_CERTFILE", "/c"), ("EMQX_SSL_KEYFILE", "/k")];
        let s = with(&[
            files[0],
            files[1],
            ("EMQX_SSL_CACERTFILE", "/ca"),
            ("EMQX_SSL_VERIFY", "verify_peer"),
            ("EMQX_SSL_FAIL_IF_NO_PEER_CERT", "true"),
            ("EMQX_SSL_PEER_CERT_AS_USERNAME", "cn"),
        ])
        .unwrap()
        .unwrap();
        assert_eq!(s.files.verify, Verify::Peer { required: true });
        assert_eq!(s.files.ca, Some(PathBuf::from("/ca")));
        assert!(s.peer_cert_as_username);
        for (name, bad) in [
            ("EMQX_SSL_VERIFY", "yes"),
            ("EMQX_SSL_FAIL_IF_NO_PEER_CERT", "1"),
            ("EMQX_SSL_PEER_CERT_AS_USERNAME", "dn"),
        ] {
            let e = with(&[files[0], files[1], (name, bad)]).unwrap_err();
            assert!(e.starts_with(&format!("{name}: \"{bad}\" is not")), "{e}");
        }
    }
}
