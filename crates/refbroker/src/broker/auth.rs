//! Who a client is and what it may do: the login a connection presents
//! (CONNECT's user name and password, or its TLS certificate's common
//! name with `EMQX_SSL_PEER_CERT_AS_USERNAME=cn`), the CONNECT answer of
//! the [`Policy`], the ACL questions at SUBSCRIBE, PUBLISH and each
//! delivery, and the re-check of a connection moved in from another
//! broker, whose files may have changed since it connected. Decisions
//! are mosquitto 2.0's (see `emqx_auth`).

use std::rc::Rc;

use emqx_auth::{Access, ConnectDecision, Credentials, Fingerprint, Identity, Policy};

use super::Broker;

/// The broker's policy and where a TLS client's identity comes from.
#[derive(Debug, Default)]
pub struct Auth {
    /// The password file, ACL file and `allow_anonymous`, read at start.
    pub policy: Policy,
    /// On TLS listeners, the client certificate's common name is the
    /// username (`EMQX_SSL_PEER_CERT_AS_USERNAME=cn`).
    pub cert_as_username: bool,
}

/// What a connection logged in with, kept for as long as it lives: its
/// username answers every ACL question, and the whole login is checked
/// again when the connection moves to a broker with newer files (as
/// mosquitto checks its connected clients again on reload).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Login {
    pub username: Option<Rc<str>>,
    /// CONNECT's password field (never logged).
    pub password: Option<Box<[u8]>>,
    /// The username is the client certificate's (the CONNECT fields are
    /// ignored; `None`: no certificate or no common name).
    pub by_certificate: bool,
    /// The password-file entry its password was verified against.
    pub verified: Option<Fingerprint>,
}

/// Never shows the password.
impl std::fmt::Debug for Login {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Login")
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| ".."))
            .field("by_certificate", &self.by_certificate)
            .field("verified", &self.verified.is_some())
            .finish()
    }
}

impl Login {
    /// The login as the policy reads it.
    pub fn credentials(&self) -> Credentials<'_> {
        match self.by_certificate {
            true => Credentials::Certificate {
                username: self.username.as_deref(),
            },
            false => Credentials::Password {
                username: self.username.as_deref(),
                password: self.password.as_deref(),
            },
        }
    }
}

impl Broker {
    /// Connection `conn` is a TLS one whose client certificate names
    /// `cn` (or none): with certificate-as-username, that is its login,
    /// whatever its CONNECT says.
    pub fn certified(&mut self, conn: usize, cn: Option<&str>) {
        if !self.auth.cert_as_username {
            return;
        }
        if let Some(c) = self.clients.get_mut(&conn) {
            c.login = Login {
                username: usable_name(cn).map(Rc::from),
                by_certificate: true,
                ..Login::default()
            };
        }
    }

    /// The login of a CONNECT on `conn` with these fields, and the
    /// policy's answer to it.
    pub(super) fn log_in(
        &mut self,
        conn: usize,
        username: Option<String>,
        password: Option<Vec<u8>>,
    ) -> (Login, ConnectDecision) {
        let login = match self.clients.get(&conn).map(|c| &c.login) {
            Some(l) if l.by_certificate => l.clone(),
            _ => Login {
                username: username.map(|u| Rc::from(u.as_str())),
                password: password.map(Vec::into_boxed_slice),
                ..Login::default()
            },
        };
        let decision = self.auth.policy.connect(&login.credentials());
        let verified = decision
            .is_allowed()
            .then(|| self.auth.policy.entry_of(&login.credentials()))
            .flatten();
        (Login { verified, ..login }, decision)
    }

    /// Whether client `id` (logged in as `username`) may do `access` on
    /// `topic`.
    pub(crate) fn may(
        &self,
        id: &str,
        username: Option<&str>,
        topic: &str,
        access: Access,
    ) -> bool {
        may(&self.auth.policy, id, username, topic, access)
    }

    /// The policy's answer, now, to the login connection `conn` came with
    /// (a connection moved in from a broker with older files), `tls` being
    /// its socket's TLS identity (see [`Broker::recheck_moved`]): without
    /// hashing the password again when the exporter verified it against
    /// the same entry. A login whose source this broker would not use now
    /// (a certificate where it reads passwords, or the other way round,
    /// or another certificate name) is refused: the client connects
    /// again and logs in as this broker asks. An allowed login now names
    /// this broker's entry.
    pub(crate) fn recheck(&mut self, conn: usize, tls: Option<Option<&str>>) -> ConnectDecision {
        let by_certificate = self.auth.cert_as_username && tls.is_some();
        let policy = &self.auth.policy;
        match self.clients.get_mut(&conn) {
            Some(c) if c.id.is_some() => {
                let same_source = c.login.by_certificate == by_certificate
                    && (!by_certificate
                        || c.login.username.as_deref() == usable_name(tls.flatten()));
                if !same_source {
                    return ConnectDecision::NotAuthorized;
                }
                let creds = c.login.credentials();
                let decision = policy.reconnect(&creds, c.login.verified.as_ref());
                let entry = decision.is_allowed().then(|| policy.entry_of(&creds));
                c.login.verified = entry.flatten();
                decision
            }
            // Not logged in yet: its CONNECT is checked when it comes.
            _ => ConnectDecision::Allowed,
        }
    }
}

/// A certificate's common name as a username: none when it holds a NUL
/// (mosquitto refuses such a name: bad username or password).
fn usable_name(cn: Option<&str>) -> Option<&str> {
    cn.filter(|n| !n.contains('\0'))
}

/// [`Broker::may`], for a caller that holds a session mutably.
pub(super) fn may(
    policy: &Policy,
    id: &str,
    username: Option<&str>,
    topic: &str,
    access: Access,
) -> bool {
    let who = Identity {
        username,
        client_id: id,
    };
    policy.authorize(&who, topic, access)
}
