//! The per-person key vault (`[keys] dek_scope = "identity"`): one data key
//! per pseudonymous identity, in an SQLite database under the state dir.
//!
//! ```sql
//! CREATE TABLE person_keys (         -- what processing reads: one row per person
//!   slot    INTEGER PRIMARY KEY,     -- where the person's row sits (see below)
//!   tag     INTEGER NOT NULL,        -- bytes 8..16 of SHA-256(pseudonym), big-endian, signed
//!   dek_id  TEXT NOT NULL,           -- 16 lowercase hex: names the key in pg1 tokens
//!   kek_id  TEXT NOT NULL,           -- the KEK that wraps the key
//!   nonce   BLOB NOT NULL,           -- 12-byte wrapping nonce
//!   wrapped BLOB NOT NULL,           -- AES-256-GCM(KEK, DEK, ad = "piigate:dek:v1:" || dek_id): 48 bytes
//!   person  INTEGER NOT NULL         -- the person's row in person_identities
//! );
//! CREATE UNIQUE INDEX person_keys_dek_id ON person_keys (dek_id);
//! CREATE TABLE person_keys_staged (  -- new persons, until merged: the same columns
//!   slot INTEGER PRIMARY KEY, tag INTEGER NOT NULL, dek_id TEXT NOT NULL, kek_id TEXT NOT NULL,
//!   nonce BLOB NOT NULL, wrapped BLOB NOT NULL, person INTEGER NOT NULL
//! );
//! CREATE UNIQUE INDEX person_keys_staged_dek_id ON person_keys_staged (dek_id);
//! CREATE TABLE person_identities (   -- what reveal reads; rows are appended
//!   id        INTEGER PRIMARY KEY,
//!   pseudonym TEXT NOT NULL,         -- the identity's pseudonym (prefix included)
//!   identity  BLOB NOT NULL,         -- nonce(12) || AES-256-GCM(DEK, identity, ad = "piigate:identity:v1:" || pseudonym)
//!   created   TEXT NOT NULL          -- RFC 3339 UTC
//! );
//! CREATE TABLE forgotten (
//!   pseudonym TEXT PRIMARY KEY,      -- never the identity
//!   forgotten TEXT NOT NULL          -- RFC 3339 UTC
//! ) WITHOUT ROWID;
//! ```
//!
//! A person's **slot window** is the 16 integers from `base` = the first 8
//! bytes of SHA-256(pseudonym), big-endian, shifted right by 4 bits (so 60
//! bits), to `base + 15`; their key row sits at the lowest slot of the
//! window that was free (in both key tables) when it was made, and `tag`
//! tells the persons of one window apart. Look-ups thus walk a B-tree keyed by 8-byte integers
//! that holds only the 100-odd bytes per person that processing needs: at
//! 10 million persons 0.9 GB packed (1.4 GB after a million random
//! inserts), against 2.8 GB for a table keyed by the pseudonym text with
//! the identities in it, so each look-up touches fewer cold pages
//! (docs/PERFORMANCE.md). Identities, which only `reveal` reads, are
//! appended to their own table.
//!
//! **Staged keys.** A new person's row goes to `person_keys_staged`, a
//! small table whose pages stay in the writer's cache, instead of straight
//! into `person_keys`: there, each new person, at a random slot, dirtied a
//! leaf of a B-tree of millions that every commit wrote to the log again
//! (about 65 µs per new person at 10 million). Look-ups read `person_keys`
//! first and the staged rows only for persons it lacks. Once enough rows
//! are staged ([`Vault::merge_due`]), [`Vault::merge_staged`] moves them
//! into `person_keys` in slot order, between files, so that each leaf is
//! written once for many persons.
//!
//! The wrapping is exactly that of keystore records (`docs/FORMAT.md`), so
//! `keys rewrap`, `status` and `retire` cover vault keys the same way.
//! `forget` deletes the person's row with `secure_delete` on and then
//! checkpoints and truncates the write-ahead log, so the wrapped key is
//! overwritten in the database file and gone from the log.
//!
//! Connections: one [`Vault`] writes through one connection behind a mutex
//! (new persons, `forget`, `rewrap`), and looks persons up through a pool of
//! read-only connections, one per worker thread that asks at the same time,
//! which the write-ahead log lets read in parallel with each other and with
//! the writer. A reader does not see the writer's open transaction, so a
//! person a reader misses is looked up again inside the write transaction
//! before a key is made: one person never gets two keys. Other processes
//! wait for SQLite's lock (up to [`LOCK_WAIT_SECONDS`]).
//!
//! Durability: new persons are inserted in a write transaction that spans up
//! to [`CHUNKS_PER_COMMIT`] chunks, and the writer runs with `PRAGMA
//! synchronous = FULL`, so every commit fsyncs the write-ahead log before it
//! returns. [`Vault::sync`] commits the open transaction and is called
//! before an output is published: a person key is durable in the vault
//! before any published output holds a token under it.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, OptionalExtension, TransactionBehavior};

use crate::crypto::aead::{self, DataKey};
use crate::crypto::keys::{Dek, DekId, KekId};
use crate::crypto::CryptoError;
use crate::keyring::Keyring;

/// Domain-separation label of the associated data of a stored identity,
/// followed by the pseudonym.
pub const IDENTITY_LABEL: &str = "piigate:identity:v1:";
/// `PRAGMA user_version` of the vault schema this piigate writes.
pub const VAULT_VERSION: i64 = 3;
/// Slots in a person's window (see the module documentation).
pub const SLOT_WINDOW: i64 = 16;
/// Chunks whose new persons share one write transaction (1,024 chunks of
/// 1,000 rows: a million rows): each new person lands at a random slot of
/// the staged keys' table, so every commit writes most of its pages to the
/// log again. 1,024 instead of 64 took 1M new persons into a 10M vault from
/// 22–24 s to 16–18 s; the cost is that the vault's write lock is held
/// longer, which other processes wait for ([`LOCK_WAIT_SECONDS`]).
pub const CHUNKS_PER_COMMIT: usize = 1024;
/// Staged person keys that make a merge due at the least (see
/// [`Vault::merge_due`]).
pub const MERGE_MIN_STAGED: i64 = 65_536;
/// A merge is due once the staged keys reach this fraction (1/n) of all
/// persons made so far, or [`MERGE_MIN_STAGED`], whichever is more.
pub const MERGE_FRACTION: i64 = 8;
/// How long a vault connection waits for a lock another connection holds,
/// in seconds, before its statement fails with "database is locked": long
/// enough for a merge of staged keys ([`Vault::merge_staged`]) into a vault
/// of tens of millions.
pub const LOCK_WAIT_SECONDS: u64 = 300;
/// How often a waiting vault connection tries the lock again, in ms.
pub const LOCK_POLL_MS: u64 = 50;
/// Unwrapped person keys kept in memory per vault. Each entry is the DEK
/// (in an allocation of its own, zeroized when its last holder drops it)
/// and its id: about 130 bytes per entry with the table's share, about
/// 2 MB in all. Not the expanded key schedule (about 1 KB each): 16 MB of
/// schedules, live for 16,384 look-ups, made every key expansion and
/// zeroization miss the CPU's caches, which cost more than the cache saved
/// when few persons recur (docs/PERFORMANCE.md, "The key cache"). The
/// transform expands a person's DEK once per run of their rows (well
/// under a microsecond, against a few for a look-up).
const CACHE_KEYS: usize = 16_384;
/// The writer's page cache, in KiB (`PRAGMA cache_size`; a cap, filled as
/// pages are changed, and kept until the connection closes): it holds the
/// pages that new persons change (the staged keys' table and index, the
/// end of the identities' table), so that a write transaction of
/// [`CHUNKS_PER_COMMIT`] chunks does not spill dirty pages to the log
/// before its commit while the staged keys stay under about 1 GB (8M
/// staged keys). A merge into a vault of millions changes more pages than
/// that and spills. The writer reads the rest, mostly `person_keys` where
/// it looks a new person up again, through the memory map, like the
/// readers.
const WRITER_CACHE_KIB: i64 = 1 << 20;
/// A reader's page cache, in KiB: readers read through the memory map, so
/// this holds only pages of the write-ahead log.
const READER_CACHE_KIB: i64 = 65_536;
/// How much of the vault file a connection maps into memory (`PRAGMA
/// mmap_size`): page reads then cost no copy and no system call.
const READER_MMAP_BYTES: i64 = 1 << 40;

/// Vault errors. They name the vault and the pseudonym or dek_id, never
/// an identity.
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    /// SQLite failed.
    #[error("key vault {path}: {message}")]
    Sql {
        /// Vault path.
        path: PathBuf,
        /// SQLite's message.
        message: String,
    },
    /// The vault does not exist.
    #[error("key vault {0} does not exist: no per-person key was ever made with this config (is [keys] vault or [state] dir right?)")]
    Missing(PathBuf),
    /// A person key's KEK is not in the keyring.
    #[error("person key {dek_id} is wrapped by KEK {kek_id}, which keyring {keyring} does not hold; restore that KEK into the keyring (or use the keyring it was made with)")]
    MissingKek {
        /// Keyring path.
        keyring: PathBuf,
        /// The dek_id.
        dek_id: String,
        /// The KEK id.
        kek_id: String,
    },
    /// A new person key would be wrapped under a retired KEK.
    #[error("a new person key would be wrapped by KEK {kek_id}, which was retired after this piigate loaded its keyring; restart it so that it loads the current keyring")]
    RetiredKek {
        /// The KEK id.
        kek_id: String,
    },
    /// SQLite rolled back the write transaction that held new person keys
    /// (after an error such as a full disk, which fails the file it struck),
    /// so keys that a file since [`Vault::mark`] may have used are gone.
    #[error("key vault {0}: the write transaction holding new person keys was rolled back after an earlier error, so keys this file may have used are gone; its output is not published, and it is processed again by the next run")]
    KeysLost(PathBuf),
    /// Unwrapping or decrypting failed.
    #[error("person key {dek_id}: {source}")]
    Crypto {
        /// The dek_id.
        dek_id: String,
        /// Cause.
        source: CryptoError,
    },
}

/// Where a person's key is kept: the start of their slot window and their
/// tag (see the module documentation), both from SHA-256 of the pseudonym.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Slot {
    /// First slot of the window: bytes 0..8 of the hash, big-endian, >> 4
    /// (0 ..= 2^60 - 1).
    pub base: i64,
    /// Bytes 8..16 of the hash, big-endian, as a signed 64-bit integer.
    pub tag: i64,
}

