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

use std::collections::{BTreeMap, HashMap};
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
    #[error("data key {dek_id} is wrapped by KEK {kek_id}, which keyring {keyring} does not hold; restore that KEK into the keyring (or use the keyring it was made with)")]
    MissingKek {
        /// Keyring path.
        keyring: PathBuf,
        /// The dek_id.
        dek_id: String,
        /// The KEK id.
        kek_id: String,
    },
    /// A new record names a KEK that `keys retire` removed.
    #[error("a new data key is wrapped by KEK {kek_id}, which was retired (see {path}.retired) after this piigate loaded its keyring; restart it so that it loads the current keyring")]
    RetiredKek {
        /// Keystore path.
        path: PathBuf,
        /// The KEK id.
        kek_id: String,
    },
    /// Two records for one dek_id unwrap to different keys.
    #[error("keystore {path} line {line}: data key {dek_id} is recorded twice with different keys; restore the keystore from a backup before re-wrapping")]
    Conflict {
        /// Keystore path.
        path: PathBuf,
        /// 1-based line of the second record.
        line: usize,
        /// The dek_id.
        dek_id: String,
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
    let (dek_id, dek) = unwrap_dek_of(keyring, rec)?;
    Ok(DataKey::new(dek_id, &dek))
}

fn unwrap_dek_of(keyring: &Keyring, rec: &DekRecord) -> Result<(DekId, Dek), KeystoreError> {
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
    Ok((dek_id, dek))
}

