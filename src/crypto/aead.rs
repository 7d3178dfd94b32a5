//! AES-256-GCM (NIST SP 800-38D) for data-key wrapping and column tokens.
//!
//! ```text
//! wrapped = AES-256-GCM-Seal(key = KEK, nonce = random(12),
//!                            plaintext = DEK,
//!                            ad = "piigate:dek:v1:" || dek_id)        -- ciphertext || tag
//! token   = "pg1:" || dek_id || ":" ||
//!           base64url_nopad(nonce || AES-256-GCM-Seal(key = DEK, nonce = random(12),
//!                                                      plaintext = value,
//!                                                      ad = UTF-8(output column name)))
//! ```
//!
//! Nonces are 96 bits drawn from a per-thread ChaCha20 CSPRNG seeded from
//! the operating system; a data key encrypts at most
//! [`MAX_VALUES_PER_DEK`] values, which keeps the probability of a nonce
//! collision far below the 2^-32 bound of NIST SP 800-38D §8.3.

use aes_gcm::aead::consts::U12;
use aes_gcm::aead::{AeadInPlace, KeyInit};
use aes_gcm::{AesGcm, Nonce, Tag};
use base64::Engine as _;
use rand::RngCore;

use super::keys::{Dek, DekId, Kek, KEY_LEN};
use super::CryptoError;

/// Version prefix of a column token.
pub const TOKEN_PREFIX: &str = "pg1:";
/// Domain-separation label for the associated data of a wrapped DEK.
pub const DEK_WRAP_LABEL: &str = "piigate:dek:v1:";
/// AES-GCM nonce length in bytes.
pub const NONCE_LEN: usize = 12;
/// AES-GCM tag length in bytes.
pub const TAG_LEN: usize = 16;
/// Values one data key may encrypt before a fresh one is rolled (2^31).
pub const MAX_VALUES_PER_DEK: u64 = 1 << 31;

/// AES-256-GCM (96-bit nonce) over the encrypt-only AES-256 key schedule:
/// GCM never runs the inverse cipher, so with AES-NI this skips expanding
/// a decryption schedule for every key, which `aes_gcm::Aes256Gcm` does
/// (one key per person with per-person keys).
type Aes256GcmEnc = AesGcm<aes::Aes256Enc, U12>;

/// Fails to compile unless the expanded AES key schedules zeroize on drop
/// (the `aes` crate's `zeroize` feature): the encrypt-only one under
/// AES-GCM and the full one under AES-SIV (its CTR and CMAC).
const _: () = {
    fn zeroizes_on_drop<T: zeroize::ZeroizeOnDrop>() {}
    let _ = zeroizes_on_drop::<aes::Aes256Enc>;
    let _ = zeroizes_on_drop::<aes::Aes256>;
};

const B64URL: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

fn wrap_ad(dek_id: &DekId) -> [u8; DEK_WRAP_LABEL.len() + 16] {
    let mut ad = [0u8; DEK_WRAP_LABEL.len() + 16];
    ad[..DEK_WRAP_LABEL.len()].copy_from_slice(DEK_WRAP_LABEL.as_bytes());
    ad[DEK_WRAP_LABEL.len()..].copy_from_slice(dek_id.as_str().as_bytes());
    ad
}

thread_local! {
    /// Per-thread ChaCha20 CSPRNG seeded once from the operating system.
    /// (A reseeding generator would call getrandom(2) every 64 KiB of
    /// nonces, which costs about 1 ms per call on some virtual machines.)
    static NONCE_RNG: std::cell::RefCell<rand_chacha::ChaCha20Rng> =
        std::cell::RefCell::new(rand::SeedableRng::from_os_rng());
}

/// Draws a 96-bit nonce from the thread's CSPRNG (ChaCha20, seeded from
/// the operating system).
pub fn random_nonce() -> [u8; NONCE_LEN] {
    let mut n = [0u8; NONCE_LEN];
    NONCE_RNG.with(|r| r.borrow_mut().fill_bytes(&mut n));
    n
}