impl Slot {
    /// The slot window and tag of `pseudonym` (its UTF-8 bytes, prefix
    /// included).
    pub fn of(pseudonym: &str) -> Self {
        use sha2::Digest;
        let h = sha2::Sha256::digest(pseudonym.as_bytes());
        let word = |i: usize| u64::from_be_bytes(h[i..i + 8].try_into().expect("8 bytes"));
        Self { base: (word(0) >> 4) as i64, tag: word(8) as i64 }
    }
}

/// One stored person key, as in the `person_keys` table.
#[derive(Clone)]
pub struct PersonRecord {
    /// The row's slot.
    pub slot: i64,
    /// The person's tag.
    pub tag: i64,
    /// The person's row in `person_identities`.
    pub person: i64,
    /// 16 lowercase hex characters.
    pub dek_id: String,
    /// The KEK that wraps it.
    pub kek_id: String,
    /// 12-byte wrapping nonce.
    pub nonce: Vec<u8>,
    /// 48 bytes: ciphertext‖tag of the DEK.
    pub wrapped: Vec<u8>,
}

/// The outcome of looking up one person while processing.
#[derive(Clone)]
pub enum PersonKey {
    /// The person's DEK (made now if they had none) and its id. The DEK is
    /// in an allocation of its own, which the key cache shares, and is
    /// zeroized when its last holder drops it; the caller expands it
    /// ([`DataKey::new`]) for the person's rows.
    Key(DekId, Arc<Dek>),
    /// The person was forgotten and `[keys] forgotten = "reject"`.
    Forgotten,
}

/// What [`Vault::forget`] did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ForgetSummary {
    /// Persons whose key was destroyed now.
    pub forgotten: usize,
    /// Pseudonyms with no key (never seen): listed as forgotten all the same.
    pub unknown: usize,
    /// Pseudonyms that were already forgotten and had no key.
    pub already: usize,
    /// Whether the write-ahead log was checkpointed and truncated (false
    /// when another process kept reading the vault throughout the lock
    /// wait, [`LOCK_WAIT_SECONDS`]: the deleted rows' old pages may then
    /// remain in the log until the next checkpoint).
    pub log_truncated: bool,
}

/// What [`Vault::rewrap`] did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct VaultRewrap {
    /// Person keys in the vault.
    pub keys: usize,
    /// Person keys wrapped again under the active KEK.
    pub rewrapped: usize,
    /// Rewrapped keys per KEK that wrapped them before.
    pub from: BTreeMap<String, usize>,
}

/// The outcome of [`Vault::reveal`] for one pseudonym.
pub enum Revealed {
    /// The identity (normalized, as it was pseudonymized).
    Identity(String),
    /// The person was forgotten: their key is destroyed.
    Forgotten,
    /// No such person in the vault.
    Unknown,
}

/// An open key vault.
pub struct Vault {
    path: PathBuf,
    /// The writer (and every statement other than look-ups while processing).
    conn: Mutex<Connection>,
    /// Idle read-only connections for look-ups; a thread takes one (or opens
    /// one when none is idle) and puts it back, so there are at most as many
    /// as threads that looked up persons at the same time.
    readers: Mutex<Vec<Connection>>,
    /// The keyring's KEKs, expanded, by id.
    /// Boxed, so that building the map moves pointers, not key schedules.
    keks: HashMap<String, Box<aead::KekCipher>>,
    /// The active KEK's id (one of `keks`): it wraps every new person's key.
    active: KekId,
    retired_file: Option<PathBuf>,
    /// Recently used person keys (see [`CACHE_KEYS`]).
    cache: Mutex<foldhash::HashMap<Slot, (DekId, Arc<Dek>)>>,
    /// A read-only connection that only asks `PRAGMA data_version`, opened
    /// at the first look-up: see [`Vault::cache_epoch`].
    watch: Mutex<Option<Connection>>,
    /// The highest `data_version` the watch connection has returned (0:
    /// none yet); changed under the cache's lock.
    data_version: AtomicI64,
    /// Chunks written in the open write transaction (under the connection lock).
    pending: AtomicUsize,
    /// The number of the writer's open write transaction of new persons, 0
    /// when none is open; set under the connection lock. See
    /// [`Vault::person_keys`].
    open_tx: AtomicU64,
    /// The number of the last write transaction of new persons begun.
    tx_seq: AtomicU64,
    /// The highest number of a write transaction of new persons that SQLite
    /// rolled back (0: none). See [`Vault::sync`].
    lost_tx: AtomicU64,
}

fn sql_err(path: &Path) -> impl Fn(rusqlite::Error) -> VaultError + '_ {
    move |e| VaultError::Sql { path: path.to_owned(), message: e.to_string() }
}

/// Whether a vault exists at `path`.
pub fn exists(path: &Path) -> bool {
    path.is_file()
}

