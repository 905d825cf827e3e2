//! Keyed hashing of values that must not leave the process in clear.
//!
//! `#[hash]` sends HMAC-SHA-256 of a value under a secret per-installation key, never a plain
//! digest: an unkeyed SHA-256 of a namespace such as `default` or `prod` is reversed by anyone
//! with a dictionary, while the keyed hash can only be compared, not reversed.

use std::fmt;

use sha2::{Digest as _, Sha256};

/// SHA-256's block size, which HMAC pads its key to.
const BLOCK: usize = 64;

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
    // HMAC (RFC 2104) hashes the key padded with `0x36` before the data, and the key padded
    // with `0x5c` before that digest. Both padded keys are hashed once, here; each hash
    // clones these states.
    inner: Sha256,
    outer: Sha256,
}

impl HashKey {
    /// The length of a key in bytes.
    pub const LEN: usize = 32;

    /// A key from 32 secret bytes.
    pub fn from_bytes(bytes: [u8; Self::LEN]) -> Self {
        Self::with_key(&bytes)
    }

    /// HMAC-SHA-256 keyed with `key`, at most one block long.
    fn with_key(key: &[u8]) -> Self {
        debug_assert!(key.len() <= BLOCK);
        let mut padded = [0; BLOCK];
        padded[..key.len()].copy_from_slice(key);
        let inner = Sha256::new_with_prefix(padded.map(|byte| byte ^ 0x36));
        let outer = Sha256::new_with_prefix(padded.map(|byte| byte ^ 0x5c));
        HashKey { inner, outer }
    }

    /// HMAC-SHA-256 of `data` under this key.
    pub fn hash(&self, data: &[u8]) -> [u8; 32] {
        let mut inner = self.inner.clone();
        inner.update(data);
        let mut outer = self.outer.clone();
        outer.update(inner.finalize());
        outer.finalize().into()
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

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn hashes_are_hmac_sha256_as_rfc_4231_publishes_it() {
        // Test cases 1 and 2 of RFC 4231.
        assert_eq!(
            hex(&HashKey::with_key(&[0x0b; 20]).hash(b"Hi There")),
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"
        );
        assert_eq!(
            hex(&HashKey::with_key(b"Jefe").hash(b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        // Case 3: 50 bytes of data, longer than one block once padded.
        assert_eq!(
            hex(&HashKey::with_key(&[0xaa; 20]).hash(&[0xdd; 50])),
            "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe"
        );
    }

    #[test]
    fn the_keyed_state_is_not_consumed_by_hashing() {
        let key = HashKey::from_bytes([1; 32]);
        let first = key.hash(b"a");
        key.hash(b"something else");
        assert_eq!(first, key.hash(b"a"));
    }
}
