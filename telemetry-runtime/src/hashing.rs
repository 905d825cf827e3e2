//! Keyed hashing of values that must not leave the process in clear.
//!
//! `#[hash]` sends HMAC-SHA-256 of a value under a secret per-installation key, never a plain
//! digest: an unkeyed SHA-256 of a namespace such as `default` or `prod` is reversed by anyone
//! with a dictionary, while the keyed hash can only be compared, not reversed.

use std::fmt;

use hmac::{KeyInit as _, Mac as _};

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

/// The secret key under which `#[hash]` and `#[trusted_or_hash]` fields are hashed.
///
/// The same value hashes to the same output under the same key, so events from one installation
/// can be correlated without revealing the value. The key itself never leaves the process.
///
/// ```
/// use telemetry_runtime::HashKey;
///
/// let key = HashKey::from_bytes([7; 32]);
/// let digest = key.hash_hex("production");
/// assert_eq!(digest.len(), 64);
/// assert_eq!(digest, key.hash_hex("production"));
/// assert_ne!(digest, HashKey::from_bytes([8; 32]).hash_hex("production"));
/// ```
#[derive(Clone)]
pub struct HashKey {
    // Keyed once; each hash clones this state, which skips re-hashing the padded key.
    keyed: HmacSha256,
}

impl HashKey {
    /// The length of a key in bytes.
    pub const LEN: usize = 32;

    /// A key from 32 secret bytes.
    pub fn from_bytes(bytes: [u8; Self::LEN]) -> Self {
        let keyed = HmacSha256::new_from_slice(&bytes).expect("HMAC accepts keys of any length");
        HashKey { keyed }
    }

    /// HMAC-SHA-256 of `data` under this key.
    pub fn hash(&self, data: &[u8]) -> [u8; 32] {
        let mut mac = self.keyed.clone();
        mac.update(data);
        mac.finalize().into_bytes().into()
    }

    /// HMAC-SHA-256 of `text` under this key, as 64 lower-case hex digits: what `#[hash]` sends.
    pub fn hash_hex(&self, text: &str) -> String {
        let mut digits = Vec::with_capacity(64);
        crate::json::push_hex(&mut digits, &self.hash(text.as_bytes()));
        String::from_utf8(digits).expect("hex digits are ASCII")
    }
}

impl fmt::Debug for HashKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("HashKey(<secret>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_does_not_show_the_key() {
        let shown = format!("{:?}", HashKey::from_bytes([0xab; 32]));
        assert!(!shown.to_lowercase().contains("ab"), "{shown}");
    }

    #[test]
    fn the_keyed_state_is_not_consumed_by_hashing() {
        let key = HashKey::from_bytes([1; 32]);
        let first = key.hash(b"a");
        key.hash(b"something else");
        assert_eq!(first, key.hash(b"a"));
    }
}