impl Vault {
    /// Opens the vault at `path` with the keyring's KEKs, creating it (mode
    /// 0600, and its folder) when `create` is set. `retired_file` lists
    /// KEK ids that `keys retire` removed (the keystore's `.retired` file):
    /// no new person key is wrapped under one of them.
    ///
    /// # Errors
    /// [`VaultError::Missing`] without `create`, [`VaultError::Sql`].
    pub fn open(
        path: &Path,
        keyring: &Keyring,
        create: bool,
        retired_file: Option<PathBuf>,
    ) -> Result<Self, VaultError> {
        let err = sql_err(path);
        let io = |e: std::io::Error| VaultError::Sql { path: path.to_owned(), message: e.to_string() };
        if !path.exists() {
            if !create {
                return Err(VaultError::Missing(path.to_owned()));
            }
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(io)?;
            }
            // An empty file is an empty SQLite database; creating it first
            // sets its mode (SQLite gives its -wal and -shm files the same).
            let mut opts = std::fs::OpenOptions::new();
            opts.write(true).create(true).truncate(false);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
            opts.open(path).map_err(io)?;
        }
        let conn = Connection::open(path).map_err(&err)?;
        conn.busy_handler(Some(wait_for_lock)).map_err(&err)?;
        // synchronous = FULL: a commit returns once the write-ahead log is
        // fsynced, which is what `sync` relies on (NORMAL would leave the
        // log to the next checkpoint, and a checkpoint that a reader holds
        // back fsyncs nothing). Commits are few (one per
        // CHUNKS_PER_COMMIT chunks and one per file), so this costs little.
        conn.execute_batch(&format!(
            "PRAGMA journal_mode = WAL;
             PRAGMA synchronous = FULL;
             PRAGMA secure_delete = ON;
             PRAGMA cache_size = -{WRITER_CACHE_KIB};
             PRAGMA mmap_size = {READER_MMAP_BYTES};"
        ))
        .map_err(&err)?;
        let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).map_err(&err)?;
        if version > VAULT_VERSION {
            return Err(VaultError::Sql {
                path: path.to_owned(),
                message: format!(
                    "vault version {version} is newer than this piigate reads ({VAULT_VERSION}); upgrade piigate"
                ),
            });
        }
        if version < VAULT_VERSION {
            create_or_migrate(&conn).map_err(&err)?;
        }
        let keks = keyring
            .kek_ids()
            .filter_map(|id| keyring.kek(id).map(|k| (id.to_string(), Box::new(aead::KekCipher::new(k)))))
            .collect();
        Ok(Self {
            path: path.to_owned(),
            conn: Mutex::new(conn),
            readers: Mutex::new(Vec::new()),
            keks,
            active: keyring.active().0.clone(),
            retired_file,
            cache: Mutex::new(foldhash::HashMap::default()),
            watch: Mutex::new(None),
            data_version: AtomicI64::new(0),
            pending: AtomicUsize::new(0),
            open_tx: AtomicU64::new(0),
            tx_seq: AtomicU64::new(0),
            lost_tx: AtomicU64::new(0),
        })
    }

    /// The active KEK, expanded.
    fn active_cipher(&self) -> &aead::KekCipher {
        // The keyring's active KEK is one of its KEKs, all of which `keks` holds.
        &self.keks[self.active.as_str()]
    }

    /// The vault's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `f` on an idle read-only connection of the pool, opening one
    /// when none is idle. It sees what was committed when its statement
    /// started, not the writer's open transaction.
    fn with_reader<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Result<T, VaultError> {
        let err = sql_err(&self.path);
        let idle = self.readers.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let conn = match idle {
            Some(c) => c,
            None => {
                let c = self.open_read_only()?;
                c.execute_batch(&format!(
                    "PRAGMA cache_size = -{READER_CACHE_KIB};
                     PRAGMA mmap_size = {READER_MMAP_BYTES};"
                ))
                .map_err(&err)?;
                c
            }
        };
        let out = f(&conn).map_err(&err);
        self.readers.lock().unwrap_or_else(|e| e.into_inner()).push(conn);
        out
    }

    /// A new connection to the vault that only reads (`query_only`), waiting
    /// for locks like the writer.
    ///
    /// # Errors
    /// [`VaultError::Sql`].
    fn open_read_only(&self) -> Result<Connection, VaultError> {
        let err = sql_err(&self.path);
        let c = Connection::open(&self.path).map_err(&err)?;
        c.busy_handler(Some(wait_for_lock)).map_err(&err)?;
        c.execute_batch("PRAGMA query_only = ON;").map_err(&err)?;
        Ok(c)
    }

    /// Empties the key cache when the vault changed since the cache was
    /// filled, and returns the change count (`PRAGMA data_version` of a
    /// connection of its own, which changes whenever any other connection
    /// commits: a `forget` or another piigate, and this vault's own writer)
    /// that keys looked up from now on may be cached under. Without it, a
    /// long `run --watch` would keep serving a person forgotten by another
    /// process from its cache, past the `forgotten` policy. The writer's own
    /// commits (at the end of a file that met new persons, every
    /// [`CHUNKS_PER_COMMIT`] chunks of them, a merge) empty it too, so the
    /// cache serves persons who recur within a file, or across files whose
    /// persons were all known.
    ///
    /// # Errors
    /// [`VaultError::Sql`].
    fn cache_epoch(&self) -> Result<i64, VaultError> {
        let err = sql_err(&self.path);
        let version: i64 = {
            let mut watch = self.watch.lock().unwrap_or_else(|e| e.into_inner());
            let conn = match &mut *watch {
                Some(c) => c,
                None => watch.insert(self.open_read_only()?),
            };
            conn.prepare_cached("PRAGMA data_version")
                .and_then(|mut st| st.query_row([], |r| r.get(0)))
                .map_err(&err)?
        };
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        // The count only grows on one connection; a caller that read an
        // older one than another caller leaves the newer one in place.
        if version > self.data_version.load(Ordering::SeqCst) {
            self.data_version.store(version, Ordering::SeqCst);
            cache.clear();
        }
        Ok(version)
    }

    fn unwrap(&self, rec: &PersonRecord, keyring_path: &Path) -> Result<DataKey, VaultError> {
        let (dek_id, dek) = self.unwrap_dek(rec, keyring_path)?;
        Ok(DataKey::new(dek_id, &dek))
    }

    /// The person's DEK, unwrapped with the KEK its record names.
    fn unwrap_dek(&self, rec: &PersonRecord, keyring_path: &Path) -> Result<(DekId, Dek), VaultError> {
        self.unwrap_parts(&rec.dek_id, &rec.kek_id, &rec.nonce, &rec.wrapped, keyring_path)
    }

    /// A stored DEK, unwrapped with the KEK `kek_id` names.
    fn unwrap_parts(
        &self,
        dek_id: &str,
        kek_id: &str,
        nonce: &[u8],
        wrapped: &[u8],
        keyring_path: &Path,
    ) -> Result<(DekId, Dek), VaultError> {
        let crypto = |source| VaultError::Crypto { dek_id: dek_id.to_owned(), source };
        let id: DekId = dek_id.parse().map_err(crypto)?;
        let kek = self.keks.get(kek_id).ok_or_else(|| VaultError::MissingKek {
            keyring: keyring_path.to_owned(),
            dek_id: dek_id.to_owned(),
            kek_id: kek_id.to_owned(),
        })?;
        let dek = kek.unwrap_dek(&id, nonce, wrapped).map_err(crypto)?;
        Ok((id, dek))
    }

    /// The DEK of a `person_keys` row selected as in [`SELECT_WINDOW`],
    /// read without copying its columns. The DEK is put in an allocation of
    /// its own at once, so the vectors and the cache that hold it copy only
    /// a pointer, and no copy of it outlives its zeroization.
    fn unwrap_row(&self, r: &rusqlite::Row<'_>, keyring_path: &Path) -> Result<(DekId, Arc<Dek>), VaultError> {
        let err = sql_err(&self.path);
        let text = |i: usize| r.get_ref(i).and_then(|v| v.as_str().map_err(Into::into)).map_err(&err);
        let blob = |i: usize| r.get_ref(i).and_then(|v| v.as_blob().map_err(Into::into)).map_err(&err);
        let (id, dek) = self.unwrap_parts(text(2)?, text(3)?, blob(4)?, blob(5)?, keyring_path)?;
        Ok((id, Arc::new(dek)))
    }

    /// Makes every person key handed out so far durable: commits the open
    /// write transaction, which under `synchronous = FULL` returns only
    /// once the write-ahead log is fsynced (earlier commits were fsynced
    /// the same way). Called before an output is published, so no published
    /// token can outlive a crash of its key. Then checkpoints passively,
    /// which only keeps the log short. `since` is the file's
    /// [`Vault::mark`].
    ///
    /// # Errors
    /// [`VaultError::Sql`]; [`VaultError::KeysLost`] when SQLite rolled
    /// back a write transaction of new persons begun at or after `since`
    /// (one the file's keys may be in).
    pub fn sync(&self, since: u64) -> Result<(), VaultError> {
        let conn = self.conn();
        self.commit_open(&conn)?;
        let lost = self.lost_tx.load(Ordering::SeqCst);
        if lost != 0 && lost >= since {
            return Err(VaultError::KeysLost(self.path.clone()));
        }
        conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())).map_err(sql_err(&self.path))
    }

    /// A mark to take before a file's first look-up and give to
    /// [`Vault::sync`]: the number of the first write transaction of new
    /// persons that can hold the file's keys (the open one, else the next).
    pub fn mark(&self) -> u64 {
        let conn = self.conn();
        self.note_rolled_back(&conn);
        match self.open_tx.load(Ordering::SeqCst) {
            0 => self.tx_seq.load(Ordering::SeqCst) + 1,
            open => open,
        }
    }

    /// Notes the writer's transaction of new persons as lost when SQLite
    /// rolled it back: the connection is back in autocommit mode while the
    /// transaction is still noted as open.
    fn note_rolled_back(&self, conn: &Connection) {
        if conn.is_autocommit() {
            let stale = self.open_tx.swap(0, Ordering::SeqCst);
            if stale != 0 {
                self.lose(stale);
            }
        }
    }

    /// Records that write transaction `tx` of new persons was rolled back,
    /// and drops the cached keys, which may include keys made in it.
    fn lose(&self, tx: u64) {
        self.lost_tx.fetch_max(tx, Ordering::SeqCst);
        self.pending.store(0, Ordering::Relaxed);
        self.cache.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }

    /// Commits the writer's open transaction of new persons, if any. Notes
    /// it as lost when SQLite rolled it back (then there is nothing to
    /// commit) or the commit failed and rolled it back.
    fn commit_open(&self, conn: &Connection) -> Result<(), VaultError> {
        self.note_rolled_back(conn);
        if conn.is_autocommit() {
            return Ok(());
        }
        let open = self.open_tx.swap(0, Ordering::SeqCst);
        if let Err(e) = conn.execute_batch("COMMIT") {
            if conn.is_autocommit() {
                self.lose(open);
            } else {
                self.open_tx.store(open, Ordering::SeqCst);
            }
            return Err(sql_err(&self.path)(e));
        }
        self.pending.store(0, Ordering::Relaxed);
        Ok(())
    }

    /// The number of staged person keys when a merge of them into
    /// `person_keys` is due, else `None`: due once they number at least
    /// [`MERGE_MIN_STAGED`] and at least 1/[`MERGE_FRACTION`] of the persons
    /// made so far (the highest `person_identities` id, which forgetting the
    /// newest persons lowers a little). Counting reads the whole staged
    /// table (a few MB per 100,000 keys).
    ///
    /// # Errors
    /// [`VaultError::Sql`].
    pub fn merge_due(&self) -> Result<Option<usize>, VaultError> {
        let (staged, persons) = self.with_reader(|c| {
            let staged: i64 = c.query_row("SELECT count(*) FROM person_keys_staged", [], |r| r.get(0))?;
            let persons: i64 = c.query_row("SELECT coalesce(max(id), 0) FROM person_identities", [], |r| r.get(0))?;
            Ok((staged, persons))
        })?;
        Ok(merge_is_due(staged, persons).then_some(staged as usize))
    }

    /// Moves every staged person key into `person_keys`, in slot order, in
    /// one write transaction (after committing the open one): a crash
    /// leaves them staged, where look-ups find them all the same. Inserting
    /// in slot order rewrites each leaf page of `person_keys` once for many
    /// persons, where inserting each new person there as it came would
    /// rewrite one page per person. Returns how many moved. Takes the
    /// vault's write lock for its duration (about 30 s per million staged
    /// keys into 10 million, docs/PERFORMANCE.md), so it runs between
    /// files, never during one.
    ///
    /// # Errors
    /// [`VaultError::Sql`]; the keys then stay staged.
    pub fn merge_staged(&self) -> Result<usize, VaultError> {
        let err = sql_err(&self.path);
        let mut conn = self.conn();
        // Never inside the transaction of new persons: `person_keys` relies
        // on that transaction writing no `person_keys` rows.
        self.commit_open(&conn)?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(&err)?;
        let n: i64 = tx.query_row("SELECT count(*) FROM person_keys_staged", [], |r| r.get(0)).map_err(&err)?;
        tx.execute_batch(MERGE_STAGED).map_err(&err)?;
        tx.commit().map_err(&err)?;
        conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())).map_err(&err)?;
        Ok(n as usize)
    }

    /// The data keys of the persons of one chunk, made and stored for
    /// those who have none yet: inserted in a write transaction that spans
    /// up to [`CHUNKS_PER_COMMIT`] chunks and is committed, and made
    /// durable, by [`Vault::sync`] (before an output is published).
    /// `persons` are (pseudonym, normalized identity) pairs; the result is
    /// in the same order. A forgotten person gets [`PersonKey::Forgotten`]
    /// under `reject`, and a fresh key under `new_key`.
    ///
    /// Look-ups run on a pooled read connection, in slot order, so the
    /// workers look up in parallel; only the persons none of them found
    /// take the writer's lock.
    ///
    /// # Errors
    /// [`VaultError`]; the file then fails (nothing is published).
    pub fn person_keys<P: AsRef<str>, I: AsRef<str>>(
        &self,
        persons: &[(P, I)],
        new_key: bool,
        keyring_path: &Path,
    ) -> Result<Vec<PersonKey>, VaultError> {
        let err = sql_err(&self.path);
        let slots: Vec<Slot> = persons.iter().map(|(p, _)| Slot::of(p.as_ref())).collect();
        // The chunk's distinct persons in slot order, each with the first row
        // that has them; `keys[i]` is the key of `wanted[i]` once found.
        let mut wanted: Vec<(Slot, usize)> = slots.iter().enumerate().map(|(i, s)| (*s, i)).collect();
        wanted.sort_unstable();
        wanted.dedup_by_key(|(s, _)| *s);
        let index = |s: &Slot| wanted.binary_search_by_key(s, |(w, _)| *w).expect("every slot is wanted");
        let mut keys: Vec<Option<PersonKey>> = vec![None; wanted.len()];
        let epoch = self.cache_epoch()?;
        {
            let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
            if !cache.is_empty() {
                for ((s, _), k) in wanted.iter().zip(keys.iter_mut()) {
                    *k = cache.get(s).map(|(id, dek)| PersonKey::Key(*id, Arc::clone(dek)));
                }
            }
        }
        // The writer's open transaction, read before the look-ups' snapshot
        // (taken at their first statement). While the same transaction is
        // still open when the writer gets to the new persons, nobody else
        // could write in between, and it writes no main-table rows, so what
        // the look-ups saw of `person_keys` is still so: then the writer
        // looks only at the staged keys, and takes the main table's taken
        // slots (`taken_in_main`) from the look-ups.
        let tx_before = self.open_tx.load(Ordering::SeqCst);
        let mut taken_in_main = vec![0u16; wanted.len()];
        // 1. Look-ups on a pooled reader; unwrap after.
        let mut records = Vec::new();
        if keys.iter().any(Option::is_none) {
            records = self.with_reader(|conn| {
                // One read transaction for the chunk, not one per person:
                // each takes and releases the log's read lock (two fcntl
                // calls), about a tenth of the time of a known person.
                // Dropped, it ends with a rollback, which writes nothing.
                let _snapshot = conn.unchecked_transaction()?;
                // Most persons are in the main table: the staged keys are
                // looked up only for those it does not hold.
                let mut main = conn.prepare_cached(SELECT_MAIN_WINDOW)?;
                let mut staged = conn.prepare_cached(SELECT_STAGED_WINDOW)?;
                let mut records = Vec::with_capacity(wanted.len());
                for (i, ((s, _), k)) in wanted.iter().zip(&keys).enumerate() {
                    if k.is_some() {
                        continue;
                    }
                    let read = |r: &rusqlite::Row<'_>| Ok(self.unwrap_row(r, keyring_path));
                    let found = match scan_window(&mut main, *s, read)? {
                        (Some(key), _) => Some(key),
                        (None, taken) => {
                            taken_in_main[i] = taken;
                            scan_window(&mut staged, *s, read)?.0
                        }
                    };
                    if let Some(key) = found {
                        records.push((i, key));
                    }
                }
                Ok(records)
            })?;
        }
        let mut fresh_cache = Vec::with_capacity(records.len());
        for (i, key) in records {
            let (id, dek) = key?;
            keys[i] = Some(PersonKey::Key(id, Arc::clone(&dek)));
            fresh_cache.push((wanted[i].0, (id, dek)));
        }
        // The number of the write transaction the chunk's new keys go into.
        let mut made_in = 0;
        // 2. The rest: forgotten, or new. One write transaction.
        let missing: Vec<usize> = (0..wanted.len()).filter(|i| keys[*i].is_none()).collect();
        if !missing.is_empty() {
            if let Some(f) = &self.retired_file {
                let retired = std::fs::read_to_string(f).unwrap_or_default();
                if retired.lines().any(|l| l.trim() == self.active.as_str()) {
                    return Err(VaultError::RetiredKek { kek_id: self.active.to_string() });
                }
            }
            // Keys are made before the lock is taken.
            let created = crate::report::now_rfc3339();
            let mut made = Vec::with_capacity(missing.len());
            for &i in &missing {
                let (p, identity) = &persons[wanted[i].1];
                let (p, identity) = (p.as_ref(), identity.as_ref());
                let dek = Arc::new(aead::random_dek());
                let dek_id = DekId::generate();
                let nonce = aead::random_nonce();
                let wrapped = self.active_cipher().wrap_dek(&dek_id, &dek, &nonce);
                let sealed = DataKey::new(dek_id, &dek).seal(&identity_ad(p), identity.as_bytes());
                made.push((i, p, dek_id, nonce, wrapped, sealed, dek));
            }
            let conn = self.conn();
            if conn.is_autocommit() {
                self.note_rolled_back(&conn);
                conn.execute_batch("BEGIN IMMEDIATE").map_err(&err)?;
                self.open_tx.store(self.tx_seq.fetch_add(1, Ordering::SeqCst) + 1, Ordering::SeqCst);
            }
            made_in = self.open_tx.load(Ordering::SeqCst);
            let tx = &*conn;
            // Another worker (in the open transaction, which the readers do
            // not see) or another process may have added some meanwhile.
            let main_as_seen = tx_before != 0 && tx_before == made_in;
            let mut raced = Vec::new();
            {
                let mut window =
                    tx.prepare_cached(if main_as_seen { SELECT_STAGED_WINDOW } else { SELECT_WINDOW }).map_err(&err)?;
                let mut is_forgotten =
                    tx.prepare_cached("SELECT 1 FROM forgotten WHERE pseudonym = ?1").map_err(&err)?;
                // Most vaults have forgotten nobody: then skip the check.
                let anyone_forgotten = !new_key
                    && tx
                        .prepare_cached("SELECT 1 FROM forgotten LIMIT 1")
                        .and_then(|mut st| st.exists([]))
                        .map_err(&err)?;
                let mut add_identity = tx.prepare_cached(INSERT_IDENTITY).map_err(&err)?;
                let mut add_key = tx.prepare_cached(INSERT_KEY).map_err(&err)?;
                for (i, p, dek_id, nonce, wrapped, sealed, dek) in made {
                    let s = wanted[i].0;
                    let (rec, taken) = scan_window(&mut window, s, person_row).map_err(&err)?;
                    if let Some(rec) = rec {
                        raced.push((i, rec));
                        continue;
                    }
                    if anyone_forgotten && is_forgotten.exists([p]).map_err(&err)? {
                        keys[i] = Some(PersonKey::Forgotten);
                        continue;
                    }
                    let taken = if main_as_seen { taken | taken_in_main[i] } else { taken };
                    let slot = free_slot(s, taken).map_err(&err)?;
                    add_identity.execute(rusqlite::params![p, sealed, created]).map_err(&err)?;
                    add_key
                        .execute(rusqlite::params![
                            slot,
                            s.tag,
                            dek_id.as_str(),
                            self.active.as_str(),
                            &nonce[..],
                            wrapped,
                            tx.last_insert_rowid()
                        ])
                        .map_err(&err)?;
                    keys[i] = Some(PersonKey::Key(dek_id, Arc::clone(&dek)));
                    fresh_cache.push((s, (dek_id, dek)));
                }
            }
            let n = self.pending.fetch_add(1, Ordering::Relaxed) + 1;
            if n >= CHUNKS_PER_COMMIT {
                self.commit_open(&conn)?;
            }
            drop(conn);
            for (i, rec) in &raced {
                let (id, dek) = self.unwrap_dek(rec, keyring_path)?;
                keys[*i] = Some(PersonKey::Key(id, Arc::new(dek)));
            }
        }
        if !fresh_cache.is_empty() {
            let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
            // Keys made in a transaction since noted as lost stay out (a file
            // whose mark is past it would sync); under the cache lock, so a
            // loss noted meanwhile has cleared the cache already.
            if made_in != 0 && self.lost_tx.load(Ordering::SeqCst) >= made_in {
                fresh_cache.clear();
            }
            // Keys looked up before the vault changed (a person may have
            // been forgotten since) stay out; the cache was emptied when
            // the change was seen.
            if self.data_version.load(Ordering::SeqCst) != epoch {
                fresh_cache.clear();
            }
            if cache.len() + fresh_cache.len() > CACHE_KEYS {
                cache.clear();
            }
            cache.extend(fresh_cache.into_iter().take(CACHE_KEYS));
        }
        Ok(slots.iter().map(|s| keys[index(s)].clone().unwrap_or(PersonKey::Forgotten)).collect())
    }

    /// The data key named `dek_id`, or `None` when no person has it (the
    /// person was forgotten, or the key is not a person key).
    ///
    /// # Errors
    /// [`VaultError`].
    pub fn key_by_dek_id(&self, dek_id: &DekId, keyring_path: &Path) -> Result<Option<DataKey>, VaultError> {
        let rec = {
            let conn = self.conn();
            conn.prepare_cached(SELECT_DEK_ID)
                .and_then(|mut s| s.query_row([dek_id.as_str()], person_row).optional())
                .map_err(sql_err(&self.path))?
        };
        rec.map(|r| self.unwrap(&r, keyring_path)).transpose()
    }

    /// Destroys the keys of `pseudonyms` and lists them as forgotten (with
    /// the time, never the identity), in one transaction; then checkpoints
    /// and truncates the write-ahead log so that the deleted rows' bytes
    /// are gone from it (`secure_delete` overwrites them in the database
    /// file).
    ///
    /// # Errors
    /// [`VaultError::Sql`].
    pub fn forget(&self, pseudonyms: &[String]) -> Result<ForgetSummary, VaultError> {
        let err = sql_err(&self.path);
        let now = crate::report::now_rfc3339();
        let mut summary = ForgetSummary::default();
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(&err)?;
        {
            let mut window = tx.prepare_cached(SELECT_WINDOW).map_err(&err)?;
            let mut del_key = tx.prepare_cached("DELETE FROM person_keys WHERE slot = ?1").map_err(&err)?;
            let mut del_staged = tx.prepare_cached("DELETE FROM person_keys_staged WHERE slot = ?1").map_err(&err)?;
            let mut del_identity = tx.prepare_cached("DELETE FROM person_identities WHERE id = ?1").map_err(&err)?;
            let mut ins = tx
                .prepare_cached("INSERT OR IGNORE INTO forgotten (pseudonym, forgotten) VALUES (?1, ?2)")
                .map_err(&err)?;
            for p in pseudonyms {
                let mut deleted = 0;
                if let Some(rec) = find_person(&mut window, Slot::of(p)).map_err(&err)? {
                    deleted =
                        del_key.execute([rec.slot]).map_err(&err)? + del_staged.execute([rec.slot]).map_err(&err)?;
                    del_identity.execute([rec.person]).map_err(&err)?;
                }
                let listed = ins.execute([p, &now]).map_err(&err)?;
                match (deleted, listed) {
                    (0, 0) => summary.already += 1,
                    (0, _) => summary.unknown += 1,
                    _ => summary.forgotten += 1,
                }
            }
        }
        tx.commit().map_err(&err)?;
        let busy: i64 = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0)).map_err(&err)?;
        summary.log_truncated = busy == 0;
        drop(conn);
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        for p in pseudonyms {
            cache.remove(&Slot::of(p));
        }
        Ok(summary)
    }

    /// The identity behind each pseudonym, decrypted with the person's key.
    ///
    /// # Errors
    /// [`VaultError`] for SQLite, a missing KEK or a record that does not
    /// decrypt.
    pub fn reveal(&self, pseudonyms: &[String], keyring_path: &Path) -> Result<Vec<Revealed>, VaultError> {
        let err = sql_err(&self.path);
        let mut out = Vec::with_capacity(pseudonyms.len());
        for p in pseudonyms {
            let row = {
                let conn = self.conn();
                let rec = conn
                    .prepare_cached(SELECT_WINDOW)
                    .and_then(|mut w| find_person(&mut w, Slot::of(p)))
                    .map_err(&err)?;
                let row = match rec {
                    Some(rec) => conn
                        .prepare_cached("SELECT identity FROM person_identities WHERE id = ?1 AND pseudonym = ?2")
                        .and_then(|mut s| s.query_row(rusqlite::params![rec.person, p], |r| r.get(0)).optional())
                        .map_err(&err)?
                        .map(|sealed: Vec<u8>| (rec, sealed)),
                    None => None,
                };
                let gone: bool = conn
                    .prepare_cached("SELECT 1 FROM forgotten WHERE pseudonym = ?1")
                    .and_then(|mut s| s.exists([p]))
                    .map_err(&err)?;
                (row, gone)
            };
            out.push(match row {
                (Some((rec, sealed)), _) => {
                    let key = self.unwrap(&rec, keyring_path)?;
                    let plain = key
                        .decrypt_payload(&identity_ad(p), &sealed)
                        .map_err(|source| VaultError::Crypto { dek_id: rec.dek_id.clone(), source })?;
                    Revealed::Identity(String::from_utf8_lossy(&plain).into_owned())
                }
                (None, true) => Revealed::Forgotten,
                (None, false) => Revealed::Unknown,
            });
        }
        Ok(out)
    }

    /// Person keys per KEK id.
    ///
    /// # Errors
    /// [`VaultError::Sql`].
    pub fn keys_per_kek(&self) -> Result<BTreeMap<String, usize>, VaultError> {
        let err = sql_err(&self.path);
        let conn = self.conn();
        let mut st =
            conn.prepare(&format!("SELECT kek_id, count(*) FROM ({ALL_KEYS}) GROUP BY kek_id")).map_err(&err)?;
        let rows = st
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as usize)))
            .map_err(&err)?
            .collect::<Result<BTreeMap<_, _>, _>>()
            .map_err(&err)?;
        Ok(rows)
    }

    /// Re-wraps every person key that is not under the active KEK, in one
    /// transaction: every key is unwrapped first, so a missing KEK changes
    /// nothing.
    ///
    /// # Errors
    /// [`VaultError`] (a missing KEK names the dek_id and kek_id).
    pub fn rewrap(&self, keyring_path: &Path) -> Result<VaultRewrap, VaultError> {
        let err = sql_err(&self.path);
        let mut summary = VaultRewrap::default();
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(&err)?;
        summary.keys = tx
            .query_row(&format!("SELECT count(*) FROM ({ALL_KEYS})"), [], |r| r.get::<_, i64>(0))
            .map_err(&err)? as usize;
        let old: Vec<PersonRecord> = {
            let mut st = tx.prepare(&format!("SELECT * FROM ({ALL_KEYS}) WHERE kek_id != ?1")).map_err(&err)?;
            let rows = st.query_map([self.active.as_str()], person_row).map_err(&err)?;
            rows.collect::<Result<_, _>>().map_err(&err)?
        };
        {
            let mut up = tx
                .prepare("UPDATE person_keys SET kek_id = ?1, nonce = ?2, wrapped = ?3 WHERE slot = ?4")
                .map_err(&err)?;
            let mut up_staged = tx
                .prepare("UPDATE person_keys_staged SET kek_id = ?1, nonce = ?2, wrapped = ?3 WHERE slot = ?4")
                .map_err(&err)?;
            for rec in &old {
                let (dek_id, dek) = self.unwrap_dek(rec, keyring_path)?;
                let nonce = aead::random_nonce();
                let wrapped = self.active_cipher().wrap_dek(&dek_id, &dek, &nonce);
                let params = rusqlite::params![self.active.as_str(), &nonce[..], wrapped, rec.slot];
                if up.execute(params).map_err(&err)? == 0 {
                    up_staged.execute(params).map_err(&err)?;
                }
                *summary.from.entry(rec.kek_id.clone()).or_default() += 1;
                summary.rewrapped += 1;
            }
        }
        tx.commit().map_err(&err)?;
        conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(())).map_err(&err)?;
        Ok(summary)
    }
}

