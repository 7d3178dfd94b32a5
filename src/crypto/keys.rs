//! Key types. Keys wrap their bytes, zeroize on drop, implement neither
//! `Debug` nor `Display`, and compare in constant time.

use std::fmt;
use std::str::FromStr;

use rand::RngCore;
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop};

use super::CryptoError;

/// Length of every symmetric key in bytes (AES-256, HMAC-SHA256 key).
pub const KEY_LEN: usize = 32;

/// Length of the deterministic-encryption key in bytes: AES-SIV with
/// AES-256 (RFC 5297) takes two 256-bit keys, one for S2V (CMAC) and one for
/// CTR.
pub const SIV_KEY_LEN: usize = 64;

macro_rules! secret_key {
    ($(#[$doc:meta])* $name:ident) => {
        secret_key!($(#[$doc])* $name, KEY_LEN);
    };
    ($(#[$doc:meta])* $name:ident, $len:expr) => {
        $(#[$doc])*
        #[derive(Clone, Zeroize, ZeroizeOnDrop)]
        pub struct $name([u8; $len]);

        impl $name {
            /// Wraps the key bytes.
            pub fn from_bytes(bytes: [u8; $len]) -> Self {
                Self(bytes)
            }

            /// Draws a fresh key from the operating system's CSPRNG.
            pub fn generate() -> Self {
                let mut bytes = [0u8; $len];
                rand::TryRngCore::try_fill_bytes(&mut rand::rngs::OsRng, &mut bytes).expect("the operating system's random source failed");
                Self(bytes)
            }

            /// Decodes standard base64 (RFC 4648 §4) of exactly the key length
            /// (32 bytes; 64 for the deterministic key).
            ///
            /// # Errors
            /// [`CryptoError::InvalidKey`] when the text is not base64 or has the wrong length.
            pub fn from_base64(text: &str) -> Result<Self, CryptoError> {
                use base64::Engine as _;
                let mut decoded = base64::engine::general_purpose::STANDARD
                    .decode(text.trim())
                    .map_err(|_| CryptoError::InvalidKey("not standard base64".into()))?;
                if decoded.len() != $len {
                    let n = decoded.len();
                    decoded.zeroize();
                    return Err(CryptoError::InvalidKey(format!("{n} bytes, expected {}", $len)));
                }
                let mut bytes = [0u8; $len];
                bytes.copy_from_slice(&decoded);
                decoded.zeroize();
                Ok(Self(bytes))
            }

            /// Encodes the key as standard base64 (for the keyring file only).
            pub fn to_base64(&self) -> String {
                use base64::Engine as _;
                base64::engine::general_purpose::STANDARD.encode(self.0)
            }

            /// The raw key bytes.
            pub fn expose(&self) -> &[u8; $len] {
                &self.0
            }
        }

        impl PartialEq for $name {
            fn eq(&self, other: &Self) -> bool {
                self.0.ct_eq(&other.0).into()
            }
        }
        impl Eq for $name {}
    };
}

secret_key!(
    /// A key-encryption key (KEK): wraps data keys. Lives in the keyring.
    Kek
);
secret_key!(
    /// A data-encryption key (DEK): encrypts the values of one output file.
    Dek
);
secret_key!(
    /// The HMAC-SHA256 key that derives pseudonyms. Lives in the keyring.
    PseudonymKey
);
secret_key!(
    /// The AES-SIV key (RFC 5297, AES-256: 64 bytes) of `encrypt-deterministic`
    /// columns. Lives in the keyring as `deterministic_key`.
    DeterministicKey,
    SIV_KEY_LEN
);

/// Identifier of a data key: 16 lowercase hex characters (8 random bytes).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DekId([u8; 16]);

impl DekId {
    /// Draws a random identifier.
    pub fn generate() -> Self {
        let mut raw = [0u8; 8];
        rand::rng().fill_bytes(&mut raw);
        let hex = data_encoding::HEXLOWER.encode(&raw);
        let mut out = [0u8; 16];
        out.copy_from_slice(hex.as_bytes());
        Self(out)
    }

    /// The identifier as text.
    pub fn as_str(&self) -> &str {
        // Only ever constructed from ASCII hex.
        std::str::from_utf8(&self.0).unwrap_or("")
    }
}

impl FromStr for DekId {
    type Err = CryptoError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let b = s.as_bytes();
        if b.len() != 16 || !b.iter().all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(c)) {
            return Err(CryptoError::Malformed("dek_id must be 16 lowercase hex characters"));
        }
        let mut out = [0u8; 16];
        out.copy_from_slice(b);
        Ok(Self(out))
    }
}

impl fmt::Display for DekId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
impl fmt::Debug for DekId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DekId({})", self.as_str())
    }
}

/// Identifier of a KEK in the keyring: `k` followed by 8 lowercase hex
/// characters when piigate makes it; any 1–64 characters of `[A-Za-z0-9_-]`
/// are accepted from a keyring.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct KekId(String);

impl KekId {
    /// Draws a random identifier `k` + 8 hex.
    pub fn generate() -> Self {
        let mut raw = [0u8; 4];
        rand::rng().fill_bytes(&mut raw);
        Self(format!("k{}", data_encoding::HEXLOWER.encode(&raw)))
    }
    /// The identifier as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for KekId {
    type Err = CryptoError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() || s.len() > 64 || !s.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-') {
            return Err(CryptoError::InvalidKey("KEK id must be 1-64 characters of A-Z, a-z, 0-9, '_' or '-'".into()));
        }
        Ok(Self(s.to_owned()))
    }
}

impl fmt::Display for KekId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dek_id_shape() {
        let id = DekId::generate();
        assert_eq!(id.as_str().len(), 16);
        assert_eq!(id.as_str().parse::<DekId>().unwrap(), id);
        assert!("ABCDEF0123456789".parse::<DekId>().is_err());
        assert!("abc".parse::<DekId>().is_err());
    }

    #[test]
    fn key_base64_round_trip_and_length_check() {
        let k = Kek::generate();
        assert!(Kek::from_base64(&k.to_base64()).unwrap() == k);
        assert!(Kek::from_base64("AAAA").is_err());
        assert!(Kek::from_base64("not base64!").is_err());
    }
}
