//! The two hashes mosquitto 2.0 reads (`pw__digest`): `$6$` is SHA-512 of
//! the password followed by the salt, `$7$` PBKDF2-HMAC-SHA512 with the
//! line's iteration count; the salt is 12 bytes and the digest 64.
//! mosquitto_passwd 2.0 writes `$7$` with 101 iterations by default.

use base64::alphabet::STANDARD;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine;
use sha2::{Digest, Sha512};
use subtle::ConstantTimeEq;

use super::PasswordProblem;

const SALT_LEN: usize = 12;
const HASH_LEN: usize = 64;

/// mosquitto_passwd's iteration count, the decoy's cost.
const DEFAULT_ITERATIONS: u32 = 101;

/// Standard base64, padded or not (OpenSSL's decoder, which mosquitto
/// uses, takes both).
const B64: GeneralPurpose = GeneralPurpose::new(
    &STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// `$6$`
    Sha512,
    /// `$7$`, with its iteration count.
    Pbkdf2(u32),
}

/// A decoded hash of one user.
#[derive(Clone)]
pub(crate) struct Hash {
    kind: Kind,
    salt: [u8; SALT_LEN],
    digest: [u8; HASH_LEN],
}

impl Hash {
    /// Decodes the hash field of a line. Like mosquitto's `strtok(.., "$")`,
    /// empty pieces between `$` are skipped and pieces after the digest are
    /// ignored.
    pub(crate) fn parse(field: &str) -> Result<Hash, PasswordProblem> {
        let mut pieces = field.split('$').filter(|p| !p.is_empty());
        let kind = match pieces.next() {
            Some("6") => Kind::Sha512,
            Some("7") => {
                let n = pieces.next().ok_or(PasswordProblem::Incomplete)?;
                Kind::Pbkdf2(parse_iterations(n)?)
            }
            Some(_) => return Err(PasswordProblem::UnknownHashType),
            None => return Err(PasswordProblem::NoHash),
        };
        let salt = pieces.next().ok_or(PasswordProblem::Incomplete)?;
        let salt = decode::<SALT_LEN>(salt).ok_or(PasswordProblem::BadSalt)?;
        let digest = pieces.next().ok_or(PasswordProblem::Incomplete)?;
        let digest = decode::<HASH_LEN>(digest).ok_or(PasswordProblem::BadHash)?;
        Ok(Hash { kind, salt, digest })
    }

    /// A hash no password matches, costing what a default `$7$` costs.
    pub(crate) fn decoy() -> Hash {
        Hash {
            kind: Kind::Pbkdf2(DEFAULT_ITERATIONS),
            salt: [0; SALT_LEN],
            digest: [0; HASH_LEN],
        }
    }

    /// Whether `password` hashes to this digest (compared in constant time).
    pub(crate) fn verify(&self, password: &[u8]) -> bool {
        let mut out = [0u8; HASH_LEN];
        match self.kind {
            Kind::Sha512 => {
                let d = Sha512::new()
                    .chain_update(password)
                    .chain_update(self.salt)
                    .finalize();
                out.copy_from_slice(&d);
            }
            Kind::Pbkdf2(rounds) => {
                pbkdf2::pbkdf2_hmac::<Sha512>(password, &self.salt, rounds, &mut out);
            }
        }
        out.ct_eq(&self.digest).into()
    }
}

impl Hash {
    /// A fingerprint of the entry (hash type, iteration count, salt and
    /// digest): equal fingerprints are the same entry, so a password
    /// verified against one is verified against the other.
    pub(crate) fn fingerprint(&self) -> Fingerprint {
        let rounds = match self.kind {
            Kind::Sha512 => 0,
            Kind::Pbkdf2(n) => n,
        };
        let d = Sha512::new()
            .chain_update(b"emqx-auth entry\0")
            .chain_update(rounds.to_be_bytes())
            .chain_update(self.salt)
            .chain_update(self.digest)
            .finalize();
        let mut out = [0u8; FINGERPRINT_LEN];
        out.copy_from_slice(&d[..FINGERPRINT_LEN]);
        Fingerprint(out)
    }
}

/// The length of a [`Fingerprint`].
pub const FINGERPRINT_LEN: usize = 32;

/// Which password-file entry a login was verified against (see
/// [`crate::PasswordFile::fingerprint`]); not the hash, from which it
/// cannot be recovered.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint(pub [u8; FINGERPRINT_LEN]);

impl std::fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Fingerprint(..)")
    }
}

/// An iteration count: digits, 1 to `i32::MAX` (mosquitto keeps an int).
fn parse_iterations(text: &str) -> Result<u32, PasswordProblem> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(PasswordProblem::BadIterations);
    }
    match text.parse::<u32>() {
        Ok(n) if n >= 1 && n <= i32::MAX as u32 => Ok(n),
        _ => Err(PasswordProblem::BadIterations),
    }
}

fn decode<const N: usize>(text: &str) -> Option<[u8; N]> {
    B64.decode(text).ok()?.try_into().ok()
}