/// A key table and its dek_id index: `person_keys` and
/// `person_keys_staged` have the same columns.
fn key_table(name: &str) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {name} (
           slot    INTEGER PRIMARY KEY,
           tag     INTEGER NOT NULL,
           dek_id  TEXT NOT NULL,
           kek_id  TEXT NOT NULL,
           nonce   BLOB NOT NULL,
           wrapped BLOB NOT NULL,
           person  INTEGER NOT NULL
         );
         CREATE UNIQUE INDEX IF NOT EXISTS {name}_dek_id ON {name} (dek_id);"
    )
}

/// The tables of [`VAULT_VERSION`] (see the module documentation), after
/// the two key tables.
const SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS person_identities (
      id        INTEGER PRIMARY KEY,
      pseudonym TEXT NOT NULL,
      identity  BLOB NOT NULL,
      created   TEXT NOT NULL
    );
    CREATE TABLE IF NOT EXISTS forgotten (
      pseudonym TEXT PRIMARY KEY,
      forgotten TEXT NOT NULL
    ) WITHOUT ROWID;";

/// Creates the tables of an empty vault (`version` 0), adds the staged
/// keys' table to a version 2 vault, or moves the persons of a version 1
/// vault (one `persons` table keyed by pseudonym) into the tables, in one
/// transaction: a crash leaves the vault as it was.
fn create_or_migrate(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch("BEGIN IMMEDIATE")?;
    let result = (|| {
        // Read under the write lock: another process may have migrated it
        // (part of the way) since this one opened it.
        let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if version >= VAULT_VERSION {
            return Ok(0);
        }
        if version == 1 {
            tracing::info!(
                "key vault: moving person keys to vault version {VAULT_VERSION} (once; one to two minutes per million persons)"
            );
            conn.execute_batch("ALTER TABLE persons RENAME TO persons_v1")?;
        }
        conn.execute_batch(&key_table("person_keys"))?;
        conn.execute_batch(&key_table("person_keys_staged"))?;
        conn.execute_batch(SCHEMA)?;
        let mut moved = 0usize;
        if version == 1 {
            let mut read =
                conn.prepare("SELECT pseudonym, dek_id, kek_id, nonce, wrapped, identity, created FROM persons_v1")?;
            let mut window = conn.prepare_cached(SELECT_WINDOW)?;
            let mut rows = read.query([])?;
            while let Some(r) = rows.next()? {
                let pseudonym: String = r.get(0)?;
                let slot = Slot::of(&pseudonym);
                let free = free_slot(slot, scan_window(&mut window, slot, person_row)?.1)?;
                conn.execute(
                    INSERT_IDENTITY,
                    rusqlite::params![pseudonym, r.get::<_, Vec<u8>>(5)?, r.get::<_, String>(6)?],
                )?;
                conn.execute(
                    INSERT_KEY,
                    rusqlite::params![
                        free,
                        slot.tag,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, Vec<u8>>(3)?,
                        r.get::<_, Vec<u8>>(4)?,
                        conn.last_insert_rowid()
                    ],
                )?;
                moved += 1;
            }
            drop(rows);
            conn.execute_batch(MERGE_STAGED)?;
            conn.execute_batch("DROP TABLE persons_v1")?;
        }
        conn.execute_batch(&format!("PRAGMA user_version = {VAULT_VERSION}"))?;
        Ok(moved)
    })();
    match result {
        Ok(moved) => {
            conn.execute_batch("COMMIT")?;
            if moved > 0 {
                tracing::info!("key vault: moved {moved} person key(s) to vault version {VAULT_VERSION}");
            }
            Ok(())
        }
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            Err(e)
        }
    }
}

