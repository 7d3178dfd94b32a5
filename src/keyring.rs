//! The keyring file: KEKs by id, the active KEK, the pseudonym key and the
//! deterministic-encryption key.
//!
//! ```toml
//! format = "piigate-keyring-v1"
//! active_kek = "k1a2b3c4d"
//! pseudonym_key = "<standard base64 of 32 random bytes>"
//! deterministic_key = "<standard base64 of 64 random bytes>"   # optional
//! [kek]
//! k1a2b3c4d = "<standard base64 of 32 random bytes>"
//! ```
//!
//! Created with mode 0600, replaced atomically, and never logged. A keyring
//! whose file name or content says `DEMO` is a demonstration key: piigate
//! warns whenever it loads one.
//!
//! The active KEK may instead come from outside the file (`[keys]
//! kek_command`, see [`crate::kek_command`]): it is then added under its
//! configured id, made active, and never written back to the file, whose
//! `active_kek` and `[kek]` table may be empty.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use zeroize::Zeroize;

use crate::crypto::keys::{DeterministicKey, Kek, KekId, PseudonymKey};

/// The `format` value of a version-1 keyring.
pub const KEYRING_FORMAT: &str = "piigate-keyring-v1";

/// Errors reading or writing a keyring. Never contain key bytes.
#[derive(Debug, thiserror::Error)]
pub enum KeyringError {
    /// The file could not be read.
    #[error("cannot read keyring {path}: {source} (create one with `piigate keygen --keyring {path}`)")]
    Read {
        /// Keyring path.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// The file exists and `keygen` refuses to overwrite it.
    #[error("keyring {0} already exists; piigate never overwrites a keyring (use `piigate keys rotate` to add a KEK)")]
    Exists(PathBuf),
    /// Writing failed.
    #[error("cannot write keyring {path}: {source}")]
    Write {
        /// Keyring path.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// The content is not a valid keyring.
    #[error("keyring {path} is invalid: {message}")]
    Invalid {
        /// Keyring path.
        path: PathBuf,
        /// What is wrong (never a key value).
        message: String,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKeyring {
    format: String,
    active_kek: Option<String>,
    pseudonym_key: String,
    deterministic_key: Option<String>,
    #[serde(default)]
    kek: BTreeMap<String, String>,
}

/// A loaded keyring.
pub struct Keyring {
    path: PathBuf,
    active: KekId,
    /// `active_kek` as the file has it (absent when the KEK is external).
    file_active: Option<KekId>,
    /// Boxed, so that the map's node splits move pointers, not key bytes.
    keks: BTreeMap<KekId, Box<Kek>>,
    /// KEKs that came from `kek_command` or `previous_kek_commands`: never
    /// written to the file.
    external: Vec<KekId>,
    pseudonym_key: PseudonymKey,
    deterministic_key: Option<DeterministicKey>,
    demo: bool,
    loose_permissions: Option<u32>,
}

/// Errors of [`Keyring::retire`]. Never contain key bytes.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RetireError {
    /// No KEK has this id.
    #[error("keyring {path} has no KEK {id} (it holds {held}); check the id with `piigate keys status`")]
    Unknown {
        /// Keyring path.
        path: String,
        /// The id asked for.
        id: String,
        /// The ids it holds.
        held: String,
    },
    /// The active KEK wraps new data keys and cannot go.
    #[error("KEK {0} is the active KEK: new data keys are wrapped under it. Run `piigate keys rotate` and `piigate keys rewrap` first, then retire it")]
    Active(String),
    /// The KEK comes from `kek_command`, not from the file.
    #[error("KEK {0} comes from [keys] kek_command or previous_kek_commands, not from the keyring file; once `keys status` shows it wraps no data key, remove it from the config")]
    External(String),
}

impl Keyring {
    /// A new keyring with one fresh KEK, a fresh pseudonym key and a fresh
    /// deterministic-encryption key.
    pub fn generate(path: &Path) -> Self {
        let id = KekId::generate();
        let mut keks = BTreeMap::new();
        keks.insert(id.clone(), Box::new(Kek::generate()));
        Self {
            path: path.to_owned(),
            active: id.clone(),
            file_active: Some(id),
            keks,
            external: Vec::new(),
            pseudonym_key: PseudonymKey::generate(),
            deterministic_key: Some(DeterministicKey::generate()),
            demo: false,
            loose_permissions: None,
        }
    }

    /// Reads and checks the keyring at `path`.
    ///
    /// # Errors
    /// [`KeyringError::Read`] or [`KeyringError::Invalid`].
    pub fn load(path: &Path) -> Result<Self, KeyringError> {
        Self::load_with(path, None)
    }

    /// Reads and checks the keyring at `path`, adding `external` (a KEK
    /// from `kek_command` and its id) as the active KEK. The file then
    /// needs no `active_kek`; if it holds a KEK under the same id, the two
    /// must be equal.
    ///
    /// # Errors
    /// [`KeyringError::Read`] or [`KeyringError::Invalid`].
    pub fn load_with(path: &Path, external: Option<(KekId, Kek)>) -> Result<Self, KeyringError> {
        let mut text =
            std::fs::read_to_string(path).map_err(|source| KeyringError::Read { path: path.to_owned(), source })?;
        let result = Self::parse(path, &text, external);
        zeroize::Zeroize::zeroize(&mut text);
        let mut ring = result?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            if let Ok(meta) = std::fs::metadata(path) {
                let mode = meta.permissions().mode() & 0o777;
                if mode & 0o077 != 0 {
                    ring.loose_permissions = Some(mode);
                }
            }
        }
        Ok(ring)
    }

    fn parse(path: &Path, text: &str, external: Option<(KekId, Kek)>) -> Result<Self, KeyringError> {
        let invalid = |message: String| KeyringError::Invalid { path: path.to_owned(), message };
        // The toml error text may quote the offending line, which could hold
        // key material: report only its position.
        let mut raw: RawKeyring = toml::from_str(text).map_err(|e| {
            let at = e.span().map(|s| {
                let line = text[..s.start.min(text.len())].matches('\n').count() + 1;
                format!(" at line {line}")
            });
            invalid(format!("not a piigate keyring TOML{}", at.unwrap_or_default()))
        })?;
        if raw.format != KEYRING_FORMAT {
            return Err(invalid(format!("format is {:?}, expected {KEYRING_FORMAT:?}", raw.format)));
        }
        let mut keks = BTreeMap::new();
        for (id, b64) in &raw.kek {
            let kid: KekId = id.parse().map_err(|e| invalid(format!("KEK id {id:?}: {e}")))?;
            let kek = Kek::from_base64(b64).map_err(|e| invalid(format!("KEK {id}: {e}")))?;
            keks.insert(kid, Box::new(kek));
        }
        let file_active: Option<KekId> = match raw.active_kek.as_deref() {
            None => None,
            Some(a) => {
                let a: KekId = a.parse().map_err(|e| invalid(format!("active_kek: {e}")))?;
                if !keks.contains_key(&a) {
                    return Err(invalid(format!("active_kek {a} has no entry under [kek]")));
                }
                Some(a)
            }
        };
        let (active, external) = match (external, &file_active) {
            (Some((id, kek)), _) => {
                if let Some(mine) = keks.get(&id) {
                    if **mine != kek {
                        return Err(invalid(format!(
                            "[kek] holds a KEK {id} that differs from the one kek_command returns under the same kek_id; give one of them another id"
                        )));
                    }
                }
                keks.insert(id.clone(), Box::new(kek));
                (id.clone(), vec![id])
            }
            (None, Some(a)) => (a.clone(), Vec::new()),
            (None, None) => {
                return Err(invalid(
                    "no active_kek: set active_kek to an entry of [kek], or configure [keys] kek_command and kek_id"
                        .into(),
                ))
            }
        };
        let pseudonym_key =
            PseudonymKey::from_base64(&raw.pseudonym_key).map_err(|e| invalid(format!("pseudonym_key: {e}")))?;
        let deterministic_key = match raw.deterministic_key.as_deref() {
            None => None,
            Some(k) => Some(DeterministicKey::from_base64(k).map_err(|e| invalid(format!("deterministic_key: {e}")))?),
        };
        // The parsed copies of the key material are no longer needed.
        raw.pseudonym_key.zeroize();
        if let Some(d) = raw.deterministic_key.as_mut() {
            d.zeroize();
        }
        for v in raw.kek.values_mut() {
            v.zeroize();
        }
        let name_demo = path.file_name().is_some_and(|n| n.to_string_lossy().contains("DEMO"));
        Ok(Self {
            path: path.to_owned(),
            active,
            file_active,
            keks,
            external,
            pseudonym_key,
            deterministic_key,
            demo: name_demo || text.contains("DEMO"),
            loose_permissions: None,
        })
    }

    /// Renders the keyring as TOML (key material included, the external
    /// KEK left out).
    fn to_toml(&self) -> String {
        let mut s = String::new();
        if self.demo {
            s.push_str("# DEMO KEYRING: public demonstration keys. Never use it for real data.\n");
        }
        s.push_str(&format!("format = \"{KEYRING_FORMAT}\"\n"));
        if let Some(a) = &self.file_active {
            s.push_str(&format!("active_kek = \"{a}\"\n"));
        }
        s.push_str(&format!("pseudonym_key = \"{}\"\n", self.pseudonym_key.to_base64()));
        if let Some(d) = &self.deterministic_key {
            s.push_str(&format!("deterministic_key = \"{}\"\n", d.to_base64()));
        }
        s.push_str("\n[kek]\n");
        for (id, k) in &self.keks {
            if !self.external.contains(id) {
                s.push_str(&format!("{id} = \"{}\"\n", k.to_base64()));
            }
        }
        s
    }

    /// Writes a new keyring file with mode 0600; refuses to overwrite.
    ///
    /// # Errors
    /// [`KeyringError::Exists`] or [`KeyringError::Write`].
    pub fn create_new(&self) -> Result<(), KeyringError> {
        let path = &self.path;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| KeyringError::Write { path: path.clone(), source })?;
        }
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
        let mut f = opts.open(path).map_err(|source| {
            if source.kind() == std::io::ErrorKind::AlreadyExists {
                KeyringError::Exists(path.clone())
            } else {
                KeyringError::Write { path: path.clone(), source }
            }
        })?;
        let mut text = self.to_toml();
        let r = f.write_all(text.as_bytes()).and_then(|_| f.sync_all());
        zeroize::Zeroize::zeroize(&mut text);
        r.map_err(|source| KeyringError::Write { path: path.clone(), source })
    }

