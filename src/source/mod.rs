//! Where inputs come from: a local folder or a folder on an SFTP server.
//! A [`Source`] lists candidate files, opens one for streaming, and moves
//! it to the archive or quarantine folder afterwards.

pub mod local;
pub mod sftp;

use std::io::Read;

/// A file in the inbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Base name.
    pub name: String,
    /// Bytes.
    pub size: u64,
    /// Modification time, seconds since the Unix epoch.
    pub mtime: u64,
    /// Whether it is a regular file.
    pub regular: bool,
}

/// Source failures: the message names the folder or file and the cause.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// Local I/O.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was done.
        op: &'static str,
        /// Path.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
    /// SFTP.
    #[error(transparent)]
    Sftp(#[from] crate::sftp::SftpError),
}

impl SourceError {
    /// Worth retrying (a connection problem).
    pub fn is_transient(&self) -> bool {
        match self {
            SourceError::Io { .. } => false,
            SourceError::Sftp(e) => e.is_transient(),
        }
    }
}

/// An inbox.
pub trait Source: Send + Sync {
    /// Entries directly in the inbox folder.
    ///
    /// # Errors
    /// [`SourceError`].
    fn list(&self) -> Result<Vec<Entry>, SourceError>;

    /// Opens `name` for reading; at most `size` bytes are returned (a
    /// remote read never blocks past the size listed).
    ///
    /// # Errors
    /// [`SourceError`].
    fn open(&self, name: &str, size: u64) -> Result<Box<dyn Read + Send + '_>, SourceError>;

    /// Moves `name` into `folder` (created if missing), under `name` or,
    /// when taken, a unique variant. Returns the new location.
    ///
    /// # Errors
    /// [`SourceError`].
    fn move_to(&self, name: &str, folder: &str) -> Result<String, SourceError>;

    /// Writes a small text file into `folder` (for quarantine reasons).
    ///
    /// # Errors
    /// [`SourceError`].
    fn write_text(&self, folder: &str, name: &str, text: &str) -> Result<(), SourceError>;

    /// Human-readable location.
    fn describe(&self, name: &str) -> String;
}

/// A name for `name` in a folder that already holds it: `stem.N.ext`.
pub fn variant(name: &str, n: u32) -> String {
    match name.rsplit_once('.') {
        Some((stem, ext)) => format!("{stem}.{n}.{ext}"),
        None => format!("{name}.{n}"),
    }
}