/// The columns of a key row, in the order [`person_row`] and
/// [`Vault::unwrap_row`] read them.
macro_rules! key_columns {
    () => {
        "slot, tag, dek_id, kek_id, nonce, wrapped, person"
    };
}
/// The condition that selects the slot window starting at `?1`
/// ([`SLOT_WINDOW`] slots).
macro_rules! in_window {
    () => {
        "slot >= ?1 AND slot < ?1 + 16"
    };
}

/// The rows of one slot window, for a statement prepared from it, in both
/// key tables: a slot is taken in one of them at most.
const SELECT_WINDOW: &str = concat!(
    "SELECT ",
    key_columns!(),
    " FROM person_keys WHERE ",
    in_window!(),
    " UNION ALL SELECT ",
    key_columns!(),
    " FROM person_keys_staged WHERE ",
    in_window!()
);
/// [`SELECT_WINDOW`] of the main table alone.
const SELECT_MAIN_WINDOW: &str = concat!("SELECT ", key_columns!(), " FROM person_keys WHERE ", in_window!());
/// [`SELECT_WINDOW`] of the staged keys alone.
const SELECT_STAGED_WINDOW: &str = concat!("SELECT ", key_columns!(), " FROM person_keys_staged WHERE ", in_window!());

/// Every key row of both tables, selected as in [`SELECT_WINDOW`].
const ALL_KEYS: &str = concat!(
    "SELECT ",
    key_columns!(),
    " FROM person_keys UNION ALL SELECT ",
    key_columns!(),
    " FROM person_keys_staged"
);

/// The key row named `?1` (a dek_id), in either table.
const SELECT_DEK_ID: &str = concat!(
    "SELECT ",
    key_columns!(),
    " FROM person_keys WHERE dek_id = ?1",
    " UNION ALL SELECT ",
    key_columns!(),
    " FROM person_keys_staged WHERE dek_id = ?1"
);

/// Moves every staged key into `person_keys`, in slot order.
const MERGE_STAGED: &str = concat!(
    "INSERT INTO person_keys SELECT ",
    key_columns!(),
    " FROM person_keys_staged ORDER BY slot;",
    " DELETE FROM person_keys_staged;"
);

/// Adds a person's identity row (pseudonym, sealed identity, created).
const INSERT_IDENTITY: &str = "INSERT INTO person_identities (pseudonym, identity, created) VALUES (?1, ?2, ?3)";
/// Adds a new person's key row (slot, tag, dek_id, kek_id, nonce, wrapped,
/// person) to the staged keys.
const INSERT_KEY: &str =
    concat!("INSERT INTO person_keys_staged (", key_columns!(), ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)");