/// Draws a fresh 32-byte data key from the thread's CSPRNG (ChaCha20,
/// seeded from the operating system), like [`random_nonce`]: per-person keys
/// are made by the thousand per second, too many for one getrandom(2) call
/// each.
pub fn random_dek() -> Dek {
    let mut bytes = [0u8; KEY_LEN];
    NONCE_RNG.with(|r| r.borrow_mut().fill_bytes(&mut bytes));
    let dek = Dek::from_bytes(bytes);
    zeroize::Zeroize::zeroize(&mut bytes);
    dek
}

/// Wraps `dek` under `kek` with the given nonce. Returns ciphertext‖tag
/// (48 bytes).
pub fn wrap_dek(kek: &Kek, dek_id: &DekId, dek: &Dek, nonce: &[u8; NONCE_LEN]) -> Vec<u8> {
    KekCipher::new(kek).wrap_dek(dek_id, dek, nonce)
}

/// Unwraps a DEK wrapped by [`wrap_dek`].
///
/// # Errors
/// [`CryptoError::Truncated`] when `wrapped` is under 48 bytes,
/// [`CryptoError::Malformed`] when it is longer or the nonce is not 12 bytes;
/// [`CryptoError::Auth`] for a wrong KEK, a `dek_id` that does not match, or
/// altered bytes.
pub fn unwrap_dek(kek: &Kek, dek_id: &DekId, nonce: &[u8], wrapped: &[u8]) -> Result<Dek, CryptoError> {
    KekCipher::new(kek).unwrap_dek(dek_id, nonce, wrapped)
}

/// A KEK expanded once for wrapping and unwrapping many DEKs (the per-person key vault
/// unwraps one per person it looks up). Its AES key schedule is zeroized
/// on drop by the `aes` crate, like [`DataKey`]'s (not its GHASH key H;
/// see [`DataKey`]).
pub struct KekCipher(Aes256GcmEnc);

impl KekCipher {
    /// Expands `kek`.
    pub fn new(kek: &Kek) -> Self {
        Self(Aes256GcmEnc::new(kek.expose().into()))
    }

    /// As [`wrap_dek`], with this KEK.
    pub fn wrap_dek(&self, dek_id: &DekId, dek: &Dek, nonce: &[u8; NONCE_LEN]) -> Vec<u8> {
        let mut buf = Vec::with_capacity(KEY_LEN + TAG_LEN);
        buf.extend_from_slice(dek.expose());
        let tag = self
            .0
            .encrypt_in_place_detached(Nonce::from_slice(nonce), &wrap_ad(dek_id), &mut buf)
            .expect("AES-GCM cannot fail for a 32-byte plaintext");
        buf.extend_from_slice(&tag);
        buf
    }

    /// As [`unwrap_dek`], with this KEK.
    ///
    /// # Errors
    /// As [`unwrap_dek`].
    pub fn unwrap_dek(&self, dek_id: &DekId, nonce: &[u8], wrapped: &[u8]) -> Result<Dek, CryptoError> {
        if nonce.len() != NONCE_LEN {
            return Err(CryptoError::Malformed("wrapping nonce must be 12 bytes"));
        }
        if wrapped.len() < KEY_LEN + TAG_LEN {
            return Err(CryptoError::Truncated);
        }
        if wrapped.len() > KEY_LEN + TAG_LEN {
            return Err(CryptoError::Malformed("a wrapped data key is 48 bytes"));
        }
        let mut buf = [0u8; KEY_LEN];
        buf.copy_from_slice(&wrapped[..KEY_LEN]);
        let tag = Tag::from_slice(&wrapped[KEY_LEN..]);
        let opened = self.0.decrypt_in_place_detached(Nonce::from_slice(nonce), &wrap_ad(dek_id), &mut buf, tag);
        if opened.is_err() {
            zeroize::Zeroize::zeroize(&mut buf);
            return Err(CryptoError::Auth);
        }
        let dek = Dek::from_bytes(buf);
        zeroize::Zeroize::zeroize(&mut buf);
        Ok(dek)
    }
}

