//! The keyring file: KEKs by id, the active KEK, and the pseudonym key.
//!
//! ```toml
//! format = "piigate-keyring-v1"
//! active_kek = "k1a2b3c4d"
//! pseudonym_key = "<standard base64 of 32 random bytes>"
//! [kek]
//! k1a2b3c4d = "<standard base64 of 32 random bytes>"
//! ```
//!
//! Created with mode 0600 and never logged. A keyring whose file name or
//! content says `DEMO` is a demonstration key: piigate warns whenever it
//! loads one.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::crypto::keys::{Kek, KekId, PseudonymKey};

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
    active_kek: String,
    pseudonym_key: String,
    kek: BTreeMap<String, String>,
}

/// A loaded keyring.
pub struct Keyring {
    path: PathBuf,
    active: KekId,
    keks: BTreeMap<KekId, Kek>,
    pseudonym_key: PseudonymKey,
    demo: bool,
    loose_permissions: Option<u32>,
}

impl Keyring {
    /// A new keyring with one fresh KEK and a fresh pseudonym key.
    pub fn generate(path: &Path) -> Self {
        let id = KekId::generate();
        let mut keks = BTreeMap::new();
        keks.insert(id.clone(), Kek::generate());
        Self {
            path: path.to_owned(),
            active: id,
            keks,
            pseudonym_key: PseudonymKey::generate(),
            demo: false,
            loose_permissions: None,
        }
    }

    /// Reads and checks the keyring at `path`.
    ///
    /// # Errors
    /// [`KeyringError::Read`] or [`KeyringError::Invalid`].
    pub fn load(path: &Path) -> Result<Self, KeyringError> {
        let mut text =
            std::fs::read_to_string(path).map_err(|source| KeyringError::Read { path: path.to_owned(), source })?;
        let result = Self::parse(path, &text);
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

    fn parse(path: &Path, text: &str) -> Result<Self, KeyringError> {
        let invalid = |message: String| KeyringError::Invalid { path: path.to_owned(), message };
        // The toml error text may quote the offending line, which could hold
        // key material: report only its position.
        let raw: RawKeyring = toml::from_str(text).map_err(|e| {
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
            keks.insert(kid, kek);
        }
        let active: KekId = raw.active_kek.parse().map_err(|e| invalid(format!("active_kek: {e}")))?;
        if !keks.contains_key(&active) {
            return Err(invalid(format!("active_kek {active} has no entry under [kek]")));
        }
        let pseudonym_key =
            PseudonymKey::from_base64(&raw.pseudonym_key).map_err(|e| invalid(format!("pseudonym_key: {e}")))?;
        let name_demo = path.file_name().is_some_and(|n| n.to_string_lossy().contains("DEMO"));
        Ok(Self {
            path: path.to_owned(),
            active,
            keks,
            pseudonym_key,
            demo: name_demo || text.contains("DEMO"),
            loose_permissions: None,
        })
    }

    /// Renders the keyring as TOML (key material included).
    fn to_toml(&self) -> String {
        let mut s = String::new();
        if self.demo {
            s.push_str("# DEMO KEYRING: public demonstration keys. Never use it for real data.\n");
        }
        s.push_str(&format!("format = \"{KEYRING_FORMAT}\"\n"));
        s.push_str(&format!("active_kek = \"{}\"\n", self.active));
        s.push_str(&format!("pseudonym_key = \"{}\"\n\n[kek]\n", self.pseudonym_key.to_base64()));
        for (id, k) in &self.keks {
            s.push_str(&format!("{id} = \"{}\"\n", k.to_base64()));
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

    /// Replaces the keyring file atomically (temp file 0600, fsync, rename).
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
        self.keks.insert(id.clone(), Kek::generate());
        self.active = id.clone();
        id
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
        self.keks.get(id)
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
    fn invalid_keyring_error_has_no_key_material() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("ring.toml");
        std::fs::write(&p, "format = \"piigate-keyring-v1\"\nactive_kek = \"k1\"\npseudonym_key = \"SECRETSECRET\"\n[kek]\nk1 = \"c2VjcmV0\"\n").unwrap();
        let err = Keyring::load(&p).err().unwrap().to_string();
        assert!(!err.contains("SECRETSECRET") && !err.contains("c2VjcmV0"), "{err}");
    }
}
