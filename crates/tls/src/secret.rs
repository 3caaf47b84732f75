//! Bytes that hold traffic secrets (a serialized TLS connection): wiped
//! when dropped, never shown by `Debug`.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Secret bytes, zeroed before their memory is freed (each copy).
#[derive(Default, Clone, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

impl Secret {
    /// Takes `bytes` (whose buffer is wiped with the secret).
    pub fn new(bytes: Vec<u8>) -> Secret {
        Secret(bytes)
    }

    /// The bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.0
    }

    /// How many bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether it holds nothing.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Zeroes `bytes` in a way the optimizer keeps (the buffer is about to
/// be freed, which would otherwise make the writes dead).
pub fn wipe(bytes: &mut [u8]) {
    for b in bytes.iter_mut() {
        // SAFETY: `b` is a valid, aligned, exclusive reference to a byte.
        unsafe { std::ptr::write_volatile(b, 0) };
    }
    std::sync::atomic::compiler_fence(std::sync::atomic::Ordering::SeqCst);
}

impl Drop for Secret {
    fn drop(&mut self) {
        wipe(&mut self.0);
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({} bytes)", self.0.len())
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Secret, D::Error> {
        Vec::<u8>::deserialize(d).map(Secret)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wiping_zeroes_every_byte_and_debug_shows_none() {
        let mut v = vec![0xAAu8; 64];
        wipe(&mut v);
        assert!(v.iter().all(|b| *b == 0));
        let s = Secret::new(vec![1, 2, 3]);
        assert_eq!(format!("{s:?}"), "Secret(3 bytes)");
        assert_eq!(s.bytes(), &[1, 2, 3]);
    }
}
