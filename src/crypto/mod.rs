//! Cryptographic primitives: key types, AES-256-GCM data-key wrapping and
//! column tokens, AES-SIV deterministic tokens, HMAC-SHA256 pseudonyms. Small, pure, no I/O.
//!
//! Everything here follows `docs/FORMAT.md`; the constructions are
//! AES-256-GCM (NIST SP 800-38D, RFC 5116), AES-SIV (RFC 5297) and
//! HMAC-SHA256 (RFC 2104).

pub mod aead;
pub mod keys;
pub mod prf;
pub mod siv;

/// Errors from the cryptographic layer. They never carry key or plaintext
/// bytes.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CryptoError {
    /// The token does not start with a known version prefix (`pg1:`).
    #[error("unknown token version (expected a token starting with \"pg1:\" or \"pd1:\")")]
    UnknownVersion,
    /// The token's structure is wrong (parts, dek_id, base64url).
    #[error("malformed token: {0}")]
    Malformed(&'static str),
    /// The decoded payload is shorter than nonce + tag (28 bytes).
    #[error("truncated token: payload shorter than nonce and tag")]
    Truncated,
    /// AES-GCM authentication failed: wrong key, wrong column, or altered bytes.
    #[error("authentication failed (wrong key, wrong column, or the value was altered)")]
    Auth,
    /// A key or record field did not decode or had the wrong length.
    #[error("invalid key material: {0}")]
    InvalidKey(String),
}