    /// Replaces the keyring file atomically (temp file 0600 in the same
    /// folder, fsync, rename, fsync of the folder). A KEK from
    /// `kek_command` is never written.
    ///
    /// # Errors
    /// [`KeyringError::Write`].
    pub fn save(&self) -> Result<(), KeyringError> {
        let path = &self.path;
        let werr = |source| KeyringError::Write { path: path.clone(), source };
        let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let mut tmp = tempfile::Builder::new()
            .prefix(".keyring.")
            .suffix(".partial")
            .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .tempfile_in(dir)
            .map_err(werr)?;
        let mut text = self.to_toml();
        let r = tmp.write_all(text.as_bytes()).and_then(|_| tmp.as_file().sync_all());
        zeroize::Zeroize::zeroize(&mut text);
        r.map_err(werr)?;
        tmp.persist(path).map_err(|e| werr(e.error))?;
        std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(werr)?;
        Ok(())
    }

    /// Adds a fresh KEK and makes it active. Returns its id.
    pub fn rotate(&mut self) -> KekId {
        let id = loop {
            let id = KekId::generate();
            if !self.keks.contains_key(&id) {
                break id;
            }
        };
        self.keks.insert(id.clone(), Box::new(Kek::generate()));
        self.active = id.clone();
        self.file_active = Some(id.clone());
        id
    }

