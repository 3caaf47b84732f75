//! A password file, an ACL file and `allow_anonymous` together: who may
//! connect ([`Policy::connect`]) and what they may do
//! ([`Policy::authorize`]), as mosquitto 2.0 with `password_file`,
//! `acl_file`, `allow_anonymous` and `use_identity_as_username` decides.
//!
//! What mosquitto answers at CONNECT (`handle__connect`,
//! `mosquitto_unpwd_check`):
//!
//! - a username from the client certificate is taken as is: the password
//!   file is not consulted and `allow_anonymous` does not matter; no
//!   certificate or no common name is "bad username or password" (4, 0x86)
//!   (mosquitto asks for a client certificate only with
//!   `require_certificate true`; a broker that asks without requiring one
//!   gets `None` from a client without one);
//! - with a password file, a client without a username is let in only
//!   when anonymous clients are allowed; one with a username must give that
//!   user's password; every refusal is "not authorized" (5, 0x87), a wrong
//!   password included;
//! - without a password file, `allow_anonymous` decides for everyone.
//!
//! Re-checking a connected client after the files changed (mosquitto's
//! `mosquitto_security_apply_default` on reload) is [`Policy::connect`]
//! again with the same credentials.

use std::path::Path;

use crate::acl::check::dollar_denies;
use crate::{
    Access, AclFile, AclFileError, Fingerprint, Identity, PasswordFile, PasswordFileError, Settings,
};

/// What a client presents at CONNECT (its Debug never shows the
/// password).
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Credentials<'a> {
    /// The user name and password fields of CONNECT (each absent when its
    /// flag is clear).
    Password {
        username: Option<&'a str>,
        password: Option<&'a [u8]>,
    },
    /// A TLS listener whose client certificate names the client
    /// (`EMQX_SSL_PEER_CERT_AS_USERNAME=cn`, mosquitto's
    /// `use_identity_as_username`): the certificate's common name, `None`
    /// when the client sent no certificate or it has no common name. The
    /// CONNECT user name and password are ignored.
    Certificate { username: Option<&'a str> },
}

impl std::fmt::Debug for Credentials<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::Password { username, password } => f
                .debug_struct("Password")
                .field("username", username)
                .field("password", &password.map(|_| ".."))
                .finish(),
            Credentials::Certificate { username } => f
                .debug_struct("Certificate")
                .field("username", username)
                .finish(),
        }
    }
}

impl<'a> Credentials<'a> {
    /// The username the client has once connected: the one it sent, or
    /// the certificate's.
    pub fn username(&self) -> Option<&'a str> {
        match *self {
            Credentials::Password { username, .. } | Credentials::Certificate { username } => {
                username
            }
        }
    }
}

/// The answer to a CONNECT.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConnectDecision {
    /// Let it in.
    Allowed,
    /// Refused: no usable identity (no client certificate or no common
    /// name where the certificate names the client).
    BadCredentials,
    /// Refused: unknown user, wrong or missing password, or anonymous
    /// where anonymous clients are not allowed.
    NotAuthorized,
}

impl ConnectDecision {
    /// Whether the client is let in.
    pub fn is_allowed(self) -> bool {
        self == ConnectDecision::Allowed
    }

    /// The MQTT 3.1/3.1.1 CONNACK return code: 0, 4 or 5.
    pub fn v311_return_code(self) -> u8 {
        match self {
            ConnectDecision::Allowed => 0,
            ConnectDecision::BadCredentials => 4,
            ConnectDecision::NotAuthorized => 5,
        }
    }

    /// The MQTT 5 CONNACK reason code: 0x00, 0x86 or 0x87 (also the
    /// DISCONNECT reason for a connected client a re-check refuses).
    pub fn v5_reason_code(self) -> u8 {
        match self {
            ConnectDecision::Allowed => 0x00,
            ConnectDecision::BadCredentials => 0x86,
            ConnectDecision::NotAuthorized => 0x87,
        }
    }
}