/// A data key ready for use: its identifier and the expanded AES key
/// schedule (zeroized on drop by the `aes` crate, through its `zeroize`
/// feature). The GHASH key H = AES(K, 0^128) it also holds is not:
/// `polyval`'s x86 backend has no `Drop`, and the `zeroize` features of
/// `polyval` and `ghash` are off. H does not give K.
pub struct DataKey {
    id: DekId,
    cipher: Aes256GcmEnc,
}

impl DataKey {
    /// Expands `dek` for encryption and decryption.
    pub fn new(id: DekId, dek: &Dek) -> Self {
        Self { id, cipher: Aes256GcmEnc::new(dek.expose().into()) }
    }

    /// The key's identifier.
    pub fn id(&self) -> &DekId {
        &self.id
    }

    /// Appends the token for `plaintext` under associated data `column` to
    /// `out`, with a fresh random nonce. `scratch` is reused between calls.
    pub fn encrypt_token_into(&self, column: &[u8], plaintext: &[u8], scratch: &mut Vec<u8>, out: &mut Vec<u8>) {
        self.encrypt_token_with_nonce(column, plaintext, &random_nonce(), scratch, out)
    }

    /// As [`DataKey::encrypt_token_into`] with a caller-chosen nonce (test
    /// vectors only: a nonce must never repeat under one key).
    pub fn encrypt_token_with_nonce(
        &self,
        column: &[u8],
        plaintext: &[u8],
        nonce: &[u8; NONCE_LEN],
        scratch: &mut Vec<u8>,
        out: &mut Vec<u8>,
    ) {
        scratch.clear();
        scratch.extend_from_slice(nonce);
        scratch.extend_from_slice(plaintext);
        let tag = self
            .cipher
            .encrypt_in_place_detached(Nonce::from_slice(nonce), column, &mut scratch[NONCE_LEN..])
            .expect("AES-GCM plaintext limit is far above any CSV cell");
        scratch.extend_from_slice(&tag);
        out.extend_from_slice(TOKEN_PREFIX.as_bytes());
        out.extend_from_slice(self.id.as_str().as_bytes());
        out.push(b':');
        let start = out.len();
        let enc_len = base64::encoded_len(scratch.len(), false).unwrap_or(0);
        out.resize(start + enc_len, 0);
        let written = B64URL.encode_slice(&scratch[..], &mut out[start..]).expect("buffer sized by encoded_len");
        out.truncate(start + written);
    }

    /// Seals `plaintext` under associated data `ad` with a fresh random
    /// nonce. Returns nonce (12 bytes) ‖ ciphertext ‖ tag (16 bytes): the
    /// layout of a token's payload, without its text encoding. (The vault
    /// stores each person's identity this way.)
    pub fn seal(&self, ad: &[u8], plaintext: &[u8]) -> Vec<u8> {
        let nonce = random_nonce();
        let mut out = Vec::with_capacity(NONCE_LEN + plaintext.len() + TAG_LEN);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(plaintext);
        let tag = self
            .cipher
            .encrypt_in_place_detached(Nonce::from_slice(&nonce), ad, &mut out[NONCE_LEN..])
            .expect("AES-GCM plaintext limit is far above any identity");
        out.extend_from_slice(&tag);
        out
    }