/// The person's row in their slot window, read by `read`, if any; else
/// which of the window's [`SLOT_WINDOW`] slots the statement's rows take
/// (bit `i` for slot `base + i`).
fn scan_window<T>(
    window: &mut rusqlite::CachedStatement<'_>,
    slot: Slot,
    read: impl FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
) -> rusqlite::Result<(Option<T>, u16)> {
    let mut taken = 0u16;
    let mut rows = window.query([slot.base])?;
    while let Some(r) = rows.next()? {
        if r.get_ref(1)?.as_i64()? == slot.tag {
            return Ok((Some(read(r)?), 0));
        }
        taken |= 1 << (r.get::<_, i64>(0)? - slot.base);
    }
    Ok((None, taken))
}

/// The person's row in their slot window, if any.
fn find_person(window: &mut rusqlite::CachedStatement<'_>, slot: Slot) -> rusqlite::Result<Option<PersonRecord>> {
    Ok(scan_window(window, slot, person_row)?.0)
}

/// The lowest free slot of the window of a person who has no row, given
/// the window's taken slots (as [`scan_window`] gives them).
///
/// # Errors
/// A constraint error when all [`SLOT_WINDOW`] slots are taken (16 persons
/// whose 60-bit hashes lie within 16 of each other).
fn free_slot(slot: Slot, taken: u16) -> rusqlite::Result<i64> {
    match taken.trailing_ones() {
        i if i < SLOT_WINDOW as u32 => Ok(slot.base + i64::from(i)),
        _ => Err(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CONSTRAINT),
            Some(format!("all {SLOT_WINDOW} slots of a person's window are taken")),
        )),
    }
}

/// SQLite's busy handler for vault connections, called with the number of
/// earlier calls for the same lock: sleeps [`LOCK_POLL_MS`] and asks SQLite
/// to try again, until [`LOCK_WAIT_SECONDS`] have passed; says once, after
/// a second, that it is waiting.
fn wait_for_lock(retries: i32) -> bool {
    let waited_ms = u64::try_from(retries).unwrap_or(0) * LOCK_POLL_MS;
    if waited_ms == 1000 {
        tracing::info!(
            "key vault: waiting for its lock, which another piigate holds (a merge of staged keys holds it about 30 s per million at 10M persons); giving up after {LOCK_WAIT_SECONDS} s"
        );
    }
    if waited_ms >= LOCK_WAIT_SECONDS * 1000 {
        return false;
    }
    std::thread::sleep(std::time::Duration::from_millis(LOCK_POLL_MS));
    true
}

/// Whether `staged` keys, out of `persons` made so far, make a merge due: at
/// least [`MERGE_MIN_STAGED`] and at least 1/[`MERGE_FRACTION`] of them.
fn merge_is_due(staged: i64, persons: i64) -> bool {
    staged > 0 && staged >= MERGE_MIN_STAGED.max(persons / MERGE_FRACTION)
}

/// The associated data of a stored identity: [`IDENTITY_LABEL`] ‖ pseudonym.
pub fn identity_ad(pseudonym: &str) -> Vec<u8> {
    let mut ad = IDENTITY_LABEL.as_bytes().to_vec();
    ad.extend_from_slice(pseudonym.as_bytes());
    ad
}