    /// Removes KEK `id` (in memory; [`Keyring::save`] writes the file). The
    /// caller checks first that no stored data key is wrapped under it.
    ///
    /// # Errors
    /// [`RetireError`] for an unknown, the active, or an external KEK.
    pub fn retire(&mut self, id: &KekId) -> Result<(), RetireError> {
        if !self.keks.contains_key(id) {
            let held = self.keks.keys().map(KekId::to_string).collect::<Vec<_>>().join(", ");
            return Err(RetireError::Unknown { path: self.path.display().to_string(), id: id.to_string(), held });
        }
        if self.external.contains(id) {
            return Err(RetireError::External(id.to_string()));
        }
        if &self.active == id {
            return Err(RetireError::Active(id.to_string()));
        }
        self.keks.remove(id);
        if self.file_active.as_ref() == Some(id) {
            self.file_active = None;
        }
        Ok(())
    }

    /// Adds a fresh deterministic-encryption key (64 bytes, AES-SIV).
    /// Returns `false`, changing nothing, when the keyring already has one:
    /// it is never replaced, since that would change every deterministic
    /// token.
    pub fn add_deterministic_key(&mut self) -> bool {
        if self.deterministic_key.is_some() {
            return false;
        }
        self.deterministic_key = Some(DeterministicKey::generate());
        true
    }

    /// Adds an earlier KEK from outside the file (`previous_kek_commands`):
    /// it unwraps data keys but wraps none and is never written to the
    /// file.
    ///
    /// # Errors
    /// [`KeyringError::Invalid`] when the file holds a different KEK under
    /// the same id.
    pub fn add_external_kek(&mut self, id: KekId, kek: Kek) -> Result<(), KeyringError> {
        if let Some(mine) = self.keks.get(&id) {
            if **mine != kek {
                return Err(KeyringError::Invalid {
                    path: self.path.clone(),
                    message: format!(
                        "[kek] holds a KEK {id} that differs from the one previous_kek_commands returns under the same id; give one of them another id"
                    ),
                });
            }
        }
        self.keks.insert(id.clone(), Box::new(kek));
        if !self.external.contains(&id) {
            self.external.push(id);
        }
        Ok(())
    }

