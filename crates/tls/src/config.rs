//! TLS configurations read from PEM files: a listener's (certificate,
//! key, optional CA for client certificates) and a client's (the CA it
//! trusts, an optional certificate of its own). Every configuration can
//! serialize its connections (s2n's serialization version 1, which must
//! be set before the handshake). A file that cannot be read, or a key
//! that does not match its certificate, is one error naming the file.

use std::path::{Path, PathBuf};

use s2n_tls::callbacks::VerifyHostNameCallback;
use s2n_tls::config::{Builder, Config};
use s2n_tls::enums::{ClientAuthType, SerializationVersion};
use s2n_tls::security::DEFAULT_TLS13;

/// Whether a listener asks clients for a certificate (EMQX's
/// `ssl_options.verify`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Verify {
    /// No client certificate asked for.
    #[default]
    None,
    /// Asked for and verified against the CA; `required`: a client
    /// without one is refused (`fail_if_no_peer_cert`).
    Peer { required: bool },
}

/// A TLS listener's files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// The CA that client certificates must chain to.
    pub ca: Option<PathBuf>,
    pub verify: Verify,
}

/// A TLS client's files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientFiles {
    /// The CA the server's certificate must chain to.
    pub ca: PathBuf,
    /// A certificate and key of its own (mutual TLS).
    pub identity: Option<(PathBuf, PathBuf)>,
}

/// Why a configuration could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading the {what} {}: {source}", path.display())]
    Read {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the {what} {}: {source}", path.display())]
    Invalid {
        what: &'static str,
        path: PathBuf,
        source: s2n_tls::error::Error,
    },
    #[error("the key {} does not match the certificate {} ({source})", key.display(), cert.display())]
    Mismatch {
        cert: PathBuf,
        key: PathBuf,
        source: s2n_tls::error::Error,
    },
    #[error(
        "verify_peer needs a CA file (EMQX_SSL_CACERTFILE) to verify client certificates against"
    )]
    NoCa,
    #[error("the TLS library: {0}")]
    Library(#[from] s2n_tls::error::Error),
}

/// A built configuration, shared by every connection of a listener (or
/// a client); cloning it is cheap.
#[derive(Clone)]
pub struct TlsConfig {
    pub(crate) config: Config,
}

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, ConfigError> {
    std::fs::read(path).map_err(|source| ConfigError::Read {
        what,
        path: path.to_path_buf(),
        source,
    })
}

/// The builder every configuration starts from: TLS 1.2 and 1.3, no
/// system CAs, connections serializable.
fn builder() -> Result<Builder, ConfigError> {
    let mut b = Config::builder();
    b.set_security_policy(&DEFAULT_TLS13)?;
    b.with_system_certs(false)?;
    b.set_serialization_version(SerializationVersion::V1)?;
    // Each connection also blinds itself (SelfService); no delay at all.
    b.set_max_blinding_delay(0)?;
    Ok(b)
}

/// Loads a certificate chain and its key; a key of another certificate
/// is [`ConfigError::Mismatch`].
fn load_identity(b: &mut Builder, cert: &Path, key: &Path) -> Result<(), ConfigError> {
    let chain = read("certificate", cert)?;
    let pkey = read("key", key)?;
    // Each alone first, so that an error names the file at fault.
    s2n_tls::cert_chain::Builder::new()?
        .load_public_pem(&chain)
        .map_err(|source| ConfigError::Invalid {
            what: "certificate",
            path: cert.to_path_buf(),
            source,
        })?;
    b.load_pem(&chain, &pkey)
        .map_err(|source| ConfigError::Mismatch {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            source,
        })?;
    Ok(())
}

/// Accepts any name: certificates are verified against the configured
/// CA only (clients connect by address; a client's certificate names a
/// device, not a host).
struct AnyName;

impl VerifyHostNameCallback for AnyName {
    fn verify_host_name(&self, _host_name: &str) -> bool {
        true
    }
}

impl TlsConfig {
    /// A listener's configuration, its files read now.
    pub fn server(files: &ServerFiles) -> Result<TlsConfig, ConfigError> {
        let mut b = builder()?;
        load_identity(&mut b, &files.cert, &files.key)?;
        if let Verify::Peer { required } = files.verify {
            let ca = files.ca.as_deref().ok_or(ConfigError::NoCa)?;
            let pem = read("CA file", ca)?;
            b.trust_pem(&pem).map_err(|source| ConfigError::Invalid {
                what: "CA file",
                path: ca.to_path_buf(),
                source,
            })?;
            b.set_client_auth_type(if required {
                ClientAuthType::Required
            } else {
                ClientAuthType::Optional
            })?;
            b.set_verify_host_callback(AnyName)?;
        }
        Ok(TlsConfig { config: b.build()? })
    }

    /// A server configuration without a certificate: enough to take over
    /// connections moved from another broker (which never handshake
    /// again) when this one has no TLS listener of its own.
    pub fn bare() -> Result<TlsConfig, ConfigError> {
        Ok(TlsConfig {
            config: builder()?.build()?,
        })
    }

    /// A client's configuration, its files read now.
    pub fn client(files: &ClientFiles) -> Result<TlsConfig, ConfigError> {
        let mut b = builder()?;
        let pem = read("CA file", &files.ca)?;
        b.trust_pem(&pem).map_err(|source| ConfigError::Invalid {
            what: "CA file",
            path: files.ca.clone(),
            source,
        })?;
        b.set_verify_host_callback(AnyName)?;
        if let Some((cert, key)) = &files.identity {
            load_identity(&mut b, cert, key)?;
            b.set_client_auth_type(ClientAuthType::Optional)?;
        }
        Ok(TlsConfig { config: b.build()? })
    }
}
