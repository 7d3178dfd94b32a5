//! Deterministic column tokens: AES-SIV (RFC 5297) with AES-256, i.e.
//! AES-SIV-CMAC-512 with a 64-byte key, for columns that must stay
//! matchable without decryption.
//!
//! ```text
//! token = "pd1:" || base64url_nopad(AES-SIV(key = deterministic_key,
//!                                           AD = [UTF-8(output column name)],
//!                                           plaintext = value))
//!       = "pd1:" || base64url_nopad(V || C)      -- V: 16-byte synthetic IV
//! ```
//!
//! No nonce: equal values in one column give equal tokens under one key,
//! which is the point, and all such a token leaks (equality and length,
//! see `docs/FORMAT.md`). SIV stays misuse-resistant: the same
//! (column, value) pair is the only thing that repeats.

use aes_siv::aead::KeyInit;
use aes_siv::siv::Aes256Siv;
use base64::Engine as _;

use super::keys::DeterministicKey;
use super::CryptoError;

/// Version prefix of a deterministic token.
pub const DET_TOKEN_PREFIX: &str = "pd1:";
/// Length of the synthetic IV (the S2V output) in bytes.
pub const SIV_LEN: usize = 16;

const B64URL: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// The `encrypt-deterministic` cipher. Holds a copy of the key (zeroized
/// on drop); implements neither `Debug` nor `Display`.
#[derive(Clone)]
pub struct DeterministicCipher {
    key: DeterministicKey,
}

impl DeterministicCipher {
    /// A cipher under `key`.
    pub fn new(key: &DeterministicKey) -> Self {
        Self { key: key.clone() }
    }

    fn siv(&self) -> Aes256Siv {
        // aes-siv's Siv needs `&mut self`; a fresh instance per value keeps
        // the cipher shareable between threads (one key schedule each).
        Aes256Siv::new(self.key.expose().into())
    }

    /// Appends the `pd1:` token of `plaintext` under associated data
    /// `column` to `out`.
    pub fn encrypt_token_into(&self, column: &[u8], plaintext: &[u8], out: &mut Vec<u8>) {
        let sealed = self.siv().encrypt([column], plaintext).expect("one AD component and any CSV cell fit AES-SIV");
        out.extend_from_slice(DET_TOKEN_PREFIX.as_bytes());
        let start = out.len();
        out.resize(start + base64::encoded_len(sealed.len(), false).unwrap_or(0), 0);
        let n = B64URL.encode_slice(&sealed, &mut out[start..]).expect("buffer sized by encoded_len");
        out.truncate(start + n);
    }

    /// Decrypts a `pd1:` token found in `column`.
    ///
    /// # Errors
    /// [`CryptoError::UnknownVersion`] for `pd` followed by other digits,
    /// [`CryptoError::Malformed`] for another prefix or bad base64url,
    /// [`CryptoError::Truncated`] for a payload under 16 bytes,
    /// [`CryptoError::Auth`] for a wrong key, wrong column or altered bytes.
    pub fn decrypt_token(&self, column: &[u8], token: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let payload = parse_det_token(token)?;
        self.siv().decrypt([column], &payload).map_err(|_| CryptoError::Auth)
    }
}

/// Checks the prefix of a deterministic token and decodes its payload
/// (V‖C).
///
/// # Errors
/// As [`DeterministicCipher::decrypt_token`], without `Auth`.
pub fn parse_det_token(token: &[u8]) -> Result<Vec<u8>, CryptoError> {
    let Some(rest) = token.strip_prefix(DET_TOKEN_PREFIX.as_bytes()) else {
        let versioned = token.len() > 3
            && token.starts_with(b"pd")
            && token
                .iter()
                .position(|&b| b == b':')
                .is_some_and(|i| i > 2 && token[2..i].iter().all(u8::is_ascii_digit));
        return Err(if versioned { CryptoError::UnknownVersion } else { CryptoError::Malformed("not a pd1 token") });
    };
    let payload = B64URL.decode(rest).map_err(|_| CryptoError::Malformed("payload is not unpadded base64url"))?;
    if payload.len() < SIV_LEN {
        return Err(CryptoError::Truncated);
    }
    Ok(payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 5297, Appendix A.1 (AES-SIV-CMAC-256): checks that the crate's
    /// output is V || C as the RFC defines it. Our key is the AES-256
    /// variant; the construction is the same.
    #[test]
    fn rfc5297_a1_layout() {
        let h = |s: &str| data_encoding::HEXLOWER.decode(s.as_bytes()).unwrap();
        let key = h("fffefdfcfbfaf9f8f7f6f5f4f3f2f1f0f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff");
        let ad = h("101112131415161718191a1b1c1d1e1f2021222324252627");
        let pt = h("112233445566778899aabbccddee");
        let mut siv = aes_siv::siv::Aes128Siv::new(key.as_slice().into());
        let out = siv.encrypt([&ad], &pt).unwrap();
        assert_eq!(out, h("85632d07c6e8f37f950acd320a2ecc9340c02b9690c4dc04daef7f6afe5c"));
    }

    #[test]
    fn equal_values_equal_tokens_bound_to_column() {
        let c = DeterministicCipher::new(&DeterministicKey::generate());
        let (mut a, mut b, mut other) = (Vec::new(), Vec::new(), Vec::new());
        c.encrypt_token_into(b"email", b"ana@example.test", &mut a);
        c.encrypt_token_into(b"email", b"ana@example.test", &mut b);
        c.encrypt_token_into(b"email2", b"ana@example.test", &mut other);
        assert_eq!(a, b);
        assert_ne!(a, other);
        assert!(a.starts_with(b"pd1:"));
        assert_eq!(c.decrypt_token(b"email", &a).unwrap(), b"ana@example.test");
        assert_eq!(c.decrypt_token(b"email2", &a), Err(CryptoError::Auth));
        assert_eq!(parse_det_token(b"pd2:AAAA").err(), Some(CryptoError::UnknownVersion));
        assert_eq!(parse_det_token(b"pd1:AAAA").err(), Some(CryptoError::Truncated));
        assert!(matches!(parse_det_token(b"pg1:AAAA"), Err(CryptoError::Malformed(_))));
    }
}