/// A `person_keys` row, selected as in [`SELECT_WINDOW`].
fn person_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<PersonRecord> {
    Ok(PersonRecord {
        slot: r.get(0)?,
        tag: r.get(1)?,
        dek_id: r.get(2)?,
        kek_id: r.get(3)?,
        nonce: r.get(4)?,
        wrapped: r.get(5)?,
        person: r.get(6)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn keys_are_stable_forget_destroys_and_reveal_follows() {
        let (_dir, ring, path, v) = new_vault("state/vault.sqlite");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
        let persons = vec![
            ("u_a".to_owned(), "a@x.test".to_owned()),
            ("u_b".to_owned(), "b@x.test".to_owned()),
            ("u_a".to_owned(), "a@x.test".to_owned()),
        ];
        let first = key_ids(&v.person_keys(&persons, false, ring.path()).unwrap());
        v.sync(0).unwrap();
        assert_eq!(first[0], first[2]);
        assert_ne!(first[0], first[1]);
        let again = Vault::open(&path, &ring, false, None).unwrap();
        assert_eq!(key_ids(&again.person_keys(&persons, false, ring.path()).unwrap()), first);
        let revealed = again.reveal(&["u_a".into()], ring.path()).unwrap();
        assert!(matches!(&revealed[0], Revealed::Identity(i) if i == "a@x.test"));

        let s = again.forget(&["u_a".into(), "u_zz".into()]).unwrap();
        assert_eq!((s.forgotten, s.unknown, s.already, s.log_truncated), (1, 1, 0, true));
        assert!(matches!(again.reveal(&["u_a".into()], ring.path()).unwrap()[0], Revealed::Forgotten));
        assert!(again.key_by_dek_id(&first[0].parse().unwrap(), ring.path()).unwrap().is_none());
        assert!(again.key_by_dek_id(&first[1].parse().unwrap(), ring.path()).unwrap().is_some());
        let after = key_ids(&again.person_keys(&persons, false, ring.path()).unwrap());
        assert_eq!(after, vec!["-".to_string(), first[1].clone(), "-".to_string()]);
        let renewed = key_ids(&again.person_keys(&persons, true, ring.path()).unwrap());
        again.sync(0).unwrap();
        assert_ne!(renewed[0], first[0]);
        assert_eq!(renewed[0], renewed[2]);
        let bytes = std::fs::read(&path).unwrap();
        assert!(!bytes.windows(first[0].len()).any(|w| w == first[0].as_bytes()), "forgotten dek_id left in the file");
    }

    /// A person's key is the same key (not only the same id) whether it
    /// was just made, read from the vault, or served from the cache (with
    /// the vault out of reach, so that only the cache can answer): a token
    /// made with any of them decrypts with the others.
    #[test]
    fn cached_keys_are_the_persons_keys() {
        let (dir, ring, path, mut v) = new_vault("state/vault.sqlite");
        let persons: Vec<(String, String)> = (0..40).map(|i| (format!("u_{i}"), format!("{i}@x.test"))).collect();
        // Any look-up fails while `v` is pointed elsewhere: readers open an
        // empty database, which has no tables (the watch connection and the
        // writer stay on the vault).
        let elsewhere = dir.path().join("elsewhere.sqlite");
        let out_of_reach = |v: &mut Vault| {
            v.readers.lock().unwrap().clear();
            v.path = elsewhere.clone();
        };
        let made = v.person_keys(&persons, false, ring.path()).unwrap();
        out_of_reach(&mut v);
        let cached_new = v.person_keys(&persons, false, ring.path()).unwrap();
        v.path = path.clone();
        v.sync(0).unwrap();
        let read = Vault::open(&path, &ring, false, None).unwrap().person_keys(&persons, false, ring.path()).unwrap();
        // The commit emptied the cache; this look-up fills it again.
        v.person_keys(&persons, false, ring.path()).unwrap();
        assert_eq!(v.cache.lock().unwrap().len(), persons.len());
        out_of_reach(&mut v);
        let cached = v.person_keys(&persons, false, ring.path()).unwrap();
        assert_eq!(key_ids(&cached_new), key_ids(&made));
        let key = |k: &PersonKey| match k {
            PersonKey::Key(id, dek) => DataKey::new(*id, dek),
            PersonKey::Forgotten => panic!("nobody was forgotten"),
        };
        for (i, ((m, c), r)) in made.iter().zip(&cached).zip(&read).enumerate() {
            let (m, c, r) = (key(m), key(c), key(r));
            assert_eq!((m.id(), c.id()), (r.id(), r.id()));
            let (mut scratch, mut token) = (Vec::new(), Vec::new());
            m.encrypt_token_into(b"email", format!("{i}@x.test").as_bytes(), &mut scratch, &mut token);
            let (_, payload) = aead::parse_token(&token).unwrap();
            for k in [&c, &r, &key(&cached_new[i])] {
                assert_eq!(k.decrypt_payload(b"email", &payload).unwrap(), format!("{i}@x.test").as_bytes());
            }
            if i > 0 {
                assert!(key(&read[i - 1]).decrypt_payload(b"email", &payload).is_err(), "persons share no key");
            }
        }
        let unknown = vec![("u_new".to_owned(), "new@x.test".to_owned())];
        assert!(v.person_keys(&unknown, false, ring.path()).is_err(), "the vault is out of reach");
    }

    /// A person forgotten through another connection (another piigate
    /// process) is not served from the cache of a vault that had their key:
    /// a long-running `run --watch` applies the forgotten policy to them
    /// from its next look-up on.
    #[test]
    fn a_person_forgotten_elsewhere_is_not_served_from_the_cache() {
        let (_dir, ring, path, v) = new_vault("state/vault.sqlite");
        let persons = vec![("u_a".to_owned(), "a@x.test".to_owned()), ("u_b".to_owned(), "b@x.test".to_owned())];
        let first = key_ids(&v.person_keys(&persons, false, ring.path()).unwrap());
        v.sync(0).unwrap();
        assert_eq!(key_ids(&v.person_keys(&persons, false, ring.path()).unwrap()), first);
        let other = Vault::open(&path, &ring, false, None).unwrap();
        assert_eq!(other.forget(&["u_a".into()]).unwrap().forgotten, 1);
        assert_eq!(
            key_ids(&v.person_keys(&persons, false, ring.path()).unwrap()),
            vec!["-".to_string(), first[1].clone()]
        );
        // With `forgotten = "new-key"`, a new key.
        let renewed = key_ids(&v.person_keys(&persons, true, ring.path()).unwrap());
        assert_ne!(renewed[0], first[0]);
        assert_eq!(renewed[1], first[1]);
    }

    fn key_ids(ks: &[PersonKey]) -> Vec<String> {
        ks.iter()
            .map(|k| match k {
                PersonKey::Key(id, _) => id.to_string(),
                PersonKey::Forgotten => "-".into(),
            })
            .collect()
    }

    /// Workers look persons up in parallel on pooled readers, which do not
    /// see the writer's open transaction: a new person that several workers
    /// meet at once still gets exactly one key, and after `sync` another
    /// connection reads every key that was handed out.
    #[test]
    fn workers_meeting_the_same_new_persons_get_one_key_each_committed_by_sync() {
        let (_dir, ring, path, v) = new_vault("vault.sqlite");
        let persons: Vec<(String, String)> = (0..300).map(|i| (format!("u_{i:04}"), format!("p{i}@x.test"))).collect();
        let results: Vec<Vec<String>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..4)
                .map(|t| {
                    let (v, ring, persons) = (&v, &ring, &persons);
                    s.spawn(move || {
                        // Each worker asks in its own order and chunking.
                        let mut order: Vec<usize> = (0..persons.len()).collect();
                        order.rotate_left(t * 70);
                        let mut ids = vec![String::new(); persons.len()];
                        for chunk in order.chunks(37 + t) {
                            let ask: Vec<(String, String)> = chunk.iter().map(|&i| persons[i].clone()).collect();
                            let got = key_ids(&v.person_keys(&ask, false, ring.path()).unwrap());
                            for (&i, id) in chunk.iter().zip(got) {
                                ids[i] = id;
                            }
                        }
                        ids
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for r in &results[1..] {
            assert_eq!(r, &results[0]);
        }
        assert_eq!(results[0].iter().collect::<HashSet<_>>().len(), persons.len(), "one distinct key per person");
        v.sync(0).unwrap();
        // What sync committed is what another connection reads.
        let other = Connection::open(&path).unwrap();
        let stored: HashMap<String, String> = other
            .prepare(&format!(
                "SELECT i.pseudonym, k.dek_id FROM ({ALL_KEYS}) k JOIN person_identities i ON i.id = k.person"
            ))
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        for ((p, _), id) in persons.iter().zip(&results[0]) {
            assert_eq!(stored.get(p), Some(id), "{p}");
        }
        // A fresh vault (no cache) finds the same keys through its readers.
        let again = Vault::open(&path, &ring, false, None).unwrap();
        assert_eq!(key_ids(&again.person_keys(&persons, false, ring.path()).unwrap()), results[0]);
    }

    /// The writer fsyncs every commit (`sync` relies on it); readers never write.
    #[test]
    fn writer_commits_are_fsynced_and_readers_are_read_only() {
        let (_dir, _ring, _path, v) = new_vault("vault.sqlite");
        let sync: i64 = v.conn().query_row("PRAGMA synchronous", [], |r| r.get(0)).unwrap();
        assert_eq!(sync, 2, "synchronous = FULL");
        let journal: String = v.conn().query_row("PRAGMA journal_mode", [], |r| r.get(0)).unwrap();
        assert_eq!(journal, "wal");
        let refused = v.with_reader(|c| c.execute("DELETE FROM person_keys", []));
        assert!(refused.is_err(), "a pooled reader must be read-only");
    }

    /// Slot windows and tags as docs/FORMAT.md defines them (values from
    /// Python's hashlib).
    #[test]
    fn slot_is_sha256_of_the_pseudonym() {
        let s = Slot::of("u_a");
        assert_eq!((s.base, s.tag), (656513399799630347, -1699366203459668972));
        let s = Slot::of("u_0123456789abcdef0123456789");
        assert_eq!((s.base, s.tag), (535750867123622334, 2382216213581161841));
    }

    /// Puts another person's key row (tag `tag`, key `dek_id`) in `slot` of
    /// `person_keys`, committed.
    fn take_slot(v: &Vault, slot: i64, tag: i64, dek_id: &str) {
        v.conn()
            .execute(
                "INSERT INTO person_keys VALUES (?1, ?2, ?3, 'k0', x'00', x'00', 0)",
                rusqlite::params![slot, tag, dek_id],
            )
            .unwrap();
    }

    /// A person whose first slot is taken by someone else takes the next
    /// free one, and look-ups, reveal and forget find the right row.
    #[test]
    fn a_taken_slot_moves_the_person_along_the_window() {
        let (_dir, ring, path, v) = new_vault("vault.sqlite");
        let s = Slot::of("u_a");
        // Another person (another tag) in the first two slots of u_a's window.
        for (slot, dek) in [(s.base, "00000000000000f1"), (s.base + 1, "00000000000000f2")] {
            take_slot(&v, slot, s.tag ^ 1, dek);
        }
        let persons = vec![("u_a".to_owned(), "a@x.test".to_owned())];
        let first = key_ids(&v.person_keys(&persons, false, ring.path()).unwrap());
        v.sync(0).unwrap();
        let at: i64 = v
            .conn()
            .query_row(&format!("SELECT slot FROM ({ALL_KEYS}) WHERE dek_id = ?1"), [&first[0]], |r| r.get(0))
            .unwrap();
        assert_eq!(at, s.base + 2);
        let again = Vault::open(&path, &ring, false, None).unwrap();
        assert_eq!(key_ids(&again.person_keys(&persons, false, ring.path()).unwrap()), first);
        assert!(
            matches!(&again.reveal(&["u_a".into()], ring.path()).unwrap()[0], Revealed::Identity(i) if i == "a@x.test")
        );
        assert_eq!(again.forget(&["u_a".into()]).unwrap().forgotten, 1);
        let left: i64 = again.conn().query_row("SELECT count(*) FROM person_keys", [], |r| r.get(0)).unwrap();
        assert_eq!(left, 2, "only u_a's row is deleted");
    }

    /// A new person met while the writer's transaction is open takes the
    /// main-table slots of their window from the look-up (the writer then
    /// reads only the staged keys): a slot taken in `person_keys` is not
    /// taken again, and the merge moves the person unchanged.
    #[test]
    fn a_slot_taken_in_the_main_table_is_skipped_inside_an_open_transaction() {
        let (_dir, ring, path, v) = new_vault("vault.sqlite");
        let s = Slot::of("u_b");
        take_slot(&v, s.base, s.tag ^ 1, "00000000000000f1");
        let a = vec![("u_a".to_owned(), "a@x.test".to_owned())];
        let b = vec![("u_b".to_owned(), "b@x.test".to_owned())];
        let first_a = key_ids(&v.person_keys(&a, false, ring.path()).unwrap());
        assert_ne!(v.open_tx.load(Ordering::SeqCst), 0, "u_a opened the write transaction");
        let first_b = key_ids(&v.person_keys(&b, false, ring.path()).unwrap());
        v.sync(0).unwrap();
        assert_eq!(v.merge_staged().unwrap(), 2);
        let at: i64 =
            v.conn().query_row("SELECT slot FROM person_keys WHERE dek_id = ?1", [&first_b[0]], |r| r.get(0)).unwrap();
        assert_eq!(at, s.base + 1);
        let again = Vault::open(&path, &ring, false, None).unwrap();
        assert_eq!(key_ids(&again.person_keys(&a, false, ring.path()).unwrap()), first_a);
        assert_eq!(key_ids(&again.person_keys(&b, false, ring.path()).unwrap()), first_b);
        assert!(
            matches!(&again.reveal(&["u_b".into()], ring.path()).unwrap()[0], Revealed::Identity(i) if i == "b@x.test")
        );
    }

    /// When SQLite rolls back the shared write transaction (as after a full
    /// disk), a file that may have used its keys fails at sync instead of
    /// publishing tokens whose keys are gone; a file begun after the loss
    /// syncs, also when no transaction was begun in between, and gets no
    /// lost key from the cache. The transaction begun after the loss reads
    /// the main table again: a slot taken there meanwhile is not taken twice.
    #[test]
    fn keys_lost_to_a_rolled_back_transaction_fail_the_files_that_may_use_them() {
        let (_dir, ring, _path, v) = new_vault("vault.sqlite");
        let a = vec![("u_a".to_owned(), "a@x.test".to_owned())];
        let b = vec![("u_b".to_owned(), "b@x.test".to_owned())];
        let c = vec![("u_c".to_owned(), "c@x.test".to_owned())];
        let file_1 = v.mark();
        v.person_keys(&a, false, ring.path()).unwrap();
        v.conn().execute_batch("ROLLBACK").unwrap();
        // Another writer takes u_b's first slot after the rollback.
        let s = Slot::of("u_b");
        take_slot(&v, s.base, s.tag ^ 1, "00000000000000f1");
        v.person_keys(&b, false, ring.path()).unwrap();
        assert!(matches!(v.sync(file_1), Err(VaultError::KeysLost(_))), "file 1 may have used u_a's lost key");
        let file_2 = v.mark();
        v.person_keys(&c, false, ring.path()).unwrap();
        v.sync(file_2).unwrap();
        // A loss found at sync, with no transaction begun since: a later
        // file's keys go into the next one, so it syncs.
        let d = vec![("u_d".to_owned(), "d@x.test".to_owned())];
        let file_3 = v.mark();
        v.person_keys(&d, false, ring.path()).unwrap();
        v.conn().execute_batch("ROLLBACK").unwrap();
        assert!(matches!(v.sync(file_3), Err(VaultError::KeysLost(_))));
        let file_4 = v.mark();
        v.person_keys(&c, false, ring.path()).unwrap();
        v.sync(file_4).unwrap();
        let file_5 = v.mark();
        v.person_keys(&d, false, ring.path()).unwrap();
        v.sync(file_5).unwrap();
        assert_eq!(v.merge_staged().unwrap(), 3, "u_b, u_c and u_d's second key; u_a's key was lost");
        let at: i64 = v.conn().query_row("SELECT slot FROM person_keys WHERE tag = ?1", [s.tag], |r| r.get(0)).unwrap();
        assert_eq!(at, s.base + 1);
    }

    /// A COMMIT that fails and rolls back (here SQLite's commit hook turns
    /// it into a rollback) loses the transaction's keys: the file whose
    /// sync ran it fails, so does every file whose keys may be in it, and
    /// the lost keys are not served from the cache afterwards.
    #[test]
    fn a_failed_commit_loses_its_keys_and_fails_the_files_that_may_use_them() {
        let (_dir, ring, _path, v) = new_vault("vault.sqlite");
        let a = vec![("u_a".to_owned(), "a@x.test".to_owned())];
        let b = vec![("u_b".to_owned(), "b@x.test".to_owned())];
        let file_1 = v.mark();
        let first = key_ids(&v.person_keys(&a, false, ring.path()).unwrap());
        let file_2 = v.mark();
        v.person_keys(&b, false, ring.path()).unwrap();
        v.conn().commit_hook(Some(|| true));
        let err = v.sync(file_1).unwrap_err();
        assert!(matches!(err, VaultError::Sql { .. }), "{err}");
        v.conn().commit_hook(None::<fn() -> bool>);
        assert!(matches!(v.sync(file_2), Err(VaultError::KeysLost(_))), "file 2's keys were in the same transaction");
        let file_3 = v.mark();
        let again = key_ids(&v.person_keys(&a, false, ring.path()).unwrap());
        assert_ne!(again, first, "the lost key came back from the cache");
        v.sync(file_3).unwrap();
        assert_eq!(v.merge_staged().unwrap(), 1, "only u_a's second key was committed");
    }

    /// A version 1 vault (one `persons` table keyed by pseudonym) is moved
    /// to the current tables on open: same keys, identities still revealed.
    #[test]
    fn a_version_1_vault_is_migrated() {
        let (_dir, ring, path, persons, ids) = vault_of(50, false);
        // Rewrite it as version 1.
        let c = Connection::open(&path).unwrap();
        c.execute_batch(
            "BEGIN;
             CREATE TABLE persons (
               pseudonym TEXT PRIMARY KEY, dek_id TEXT NOT NULL UNIQUE, kek_id TEXT NOT NULL,
               nonce BLOB NOT NULL, wrapped BLOB NOT NULL, identity BLOB NOT NULL, created TEXT NOT NULL
             ) WITHOUT ROWID;
             INSERT INTO persons SELECT i.pseudonym, k.dek_id, k.kek_id, k.nonce, k.wrapped, i.identity, i.created
               FROM person_keys_staged k JOIN person_identities i ON i.id = k.person;
             DROP TABLE person_keys; DROP TABLE person_keys_staged; DROP TABLE person_identities;
             PRAGMA user_version = 1;
             COMMIT;",
        )
        .unwrap();
        drop(c);
        let v = reopened_at_current_version(&path, &ring);
        assert_eq!(key_ids(&v.person_keys(&persons, false, ring.path()).unwrap()), ids);
        let revealed = v.reveal(&[persons[7].0.clone()], ring.path()).unwrap();
        assert!(matches!(&revealed[0], Revealed::Identity(i) if *i == persons[7].1));
        let old: i64 = v
            .conn()
            .query_row("SELECT count(*) FROM sqlite_master WHERE name LIKE 'persons%'", [], |r| r.get(0))
            .unwrap();
        assert_eq!(old, 0, "the version 1 table is dropped");
        assert_eq!(counts(&v), (50, 0), "migrated keys are merged");
    }

    /// A new, empty vault at `rel` in a temporary folder, with a fresh
    /// keyring: (folder, keyring, vault path, vault).
    fn new_vault(rel: &str) -> (tempfile::TempDir, Keyring, PathBuf, Vault) {
        let dir = tempfile::tempdir().unwrap();
        let ring = Keyring::generate(&dir.path().join("k.toml"));
        let path = dir.path().join(rel);
        let v = Vault::open(&path, &ring, true, None).unwrap();
        (dir, ring, path, v)
    }

    /// A vault (in a temporary folder, with a fresh keyring) holding `n`
    /// persons, committed, and merged into person_keys when `merged`:
    /// (folder, keyring, vault path, persons, their dek_ids).
    fn vault_of(n: usize, merged: bool) -> (tempfile::TempDir, Keyring, PathBuf, Vec<(String, String)>, Vec<String>) {
        let (dir, ring, path, v) = new_vault("vault.sqlite");
        let persons = numbered_persons(n);
        let ids = key_ids(&v.person_keys(&persons, false, ring.path()).unwrap());
        v.sync(0).unwrap();
        if merged {
            v.merge_staged().unwrap();
        }
        drop(v);
        (dir, ring, path, persons, ids)
    }

    /// `n` persons: ("u_000", "p0@x.test"), ...
    fn numbered_persons(n: usize) -> Vec<(String, String)> {
        (0..n).map(|i| (format!("u_{i:03}"), format!("p{i}@x.test"))).collect()
    }

    /// The vault at `path`, opened again, after checking that opening it
    /// brought it to [`VAULT_VERSION`].
    fn reopened_at_current_version(path: &Path, ring: &Keyring) -> Vault {
        let v = Vault::open(path, ring, false, None).unwrap();
        let version: i64 = v.conn().query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
        assert_eq!(version, VAULT_VERSION);
        v
    }

    /// (keys in person_keys, keys staged).
    fn counts(v: &Vault) -> (i64, i64) {
        let c = v.conn();
        let n = |t: &str| c.query_row(&format!("SELECT count(*) FROM {t}"), [], |r| r.get(0)).unwrap();
        (n("person_keys"), n("person_keys_staged"))
    }

    /// New persons' keys are staged, found there by every path, and merged
    /// into person_keys unchanged; after the merge every path finds them
    /// there, and new persons are staged again beside them.
    #[test]
    fn staged_keys_are_found_and_merged_unchanged() {
        let (_dir, ring, path, _, ids) = vault_of(100, false);
        let persons = numbered_persons(200);
        let v = Vault::open(&path, &ring, false, None).unwrap();
        assert_eq!(counts(&v), (0, 100));
        assert_eq!(v.merge_due().unwrap(), None, "100 staged keys are below the minimum");
        let fresh = Vault::open(&path, &ring, false, None).unwrap();
        assert_eq!(key_ids(&fresh.person_keys(&persons[..100], false, ring.path()).unwrap()), ids);
        assert!(fresh.key_by_dek_id(&ids[3].parse().unwrap(), ring.path()).unwrap().is_some());
        assert_eq!(fresh.keys_per_kek().unwrap().values().sum::<usize>(), 100);

        assert_eq!(v.merge_staged().unwrap(), 100);
        assert_eq!(counts(&v), (100, 0));
        let more = key_ids(&v.person_keys(&persons, false, ring.path()).unwrap());
        v.sync(0).unwrap();
        assert_eq!(more[..100], ids[..], "merged keys are the same keys");
        assert_eq!(counts(&v), (100, 100));
        let fresh = Vault::open(&path, &ring, false, None).unwrap();
        assert_eq!(key_ids(&fresh.person_keys(&persons, false, ring.path()).unwrap()), more);
        assert!(fresh.key_by_dek_id(&ids[3].parse().unwrap(), ring.path()).unwrap().is_some());
        assert!(matches!(
            &fresh.reveal(&[persons[150].0.clone()], ring.path()).unwrap()[0],
            Revealed::Identity(i) if *i == persons[150].1
        ));
        // Forget one merged and one staged person.
        let s = fresh.forget(&[persons[3].0.clone(), persons[150].0.clone()]).unwrap();
        assert_eq!(s.forgotten, 2);
        assert_eq!(counts(&fresh), (99, 99));
        assert!(fresh.key_by_dek_id(&ids[3].parse().unwrap(), ring.path()).unwrap().is_none());
        assert!(matches!(fresh.reveal(&[persons[150].0.clone()], ring.path()).unwrap()[0], Revealed::Forgotten));
        // Re-wrapping covers both tables.
        assert_eq!(fresh.keys_per_kek().unwrap().values().sum::<usize>(), 198);
        let mut ring = ring;
        let active = ring.rotate();
        let rotated = Vault::open(&path, &ring, false, None).unwrap();
        let r = rotated.rewrap(ring.path()).unwrap();
        assert_eq!((r.keys, r.rewrapped), (198, 198));
        assert_eq!(rotated.keys_per_kek().unwrap().into_iter().collect::<Vec<_>>(), vec![(active.to_string(), 198)]);
        let mut survivors = more.clone();
        survivors[3] = "-".into();
        survivors[150] = "-".into();
        assert_eq!(key_ids(&rotated.person_keys(&persons, false, ring.path()).unwrap()), survivors);
    }

    /// A vault connection waits for the write lock another connection (as
    /// of another process) holds, instead of failing at once.
    #[test]
    fn a_writer_waits_for_a_lock_another_connection_holds() {
        let (_dir, ring, path, _, _) = vault_of(1, false);
        let holder = Connection::open(&path).unwrap();
        holder.execute_batch("BEGIN IMMEDIATE").unwrap();
        let v = Vault::open(&path, &ring, false, None).unwrap();
        let started = std::time::Instant::now();
        std::thread::scope(|s| {
            s.spawn(move || {
                std::thread::sleep(std::time::Duration::from_millis(1500));
                holder.execute_batch("COMMIT").unwrap();
            });
            let newcomer = numbered_persons(3).split_off(2);
            let keys = v.person_keys(&newcomer, false, ring.path()).unwrap();
            assert!(matches!(keys[0], PersonKey::Key(..)));
        });
        assert!(started.elapsed() >= std::time::Duration::from_millis(1400), "{:?}", started.elapsed());
        v.sync(0).unwrap();
        assert_eq!(counts(&v), (0, 2));
        // It gives up after LOCK_WAIT_SECONDS.
        let limit = i32::try_from(LOCK_WAIT_SECONDS * 1000 / LOCK_POLL_MS).unwrap();
        assert!(wait_for_lock(limit - 1));
        assert!(!wait_for_lock(limit));
    }

    /// A merge is due at MERGE_MIN_STAGED staged keys, and in a big vault
    /// only at 1/MERGE_FRACTION of its persons.
    #[test]
    fn a_merge_is_due_at_the_minimum_or_the_fraction() {
        assert!(!merge_is_due(0, 0));
        assert!(!merge_is_due(MERGE_MIN_STAGED - 1, MERGE_MIN_STAGED - 1));
        assert!(merge_is_due(MERGE_MIN_STAGED, MERGE_MIN_STAGED));
        assert!(merge_is_due(MERGE_MIN_STAGED, 2 * MERGE_MIN_STAGED));
        let big = 10_000_000;
        assert!(!merge_is_due(big / MERGE_FRACTION - 1, big));
        assert!(merge_is_due(big / MERGE_FRACTION, big));
    }

    /// A version 2 vault (no staged keys' table) gets one on open and keeps
    /// its keys.
    #[test]
    fn a_version_2_vault_is_migrated() {
        let (_dir, ring, path, persons, ids) = vault_of(20, true);
        let c = Connection::open(&path).unwrap();
        c.execute_batch("DROP TABLE person_keys_staged; PRAGMA user_version = 2;").unwrap();
        drop(c);
        let v = reopened_at_current_version(&path, &ring);
        assert_eq!(counts(&v), (20, 0));
        assert_eq!(key_ids(&v.person_keys(&persons, false, ring.path()).unwrap()), ids);
    }
}