    /// Whether KEK `id` came from a command rather than the keyring file.
    pub fn is_external(&self, id: &KekId) -> bool {
        self.external.contains(id)
    }
    /// The deterministic-encryption key, if the keyring has one.
    pub fn deterministic_key(&self) -> Option<&DeterministicKey> {
        self.deterministic_key.as_ref()
    }

    /// The keyring's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
    /// The active KEK and its id.
    pub fn active(&self) -> (&KekId, &Kek) {
        (&self.active, &self.keks[&self.active])
    }
    /// A KEK by id.
    pub fn kek(&self, id: &KekId) -> Option<&Kek> {
        self.keks.get(id).map(|k| &**k)
    }
    /// All KEK ids.
    pub fn kek_ids(&self) -> impl Iterator<Item = &KekId> {
        self.keks.keys()
    }
    /// The pseudonym key.
    pub fn pseudonym_key(&self) -> &PseudonymKey {
        &self.pseudonym_key
    }
    /// Whether this is a demonstration keyring (name or content says DEMO).
    pub fn is_demo(&self) -> bool {
        self.demo
    }
    /// Mark as demonstration keyring (written with a DEMO comment).
    pub fn set_demo(&mut self, demo: bool) {
        self.demo = demo;
    }
    /// The file mode when group or others can access the file.
    pub fn loose_permissions(&self) -> Option<u32> {
        self.loose_permissions
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_load_rotate() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("ring.toml");
        let ring = Keyring::generate(&p);
        ring.create_new().unwrap();
        assert!(matches!(Keyring::generate(&p).create_new(), Err(KeyringError::Exists(_))));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o600);
        }
        let mut loaded = Keyring::load(&p).unwrap();
        assert!(loaded.pseudonym_key() == ring.pseudonym_key());
        assert!(!loaded.is_demo());
        let old = loaded.active().0.clone();
        let new = loaded.rotate();
        loaded.save().unwrap();
        let again = Keyring::load(&p).unwrap();
        assert_eq!(again.active().0, &new);
        assert!(again.kek(&old).is_some());
    }

    #[test]
    fn retire_refuses_active_and_unknown() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("ring.toml");
        let mut ring = Keyring::generate(&p);
        let old = ring.active().0.clone();
        assert!(matches!(ring.retire(&old), Err(RetireError::Active(_))));
        ring.rotate();
        assert!(matches!(ring.retire(&"nope".parse().unwrap()), Err(RetireError::Unknown { .. })));
        ring.retire(&old).unwrap();
        ring.create_new().unwrap();
        let again = Keyring::load(&p).unwrap();
        assert!(again.kek(&old).is_none());
        assert!(again.deterministic_key().is_some());
    }

    #[test]
    fn external_kek_is_active_and_never_saved() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("ring.toml");
        std::fs::write(
            &p,
            format!("format = \"piigate-keyring-v1\"\npseudonym_key = \"{}\"\n", PseudonymKey::generate().to_base64()),
        )
        .unwrap();
        assert!(Keyring::load(&p).is_err(), "no active KEK at all");
        let kms = Kek::generate();
        let id: KekId = "kms-1".parse().unwrap();
        let mut ring = Keyring::load_with(&p, Some((id.clone(), kms.clone()))).unwrap();
        assert_eq!(ring.active().0, &id);
        assert!(ring.active().1 == &kms);
        assert!(matches!(ring.retire(&id), Err(RetireError::External(_))));
        assert!(ring.add_deterministic_key());
        assert!(!ring.add_deterministic_key(), "never replaced");
        ring.save().unwrap();
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(!text.contains(&kms.to_base64()) && !text.contains("kms-1"), "{text}");
        assert!(text.contains("deterministic_key"));
    }

    #[test]
    fn invalid_keyring_error_has_no_key_material() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("ring.toml");
        std::fs::write(&p, "format = \"piigate-keyring-v1\"\nactive_kek = \"k1\"\npseudonym_key = \"SECRETSECRET\"\n[kek]\nk1 = \"c2VjcmV0\"\n").unwrap();
        let err = Keyring::load(&p).err().unwrap().to_string();
        assert!(!err.contains("SECRETSECRET") && !err.contains("c2VjcmV0"), "{err}");
    }
}