    /// Decrypts the payload of a parsed token (see [`parse_token`]).
    ///
    /// # Errors
    /// [`CryptoError::Truncated`] or [`CryptoError::Auth`].
    pub fn decrypt_payload(&self, column: &[u8], payload: &[u8]) -> Result<Vec<u8>, CryptoError> {
        if payload.len() < NONCE_LEN + TAG_LEN {
            return Err(CryptoError::Truncated);
        }
        let (nonce, rest) = payload.split_at(NONCE_LEN);
        let (ct, tag) = rest.split_at(rest.len() - TAG_LEN);
        let mut buf = ct.to_vec();
        self.cipher
            .decrypt_in_place_detached(Nonce::from_slice(nonce), column, &mut buf, Tag::from_slice(tag))
            .map_err(|_| CryptoError::Auth)?;
        Ok(buf)
    }
}

/// Splits a token into its `dek_id` and decoded payload
/// (nonce‖ciphertext‖tag).
///
/// # Errors
/// [`CryptoError::UnknownVersion`] for another prefix,
/// [`CryptoError::Malformed`] for a bad structure, `dek_id` or base64url,
/// [`CryptoError::Truncated`] for a payload under 28 bytes.
pub fn parse_token(token: &[u8]) -> Result<(DekId, Vec<u8>), CryptoError> {
    let Some(rest) = token.strip_prefix(TOKEN_PREFIX.as_bytes()) else {
        let looks_versioned = token.len() > 3
            && token.starts_with(b"pg")
            && token.iter().position(|&b| b == b':').is_some_and(|i| token[2..i].iter().all(u8::is_ascii_digit));
        return Err(if looks_versioned {
            CryptoError::UnknownVersion
        } else {
            CryptoError::Malformed("not a pg1 token")
        });
    };
    let colon = rest.iter().position(|&b| b == b':').ok_or(CryptoError::Malformed("missing ':' after dek_id"))?;
    let id_text = std::str::from_utf8(&rest[..colon]).map_err(|_| CryptoError::Malformed("dek_id is not ASCII"))?;
    let dek_id: DekId = id_text.parse()?;
    let payload =
        B64URL.decode(&rest[colon + 1..]).map_err(|_| CryptoError::Malformed("payload is not unpadded base64url"))?;
    if payload.len() < NONCE_LEN + TAG_LEN {
        return Err(CryptoError::Truncated);
    }
    Ok((dek_id, payload))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrap_round_trip_and_ad_binding() {
        let kek = Kek::generate();
        let dek = Dek::generate();
        let id = DekId::generate();
        let nonce = random_nonce();
        let w = wrap_dek(&kek, &id, &dek, &nonce);
        assert_eq!(w.len(), 48);
        assert!(unwrap_dek(&kek, &id, &nonce, &w).unwrap() == dek);
        let other = DekId::generate();
        assert_eq!(unwrap_dek(&kek, &other, &nonce, &w).err(), Some(CryptoError::Auth));
        assert_eq!(unwrap_dek(&Kek::generate(), &id, &nonce, &w).err(), Some(CryptoError::Auth));
        assert_eq!(unwrap_dek(&kek, &id, &nonce, &w[..47]).err(), Some(CryptoError::Truncated));
    }

    #[test]
    fn token_round_trip_binds_column() {
        let key = DataKey::new(DekId::generate(), &Dek::generate());
        let (mut scratch, mut out) = (Vec::new(), Vec::new());
        key.encrypt_token_into(b"email", "zoë@example.test".as_bytes(), &mut scratch, &mut out);
        assert!(out.starts_with(b"pg1:"));
        let (id, payload) = parse_token(&out).unwrap();
        assert_eq!(&id, key.id());
        assert_eq!(key.decrypt_payload(b"email", &payload).unwrap(), "zoë@example.test".as_bytes());
        assert_eq!(key.decrypt_payload(b"phone", &payload), Err(CryptoError::Auth));
        assert_eq!(parse_token(b"pg2:0011223344556677:AAAA").err(), Some(CryptoError::UnknownVersion));
        assert!(matches!(parse_token(b"pg1:0011223344556677:AAAA"), Err(CryptoError::Truncated)));
    }
}
