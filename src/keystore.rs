//! The keystore: one JSON line per data key, appended as each DEK is made.
//!
//! ```json
//! {"dek_id":"0123456789abcdef","kek_id":"k1a2b3c4d","nonce":"<b64>","wrapped":"<b64>","created":"2026-11-29T03:00:00Z"}
//! ```
//!
//! `nonce` and `wrapped` (ciphertext‖tag) are standard base64; `created` is
//! RFC 3339 UTC. The file is created 0600; appends take an exclusive OS lock
//! and are fsynced before the data key encrypts anything, so no published
//! token can lack its record.

use std::collections::HashMap;
use std::fs::OpenOptions;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use fs4::fs_std::FileExt;
use serde::{Deserialize, Serialize};

use crate::crypto::aead::{self, DataKey};
use crate::crypto::keys::{Dek, DekId, KekId};
use crate::crypto::CryptoError;
use crate::keyring::Keyring;

/// One wrapped data key, as stored.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct DekRecord {
    /// 16 lowercase hex characters.
    pub dek_id: String,
    /// The KEK that wraps it.
    pub kek_id: String,
    /// Standard base64 of the 12-byte wrapping nonce.
    pub nonce: String,
    /// Standard base64 of ciphertext‖tag (48 bytes).
    pub wrapped: String,
    /// RFC 3339 UTC creation time.
    pub created: String,
}

/// Keystore errors.
#[derive(Debug, thiserror::Error)]
pub enum KeystoreError {
    /// I/O on the keystore file.
    #[error("keystore {path}: {source}")]
    Io {
        /// Keystore path.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// A line that is not a record.
    #[error("keystore {path} line {line}: not a data-key record ({message})")]
    Corrupt {
        /// Keystore path.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// Parser message.
        message: String,
    },
    /// No record for a token's dek_id.
    #[error("data key {dek_id} is not in keystore {path}; use the keystore that was current when the file was made")]
    Missing {
        /// Keystore path.
        path: PathBuf,
        /// The dek_id.
        dek_id: String,
    },
    /// The KEK that wraps a record is not in the keyring.
    #[error("data key {dek_id} is wrapped by KEK {kek_id}, which keyring {keyring} does not hold")]
    MissingKek {
        /// Keyring path.
        keyring: PathBuf,
        /// The dek_id.
        dek_id: String,
        /// The KEK id.
        kek_id: String,
    },
    /// Unwrapping failed.
    #[error("data key {dek_id}: cannot unwrap with KEK {kek_id}: {source}")]
    Unwrap {
        /// The dek_id.
        dek_id: String,
        /// The KEK id.
        kek_id: String,
        /// Cause.
        source: CryptoError,
    },
}

/// Makes a fresh DEK, wraps it under the keyring's active KEK, and returns
/// the ready key and its record (not yet stored).
pub fn new_data_key(keyring: &Keyring, created: &str) -> (DataKey, DekRecord) {
    let (kek_id, kek) = keyring.active();
    let dek = Dek::generate();
    let dek_id = DekId::generate();
    let nonce = aead::random_nonce();
    let wrapped = aead::wrap_dek(kek, &dek_id, &dek, &nonce);
    let b64 = base64::engine::general_purpose::STANDARD;
    let record = DekRecord {
        dek_id: dek_id.to_string(),
        kek_id: kek_id.to_string(),
        nonce: b64.encode(nonce),
        wrapped: b64.encode(wrapped),
        created: created.to_owned(),
    };
    (DataKey::new(dek_id, &dek), record)
}

/// Unwraps a record with the keyring.
///
/// # Errors
/// [`KeystoreError::MissingKek`], [`KeystoreError::Unwrap`].
pub fn unwrap_record(keyring: &Keyring, rec: &DekRecord) -> Result<DataKey, KeystoreError> {
    let unwrap_err = |source| KeystoreError::Unwrap { dek_id: rec.dek_id.clone(), kek_id: rec.kek_id.clone(), source };
    let dek_id: DekId = rec.dek_id.parse().map_err(unwrap_err)?;
    let kek_id: KekId = rec.kek_id.parse().map_err(unwrap_err)?;
    let kek = keyring.kek(&kek_id).ok_or_else(|| KeystoreError::MissingKek {
        keyring: keyring.path().to_owned(),
        dek_id: rec.dek_id.clone(),
        kek_id: rec.kek_id.clone(),
    })?;
    let b64 = base64::engine::general_purpose::STANDARD;
    let nonce =
        b64.decode(&rec.nonce).map_err(|_| unwrap_err(CryptoError::InvalidKey("nonce is not base64".into())))?;
    let wrapped =
        b64.decode(&rec.wrapped).map_err(|_| unwrap_err(CryptoError::InvalidKey("wrapped is not base64".into())))?;
    let dek = aead::unwrap_dek(kek, &dek_id, &nonce, &wrapped).map_err(unwrap_err)?;
    Ok(DataKey::new(dek_id, &dek))
}

/// Appends records to the keystore at `path` under an exclusive lock, then
/// fsyncs. Creates the file (0600) and its folder when missing.
///
/// # Errors
/// [`KeystoreError::Io`].
pub fn append(path: &Path, records: &[DekRecord]) -> Result<(), KeystoreError> {
    let io = |source| KeystoreError::Io { path: path.to_owned(), source };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let mut opts = OpenOptions::new();
    opts.append(true).create(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts.open(path).map_err(io)?;
    f.lock_exclusive().map_err(io)?;
    let mut buf = Vec::new();
    for r in records {
        serde_json::to_writer(&mut buf, r).map_err(|e| io(std::io::Error::other(e)))?;
        buf.push(b'\n');
    }
    let res = f.write_all(&buf).and_then(|_| f.sync_data());
    let _ = FileExt::unlock(&f);
    res.map_err(io)
}

/// Reads every record, keyed by dek_id (a later line for the same id wins,
/// which is how a rewrap supersedes a record).
///
/// # Errors
/// [`KeystoreError::Io`], [`KeystoreError::Corrupt`].
pub fn load(path: &Path) -> Result<HashMap<String, DekRecord>, KeystoreError> {
    let io = |source| KeystoreError::Io { path: path.to_owned(), source };
    let f = std::fs::File::open(path).map_err(io)?;
    let mut map = HashMap::new();
    for (i, line) in std::io::BufReader::new(f).lines().enumerate() {
        let line = line.map_err(io)?;
        if line.trim().is_empty() {
            continue;
        }
        let rec: DekRecord = serde_json::from_str(&line).map_err(|e| KeystoreError::Corrupt {
            path: path.to_owned(),
            line: i + 1,
            message: e.to_string(),
        })?;
        map.insert(rec.dek_id.clone(), rec);
    }
    Ok(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn append_load_unwrap() {
        let dir = tempfile::tempdir().unwrap();
        let ring = Keyring::generate(&dir.path().join("k.toml"));
        let (key, rec) = new_data_key(&ring, "2026-11-29T03:00:00Z");
        let ks = dir.path().join("state/keys.jsonl");
        append(&ks, std::slice::from_ref(&rec)).unwrap();
        let map = load(&ks).unwrap();
        let again = unwrap_record(&ring, &map[&rec.dek_id]).unwrap();
        let (mut s, mut tok) = (Vec::new(), Vec::new());
        key.encrypt_token_into(b"c", b"v", &mut s, &mut tok);
        let (_, payload) = aead::parse_token(&tok).unwrap();
        assert_eq!(again.decrypt_payload(b"c", &payload).unwrap(), b"v");
    }
}