/// Why a policy's files cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error(transparent)]
    Password(#[from] PasswordFileError),
    #[error(transparent)]
    Acl(#[from] AclFileError),
}

/// Who may connect and what they may do.
#[derive(Debug)]
pub struct Policy {
    passwords: Option<PasswordFile>,
    acl: Option<AclFile>,
    allow_anonymous: bool,
}

/// No files, anonymous clients allowed: everyone may do everything
/// mosquitto allows without an ACL (no `$SYS` publishing).
impl Default for Policy {
    fn default() -> Policy {
        Policy::new(None, None, None)
    }
}

impl Policy {
    /// A policy of these files; `allow_anonymous` defaults to `false` with
    /// a password file and to `true` without one.
    pub fn new(
        passwords: Option<PasswordFile>,
        acl: Option<AclFile>,
        allow_anonymous: Option<bool>,
    ) -> Policy {
        let allow_anonymous = allow_anonymous.unwrap_or(passwords.is_none());
        Policy {
            passwords,
            acl,
            allow_anonymous,
        }
    }

    /// Reads the files `settings` name (every time: this is what a reload
    /// or a new broker at a switch does).
    pub fn load(settings: &Settings) -> Result<Policy, PolicyError> {
        let passwords = settings
            .password_file
            .as_deref()
            .map(PasswordFile::load)
            .transpose()?;
        let acl = settings
            .acl_file
            .as_deref()
            .map(AclFile::load)
            .transpose()?;
        Ok(Policy::new(passwords, acl, settings.allow_anonymous))
    }

    /// Reads a password and an ACL file from paths (either may be absent).
    pub fn load_files(
        password_file: Option<&Path>,
        acl_file: Option<&Path>,
        allow_anonymous: Option<bool>,
    ) -> Result<Policy, PolicyError> {
        let passwords = password_file.map(PasswordFile::load).transpose()?;
        let acl = acl_file.map(AclFile::load).transpose()?;
        Ok(Policy::new(passwords, acl, allow_anonymous))
    }

    /// Whether clients without a username may connect.
    pub fn allow_anonymous(&self) -> bool {
        self.allow_anonymous
    }

    /// The password file, if any.
    pub fn passwords(&self) -> Option<&PasswordFile> {
        self.passwords.as_ref()
    }

    /// The ACL file, if any.
    pub fn acl(&self) -> Option<&AclFile> {
        self.acl.as_ref()
    }

    /// The answer to a CONNECT presenting `credentials` (see the module).
    pub fn connect(&self, credentials: &Credentials<'_>) -> ConnectDecision {
        let (username, password) = match *credentials {
            Credentials::Certificate { username: Some(_) } => return ConnectDecision::Allowed,
            Credentials::Certificate { username: None } => return ConnectDecision::BadCredentials,
            Credentials::Password { username, password } => (username, password),
        };
        let allowed = match (&self.passwords, username) {
            (None, _) | (Some(_), None) => self.allow_anonymous,
            (Some(file), Some(user)) => match password {
                Some(password) => file.verify(user, password),
                None => false,
            },
        };
        if allowed {
            ConnectDecision::Allowed
        } else {
            ConnectDecision::NotAuthorized
        }
    }

    /// [`Policy::connect`] for a login checked again (a connection moved
    /// in from another broker, whose files may differ), which that broker
    /// verified against the password-file entry of fingerprint `verified`:
    /// when this policy's entry for the user has the same fingerprint, the
    /// password is not hashed again. The answer is the same either way.
    pub fn reconnect(
        &self,
        credentials: &Credentials<'_>,
        verified: Option<&Fingerprint>,
    ) -> ConnectDecision {
        if let (
            Credentials::Password {
                username: Some(user),
                password: Some(_),
            },
            Some(file),
            Some(seen),
        ) = (credentials, &self.passwords, verified)
        {
            if file.fingerprint(user).as_ref() == Some(seen) {
                return ConnectDecision::Allowed;
            }
        }
        self.connect(credentials)
    }

    /// The fingerprint of the entry a password login is verified against
    /// (none without a password file, a username or a password).
    pub fn entry_of(&self, credentials: &Credentials<'_>) -> Option<Fingerprint> {
        match (credentials, &self.passwords) {
            (
                Credentials::Password {
                    username: Some(user),
                    password: Some(_),
                },
                Some(file),
            ) => file.fingerprint(user),
            _ => None,
        }
    }

    /// Whether `who` may do `access` on `topic`: a subscription filter for
    /// [`Access::Subscribe`] (at SUBSCRIBE), a topic name for
    /// [`Access::Write`] (at PUBLISH, and for a will) and [`Access::Read`]
    /// (at each delivery to the client). Without an ACL file everything is
    /// allowed but publishing to `$SYS` and `$share` topics.
    pub fn authorize(&self, who: &Identity<'_>, topic: &str, access: Access) -> bool {
        match &self.acl {
            Some(acl) => acl.check(who, topic, access),
            None => !dollar_denies(topic, access),
        }
    }
}

#[cfg(test)]
mod tests;