/// Opens the keystore at `path` (creating it 0600 with `create`) and takes
/// the exclusive OS lock on it.
///
/// [`rewrap`] replaces the file by renaming a new one over it while holding
/// the lock on the old one; a writer that was waiting for that lock would
/// then hold the lock of a file nobody reads. So after locking, the open
/// file must still be the one at `path` (same device and inode); if not, it
/// is reopened.
fn open_locked(path: &Path, create: bool) -> std::io::Result<std::fs::File> {
    loop {
        let mut opts = OpenOptions::new();
        opts.read(true);
        if create {
            opts.append(true).create(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
        }
        let f = opts.open(path)?;
        f.lock_exclusive()?;
        if same_file(&f, path)? {
            return Ok(f);
        }
        let _ = FileExt::unlock(&f);
    }
}

#[cfg(unix)]
fn same_file(f: &std::fs::File, path: &Path) -> std::io::Result<bool> {
    use std::os::unix::fs::MetadataExt;
    let open = f.metadata()?;
    match std::fs::metadata(path) {
        Ok(now) => Ok(open.dev() == now.dev() && open.ino() == now.ino()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

#[cfg(not(unix))]
fn same_file(_: &std::fs::File, _: &Path) -> std::io::Result<bool> {
    Ok(true)
}

/// The keystore's exclusive lock, released on drop. While it is held no
/// record can be appended and no rewrap can run.
pub struct KeystoreLock(std::fs::File);

impl Drop for KeystoreLock {
    fn drop(&mut self) {
        let _ = FileExt::unlock(&self.0);
    }
}

/// Takes the keystore's exclusive lock (the one [`append`] and [`rewrap`]
/// take), creating an empty keystore (0600) when there is none.
///
/// # Errors
/// [`KeystoreError::Io`].
pub fn lock(path: &Path) -> Result<KeystoreLock, KeystoreError> {
    let io = |source| KeystoreError::Io { path: path.to_owned(), source };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    open_locked(path, true).map(KeystoreLock).map_err(io)
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
    let mut f = open_locked(path, true).map_err(io)?;
    let res = (|| {
        // A process that loaded its keyring before `keys retire` may still
        // wrap under the retired KEK: its record would name a KEK that no
        // longer exists. Checked under the lock that retire holds.
        let retired = retired_keks(path)?;
        if let Some(r) = records.iter().find(|r| retired.contains(&r.kek_id)) {
            return Err(KeystoreError::RetiredKek { path: path.to_owned(), kek_id: r.kek_id.clone() });
        }
        let mut buf = Vec::new();
        for r in records {
            serde_json::to_writer(&mut buf, r).map_err(|e| io(std::io::Error::other(e)))?;
            buf.push(b'\n');
        }
        f.write_all(&buf).and_then(|_| f.sync_data()).map_err(io)
    })();
    let _ = FileExt::unlock(&f);
    res
}

/// The file beside the keystore that lists retired KEK ids, one a line
/// (`<keystore name>.retired`).
pub fn retired_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".retired");
    path.with_file_name(name)
}

/// KEK ids that `keys retire` removed; [`append`] refuses records under them.
///
/// # Errors
/// [`KeystoreError::Io`].
pub fn retired_keks(path: &Path) -> Result<Vec<String>, KeystoreError> {
    let p = retired_path(path);
    match std::fs::read_to_string(&p) {
        Ok(text) => Ok(text.lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_owned).collect()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(source) => Err(KeystoreError::Io { path: p, source }),
    }
}

/// Records that `kek_id` was retired (appended to [`retired_path`], 0600,
/// fsynced). Call it while holding [`lock`].
///
/// # Errors
/// [`KeystoreError::Io`].
pub fn mark_retired(path: &Path, kek_id: &str) -> Result<(), KeystoreError> {
    let p = retired_path(path);
    let io = |source| KeystoreError::Io { path: p.clone(), source };
    let mut opts = OpenOptions::new();
    opts.append(true).create(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts.open(&p).map_err(io)?;
    f.write_all(format!("{kek_id}\n").as_bytes()).and_then(|_| f.sync_data()).map_err(io)
}

/// What [`rewrap`] did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RewrapSummary {
    /// Records in the keystore (lines, duplicates of a dek_id included).
    pub records: usize,
    /// Records wrapped again under the active KEK.
    pub rewrapped: usize,
    /// Records already under the active KEK, left byte for byte.
    pub unchanged: usize,
    /// Rewrapped records per KEK that wrapped them before.
    pub from: BTreeMap<String, usize>,
}

/// Re-wraps every record of the keystore at `path` under the keyring's
/// active KEK (fresh 12-byte nonce, same `dek_id` and `created`), as
/// `docs/FORMAT.md` ("Keystore") describes.
///
/// All-or-nothing: every record is unwrapped first (so a missing KEK or a
/// damaged record changes nothing); the new keystore is then written to a
/// temporary file in the same folder (mode 0600), fsynced, renamed over the
/// old one, and the folder fsynced. The exclusive lock that [`append`] takes
/// is held throughout, so a concurrent run cannot add a record in between
/// and lose it. A crash at any point leaves either the old or the new file.
/// A missing keystore has nothing to re-wrap.
///
/// # Errors
/// [`KeystoreError::Io`], [`KeystoreError::Corrupt`],
/// [`KeystoreError::MissingKek`] (naming the dek_id and kek_id),
/// [`KeystoreError::Unwrap`], [`KeystoreError::Conflict`].
pub fn rewrap(path: &Path, keyring: &Keyring) -> Result<RewrapSummary, KeystoreError> {
    let io = |source| KeystoreError::Io { path: path.to_owned(), source };
    let f = match open_locked(path, false) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(RewrapSummary::default()),
        Err(e) => return Err(io(e)),
    };
    let result = (|| {
        let (active_id, active) = keyring.active();
        let active_text = active_id.to_string();
        let b64 = base64::engine::general_purpose::STANDARD;
        let mut summary = RewrapSummary::default();
        let mut out = Vec::new();
        // Boxed, so that growing the map moves pointers, not key bytes.
        let mut seen: HashMap<String, Box<Dek>> = HashMap::new();
        for (i, line) in std::io::BufReader::new(&f).lines().enumerate() {
            let line = line.map_err(io)?;
            if line.trim().is_empty() {
                continue;
            }
            let rec = parse_line(path, i + 1, &line)?;
            summary.records += 1;
            let (dek_id, dek) = unwrap_dek_of(keyring, &rec)?;
            if let Some(earlier) = seen.get(&rec.dek_id) {
                if **earlier != dek {
                    return Err(KeystoreError::Conflict { path: path.to_owned(), line: i + 1, dek_id: rec.dek_id });
                }
            } else {
                seen.insert(rec.dek_id.clone(), Box::new(dek.clone()));
            }
            if rec.kek_id == active_text {
                summary.unchanged += 1;
                out.extend_from_slice(line.as_bytes());
            } else {
                let nonce = aead::random_nonce();
                let wrapped = aead::wrap_dek(active, &dek_id, &dek, &nonce);
                *summary.from.entry(rec.kek_id.clone()).or_default() += 1;
                summary.rewrapped += 1;
                let new = DekRecord {
                    kek_id: active_text.clone(),
                    nonce: b64.encode(nonce),
                    wrapped: b64.encode(wrapped),
                    ..rec
                };
                serde_json::to_writer(&mut out, &new).map_err(|e| io(std::io::Error::other(e)))?;
            }
            out.push(b'\n');
        }
        if summary.rewrapped == 0 {
            return Ok(summary);
        }
        let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let prefix = format!(".{}.", path.file_name().map(|n| n.to_string_lossy()).unwrap_or_default());
        // Only a rewrap, holding this lock, writes such files: any left are
        // from one that was killed before its rename, and hold nothing new.
        if let Ok(entries) = std::fs::read_dir(dir) {
            for e in entries.flatten() {
                let name = e.file_name();
                let name = name.to_string_lossy();
                if name.starts_with(&prefix) && name.ends_with(".partial") {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
        let mut tmp = tempfile::Builder::new()
            .prefix(&prefix)
            .suffix(".partial")
            .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .tempfile_in(dir)
            .map_err(io)?;
        tmp.write_all(&out).and_then(|_| tmp.as_file().sync_all()).map_err(io)?;
        tmp.persist(path).map_err(|e| io(e.error))?;
        std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(io)?;
        Ok(summary)
    })();
    let _ = FileExt::unlock(&f);
    result
}

/// Every record of the keystore, one per line in file order (a dek_id that
/// was recorded twice appears twice). A missing keystore has none.
///
/// # Errors
/// [`KeystoreError::Io`], [`KeystoreError::Corrupt`].
pub fn records(path: &Path) -> Result<Vec<DekRecord>, KeystoreError> {
    let io = |source| KeystoreError::Io { path: path.to_owned(), source };
    let f = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io(e)),
    };
    let mut out = Vec::new();
    for (i, line) in std::io::BufReader::new(f).lines().enumerate() {
        let line = line.map_err(io)?;
        if !line.trim().is_empty() {
            out.push(parse_line(path, i + 1, &line)?);
        }
    }
    Ok(out)
}

fn parse_line(path: &Path, line: usize, text: &str) -> Result<DekRecord, KeystoreError> {
    serde_json::from_str(text).map_err(|e| KeystoreError::Corrupt {
        path: path.to_owned(),
        line,
        message: e.to_string(),
    })
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
        let rec = parse_line(path, i + 1, &line)?;
        map.insert(rec.dek_id.clone(), rec);
    }
    Ok(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rewrap_moves_records_to_the_active_kek_or_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut ring = Keyring::generate(&dir.path().join("k.toml"));
        let old = ring.active().0.to_string();
        let ks = dir.path().join("keys.jsonl");
        let (_, a) = new_data_key(&ring, "2026-11-29T03:00:00Z");
        let (_, b) = new_data_key(&ring, "2026-11-29T04:00:00Z");
        append(&ks, &[a.clone(), b.clone()]).unwrap();
        assert_eq!(rewrap(&ks, &ring).unwrap().rewrapped, 0, "already under the active KEK");
        let new = ring.rotate().to_string();
        let (_, c) = new_data_key(&ring, "2026-11-29T05:00:00Z");
        append(&ks, std::slice::from_ref(&c)).unwrap();

        let s = rewrap(&ks, &ring).unwrap();
        assert_eq!((s.records, s.rewrapped, s.unchanged), (3, 2, 1));
        assert_eq!(s.from.get(&old), Some(&2));
        let recs = records(&ks).unwrap();
        assert!(recs.iter().all(|r| r.kek_id == new));
        assert_eq!(recs[2], c);
        for (before, after) in [&a, &b].into_iter().zip(&recs) {
            assert_eq!((&before.dek_id, &before.created), (&after.dek_id, &after.created));
            let k1 = unwrap_record(&ring, after).unwrap();
            assert_eq!(k1.id().as_str(), before.dek_id);
        }

        // A record whose KEK the keyring lacks: an error naming both ids, and no change.
        let mut orphan = c.clone();
        orphan.dek_id = "00000000000000aa".into();
        orphan.kek_id = "kmissing".into();
        append(&ks, std::slice::from_ref(&orphan)).unwrap();
        let text = std::fs::read_to_string(&ks).unwrap();
        ring.rotate();
        let err = rewrap(&ks, &ring).err().unwrap().to_string();
        assert!(err.contains("00000000000000aa") && err.contains("kmissing"), "{err}");
        assert_eq!(std::fs::read_to_string(&ks).unwrap(), text);

        // A missing keystore has nothing to re-wrap.
        assert_eq!(rewrap(&dir.path().join("none.jsonl"), &ring).unwrap(), RewrapSummary::default());
    }

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
